// The kj <-> CAF bridge with a real actor system and a real kj loop: answers, deadlines
// (cyto.timeout, entry freed), requests marked infinite, dropped promises (entry freed,
// the late answer dropped), and callbacks past their deadline.
#define BOOST_TEST_MODULE unit_services_bridge
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <optional>

#include <caf/all.hpp>
#include <kj/async-io.h>

#include "bus/atoms.hpp"
#include "services/bridge.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace cyto;
using namespace std::chrono_literals;

namespace {

using hold_atom = caf::atom_constant<caf::atom("hold")>;
using release_atom = caf::atom_constant<caf::atom("release")>;

/// get: answers 42 at once. wait: answers only when told (release, with the answer).
/// hold: never answers at all.
using test_actor = caf::typed_actor<caf::replies_to<get_atom>::with<int>,
                                    caf::replies_to<wait_atom>::with<int>,
                                    caf::replies_to<hold_atom>::with<int>,
                                    caf::reacts_to<release_atom, int>>;

struct test_state {
  std::vector<caf::typed_response_promise<int>> waiting;
  /// Kept, never delivered (a dropped promise might answer "broken").
  std::vector<caf::typed_response_promise<int>> held;
};

test_actor::behavior_type test_impl(test_actor::stateful_pointer<test_state> self) {
  return {
    [](get_atom) { return 42; },
    [self](wait_atom) {
      auto rp = self->make_response_promise<int>();
      self->state.waiting.push_back(rp);
      return rp;
    },
    [self](hold_atom) {
      auto rp = self->make_response_promise<int>();
      self->state.held.push_back(rp);
      return rp;
    },
    [self](release_atom, int x) {
      for (auto& rp : self->state.waiting)
        rp.deliver(x);
      self->state.waiting.clear();
    },
  };
}

struct fixture : test::actor_fixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  test_actor actor = sys.spawn(test_impl);

  /// Turns the loop until pred() or `timeout`; returns pred().
  template <class Pred>
  bool pump_until(Pred&& pred, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred() && std::chrono::steady_clock::now() < deadline)
      io.provider->getTimer().afterDelay(2 * kj::MILLISECONDS).wait(io.waitScope);
    return pred();
  }

  ~fixture() {
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  }
};

std::string error_of(kj::Promise<int>& p, kj::WaitScope& ws) {
  try {
    p.wait(ws);
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(bridge_suite, fixture)

BOOST_AUTO_TEST_CASE(answers_arrive_and_free_their_entry) {
  services::bridge br{sys, io.unixEventPort};
  auto p = br.request(actor, get_atom::value);
  BOOST_TEST(br.pending() == 1u);
  BOOST_TEST(p.wait(io.waitScope) == 42);
  BOOST_TEST(br.pending() == 0u);
}

BOOST_AUTO_TEST_CASE(past_the_deadline_the_caller_gets_cyto_timeout) {
  services::bridge br{sys, io.unixEventPort, 200 * kj::MILLISECONDS};
  BOOST_TEST((br.deadline() == 200 * kj::MILLISECONDS));
  auto start = std::chrono::steady_clock::now();
  auto p = br.request(actor, hold_atom::value);
  auto err = error_of(p, io.waitScope);
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(err.rfind("cyto.timeout: no answer to hold within", 0) == 0u, err);
  BOOST_TEST(took >= 190ms);
  BOOST_TEST(took < 3s);
  BOOST_TEST(br.pending() == 0u);
  BOOST_TEST(br.expired() == 1u);
  // Others still answer.
  BOOST_TEST(br.request(actor, get_atom::value).wait(io.waitScope) == 42);
}

BOOST_AUTO_TEST_CASE(deadlines_of_many_requests_fire_in_order) {
  services::bridge br{sys, io.unixEventPort, 100 * kj::MILLISECONDS};
  std::vector<kj::Promise<int>> ps;
  for (int i = 0; i < 50; ++i)
    ps.push_back(br.request(actor, hold_atom::value));
  BOOST_TEST(br.pending() == 50u);
  for (auto& p : ps)
    BOOST_TEST(error_of(p, io.waitScope).rfind("cyto.timeout:", 0) == 0u);
  BOOST_TEST(br.pending() == 0u);
  BOOST_TEST(br.expired() == 50u);
  // A new request after the loop went idle gets a deadline again.
  auto p = br.request(actor, hold_atom::value);
  BOOST_TEST(error_of(p, io.waitScope).rfind("cyto.timeout:", 0) == 0u);
  BOOST_TEST(br.expired() == 51u);
}

BOOST_AUTO_TEST_CASE(infinite_requests_wait_past_the_deadline) {
  services::bridge br{sys, io.unixEventPort, 100 * kj::MILLISECONDS};
  auto p = br.request(services::bridge::infinite, actor, wait_atom::value);
  io.provider->getTimer().afterDelay(400 * kj::MILLISECONDS).wait(io.waitScope);
  BOOST_TEST(br.pending() == 1u);
  BOOST_TEST(!p.poll(io.waitScope));
  caf::anon_send(actor, release_atom::value, 7);
  BOOST_TEST(p.wait(io.waitScope) == 7);
  BOOST_TEST(br.pending() == 0u);
  BOOST_TEST(br.expired() == 0u);
}

BOOST_AUTO_TEST_CASE(a_dropped_promise_frees_its_entry_and_the_late_answer_is_dropped) {
  services::bridge br{sys, io.unixEventPort};
  {
    auto p1 = br.request(services::bridge::infinite, actor, wait_atom::value);
    auto p2 = br.request(actor, wait_atom::value);
    // Let them reach the actor (they are flushed at the end of the turn).
    io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
    BOOST_TEST(br.pending() == 2u);
  } // dropped, as capnp drops the promise of a call whose client went away
  BOOST_TEST(br.pending() == 0u);
  // The answers come anyway: nothing waits for them, nothing breaks.
  caf::anon_send(actor, release_atom::value, 1);
  auto next = br.request(actor, wait_atom::value);
  io.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
  caf::anon_send(actor, release_atom::value, 2);
  BOOST_TEST(next.wait(io.waitScope) == 2);
  BOOST_TEST(br.pending() == 0u);
}

BOOST_AUTO_TEST_CASE(callbacks_past_their_deadline_fail_once) {
  services::bridge br{sys, io.unixEventPort, 100 * kj::MILLISECONDS};
  int answers = 0, failures = 0;
  std::string why;
  br.request_then(
    actor, [&](int) { ++answers; },
    [&](const caf::error& e) {
      ++failures;
      why = render(e);
    },
    hold_atom::value);
  BOOST_TEST(pump_until([&] { return failures > 0; }));
  BOOST_TEST(failures == 1);
  BOOST_TEST(answers == 0);
  BOOST_TEST(why.rfind("cyto.timeout:", 0) == 0u, why);
  BOOST_TEST(br.pending() == 0u);
  // A cancelled one neither answers nor fails.
  auto t = br.request_then(
    actor, [&](int) { ++answers; }, [&](const caf::error&) { ++failures; }, hold_atom::value);
  br.cancel(t);
  BOOST_TEST(br.pending() == 0u);
  io.provider->getTimer().afterDelay(300 * kj::MILLISECONDS).wait(io.waitScope);
  BOOST_TEST(failures == 1);
}

BOOST_AUTO_TEST_CASE(promises_outliving_the_bridge_are_harmless) {
  std::optional<kj::Promise<int>> p;
  {
    services::bridge br{sys, io.unixEventPort};
    p = br.request(services::bridge::infinite, actor, wait_atom::value);
  }
  // The bridge broke the promise when it went; dropping it now touches nothing freed.
  BOOST_TEST(!error_of(*p, io.waitScope).empty());
  p.reset();
}

BOOST_AUTO_TEST_SUITE_END()
