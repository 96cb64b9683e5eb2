#define BOOST_TEST_MODULE unit_bus_outbox
#include <boost/test/unit_test.hpp>

#include "bus/outbox.hpp"

using cyto::outbox;

BOOST_AUTO_TEST_CASE(hands_out_no_more_than_the_credit) {
  outbox<int> box{10, 3};
  for (int i = 0; i < 5; ++i)
    box.push(i);
  auto b = box.take();
  BOOST_TEST(b.items == (std::vector<int>{0, 1, 2}));
  BOOST_TEST(b.dropped == 0u);
  BOOST_TEST(!box.ready());
  box.grant(10);
  BOOST_TEST(box.take().items == (std::vector<int>{3, 4}));
}

BOOST_AUTO_TEST_CASE(full_queue_drops_oldest_and_counts_once) {
  outbox<int> box{4, 0};
  for (int i = 0; i < 10; ++i)
    box.push(i);
  BOOST_TEST(box.size() == 4u);
  BOOST_TEST(box.total_dropped() == 6u);
  BOOST_TEST(box.ready()); // a drop count is news even without credit
  auto first = box.take();
  BOOST_TEST(first.dropped == 6u);
  BOOST_TEST(first.items.empty());
  box.grant(100);
  auto second = box.take();
  BOOST_TEST(second.dropped == 0u);
  BOOST_TEST(second.items == (std::vector<int>{6, 7, 8, 9}));
}

BOOST_AUTO_TEST_CASE(batch_size_is_capped) {
  outbox<int> box{100, 100};
  for (int i = 0; i < 50; ++i)
    box.push(i);
  BOOST_TEST(box.take(16).items.size() == 16u);
  BOOST_TEST(box.credit() == 84u);
  BOOST_TEST(box.size() == 34u);
}

BOOST_AUTO_TEST_CASE(memory_stays_bounded_under_a_flood) {
  outbox<std::string> box{128, 0};
  for (int i = 0; i < 100000; ++i)
    box.push(std::string(64, 'x'));
  BOOST_TEST(box.size() == 128u);
  BOOST_TEST(box.total_dropped() == 100000u - 128u);
}
