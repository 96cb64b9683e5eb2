// The network actor in this process, against the real CNI plugins and kernel: the test
// first moves itself into network and mount namespaces of its own (unshare before any
// thread exists), so the bridge, veths, rules and netns mounts live and die with it. Covers what
// the daemon's services do not reach directly: attach twice, CHECK, an owner's own
// netns, restart of the actor over the same state.db. Needs root (77 otherwise).
#define BOOST_TEST_MODULE integration_network_actor
#include <boost/test/unit_test.hpp>

#include <net/if.h>
#include <sched.h>
#include <sys/mount.h>

#include <caf/all.hpp>

#include "actors/network/netns.hpp"
#include "actors/network/network_actor.hpp"
#include "actors/network/tap.hpp"
#include "bus/errc.hpp"
#include "bus/types.hpp"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto;
namespace fs = std::filesystem;

namespace {

/// Why an expected value is missing ("" when it is there).
template <class T>
std::string why(const caf::expected<T>& x) {
  return x ? std::string{} : render(x.error());
}

/// The snake_case code of an error, printable in test messages.
std::string code(const caf::error& e) {
  return std::string{to_string(code_of(e))};
}

struct private_netns {
  private_netns() {
    test::require_root();
    // A mount namespace of its own too: the netns files' bind mounts go with the process
    // even when a test crashes.
    if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0
        || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      std::printf("SKIP: unshare(CLONE_NEWNET | CLONE_NEWNS): %s\n", std::strerror(errno));
      std::exit(77);
    }
  }
};

struct bus_config : caf::actor_system_config {
  bus_config() {
    bus::add_types(*this);
  }
};

struct actor_env {
  test::temp_dir dir;
  bus_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  network_actor actor;

  actor_env() {
    start();
  }
  ~actor_env() {
    self->send_exit(actor, caf::exit_reason::user_shutdown);
    std::error_code ec;
    for (auto& e : fs::directory_iterator{dir.path() + "/netns", ec})
      network::remove_netns(e.path());
  }
  network::network_config config() {
    network::network_config c;
    c.state_dir = dir.path();
    c.default_subnet = "10.88.0.0/24";
    return c;
  }
  void start() {
    actor = sys.spawn<caf::detached>(network::network, config());
  }
  void restart() {
    self->send_exit(actor, caf::exit_reason::user_shutdown);
    self->wait_for(actor);
    start();
  }

  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    caf::expected<T> out{make_error(errc::internal, "no answer")};
    self->request(actor, caf::infinite, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); }, [&](caf::error& e) { out = std::move(e); });
    return out;
  }
  caf::error ask_void(auto&&... xs) {
    caf::error out;
    self->request(actor, caf::infinite, xs...).receive([] {}, [&](caf::error& e) { out = e; });
    return out;
  }
};

attach_request req(std::string owner, std::vector<port_mapping> ports = {}) {
  attach_request r;
  r.owner = std::move(owner);
  r.ports = std::move(ports);
  return r;
}

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(private_netns);

BOOST_AUTO_TEST_CASE(attach_twice_is_refused_and_check_and_detach_work) {
  actor_env env;
  auto a = env.ask<net_attachment>(attach_atom::value, req("container/x"));
  BOOST_REQUIRE_MESSAGE(a, why(a));
  BOOST_TEST(a->network == "cyto");
  BOOST_TEST(a->ips.size() == 1u);
  BOOST_TEST(a->gateway == "10.88.0.1");
  BOOST_TEST(a->mac.size() == 17u);
  BOOST_TEST(a->netns_owned);
  BOOST_TEST(fs::exists(a->netns_path));
  auto twice = env.ask<net_attachment>(attach_atom::value, req("container/x"));
  BOOST_TEST(code(twice.error()) == "already_exists");
  auto checked = env.ask<net_attachment>(check_atom::value, std::string{"container/x"});
  BOOST_TEST(checked.engaged(), why(checked));
  BOOST_TEST(code(env.ask<net_attachment>(check_atom::value, std::string{"nobody"}).error()) == "not_found");
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"container/x"}));
  BOOST_TEST(!fs::exists(a->netns_path));
  // Detaching what is not attached is a no-op.
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"container/x"}));
}

BOOST_AUTO_TEST_CASE(a_given_netns_is_used_and_kept_and_ports_do_not_clash) {
  actor_env env;
  auto own = env.dir.path() + "/mine";
  BOOST_REQUIRE(!network::create_netns(own));
  auto r = req("pod/p", {{9000, 80, "tcp", ""}});
  r.netns_path = own;
  auto a = env.ask<net_attachment>(attach_atom::value, r);
  BOOST_REQUIRE_MESSAGE(a, why(a));
  BOOST_TEST(!a->netns_owned);
  auto clash = env.ask<net_attachment>(attach_atom::value, req("pod/q", {{9000, 81, "tcp", ""}}));
  BOOST_TEST(code(clash.error()) == "already_exists");
  auto udp = env.ask<net_attachment>(attach_atom::value, req("pod/q", {{9000, 81, "udp", ""}}));
  BOOST_TEST(udp.engaged(), why(udp));
  auto missing = req("pod/z");
  missing.netns_path = env.dir.path() + "/no-such-netns";
  BOOST_TEST(code(env.ask<net_attachment>(attach_atom::value, missing).error()) == "not_found");
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"pod/p"}));
  BOOST_TEST(fs::exists(own)); // not ours: kept
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"pod/q"}));
  network::remove_netns(own);
}

BOOST_AUTO_TEST_CASE(a_restarted_actor_knows_its_attachments) {
  actor_env env;
  auto made = env.ask<network_info>(create_atom::value, network_spec{"n1", "", "", "", {}});
  BOOST_REQUIRE_MESSAGE(made, why(made));
  BOOST_TEST(made->spec.subnet == "10.89.0.0/24");
  auto r = req("cell/c");
  r.network = "n1";
  auto a = env.ask<net_attachment>(attach_atom::value, r);
  BOOST_REQUIRE_MESSAGE(a, why(a));
  env.restart();
  auto n = env.ask<network_info>(get_atom::value, std::string{"n1"});
  BOOST_REQUIRE(n);
  BOOST_REQUIRE(n->attachments.size() == 1u);
  BOOST_TEST(n->attachments[0].ips == a->ips);
  BOOST_TEST(code(env.ask_void(delete_atom::value, std::string{"n1"})) == "failed_precondition");
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"cell/c"}));
  BOOST_TEST(!env.ask_void(delete_atom::value, std::string{"n1"}));
}

BOOST_AUTO_TEST_CASE(a_vm_tap_shares_the_bridge_and_is_made_again_after_a_reboot) {
  actor_env env;
  auto bridge_index = [] { return static_cast<int>(::if_nametoindex("cyto-cyto")); };
  // Unknown network: refused, nothing recorded.
  auto lost = env.ask<net_attachment>(attach_atom::value, tap_request{"vm/lost", "nope"});
  BOOST_TEST(code(lost.error()) == "not_found");
  // The first tap makes the bridge (no container has yet) with the gateway address.
  auto t = env.ask<net_attachment>(attach_atom::value, tap_request{"vm/t", ""});
  BOOST_REQUIRE_MESSAGE(t, why(t));
  BOOST_TEST(t->network == "cyto");
  BOOST_TEST(t->ips == std::vector<std::string>{"10.88.0.2/24"});
  BOOST_TEST(t->gateway == "10.88.0.1");
  BOOST_TEST(t->netns_path.empty());
  BOOST_TEST(t->ifname.rfind("vtap-", 0) == 0u);
  BOOST_TEST(t->mac.rfind("52:54:00:", 0) == 0u);
  BOOST_REQUIRE(network::link_exists(t->ifname));
  BOOST_TEST(network::master_of(t->ifname) == bridge_index());
  BOOST_TEST(fs::exists(env.dir.path() + "/network/ipam/cyto/10.88.0.2"));
  auto twice = env.ask<net_attachment>(attach_atom::value, tap_request{"vm/t", ""});
  BOOST_TEST(code(twice.error()) == "already_exists");
  // A container's veth joins the same bridge (the bridge plugin takes it as it is).
  auto c = env.ask<net_attachment>(attach_atom::value, req("container/c"));
  BOOST_REQUIRE_MESSAGE(c, why(c));
  BOOST_TEST(c->ips == std::vector<std::string>{"10.88.0.3/24"});
  BOOST_TEST(env.ask<net_attachment>(check_atom::value, std::string{"vm/t"}).engaged());
  BOOST_TEST(code(env.ask_void(delete_atom::value, std::string{"cyto"})) == "failed_precondition");
  // "Reboot": the tap is gone from the kernel, the record and the lease are not.
  BOOST_REQUIRE(!network::delete_link(t->ifname));
  BOOST_TEST(code(env.ask<net_attachment>(check_atom::value, std::string{"vm/t"}).error())
             == "not_found");
  env.restart();
  // The first answer comes after the actor's start-up (its reconcile) is done.
  auto again = env.ask<net_attachment>(check_atom::value, std::string{"vm/t"});
  BOOST_REQUIRE_MESSAGE(again, why(again));
  BOOST_TEST(network::link_exists(t->ifname));
  BOOST_TEST(network::master_of(t->ifname) == bridge_index());
  BOOST_TEST(again->ips == t->ips);
  BOOST_TEST(again->mac == t->mac);
  // Detach: tap and lease go.
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"vm/t"}));
  BOOST_TEST(!network::link_exists(t->ifname));
  BOOST_TEST(!fs::exists(env.dir.path() + "/network/ipam/cyto/10.88.0.2"));
  BOOST_TEST(!env.ask_void(detach_atom::value, std::string{"container/c"}));
  auto n = env.ask<network_info>(get_atom::value, std::string{"cyto"});
  BOOST_REQUIRE(n);
  BOOST_TEST(n->attachments.empty());
}
