#define BOOST_TEST_MODULE unit_bus_registry
#include <boost/test/unit_test.hpp>

#include "bus/errc.hpp"
#include "bus/registry.hpp"
#include "tests/unit/actor_fixture.hpp"

using namespace cyto;

namespace {

caf::behavior idle() {
  return {[](int) {}};
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(registry, test::actor_fixture)

BOOST_AUTO_TEST_CASE(put_get_list_delete) {
  auto reg = sys.spawn(bus::registry);
  auto a = sys.spawn(idle);
  self->request(reg, caf::infinite, put_atom::value, std::string{"a"},
                caf::actor_cast<caf::strong_actor_ptr>(a))
    .receive([] {}, [](caf::error& e) { BOOST_FAIL(render(e)); });
  self->request(reg, caf::infinite, get_atom::value, std::string{"a"})
    .receive([&](caf::strong_actor_ptr& h) { BOOST_TEST((h == caf::actor_cast<caf::strong_actor_ptr>(a))); },
             [](caf::error& e) { BOOST_FAIL(render(e)); });
  self->request(reg, caf::infinite, list_atom::value)
    .receive([](std::vector<std::string>& xs) { BOOST_TEST(xs == std::vector<std::string>{"a"}); },
             [](caf::error& e) { BOOST_FAIL(render(e)); });
  self->send(reg, delete_atom::value, std::string{"a"});
  self->request(reg, caf::infinite, get_atom::value, std::string{"a"})
    .receive([](caf::strong_actor_ptr&) { BOOST_FAIL("deleted name still resolves"); },
             [](caf::error& e) { BOOST_TEST(static_cast<int>(code_of(e)) == static_cast<int>(errc::not_found)); });
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(duplicate_and_empty_names_are_refused) {
  auto reg = sys.spawn(bus::registry);
  auto a = sys.spawn(idle);
  auto put = [&](std::string name, caf::actor h) {
    errc code = errc::ok;
    self->request(reg, caf::infinite, put_atom::value, std::move(name),
                  caf::actor_cast<caf::strong_actor_ptr>(h))
      .receive([] {}, [&](caf::error& e) { code = code_of(e); });
    return static_cast<int>(code);
  };
  BOOST_TEST(put("a", a) == static_cast<int>(errc::ok));
  BOOST_TEST(put("a", a) == static_cast<int>(errc::already_exists));
  BOOST_TEST(put("", a) == static_cast<int>(errc::invalid_argument));
  caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(terminated_actor_is_removed_and_reported_by_health) {
  auto reg = sys.spawn(bus::registry);
  auto a = sys.spawn(idle);
  self->request(reg, caf::infinite, put_atom::value, std::string{"worker"},
                caf::actor_cast<caf::strong_actor_ptr>(a))
    .receive([] {}, [](caf::error& e) { BOOST_FAIL(render(e)); });
  self->monitor(a);
  caf::anon_send_exit(a, caf::exit_reason::kill);
  self->receive([](caf::down_msg&) {});
  // The registry learns of the death asynchronously: poll a bounded number of times.
  std::vector<std::string> problems;
  for (int i = 0; i < 100 && problems.empty(); ++i) {
    self->request(reg, caf::infinite, health_atom::value)
      .receive([&](std::vector<std::string>& xs) { problems = xs; },
               [](caf::error& e) { BOOST_FAIL(render(e)); });
    if (problems.empty())
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  BOOST_REQUIRE_EQUAL(problems.size(), 1u);
  BOOST_TEST(problems[0].find("worker") != std::string::npos);
  self->request(reg, caf::infinite, list_atom::value)
    .receive([](std::vector<std::string>& xs) { BOOST_TEST(xs.empty()); },
             [](caf::error& e) { BOOST_FAIL(render(e)); });
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(another_nodes_services_are_not_offered_and_go_quietly) {
  auto reg = sys.spawn(bus::registry);
  auto mine = sys.spawn(idle);
  auto theirs = sys.spawn(idle); // stands for node b's cells actor
  for (auto& [name, h] : {std::pair{std::string{"cells"}, mine},
                          std::pair{std::string{"b/cells"}, theirs}})
    self->request(reg, caf::infinite, put_atom::value, name, caf::actor_cast<caf::strong_actor_ptr>(h))
      .receive([] {}, [](caf::error& e) { BOOST_FAIL(render(e)); });
  // What this node offers its peers: only its own services.
  self->request(reg, caf::infinite, get_atom::value, list_atom::value)
    .receive(
      [&](std::vector<service_handle>& xs) {
        BOOST_REQUIRE_EQUAL(xs.size(), 1u);
        BOOST_TEST(xs[0].name == "cells");
        BOOST_TEST((xs[0].handle == caf::actor_cast<caf::strong_actor_ptr>(mine)));
      },
      [](caf::error& e) { BOOST_FAIL(render(e)); });
  // Node b going away removes its entry without making this node unhealthy.
  self->monitor(theirs);
  caf::anon_send_exit(theirs, caf::exit_reason::kill);
  self->receive([](caf::down_msg&) {});
  std::vector<std::string> names;
  // The registry learns of the death asynchronously: poll a bounded number of times.
  for (int i = 0; i < 100; ++i) {
    self->request(reg, caf::infinite, list_atom::value)
      .receive([&](std::vector<std::string>& xs) { names = xs; },
               [](caf::error& e) { BOOST_FAIL(render(e)); });
    if (names == std::vector<std::string>{"cells"})
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  BOOST_TEST(names == std::vector<std::string>{"cells"});
  self->request(reg, caf::infinite, health_atom::value)
    .receive([](std::vector<std::string>& xs) { BOOST_TEST(xs.empty()); },
             [](caf::error& e) { BOOST_FAIL(render(e)); });
  caf::anon_send_exit(mine, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(reg, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_SUITE_END()
