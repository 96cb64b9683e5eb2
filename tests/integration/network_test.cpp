// Integration tests of networking: a real cytod runs inside a network namespace this
// test makes (`ip netns add cyto-t-...`, cytod started through `nsenter --net`), so
// bridges, veths, iptables rules and traffic stay there; the host namespace is never
// touched. Networks are driven over Cap'n Proto and the cyto CLI; what cytod claims is
// checked against the kernel (`ip -n`), the lease files of host-local and real traffic
// (busybox ping, httpd, wget). Needs root (exits 77 = skipped otherwise).
#define BOOST_TEST_MODULE integration_network
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "schema/network.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/daemon_fixture.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace schema = cyto::schema;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

constexpr const char* busybox = "/usr/bin/busybox";

/// A daemon in its own test netns, with helpers to call it.
struct net_daemon {
  test_netns ns;
  daemon_fixture d{false};
  kj::AsyncIoContext io = kj::setupAsyncIo();

  /// `default_network`: containers made without --network join the default network
  /// (the fixture turns it off otherwise).
  explicit net_daemon(std::vector<std::string> extra = {}, bool default_network = false) {
    run_in(d, ns);
    if (default_network)
      d.use_default_network();
    d.start(extra);
  }

  schema::Networks::Client networks() {
    auto conn = d.connect(io);
    auto svc = wait_for(io, conn->node().networkRequest().send()).getService();
    conns_.push_back(std::move(conn));
    return svc;
  }

  /// `cyto --socket S --json args...`; its stdout parsed as JSON, or a failure message.
  json cli_json(std::vector<std::string> args) {
    auto r = cli(args);
    if (r.code() != 0)
      throw std::runtime_error("cyto " + args.front() + " failed: " + r.err + log());
    return json::parse(r.out);
  }
  process_result cli(std::vector<std::string> args, std::chrono::milliseconds t = 20s) {
    std::vector<std::string> argv{cli_path, "--socket", d.socket_path(), "--json"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, t);
  }
  std::string log() const {
    return "\n--- cytod log:\n" + d.log();
  }

  /// Lease files host-local keeps for a network (one per address in use).
  std::vector<std::string> leases(const std::string& network) const {
    std::vector<std::string> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator{d.state_dir() + "/network/ipam/" + network, ec}) {
      auto n = e.path().filename().string();
      if (n.find_first_not_of("0123456789.") == std::string::npos)
        out.push_back(n);
    }
    return out;
  }
  size_t netns_files() const {
    std::error_code ec;
    size_t n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator{d.state_dir() + "/netns", ec})
      ++n;
    return n;
  }
  /// The iptables rules of the daemon's namespace (nat and filter), one per line.
  std::string rules() const {
    auto r = ns.exec({"/usr/sbin/iptables-save"});
    if (r.code() != 0)
      throw std::runtime_error("iptables-save: " + r.err);
    std::string out;
    for (auto& line : lines_of(r.out))
      if (line.rfind("-A ", 0) == 0)
        out += line + "\n";
    return out;
  }
  /// Names of the veth interfaces in the daemon's namespace.
  std::vector<std::string> veths() const {
    std::vector<std::string> out;
    for (auto& line : lines_of(ns.ip({"-o", "link", "show", "type", "veth"}))) {
      auto f = split(line, ' ');
      if (f.size() > 1)
        out.push_back(f[1].substr(0, f[1].find('@')));
    }
    return out;
  }

private:
  std::vector<std::unique_ptr<rpc_connection>> conns_;
};

/// The "cyto.<code>: ..." text of a failed capnp call, or "" if it succeeded.
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

std::string ip_of(const json& cell) {
  auto cidr = cell.at("ips").at(0).get<std::string>();
  return cidr.substr(0, cidr.find('/'));
}

std::string show_result(const process_result& r) {
  return describe_status(r.status) + "; stdout: " + r.out + "; stderr: " + r.err;
}

} // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(networks_are_created_listed_and_removed_and_bad_input_changes_nothing) {
  net_daemon t;
  auto svc = t.networks();
  auto create = [&](std::string name, std::string subnet, std::string gateway = "",
                    std::vector<std::string> opts = {}) {
    auto req = svc.createRequest();
    req.setName(name);
    req.setSubnet(subnet);
    req.setGateway(gateway);
    auto o = req.initOptions(opts.size());
    for (uint i = 0; i < opts.size(); ++i)
      o.set(i, opts[i]);
    return wait_for(t.io, req.send());
  };
  auto made = create("front", "10.90.1.0/24", "", {"mtu=1400"});
  BOOST_TEST(std::string{made.getInfo().getGateway()} == "10.90.1.1");
  BOOST_TEST(std::string{made.getInfo().getBridge()} == "cyto-front");
  auto conflist = json::parse(read_text(made.getInfo().getConflistPath().cStr()));
  BOOST_TEST(conflist["plugins"][0]["type"] == "bridge");
  BOOST_TEST(conflist["plugins"][0]["mtu"] == 1400);
  BOOST_TEST(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"] == "10.90.1.0/24");
  // From the pool: a free subnet, not overlapping a network nor a route of the host (here:
  // the daemon's namespace, where a veth takes the pool's first /24).
  t.ns.ip({"link", "add", "t-v0", "type", "veth", "peer", "name", "t-v1"});
  t.ns.ip({"addr", "add", "10.89.0.1/24", "dev", "t-v0"});
  t.ns.ip({"link", "set", "t-v0", "up"});
  auto pooled = t.cli_json({"network", "create", "back"});
  BOOST_TEST(pooled["subnet"] == "10.89.1.0/24");

  auto files = [&] {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator{t.d.state_dir() + "/network"})
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto before = files();
  struct bad_case {
    const char* code;
    std::string name, subnet, gateway;
    std::vector<std::string> opts;
  };
  std::vector<bad_case> bad = {
    {"invalid_argument", "m1", "10.91.0.0/33", "", {}},
    {"invalid_argument", "m2", "banana", "", {}},
    {"invalid_argument", "m3", "10.91.0.7/24", "", {}},
    {"invalid_argument", "m4", "10.90.0.0/16", "", {}},   // overlaps front
    {"invalid_argument", "m5", "10.88.5.0/24", "", {}},   // overlaps the default network
    {"already_exists", "front", "10.92.0.0/24", "", {}},
    {"invalid_argument", "m6", "10.93.0.0/24", "10.94.0.1", {}},
    {"invalid_argument", "m7", "10.93.0.0/24", "", {"color=blue"}},
    {"invalid_argument", "bad/name", "10.93.0.0/24", "", {}},
  };
  for (auto& b : bad) {
    auto err = refusal([&] { create(b.name, b.subnet, b.gateway, b.opts); });
    BOOST_TEST(contains(err, std::string{"cyto."} + b.code + ":"),
               b.name << " " << b.subnet << ": " << (err.empty() ? "<success>" : err));
  }
  BOOST_TEST(files() == before);

  auto list = t.cli_json({"network", "ls"});
  std::vector<std::string> names;
  for (auto& n : list)
    names.push_back(n["name"]);
  BOOST_TEST((names == std::vector<std::string>{"back", "cyto", "front"}));
  for (auto& n : list)
    BOOST_TEST(n["default"] == (n["name"] == "cyto"));

  auto gone = t.cli({"network", "rm", "nosuch"});
  BOOST_TEST(gone.code() == 1);
  BOOST_TEST(contains(gone.err, "cyto.not_found:"), gone.err);
  auto dflt = t.cli({"network", "rm", "cyto"});
  BOOST_TEST(contains(dflt.err, "cyto.failed_precondition:"), dflt.err);
  BOOST_TEST(t.cli({"network", "rm", "back"}).code() == 0);
  BOOST_TEST(!fs::exists(t.d.state_dir() + "/network/back.conflist"));
  auto human = t.cli({"network", "ls"});
  BOOST_TEST(contains(human.out, "front"));
}

BOOST_AUTO_TEST_CASE(cells_on_one_network_reach_each_other_and_a_mapped_port_answers) {
  net_daemon t;
  BOOST_REQUIRE(t.cli({"network", "create", "web", "--subnet", "10.90.2.0/24"}).code() == 0);
  auto a = t.cli_json({"cell", "allocate", "a", "--network", "web", "-p", "8080:80"});
  auto b = t.cli_json({"cell", "allocate", "b", "--network", "web"});
  auto a_ip = ip_of(a), b_ip = ip_of(b);
  BOOST_TEST(a_ip != b_ip);
  BOOST_TEST(t.leases("web").size() == 2u);
  BOOST_TEST(t.veths().size() == 2u);
  BOOST_TEST(t.netns_files() == 2u);

  // a serves a file over HTTP on port 80 inside its netns.
  auto www = t.d.dir() + "/www";
  fs::create_directories(www);
  write_text(www + "/index.html", "hello from a\n");
  auto started = t.cli({"cell", "start", "a", "--name", "httpd", "--", busybox, "httpd", "-f",
                        "-p", "80", "-h", www});
  BOOST_REQUIRE_MESSAGE(started.code() == 0, started.err + t.log());

  // b pings a and fetches the page over TCP, by IP.
  auto ping = t.cli({"cell", "start", "b", "--name", "ping", "--wait", "--", busybox, "ping",
                     "-c", "1", "-W", "3", a_ip});
  BOOST_TEST(ping.code() == 0, ping.out + ping.err + t.log());
  bool fetched = false;
  for (int i = 0; i < 50 && !fetched; ++i) {
    auto get = t.cli({"cell", "start", "b", "--name", "wget", "--wait", "--", busybox, "wget",
                      "-q", "-O", "-", "http://" + a_ip + "/index.html"});
    fetched = get.code() == 0
              && contains(read_text(t.d.state_dir() + "/logs/b/wget.stdout"), "hello from a");
    if (!fetched)
      std::this_thread::sleep_for(50ms);
  }
  BOOST_TEST(fetched, "b could not fetch from a; httpd: "
                        + read_text(t.d.state_dir() + "/logs/a/httpd.stderr") + " wget: "
                        + read_text(t.d.state_dir() + "/logs/b/wget.stderr") + t.log());

  // The mapped port answers from the daemon's ("host") namespace, on the gateway address.
  process_result host;
  for (int i = 0; i < 20 && !contains(host.out, "hello from a"); ++i)
    host = t.ns.exec({busybox, "wget", "-q", "-O", "-", "http://10.90.2.1:8080/"});
  BOOST_TEST(contains(host.out, "hello from a"), show_result(host));

  // A second mapping of the same host port is refused, and nothing is left of it.
  auto rules_before = t.rules();
  auto clash = t.cli({"cell", "allocate", "c", "--network", "web", "-p", "8080:80"});
  BOOST_TEST(contains(clash.err, "cyto.already_exists:"), clash.err);
  auto unknown = t.cli({"cell", "allocate", "d", "--network", "nosuch"});
  BOOST_TEST(contains(unknown.err, "cyto.not_found:"), unknown.err);
  BOOST_TEST(t.cli_json({"cell", "ls"}).size() == 2u);
  BOOST_TEST(t.leases("web").size() == 2u);
  BOOST_TEST(t.veths().size() == 2u);
  BOOST_TEST(t.netns_files() == 2u);
  BOOST_TEST(t.rules() == rules_before);
  BOOST_TEST(contains(rules_before, "--dport 8080"), rules_before);

  // The network cannot go while cells use it.
  auto busy = t.cli({"network", "rm", "web"});
  BOOST_TEST(contains(busy.err, "cyto.failed_precondition:"), busy.err);
  auto inspect = t.cli_json({"network", "inspect", "web"});
  BOOST_TEST(inspect["attachments"].size() == 2u);
  auto checked = t.cli_json({"network", "check", "cell/b"});
  BOOST_TEST(checked["ips"] == b["ips"]);
  // CHECK notices when the kernel no longer matches the record: b's address is gone.
  auto b_netns = b.at("netns").get<std::string>();
  auto flushed = run_process({"/usr/bin/nsenter", "--net=" + b_netns, "--", "/usr/sbin/ip",
                              "addr", "flush", "dev", "eth0"});
  BOOST_REQUIRE(flushed.code() == 0);
  auto broken = t.cli({"network", "check", "cell/b"});
  BOOST_TEST(broken.code() == 1);
  BOOST_TEST(contains(broken.err, "CNI plugin"), broken.err);
  // Put it back: the bridge plugin's DEL finds the masquerade rules by that address.
  auto restored = run_process({"/usr/bin/nsenter", "--net=" + b_netns, "--", "/usr/sbin/ip",
                               "addr", "add", b["ips"][0].get<std::string>(), "dev", "eth0"});
  auto route = run_process({"/usr/bin/nsenter", "--net=" + b_netns, "--", "/usr/sbin/ip",
                            "route", "add", "default", "via", "10.90.2.1"});
  BOOST_REQUIRE(restored.code() == 0 && route.code() == 0);
  auto fixed = t.cli({"network", "check", "cell/b"});
  BOOST_TEST(fixed.code() == 0, fixed.err);
  BOOST_TEST(contains(t.cli({"network", "check", "cell/nobody"}).err, "cyto.not_found:"));

  // Freeing a cell releases its lease, veth and netns.
  BOOST_TEST(t.cli({"cell", "free", "--force", "a"}).code() == 0);
  BOOST_TEST(t.leases("web") == std::vector<std::string>{b_ip});
  BOOST_TEST(t.veths().size() == 1u);
  BOOST_TEST(t.netns_files() == 1u);
  BOOST_TEST(t.cli({"cell", "free", "--force", "b"}).code() == 0);
  BOOST_TEST(t.leases("web").empty());
  BOOST_TEST(t.veths().empty());
  auto rules_after = t.rules();
  BOOST_TEST(!contains(rules_after, "--dport 8080"), rules_after);
  BOOST_TEST(!contains(rules_after, "cell-a-"), rules_after);
  BOOST_TEST(!contains(rules_after, "cell-b-"), rules_after);
  BOOST_TEST(t.cli({"network", "rm", "web"}).code() == 0);
  BOOST_TEST(!contains(t.ns.ip({"-o", "link"}), "cyto-web"));
}

BOOST_AUTO_TEST_CASE(containers_and_a_pod_on_one_network_reach_each_other) {
  net_daemon t;
  BOOST_REQUIRE(t.cli({"network", "create", "apps", "--subnet", "10.90.4.0/24"}).code() == 0);
  // `cyto run` prints the container's output (not JSON), so call it without --json.
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{cli_path, "--socket", t.d.socket_path(), "run"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, 30s);
  };
  auto inspect = [&](const std::string& what, const std::string& name) {
    auto j = t.cli_json({what, name});
    return j.is_array() ? j.at(0) : j;
  };
  // A web server: its /etc/hostname is served on port 80, published as 8081.
  auto web = run({"-d", "--name", "web", "--network", "apps", "-p", "8081:80", "demo", "httpd",
                  "-f", "-p", "80", "-h", "/etc"});
  BOOST_REQUIRE_MESSAGE(web.code() == 0, show_result(web) + t.log());
  auto web_ip = ip_of(inspect("inspect", "web"));
  BOOST_TEST(t.leases("apps") == std::vector<std::string>{web_ip});

  // Another container on the network pings it and fetches over TCP by IP. Debian's busybox
  // ping opens only raw ICMP sockets (no fallback to ICMP echo sockets), so it needs
  // NET_RAW, which podman's default set leaves out, as ours does. A ping that uses echo
  // sockets (iputils) needs nothing: every container netns opens them to all groups.
  auto ping = run({"--rm", "--network", "apps", "--cap-add", "NET_RAW", "demo", "ping", "-c",
                   "1", "-W", "3", web_ip});
  BOOST_TEST(ping.code() == 0, show_result(ping) + t.log());
  auto range = run({"--rm", "--network", "apps", "demo", "cat",
                    "/proc/sys/net/ipv4/ping_group_range"});
  BOOST_TEST(range.out == "0\t2147483647\n", show_result(range));
  process_result get;
  for (int i = 0; i < 20 && !contains(get.out, "web"); ++i)
    get = run({"--rm", "--network", "apps", "demo", "wget", "-q", "-O", "-",
               "http://" + web_ip + "/hostname"});
  BOOST_TEST(contains(get.out, "web"), show_result(get) + t.log());
  // The published port answers in the daemon's ("host") namespace.
  process_result host;
  for (int i = 0; i < 20 && !contains(host.out, "web"); ++i)
    host = t.ns.exec({busybox, "wget", "-q", "-O", "-", "http://10.90.4.1:8081/hostname"});
  BOOST_TEST(contains(host.out, "web"), show_result(host));

  // A pod on the network: its two containers share one address and localhost.
  auto pod = t.cli({"pod", "create", "--network", "apps", "duo"});
  BOOST_REQUIRE_MESSAGE(pod.code() == 0, show_result(pod) + t.log());
  auto pods = t.cli_json({"pod", "ls"});
  BOOST_REQUIRE_MESSAGE(pods.size() == 1u, pods.dump());
  auto pod_ip = ip_of(pods.at(0));
  BOOST_TEST(pod_ip != web_ip);
  auto srv = run({"-d", "--pod", "duo", "--name", "duo-web", "demo", "httpd", "-f", "-p", "80",
                  "-h", "/etc"});
  BOOST_REQUIRE_MESSAGE(srv.code() == 0, show_result(srv) + t.log());
  process_result local, remote;
  for (int i = 0; i < 20 && !contains(local.out, "duo"); ++i)
    local = run({"--rm", "--pod", "duo", "demo", "wget", "-q", "-O", "-",
                 "http://127.0.0.1/hostname"});
  BOOST_TEST(contains(local.out, "duo"), show_result(local) + t.log());
  for (int i = 0; i < 20 && !contains(remote.out, "duo"); ++i)
    remote = run({"--rm", "--network", "apps", "demo", "wget", "-q", "-O", "-",
                  "http://" + pod_ip + "/hostname"});
  BOOST_TEST(contains(remote.out, "duo"), show_result(remote) + t.log());
  // Only web and the pod hold leases: the --rm containers released theirs before exiting.
  BOOST_TEST(t.leases("apps").size() == 2u, json(t.leases("apps")).dump() + t.log());

  // The network stays while used; removing the workloads releases leases and veths.
  BOOST_TEST(contains(t.cli({"network", "rm", "apps"}).err, "cyto.failed_precondition:"));
  BOOST_TEST(t.cli({"rm", "-f", "web"}).code() == 0);
  BOOST_TEST(t.leases("apps") == std::vector<std::string>{pod_ip});
  BOOST_TEST(t.cli({"pod", "rm", "-f", "duo"}).code() == 0);
  BOOST_TEST(t.leases("apps").empty());
  BOOST_TEST(t.veths().empty());
  BOOST_TEST(t.netns_files() == 0u);
  BOOST_TEST(!contains(t.rules(), "--dport 8081"));
  BOOST_TEST(t.cli({"network", "rm", "apps"}).code() == 0);
}

BOOST_AUTO_TEST_CASE(containers_without_network_join_the_default_one_unless_none) {
  // Like rootful podman: no --network is the default network (here in the test's netns).
  net_daemon t{{}, true};
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{cli_path, "--socket", t.d.socket_path(), "run"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, 30s);
  };
  auto inspect = [&](const std::string& name) { return t.cli_json({"inspect", name}).at(0); };
  auto web = run({"-d", "--name", "web", "-p", "8082:80", "demo", "httpd", "-f", "-p", "80",
                  "-h", "/etc"});
  BOOST_REQUIRE_MESSAGE(web.code() == 0, show_result(web) + t.log());
  auto info = inspect("web");
  BOOST_TEST(info.at("network") == "cyto", info.dump());
  auto web_ip = ip_of(info);
  BOOST_TEST(web_ip.rfind("10.88.", 0) == 0u, web_ip);
  BOOST_TEST(t.leases("cyto") == std::vector<std::string>{web_ip});
  // eth0 inside has that address; a second container reaches the first by IP.
  auto addr = run({"--rm", "demo", "ip", "-4", "-o", "addr", "show", "dev", "eth0"});
  BOOST_TEST(addr.code() == 0, show_result(addr));
  BOOST_TEST(contains(addr.out, " 10.88."), show_result(addr));
  process_result get;
  for (int i = 0; i < 20 && !contains(get.out, "web"); ++i)
    get = run({"--rm", "demo", "wget", "-q", "-O", "-", "http://" + web_ip + "/hostname"});
  BOOST_TEST(contains(get.out, "web"), show_result(get) + t.log());
  // -p without --network: the port answers on 127.0.0.1 of the daemon's namespace.
  process_result host;
  for (int i = 0; i < 20 && !contains(host.out, "web"); ++i)
    host = t.ns.exec({busybox, "wget", "-q", "-O", "-", "http://127.0.0.1:8082/hostname"});
  BOOST_TEST(contains(host.out, "web"), show_result(host));

  // --network none: lo only, and a lease-free container.
  auto none = run({"--rm", "--network", "none", "demo", "cat", "/proc/net/dev"});
  BOOST_TEST(none.code() == 0, show_result(none));
  std::vector<std::string> ifaces;
  for (auto& line : lines_of(none.out))
    if (auto colon = line.find(':'); colon != std::string::npos) {
      auto name = line.substr(0, colon);
      ifaces.push_back(name.substr(name.find_first_not_of(' ')));
    }
  BOOST_TEST(ifaces == std::vector<std::string>{"lo"}, none.out);
  // -p with --network none is refused and leaves nothing.
  auto refused = run({"-d", "--name", "np", "--network", "none", "-p", "8083:80", "demo",
                      "true"});
  BOOST_TEST(refused.code() == 125, show_result(refused));
  BOOST_TEST(contains(refused.err, "cyto.invalid_argument"), show_result(refused));
  BOOST_TEST(contains(t.cli({"inspect", "np"}).err, "cyto.not_found"));
  BOOST_TEST(t.leases("cyto") == std::vector<std::string>{web_ip});

  // A pod without --network joins it too; removing everything leaves nothing behind.
  BOOST_REQUIRE(t.cli({"pod", "create", "trio"}).code() == 0);
  auto pods = t.cli_json({"pod", "ls"});
  BOOST_REQUIRE_MESSAGE(pods.size() == 1u, pods.dump());
  BOOST_TEST(ip_of(pods.at(0)).rfind("10.88.", 0) == 0u, pods.dump());
  BOOST_TEST(t.cli({"pod", "rm", "-f", "trio"}).code() == 0);
  BOOST_TEST(t.cli({"rm", "-f", "web"}).code() == 0);
  BOOST_TEST(t.leases("cyto").empty());
  BOOST_TEST(t.veths().empty());
  BOOST_TEST(t.netns_files() == 0u);
  BOOST_TEST(!contains(t.rules(), "--dport 8082"));
}

BOOST_AUTO_TEST_CASE(attachments_survive_kill_9_and_detach_after_restart) {
  net_daemon t;
  auto a = t.cli_json({"cell", "allocate", "a", "--network", "cyto"});
  auto netns = a.at("netns").get<std::string>();
  BOOST_REQUIRE(fs::exists(netns));
  t.d.stop(SIGKILL);
  t.d.start();
  auto inspect = t.cli_json({"network", "inspect", "cyto"});
  BOOST_REQUIRE(inspect["attachments"].size() == 1u);
  BOOST_TEST(inspect["attachments"][0]["owner"] == "cell/a");
  BOOST_TEST(inspect["attachments"][0]["ips"][0] == a["ips"][0]);
  auto again = t.cli_json({"cell", "inspect", "a"});
  BOOST_TEST(again["ips"] == a["ips"]);
  // The cell still runs in its netns: it reaches the gateway.
  auto ping = t.cli({"cell", "start", "a", "--name", "ping", "--wait", "--", busybox, "ping",
                     "-c", "1", "-W", "3", "10.88.0.1"});
  BOOST_TEST(ping.code() == 0, ping.out + ping.err + t.log());

  // As after a reboot: the daemon, the namespace (its bind mount; the file stays), the
  // bridge and the iptables rules are gone, the state dir is not. The restarted daemon
  // releases the old lease and attaches the cell anew at the same path.
  t.d.stop(SIGKILL);
  BOOST_REQUIRE(::umount2(netns.c_str(), MNT_DETACH) == 0);
  t.ns.ip({"link", "del", "cyto-cyto"});
  for (auto* table : {"nat", "filter"})
    for (auto* op : {"-F", "-X"})
      BOOST_REQUIRE(t.ns.exec({"/usr/sbin/iptables", "-t", table, op}).code() == 0);
  t.d.start();
  BOOST_TEST(t.leases("cyto").size() == 1u);
  BOOST_TEST(t.veths().size() == 1u);
  auto ping2 = t.cli({"cell", "start", "a", "--name", "ping", "--wait", "--", busybox, "ping",
                      "-c", "1", "-W", "3", "10.88.0.1"});
  BOOST_TEST(ping2.code() == 0, ping2.out + ping2.err + t.log());
  auto readded = t.cli_json({"network", "inspect", "cyto"})["attachments"];
  BOOST_REQUIRE(readded.size() == 1u);
  BOOST_TEST(t.cli_json({"cell", "inspect", "a"})["ips"] == readded[0]["ips"]);

  BOOST_TEST(t.cli({"cell", "free", "a"}).code() == 0);
  BOOST_TEST(t.leases("cyto").empty());
  BOOST_TEST(t.veths().empty());
  BOOST_TEST(!fs::exists(netns), t.log());
  BOOST_TEST(t.cli_json({"network", "inspect", "cyto"})["attachments"].empty());
}

BOOST_AUTO_TEST_CASE(missing_plugins_are_named_and_leave_nothing) {
  auto empty = fs::temp_directory_path() / ("cyto-t-cni-" + std::to_string(::getpid()));
  fs::create_directories(empty);
  net_daemon t{{"--cni-path", empty.string()}};
  auto r = t.cli({"cell", "allocate", "a", "--network", "cyto"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.unavailable:"), r.err);
  BOOST_TEST(contains(r.err, "containernetworking-plugins"), r.err);
  BOOST_TEST(t.cli_json({"cell", "ls"}).empty());
  BOOST_TEST(t.netns_files() == 0u);
  BOOST_TEST(t.leases("cyto").empty());
  BOOST_TEST(t.veths().empty());
  fs::remove_all(empty);
}
