// The systemd watchdog pings (WATCHDOG=1 on NOTIFY_SOCKET) only when the node actor
// answers through the bridge: a node that never answers gets no ping. A real kj loop, a
// real CAF system and a real datagram socket; the node actors are stand-ins.
#define BOOST_TEST_MODULE unit_services_watchdog
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <kj/async-io.h>

#include "bus/types.hpp"
#include "services/watchdog.hpp"

using namespace cyto;

namespace {

struct silent_state {
  /// Held, never delivered: CAF would answer broken_promise for a dropped one.
  std::vector<caf::typed_response_promise<node_info>> held;
};

node_actor::behavior_type answering(node_actor::pointer) {
  return {[](discover_atom) { return node_info{}; }, [](health_atom) { return health_report{}; }};
}

node_actor::behavior_type silent(node_actor::stateful_pointer<silent_state> self) {
  return {[self](discover_atom) {
            auto rp = self->make_response_promise<node_info>();
            self->state.held.push_back(rp);
            return rp;
          },
          [](health_atom) { return health_report{}; }};
}

caf::actor_system_config& types(caf::actor_system_config& cfg) {
  bus::add_types(cfg);
  return cfg;
}

/// NOTIFY_SOCKET for this process: a datagram socket the test reads.
struct notify_socket {
  std::string path;
  int fd = -1;
  notify_socket() {
    char dir[] = "/tmp/cyto-watchdog-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(dir) != nullptr);
    path = std::string{dir} + "/notify.sock";
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  }
  ~notify_socket() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd);
    std::filesystem::remove_all(std::filesystem::path{path}.parent_path());
  }
  /// Datagrams received so far that say WATCHDOG=1.
  int pings() {
    int n = 0;
    char buf[256];
    ssize_t got;
    while ((got = ::recv(fd, buf, sizeof(buf), 0)) > 0)
      n += std::string{buf, static_cast<size_t>(got)} == "WATCHDOG=1";
    return n;
  }
};

struct fixture {
  notify_socket notify; // before any thread: setenv
  caf::actor_system_config cfg;
  caf::actor_system sys{types(cfg)};
  kj::AsyncIoContext io = kj::setupAsyncIo();
  services::bridge bridge{sys, io.unixEventPort};

  void run_for(kj::Duration d) {
    io.provider->getTimer().afterDelay(d).wait(io.waitScope);
  }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(an_answering_node_gets_a_ping_each_interval, fixture) {
  auto node = sys.spawn(answering);
  // 40 ms: at most ~8 datagrams queue unread (a unix datagram queue holds 10 by default,
  // then sd_notify blocks, as it would if systemd stopped reading).
  services::watchdog dog{bridge, io.provider->getTimer(), node, 40 * kj::MILLISECONDS};
  run_for(300 * kj::MILLISECONDS);
  auto sent = notify.pings();
  BOOST_TEST(dog.pings() >= 4u);
  BOOST_TEST(sent == static_cast<int>(dog.pings()));
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
}

BOOST_FIXTURE_TEST_CASE(a_node_that_never_answers_gets_no_ping, fixture) {
  auto node = sys.spawn(silent);
  services::watchdog dog{bridge, io.provider->getTimer(), node, 20 * kj::MILLISECONDS};
  run_for(300 * kj::MILLISECONDS);
  BOOST_TEST(dog.pings() == 0u);
  BOOST_TEST(notify.pings() == 0);
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
}

BOOST_FIXTURE_TEST_CASE(a_dead_node_gets_no_ping, fixture) {
  auto node = sys.spawn(answering);
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
  services::watchdog dog{bridge, io.provider->getTimer(), node, 20 * kj::MILLISECONDS};
  run_for(200 * kj::MILLISECONDS);
  BOOST_TEST(dog.pings() == 0u);
  BOOST_TEST(notify.pings() == 0);
}

BOOST_AUTO_TEST_CASE(the_interval_is_half_of_watchdog_usec_for_this_pid) {
  ::setenv("WATCHDOG_USEC", "3000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  BOOST_TEST((services::watchdog::interval_from_environment() == 1500 * kj::MILLISECONDS));
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  BOOST_TEST((services::watchdog::interval_from_environment() == 0 * kj::MILLISECONDS));
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  BOOST_TEST((services::watchdog::interval_from_environment() == 0 * kj::MILLISECONDS));
}
