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
  box.grant(100);
  auto first = box.take();
  BOOST_TEST(first.dropped == 6u);
  BOOST_TEST(first.items == (std::vector<int>{6, 7, 8, 9}));
  auto second = box.take();
  BOOST_TEST(second.dropped == 0u);
  BOOST_TEST(second.items.empty());
}

// A stalled subscriber (no credit) used to be handed one drop marker per flush without
// end, each a capnp call piling up in cytod: drop markers now wait for credit and add up.
BOOST_AUTO_TEST_CASE(drop_markers_wait_for_credit_and_coalesce) {
  outbox<int> box{2, 0};
  for (int flush = 0; flush < 1000; ++flush) {
    box.push(flush);
    BOOST_TEST_REQUIRE(!box.ready(), "a drop count is not sent without credit");
  }
  BOOST_TEST(box.size() == 2u);
  box.grant(1);
  BOOST_TEST(box.ready());
  auto b = box.take();
  BOOST_TEST(b.dropped == 998u); // every loss, in one marker
  BOOST_TEST(b.items == (std::vector<int>{998}));
  BOOST_TEST(!box.ready());
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
