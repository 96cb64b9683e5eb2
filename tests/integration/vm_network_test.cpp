// VMs on a cyto network: a real cytod in a network namespace this test makes boots
// Debian's cloud kernel with the busybox initramfs (tests/integration/make-guest-initrd,
// which applies the kernel's ip= parameter) under QEMU (TCG). Checked with real packets
// (busybox ping in the guests and from the bridge's side), the tap devices on the bridge
// (`ip -n`), the IPAM lease files and the records. Needs root, qemu-system-x86_64, the
// CNI plugins and a cloud kernel (deploy/fetch-guest-kernel); skips (77) without them.
#define BOOST_TEST_MODULE integration_vm_network
#include <boost/test/unit_test.hpp>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

constexpr const char* net_name = "vmnet";
constexpr const char* subnet = "10.77.0.0/24";
constexpr const char* gw = "10.77.0.1";
constexpr const char* bridge = "cyto-vmnet";

/// Kernel, initramfs and one daemon in a test netns for the whole suite.
struct suite {
  temp_dir work;
  std::string kernel, initrd;
  std::unique_ptr<test_netns> ns;
  std::unique_ptr<daemon_fixture> d;

  suite() {
    if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0)
      skip("qemu-system-x86_64 is missing (install qemu-system-x86)");
    if (::access("/usr/lib/cni/host-local", X_OK) != 0)
      skip("CNI plugins are missing (install containernetworking-plugins)");
    if (::access("/dev/net/tun", R_OK | W_OK) != 0)
      skip("no /dev/net/tun");
    auto k = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/fetch-guest-kernel", "--modules"},
                         120s);
    if (k.code() != 0)
      skip("no guest kernel: deploy/fetch-guest-kernel: " + k.err);
    auto paths = lines_of(k.out);
    kernel = paths.at(0);
    initrd = work / "initrd.cpio.gz";
    auto r = run_process({std::string{CYTO_SOURCE_DIR} + "/tests/integration/make-guest-initrd",
                          initrd, paths.at(1)},
                         60s);
    if (r.code() != 0)
      skip("cannot make the initramfs (cpio, gzip, busybox): " + r.err);
    ns = std::make_unique<test_netns>();
    d = std::make_unique<daemon_fixture>(false);
    run_in(*d, *ns);
    d->start({}, 30s);
  }
  ~suite() {
    d.reset(); // kills what is left in its cells before the netns goes
    ns.reset();
  }

  [[noreturn]] static void skip(const std::string& why) {
    std::printf("SKIP: %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(77);
  }
};

suite& env() {
  static suite s;
  return s;
}

std::string tail(const std::string& text, size_t n = 3000) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

process_result cli(const std::vector<std::string>& args, std::chrono::milliseconds t = 60s) {
  std::vector<std::string> argv{cli_path, "--socket", env().d->socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, t);
}

std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds t = 60s) {
  auto r = cli(args, t);
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << args.at(0) << " " << args.at(1) << " failed ("
                                               << r.code() << "): " << r.err << r.out
                                               << "\ndaemon log:\n"
                                               << tail(env().d->log()));
  return r.out;
}

std::string refused(const std::vector<std::string>& args, const std::string& code) {
  auto r = cli(args);
  BOOST_TEST_MESSAGE("refused: " << r.err);
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto." + code + ":"), "expected cyto." << code << ", got: " << r.err);
  return r.err;
}

json inspect(const std::string& name) {
  return json::parse(ok({"vm", "inspect", "--json", name}));
}

void wait_console(const std::string& name, const std::string& marker,
                  std::chrono::milliseconds timeout = 150s) {
  auto deadline = steady::now() + timeout;
  std::string out;
  while (steady::now() < deadline) {
    out = cli({"vm", "console", name}).out;
    if (contains(out, marker))
      return;
    if (contains(out, "CYTO-EXIT="))
      break; // the guest's command ended without the marker
    std::this_thread::sleep_for(300ms);
  }
  BOOST_FAIL("vm " << name << ": no '" << marker << "' on the console; console:\n"
                   << tail(out) << "\ndaemon log:\n"
                   << tail(env().d->log()));
}

/// Names of the interfaces on `master` in the test netns.
std::string on_bridge(const std::string& master) {
  auto r = env().ns->exec({"/usr/sbin/ip", "-o", "link", "show", "master", master});
  return r.out;
}

bool link_exists(const std::string& name) {
  return env().ns->exec({"/usr/sbin/ip", "link", "show", "dev", name}).code() == 0;
}

/// Tun/tap devices in the test netns (`ip -o link show type tun`).
std::string taps() {
  return env().ns->exec({"/usr/sbin/ip", "-o", "link", "show", "type", "tun"}).out;
}

/// host-local's lease files of a network: one file per leased address.
std::vector<std::string> leases(const std::string& network) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{env().d->state_dir() + "/network/ipam/" + network, ec}) {
    auto n = e.path().filename().string();
    if (n.find_first_not_of("0123456789.") == std::string::npos)
      out.push_back(n);
  }
  return out;
}

/// The owners attached to a network, sorted, blank-separated.
std::string attachments(const std::string& network) {
  std::vector<std::string> owners;
  auto n = json::parse(ok({"network", "inspect", "--json", network}));
  for (auto& a : n["attachments"])
    owners.push_back(a["owner"].get<std::string>());
  std::sort(owners.begin(), owners.end());
  std::string out;
  for (auto& o : owners)
    out += (out.empty() ? "" : " ") + o;
  return out;
}

std::string memory_cell_dir(const std::string& vm) {
  auto root = env().d->cgroup_root();
  if (fs::is_directory("/sys/fs/cgroup/memory/" + root))
    return "/sys/fs/cgroup/memory/" + root + "/vms/" + vm;
  return "/sys/fs/cgroup/" + root + "/vms/" + vm;
}

/// Nothing of VM `name` is left: no record, no cell, no directory, no tap, no lease.
void nothing_left(const std::string& name, const std::string& network) {
  for (auto& v : json::parse(ok({"vm", "ls", "--json"})))
    BOOST_TEST(v["name"] != name, "vm " << name << " is still listed");
  BOOST_TEST(!fs::exists(memory_cell_dir(name)), "cell of " << name << " is still there");
  BOOST_TEST(!fs::exists(env().d->state_dir() + "/vms/" + name));
  BOOST_TEST(taps().empty(), "taps left: " << taps());
  BOOST_TEST(leases(network).empty());
}

void make_network(const std::string& name, const std::string& net) {
  ok({"network", "create", name, "--subnet", net});
}

/// The guest command of a VM that pings the gateway and `peer`, says PINGS-OK and idles.
std::vector<std::string> pinger(const std::string& peer) {
  return {"sh", "-c",
          "i=0; until ping -c 1 -W 1 " + peer +
              " >/dev/null; do i=$((i+1)); [ $i -lt 120 ] || exit 1; done; ping -c 3 -W 5 " + gw +
              " && ping -c 3 -W 5 " + peer + " && echo PINGS-OK; sleep 3600"};
}

std::vector<std::string> create_args(const std::string& name, const std::string& network,
                                     const std::vector<std::string>& command = {}) {
  std::vector<std::string> a{"vm",       "create",     name,        "--kernel",       env().kernel,
                             "--initrd", env().initrd, "--cmdline", "quiet panic=-1", "--network",
                             network};
  if (!command.empty()) {
    a.push_back("--");
    a.insert(a.end(), command.begin(), command.end());
  }
  return a;
}

} // namespace

BOOST_AUTO_TEST_CASE(two_vms_on_a_network_ping_each_other_and_the_bridge) {
  auto& e = env();
  make_network(net_name, subnet);
  // host-local leases in order: a gets .2, b gets .3 (each pings the other).
  ok(create_args("a", net_name, pinger("10.77.0.3")));
  ok(create_args("b", net_name, pinger("10.77.0.2")));
  BOOST_TEST(inspect("a")["ips"].empty()); // created: no tap, no lease yet
  BOOST_TEST(taps().empty());
  auto a = json::parse(ok({"vm", "start", "--json", "a"}, 90s));
  auto b = json::parse(ok({"vm", "start", "--json", "b"}, 90s));
  BOOST_TEST(a["ips"] == json::array({"10.77.0.2/24"}), a.dump());
  BOOST_TEST(b["ips"] == json::array({"10.77.0.3/24"}), b.dump());
  BOOST_TEST(a["gateway"] == gw);
  BOOST_TEST(a["network"] == net_name);
  auto tap_a = a["tap"].get<std::string>(), tap_b = b["tap"].get<std::string>();
  BOOST_REQUIRE(!tap_a.empty() && !tap_b.empty() && tap_a != tap_b);
  // Both taps are on the network's bridge, which has the gateway address.
  auto ports = on_bridge(bridge);
  BOOST_TEST(contains(ports, tap_a + ":"), ports);
  BOOST_TEST(contains(ports, tap_b + ":"), ports);
  BOOST_TEST(contains(e.ns->ip({"-o", "addr", "show", "dev", bridge}), std::string{gw} + "/24"));
  // QEMU got the tap and the stable MAC; the guest its address.
  pid_t pid_a = a["pid"];
  auto cmdline = read_text("/proc/" + std::to_string(pid_a) + "/cmdline");
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  BOOST_TEST(contains(cmdline, "tap,id=net0,ifname=" + tap_a + ",script=no,downscript=no"),
             cmdline);
  BOOST_TEST(contains(cmdline, "mac=" + a["mac"].get<std::string>()), cmdline);
  BOOST_TEST(contains(cmdline, "ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off"), cmdline);
  BOOST_TEST(leases(net_name).size() == 2u);
  BOOST_TEST(attachments(net_name) == "vm/a vm/b");
  // vm ls shows the address.
  auto ls = ok({"vm", "ls"});
  BOOST_TEST(contains(ls, "10.77.0.2/24"), ls);
  BOOST_TEST(contains(ls, "10.77.0.3/24"), ls);
  BOOST_TEST(contains(ok({"vm", "inspect", "a"}), tap_a));

  // Real packets: each guest pinged the gateway (the bridge) and the other guest.
  wait_console("a", "PINGS-OK");
  wait_console("b", "PINGS-OK");
  auto con_a = cli({"vm", "console", "a"}).out, con_b = cli({"vm", "console", "b"}).out;
  BOOST_TEST(contains(con_a, "CYTO-NET-UP 10.77.0.2/24"));
  BOOST_TEST(contains(con_a, "bytes from 10.77.0.1"), tail(con_a));
  BOOST_TEST(contains(con_a, "bytes from 10.77.0.3"), tail(con_a));
  BOOST_TEST(contains(con_b, "bytes from 10.77.0.2"), tail(con_b));
  BOOST_TEST(contains(con_a, "3 packets transmitted, 3 packets received, 0% packet loss"));
  // And from the bridge's side of the netns to each guest.
  for (auto* ip : {"10.77.0.2", "10.77.0.3"}) {
    auto r = e.ns->exec({"/bin/busybox", "ping", "-c", "2", "-W", "5", ip}, 30s);
    BOOST_TEST(r.code() == 0, "ping " << ip << ": " << r.out << r.err);
  }

  // kill -9 of cytod: the VMs, taps and leases stay and are re-adopted.
  e.d->stop(SIGKILL);
  BOOST_TEST(link_exists(tap_a));
  e.d->start({}, 30s);
  auto a2 = inspect("a");
  BOOST_TEST(a2["state"] == "running");
  BOOST_TEST(a2["pid"] == pid_a);
  BOOST_TEST(a2["ips"] == json::array({"10.77.0.2/24"}));
  BOOST_TEST(a2["tap"] == tap_a);
  BOOST_TEST(attachments(net_name) == "vm/a vm/b");
  BOOST_TEST(ok({"network", "check", "vm/a"}).size() > 0);
  BOOST_TEST(e.ns->exec({"/bin/busybox", "ping", "-c", "1", "-W", "5", "10.77.0.2"}, 30s).code() ==
             0);

  // stop and kill release the tap and the lease before they answer.
  auto sa = json::parse(ok({"vm", "stop", "--json", "-t", "60s", "a"}, 90s));
  BOOST_TEST(sa["state"] == "stopped");
  BOOST_TEST(sa["ips"].empty());
  BOOST_TEST(sa["tap"] == "");
  BOOST_TEST(sa["mac"] == a["mac"]); // stable
  BOOST_TEST(!link_exists(tap_a));
  BOOST_TEST(contains(on_bridge(bridge), tap_b + ":"));
  BOOST_TEST(leases(net_name).size() == 1u);
  BOOST_TEST(attachments(net_name) == "vm/b");
  auto kb = json::parse(ok({"vm", "kill", "--json", "b"}, 60s));
  BOOST_TEST(kb["state"] == "stopped");
  BOOST_TEST(!link_exists(tap_b));
  BOOST_TEST(leases(net_name).empty());
  BOOST_TEST(attachments(net_name).empty());
  ok({"vm", "rm", "a", "b"});
  nothing_left("a", net_name);
  nothing_left("b", net_name);
  ok({"network", "rm", net_name}); // nothing holds it any more
}

BOOST_AUTO_TEST_CASE(a_vm_that_ends_by_itself_releases_its_tap) {
  make_network("selfnet", "10.78.0.0/24");
  auto r = cli({"vm", "run", "--rm", "--name", "once", "--kernel", env().kernel, "--initrd",
                env().initrd, "--cmdline", "quiet", "--network", "selfnet", "--", "sh", "-c",
                "ping -c 2 -W 5 10.78.0.1"},
               150s);
  BOOST_TEST(r.code() == 0, "vm run: " << r.code() << " " << r.err << "\n" << tail(r.out));
  BOOST_TEST(contains(r.out, "bytes from 10.78.0.1"), tail(r.out));
  BOOST_TEST(contains(r.out, "CYTO-EXIT=0"));
  nothing_left("once", "selfnet");
  BOOST_TEST(attachments("selfnet").empty());
  ok({"network", "rm", "selfnet"});
}

BOOST_AUTO_TEST_CASE(unknown_network_is_refused_and_leaves_nothing) {
  auto err = refused(create_args("lost", "nope"), "not_found");
  BOOST_TEST(contains(err, "network nope does not exist"), err);
  nothing_left("lost", "nope");
  auto r = cli({"vm", "run", "--rm", "--name", "lost2", "--kernel", env().kernel, "--network",
                "nope", "--", "true"});
  BOOST_TEST(r.code() == 125);
  BOOST_TEST(contains(r.err, "cyto.not_found: network nope does not exist"), r.err);
  nothing_left("lost2", "nope");
  // The network goes away between create and start: start fails, the VM stays created
  // with no tap and no lease, QEMU never ran.
  make_network("gone", "10.79.0.0/24");
  ok(create_args("orphan", "gone"));
  ok({"network", "rm", "gone"});
  refused({"vm", "start", "orphan"}, "not_found");
  auto v = inspect("orphan");
  BOOST_TEST(v["state"] == "created");
  BOOST_TEST(v["pid"] == 0);
  BOOST_TEST(v["ips"].empty());
  BOOST_TEST(taps().empty());
  ok({"vm", "rm", "orphan"});
  nothing_left("orphan", "gone");
}

BOOST_AUTO_TEST_CASE(cytod_as_the_guest_init_applies_the_address) {
  // The product's guest (deploy/make-vm-image: cytod as /init, virtio_net in its module
  // list): cytod --init reads ip= from the kernel command line and configures eth0.
  std::string img = env().work / "image";
  auto m = run_process(
      {std::string{CYTO_SOURCE_DIR} + "/deploy/make-vm-image", img, "--cytod", cytod_path}, 180s);
  if (m.code() == 77) {
    BOOST_TEST_MESSAGE("no guest image: " << m.err);
    return;
  }
  BOOST_REQUIRE_MESSAGE(m.code() == 0, "make-vm-image: " << m.err);
  make_network("initnet", "10.80.0.0/24");
  auto cmdline = lines_of(read_text(img + "/cmdline")).at(0);
  ok({"vm", "create", "g", "--kernel", img + "/vmlinuz", "--initrd", img + "/initramfs.cpio",
      "--cmdline", cmdline, "-m", "384M", "--network", "initnet"});
  auto v = json::parse(ok({"vm", "start", "--json", "g"}, 90s));
  BOOST_TEST(v["ips"] == json::array({"10.80.0.2/24"}), v.dump());
  // The guest's cytod answers on its channel once it is up.
  auto deadline = steady::now() + 90s;
  process_result r;
  while (steady::now() < deadline) {
    r = cli({"--vm", "g", "discover"});
    if (r.code() == 0)
      break;
    std::this_thread::sleep_for(500ms);
  }
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "guest cytod: " << r.err << "\nconsole:\n"
                                                       << tail(cli({"vm", "console", "g"}).out));
  auto addr = cli({"vm", "exec", "g", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0"});
  BOOST_TEST(contains(addr.out, "inet 10.80.0.2/24"), addr.out << addr.err);
  auto route = cli({"vm", "exec", "g", "--", "ip", "route"});
  BOOST_TEST(contains(route.out, "default via 10.80.0.1"), route.out << route.err);
  auto ping = cli({"vm", "exec", "g", "--", "ping", "-c", "2", "-W", "5", "10.80.0.1"}, 30s);
  BOOST_TEST(ping.code() == 0, ping.out << ping.err);
  BOOST_TEST(contains(ping.out, "bytes from 10.80.0.1"), ping.out);
  BOOST_TEST(
      env().ns->exec({"/bin/busybox", "ping", "-c", "1", "-W", "5", "10.80.0.2"}, 30s).code() == 0);
  // QEMU dies (SIGKILL from outside cytod): the tap and lease go with it.
  pid_t qemu = v["pid"];
  auto tap = v["tap"].get<std::string>();
  BOOST_REQUIRE(qemu > 0 && link_exists(tap));
  ::kill(qemu, SIGKILL);
  deadline = steady::now() + 30s;
  while (inspect("g")["state"] == "running" && steady::now() < deadline)
    std::this_thread::sleep_for(100ms);
  auto ended = inspect("g");
  BOOST_TEST(ended["state"] == "exited", ended.dump());
  BOOST_TEST(ended["ips"].empty());
  deadline = steady::now() + 10s;
  while (link_exists(tap) && steady::now() < deadline)
    std::this_thread::sleep_for(50ms);
  BOOST_TEST(!link_exists(tap));
  BOOST_TEST(leases("initnet").empty());
  BOOST_TEST(attachments("initnet") == "");
  ok({"vm", "rm", "g"}, 60s);
  nothing_left("g", "initnet");
  ok({"network", "rm", "initnet"});
}
