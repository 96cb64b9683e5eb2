#define BOOST_TEST_MODULE unit_bus_topics
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <memory>
#include <thread>

#include "bus/errc.hpp"
#include "bus/topics.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace cyto;
using namespace std::chrono_literals;

namespace {

struct topics_fixture : test::actor_fixture {
  topic_actor topics = sys.spawn(bus::topics, bus::topics_config{});

  ~topics_fixture() {
    caf::anon_send_exit(topics, caf::exit_reason::user_shutdown);
  }

  uint64_t subscribe(const std::string& topic, caf::scoped_actor& who, uint32_t capacity,
                     uint32_t credit) {
    uint64_t id = 0;
    self->request(topics, caf::infinite, subscribe_atom::value, topic,
                  caf::actor_cast<topic_subscriber_actor>(who), capacity, credit)
      .receive([&](uint64_t x) { id = x; }, [](caf::error& e) { BOOST_FAIL(render(e)); });
    return id;
  }

  uint64_t subscribe_acking(const std::string& topic, caf::scoped_actor& who, uint32_t capacity,
                            uint32_t credit) {
    uint64_t id = 0;
    self->request(topics, caf::infinite, subscribe_atom::value, ack_atom::value, topic,
                  caf::actor_cast<topic_subscriber_actor>(who), capacity, credit)
      .receive([&](uint64_t x) { id = x; }, [](caf::error& e) { BOOST_FAIL(render(e)); });
    return id;
  }

  /// Publishes `value` with a receipt from an actor of its own; `answered` counts the
  /// receipts. Returns once the topic has it.
  void publish_receipted(const std::string& topic, int value,
                         std::shared_ptr<std::atomic<int>> answered) {
    auto before = stats().published;
    sys.spawn([t = topics, topic, value, answered](caf::event_based_actor* me) {
      me->request(t, caf::infinite, publish_atom::value, ack_atom::value, topic,
                  caf::make_message(value))
        .then([answered] { ++*answered; });
    });
    for (int i = 0; i < 500 && stats().published == before; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  /// Whether `counter` reaches `n` within `wait`.
  static bool reaches(const std::atomic<int>& counter, int n, std::chrono::milliseconds wait) {
    auto until = std::chrono::steady_clock::now() + wait;
    while (counter < n && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return counter >= n;
  }

  void publish(const std::string& topic, int value) {
    self->send(topics, publish_atom::value, topic, caf::make_message(value));
  }

  topic_stats stats() {
    topic_stats s;
    self->request(topics, caf::infinite, get_atom::value, stats_atom::value)
      .receive([&](topic_stats& x) { s = x; }, [](caf::error& e) { BOOST_FAIL(render(e)); });
    return s;
  }

  /// Receives batches until `n` events (or the patience) arrived; returns values and drops.
  std::pair<std::vector<int>, uint64_t> collect(caf::scoped_actor& who, size_t n) {
    std::vector<int> values;
    uint64_t dropped = 0;
    bool timed_out = false;
    while (values.size() < n && !timed_out) {
      who->receive(
        [&](topic_batch& b) {
          dropped += b.dropped;
          for (auto& ev : b.events)
            values.push_back(ev.get_as<int>(0));
        },
        caf::after(patience) >> [&] { timed_out = true; });
    }
    return {values, dropped};
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(topics, topics_fixture)

BOOST_AUTO_TEST_CASE(every_subscriber_gets_every_event_in_order) {
  caf::scoped_actor a{sys}, b{sys};
  subscribe("t", a, 100, 100);
  subscribe("t", b, 100, 100);
  subscribe("other", b, 100, 100);
  for (int i = 0; i < 20; ++i)
    publish("t", i);
  std::vector<int> want(20);
  std::iota(want.begin(), want.end(), 0);
  BOOST_TEST(collect(a, 20).first == want);
  BOOST_TEST(collect(b, 20).first == want);
  auto s = stats();
  BOOST_TEST(s.published == 20u);
  BOOST_TEST(s.delivered == 40u);
  BOOST_TEST(s.dropped == 0u);
  BOOST_TEST(s.topics == 2u);
}

BOOST_AUTO_TEST_CASE(slow_subscriber_gets_a_drop_count_and_the_newest_events) {
  caf::scoped_actor slow{sys}, fast{sys};
  auto slow_id = subscribe("t", slow, 4, 0); // no credit: it is not reading
  subscribe("t", fast, 1000, 1000);
  for (int i = 0; i < 10; ++i)
    publish("t", i);
  // The fast one is not held back by the slow one.
  BOOST_TEST(collect(fast, 10).first.size() == 10u);
  auto s = stats();
  BOOST_TEST(s.dropped == 6u);
  self->send(topics, demand_atom::value, slow_id, uint32_t{100});
  auto [values, dropped] = collect(slow, 4);
  BOOST_TEST(dropped == 6u);
  BOOST_TEST(values == (std::vector<int>{6, 7, 8, 9}));
}

BOOST_AUTO_TEST_CASE(credit_limits_what_is_sent) {
  caf::scoped_actor sub{sys};
  auto id = subscribe("t", sub, 100, 3);
  for (int i = 0; i < 10; ++i)
    publish("t", i);
  BOOST_TEST(collect(sub, 3).first == (std::vector<int>{0, 1, 2}));
  // Nothing more arrives without credit.
  bool more = false;
  sub->receive([&](topic_batch&) { more = true; },
               caf::after(std::chrono::milliseconds(200)) >> [] {});
  BOOST_TEST(!more);
  self->send(topics, demand_atom::value, id, uint32_t{7});
  BOOST_TEST(collect(sub, 7).first == (std::vector<int>{3, 4, 5, 6, 7, 8, 9}));
}

BOOST_AUTO_TEST_CASE(bad_subscriptions_are_refused) {
  caf::scoped_actor sub{sys};
  auto code = [&](std::string topic, uint32_t capacity) {
    errc c = errc::ok;
    self->request(topics, caf::infinite, subscribe_atom::value, std::move(topic),
                  caf::actor_cast<topic_subscriber_actor>(sub), capacity, uint32_t{1})
      .receive([](uint64_t) {}, [&](caf::error& e) { c = code_of(e); });
    return static_cast<int>(c);
  };
  BOOST_TEST(code("", 10) == static_cast<int>(errc::invalid_argument));
  BOOST_TEST(code("t", 0) == static_cast<int>(errc::invalid_argument));
  BOOST_TEST(code("t", 1u << 30) == static_cast<int>(errc::invalid_argument));
  BOOST_TEST(stats().subscribers == 0u);
}

BOOST_AUTO_TEST_CASE(unsubscribe_and_subscriber_death_remove_subscriptions) {
  caf::scoped_actor a{sys};
  auto id = subscribe("t", a, 10, 10);
  self->send(topics, unsub_atom::value, id);
  BOOST_TEST(stats().subscribers == 0u);
  {
    caf::scoped_actor b{sys};
    subscribe("t", b, 10, 10);
    BOOST_TEST(stats().subscribers == 1u);
  } // b terminates here
  size_t left = 1;
  for (int i = 0; i < 100 && left > 0; ++i) {
    left = stats().subscribers;
    if (left > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  BOOST_TEST(left == 0u);
}

BOOST_AUTO_TEST_CASE(a_receipt_waits_until_an_acknowledging_subscriber_consumed_the_event) {
  caf::scoped_actor acker{sys}, plain{sys};
  auto acker_id = subscribe_acking("t", acker, 10, 10);
  subscribe("t", plain, 10, 10);
  auto answered = std::make_shared<std::atomic<int>>(0);
  // Nobody on the topic: answered at once.
  publish_receipted("nobody", 0, answered);
  BOOST_TEST(reaches(*answered, 1, 2000ms));
  publish_receipted("t", 1, answered);
  BOOST_TEST(collect(acker, 1).first == (std::vector<int>{1}));
  BOOST_TEST(collect(plain, 1).first == (std::vector<int>{1}));
  // Sent to both; the acknowledging one has not granted credit back: no answer yet.
  BOOST_TEST(!reaches(*answered, 2, 300ms));
  self->send(topics, demand_atom::value, acker_id, uint32_t{1});
  BOOST_TEST(reaches(*answered, 2, 2000ms));
}

BOOST_AUTO_TEST_CASE(a_receipt_is_answered_when_its_event_is_dropped_or_its_subscriber_goes) {
  auto answered = std::make_shared<std::atomic<int>>(0);
  {
    caf::scoped_actor stalled{sys};
    subscribe_acking("t", stalled, 1, 0); // no credit: queued, never sent
    publish_receipted("t", 1, answered);
    BOOST_TEST(!reaches(*answered, 1, 300ms));
    // A second event pushes the first out of the queue of one: the first is answered.
    publish_receipted("t", 2, answered);
    BOOST_TEST(reaches(*answered, 1, 2000ms));
    BOOST_TEST(!reaches(*answered, 2, 300ms));
    BOOST_TEST(stats().dropped == 1u);
  } // the stalled subscriber terminates: what it held is answered
  BOOST_TEST(reaches(*answered, 2, 2000ms));
}

BOOST_AUTO_TEST_SUITE_END()
