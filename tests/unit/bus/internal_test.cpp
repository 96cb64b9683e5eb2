// Internal messages (bus/internal.hpp): the public handle types of the actors do not
// carry them (checked at compile time), and an internal handler runs for messages the
// actor sent itself (a self-send, a timer, a thread or worker sending as it) or from a
// trusted worker, never for one from anyone else, which it logs.
#define BOOST_TEST_MODULE unit_bus_internal
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <mutex>
#include <sstream>
#include <thread>

#include <caf/all.hpp>
#include <caf/detail/type_list.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include "actors/cells/cells_actor.hpp"
#include "actors/containers/containers_actor.hpp"
#include "actors/images/images_actor.hpp"
#include "actors/observe/observe_actor.hpp"
#include "actors/vms/qmp_session.hpp"
#include "actors/vms/vms_actor.hpp"
#include "bus/federation_actor.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"
#include "bus/topics.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace cyto;

namespace {

// -- compile time -------------------------------------------------------------------

template <class Handle, class Sig>
constexpr bool has = caf::detail::tl_contains<typename Handle::signatures, Sig>::value;

/// `Private` has `Sigs`, `Public` has none of them, and every signature of `Public` is
/// one of `Private` (so the spawned handle converts to the public one). typed_actor's
/// converting constructor is not SFINAE-friendly (std::is_convertible says yes to
/// anything), hence the signature lists.
template <class Public, class Private, class... Sigs>
constexpr bool internal_only() {
  return (!has<Public, Sigs> && ...) && (has<Private, Sigs> && ...)
         && caf::detail::tl_subset_of<typename Public::signatures,
                                      typename Private::signatures>::value
         && caf::detail::tl_size<typename Private::signatures>::value
              == caf::detail::tl_size<typename Public::signatures>::value + sizeof...(Sigs);
}

static_assert(internal_only<cells_actor, cells::cells_private,
                            caf::reacts_to<exited_atom, uint64_t, exit_status>,
                            caf::reacts_to<kill_atom, uint64_t>,
                            caf::reacts_to<output_atom, uint64_t, int32_t, std::string, uint64_t,
                                           uint64_t, int64_t>>());
static_assert(internal_only<images_actor, images::images_private,
                            caf::reacts_to<done_atom, uint64_t, std::vector<image_info>>,
                            caf::reacts_to<done_atom, uint64_t, caf::error>>());
static_assert(internal_only<containers_actor, containers::containers_private,
                            caf::reacts_to<tick_atom, std::string, uint64_t>,
                            caf::reacts_to<start_atom, std::string, uint64_t>>());
static_assert(internal_only<vms_actor, vms::vms_private, caf::reacts_to<qmp_event>,
                            caf::reacts_to<exited_atom, std::string, uint64_t, exit_status>,
                            caf::reacts_to<tick_atom, std::string, uint64_t>>());
static_assert(internal_only<qmp_session_actor, vms::qmp_session_private,
                            caf::reacts_to<output_atom, std::string>, caf::reacts_to<done_atom>>());
static_assert(internal_only<observe_actor, observe::observe_private,
                            caf::reacts_to<events_atom, std::vector<observed_event>>,
                            caf::reacts_to<tick_atom, uint64_t>,
                            caf::reacts_to<history_atom, uint64_t, output_history>,
                            caf::reacts_to<flush_atom>, caf::reacts_to<trim_atom>>());
static_assert(internal_only<topic_actor, bus::topics_private, caf::reacts_to<flush_atom>>());
static_assert(internal_only<federation_actor, bus::federation_private,
                            caf::reacts_to<dial_atom, std::string>,
                            caf::reacts_to<dialed_atom, std::string, federation_door_actor>,
                            caf::reacts_to<dialed_atom, std::string, caf::error>,
                            caf::reacts_to<tick_atom>>());
// The verbs stay public.
static_assert(has<cells_actor, caf::replies_to<start_atom, executable_spec>::with<executable_info>>);
static_assert(has<federation_actor, caf::replies_to<ping_atom, int64_t>::with<int64_t>>);

// -- run time -----------------------------------------------------------------------

/// A small actor with one internal message (tick) and verbs to trigger the legitimate
/// senders: itself (start), a timer (delay), a thread sending as it (thread).
using probe_actor = caf::typed_actor<caf::replies_to<get_atom>::with<int>,
                                     caf::reacts_to<start_atom>, caf::reacts_to<wait_atom>,
                                     caf::reacts_to<run_atom>, caf::reacts_to<put_atom, caf::actor>>;
using probe_private = probe_actor::extend<caf::reacts_to<tick_atom>, caf::reacts_to<done_atom>>;

struct probe_state {
  static constexpr const char* name = "probe";
  int ticks = 0;
  int dones = 0;
  caf::actor worker;
  std::thread thread;
  ~probe_state() {
    if (thread.joinable())
      thread.join();
  }
};

probe_private::behavior_type probe(probe_private::stateful_pointer<probe_state> self) {
  return {
    [self](get_atom) { return self->state.ticks * 100 + self->state.dones; },
    [self](start_atom) { self->send(self, tick_atom::value); },
    [self](wait_atom) { self->delayed_send(self, std::chrono::milliseconds{10}, tick_atom::value); },
    [self](run_atom) {
      probe_private me{self};
      self->state.thread = std::thread{[me] { caf::send_as(me, me, tick_atom::value); }};
    },
    [self](put_atom, caf::actor& worker) { self->state.worker = std::move(worker); },
    bus::internal(self, [self](tick_atom) { ++self->state.ticks; }),
    // done is accepted from the registered worker too.
    bus::internal(
      self, [self](done_atom) { ++self->state.dones; },
      [self](const caf::strong_actor_ptr& from) {
        return self->state.worker && from == caf::actor_cast<caf::strong_actor_ptr>(self->state.worker);
      }),
  };
}

/// Every log line of the test, for the warnings.
struct captured_log {
  std::ostringstream out;
  captured_log() {
    log::init({std::make_shared<spdlog::sinks::ostream_sink_mt>(out)}, spdlog::level::debug);
  }
  std::string text() {
    for (auto& name : {"probe"})
      log::get(name)->flush();
    return out.str();
  }
};

struct internal_fixture : test::actor_fixture {
  captured_log logs;
  probe_private priv = sys.spawn(probe);
  probe_actor pub = priv;

  int value() {
    int out = -1;
    self->request(pub, patience, get_atom::value)
      .receive([&](int x) { out = x; }, [&](caf::error& e) { BOOST_FAIL(sys.render(e)); });
    return out;
  }
  /// Polls until value() == want (the self-sends and timers land a little later).
  bool eventually(int want) {
    for (int i = 0; i < 500; ++i) {
      if (value() == want)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{2});
    }
    return false;
  }
  ~internal_fixture() {
    caf::anon_send_exit(priv, caf::exit_reason::user_shutdown);
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(internal, internal_fixture)

BOOST_AUTO_TEST_CASE(internal_message_from_others_is_dropped_and_logged) {
  auto any = caf::actor_cast<caf::actor>(pub);
  caf::anon_send(any, tick_atom::value);
  self->send(any, tick_atom::value);
  caf::anon_send(any, done_atom::value);
  BOOST_TEST(value() == 0);
  auto text = logs.text();
  BOOST_TEST(text.find("probe: ignored internal message tick from an anonymous sender")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("probe: ignored internal message tick from " + std::to_string(self->id()) + "@")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("probe: ignored internal message done from") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(internal_message_from_itself_a_timer_or_its_thread_runs) {
  caf::anon_send(pub, start_atom::value);
  BOOST_TEST(eventually(100));
  caf::anon_send(pub, wait_atom::value);
  BOOST_TEST(eventually(200));
  caf::anon_send(pub, run_atom::value);
  BOOST_TEST(eventually(300));
  BOOST_TEST(logs.text().find("ignored internal message") == std::string::npos, logs.text());
}

BOOST_AUTO_TEST_CASE(internal_message_from_a_trusted_worker_runs) {
  auto worker = sys.spawn([](caf::event_based_actor* w) -> caf::behavior {
    return {[w](caf::actor& to) { w->send(to, done_atom::value); }};
  });
  auto stranger = sys.spawn([](caf::event_based_actor* w) -> caf::behavior {
    return {[w](caf::actor& to) { w->send(to, done_atom::value); }};
  });
  caf::anon_send(pub, put_atom::value, worker);
  caf::anon_send(worker, caf::actor_cast<caf::actor>(pub));
  BOOST_TEST(eventually(1));
  caf::anon_send(stranger, caf::actor_cast<caf::actor>(pub));
  for (int i = 0; i < 50 && logs.text().find("ignored internal message done") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  BOOST_TEST(value() == 1);
  BOOST_TEST(logs.text().find("probe: ignored internal message done from") != std::string::npos,
             logs.text());
  caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(stranger, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
