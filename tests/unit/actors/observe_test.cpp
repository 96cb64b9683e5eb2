#define BOOST_TEST_MODULE unit_actors_observe
#include <boost/test/unit_test.hpp>

#include "actors/observe/observe_actor.hpp"
#include "bus/errc.hpp"
#include "bus/topics.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace cyto;

namespace {

struct observe_fixture : test::actor_fixture {
  topic_actor topics = sys.spawn(bus::topics, bus::topics_config{});
  observe_actor obs;
  uint64_t seq = 0;

  explicit observe_fixture(uint32_t capacity = 1024, uint32_t credit = 256) {
    observe::observe_config cfg;
    cfg.topics = topics;
    cfg.log_history = 50;
    cfg.queue_capacity = capacity;
    cfg.initial_credit = credit;
    obs = sys.spawn(observe::observe, cfg);
    // The observe actor subscribes asynchronously: wait until the topic has it.
    for (int i = 0; i < 200; ++i) {
      uint64_t subs = 0;
      self->request(topics, caf::infinite, get_atom::value, stats_atom::value)
        .receive([&](topic_stats& s) { subs = s.subscribers; }, [](caf::error&) {});
      if (subs > 0)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  ~observe_fixture() {
    caf::anon_send_exit(obs, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(topics, caf::exit_reason::user_shutdown);
  }

  void log(log_level level, std::string text) {
    log_entry e{0, level, "test", std::move(text), ++seq};
    self->send(topics, publish_atom::value, std::string{topic::daemon_log}, caf::make_message(e));
  }

  uint64_t subscribe(caf::scoped_actor& sink, log_level level, bool follow, uint32_t tail) {
    uint64_t id = 0;
    self->request(obs, caf::infinite, subscribe_atom::value, logs_atom::value, level, follow, tail,
                  caf::actor_cast<log_sink_actor>(sink))
      .receive([&](uint64_t x) { id = x; }, [](caf::error& e) { BOOST_FAIL(render(e)); });
    return id;
  }

  /// Waits until the observe actor has seen `n` entries.
  void settle(uint64_t n) {
    for (int i = 0; i < 200; ++i) {
      uint64_t seen = 0;
      self->request(obs, caf::infinite, get_atom::value, stats_atom::value)
        .receive([&](observe_stats& s) { seen = s.log_entries_seen; }, [](caf::error&) {});
      if (seen >= n)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    BOOST_FAIL("observe actor did not see the entries");
  }

  struct received {
    std::vector<std::string> messages;
    uint64_t dropped = 0;
    bool ended = false;
  };

  /// Receives until `n` entries (counting dropped ones too if `count_drops`) or the end.
  received collect(caf::scoped_actor& sink, size_t n, bool count_drops = false) {
    received r;
    bool timed_out = false;
    while (r.messages.size() + (count_drops ? r.dropped : 0) < n && !r.ended && !timed_out)
      sink->receive(
        [&](log_batch& b) {
          r.dropped += b.dropped;
          r.ended = b.end;
          for (auto& e : b.entries)
            r.messages.push_back(e.message);
        },
        caf::after(patience) >> [&] { timed_out = true; });
    return r;
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(observe_actor_tests, observe_fixture)

BOOST_AUTO_TEST_CASE(history_respects_tail_and_level_then_ends) {
  log(log_level::debug, "d1");
  log(log_level::info, "i1");
  log(log_level::warn, "w1");
  log(log_level::info, "i2");
  settle(4);
  caf::scoped_actor sink{sys};
  subscribe(sink, log_level::info, false, 2);
  auto r = collect(sink, 10);
  BOOST_TEST(r.messages == (std::vector<std::string>{"w1", "i2"}));
  BOOST_TEST(r.ended);
}

BOOST_AUTO_TEST_CASE(empty_history_without_follow_ends_at_once) {
  caf::scoped_actor sink{sys};
  subscribe(sink, log_level::info, false, 10);
  auto r = collect(sink, 1);
  BOOST_TEST(r.messages.empty());
  BOOST_TEST(r.ended);
}

BOOST_AUTO_TEST_CASE(follow_delivers_new_entries_filtered_by_level) {
  caf::scoped_actor sink{sys};
  subscribe(sink, log_level::warn, true, 0);
  log(log_level::info, "quiet");
  log(log_level::error, "loud");
  log(log_level::warn, "also");
  auto r = collect(sink, 2);
  BOOST_TEST(r.messages == (std::vector<std::string>{"loud", "also"}));
  BOOST_TEST(!r.ended);
}

BOOST_AUTO_TEST_CASE(unsubscribe_stops_delivery) {
  caf::scoped_actor sink{sys};
  auto id = subscribe(sink, log_level::info, true, 0);
  self->send(obs, unsub_atom::value, id);
  log(log_level::info, "after");
  settle(1);
  bool got = false;
  sink->receive([&](log_batch&) { got = true; },
                caf::after(std::chrono::milliseconds(200)) >> [] {});
  BOOST_TEST(!got);
  self->request(obs, caf::infinite, get_atom::value, stats_atom::value)
    .receive([](observe_stats& s) { BOOST_TEST(s.log_subscribers == 0u); }, [](caf::error&) {});
}

BOOST_AUTO_TEST_SUITE_END()

struct tiny_queue_fixture : observe_fixture {
  tiny_queue_fixture() : observe_fixture(4, 0) {
  }
};

BOOST_FIXTURE_TEST_CASE(stalled_subscriber_drops_with_a_count_and_does_not_block_others,
                        tiny_queue_fixture) {
  caf::scoped_actor stalled{sys}, other{sys};
  auto stalled_id = subscribe(stalled, log_level::info, true, 0);
  auto other_id = subscribe(other, log_level::info, true, 0);
  self->send(obs, demand_atom::value, other_id, uint32_t{1000});
  for (int i = 0; i < 10; ++i)
    log(log_level::info, "m" + std::to_string(i));
  // `other` reads as it goes, so with a queue of 4 it must still see everything it had credit for.
  auto r_other = collect(other, 10, true);
  BOOST_TEST(r_other.messages.size() + r_other.dropped == 10u);
  BOOST_TEST(r_other.messages.size() >= 4u);
  self->send(obs, demand_atom::value, stalled_id, uint32_t{100});
  auto r = collect(stalled, 4);
  BOOST_TEST(r.dropped == 6u);
  BOOST_TEST(r.messages == (std::vector<std::string>{"m6", "m7", "m8", "m9"}));
}
