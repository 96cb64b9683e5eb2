#pragma once
// A federation for tests and benchmarks: N real cytod, each in a network namespace made
// here, joined by veth pairs to a bridge in a "switch" namespace (10.253.77.0/24, never
// the host's), with certificates from deploy/make-pki; every node lists every other one
// as a peer. Everything goes with the object.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sched.h>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"
#include "tests/integration/netns_fixture.hpp"

namespace cyto::test {

using nlohmann::json;

constexpr uint16_t fed_port = 7001;
constexpr const char* subnet = "10.253.77.";

/// Runs the calling thread (and threads it starts) in the network namespace at `path`
/// until destroyed.
class in_netns {
public:
  explicit in_netns(const std::string& path) {
    old_ = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (old_ < 0 || fd < 0 || ::setns(fd, CLONE_NEWNET) != 0)
      throw std::runtime_error("setns " + path + ": " + std::strerror(errno));
    ::close(fd);
  }
  ~in_netns() {
    ::setns(old_, CLONE_NEWNET);
    ::close(old_);
  }
  in_netns(const in_netns&) = delete;
  in_netns& operator=(const in_netns&) = delete;

private:
  int old_ = -1;
};

/// One cytod of the federation: its namespace (veth to the switch), address, certificate.
struct member {
  test_netns ns;
  daemon_fixture d{false};
  std::string ip;
  std::vector<std::string> args;

  std::string name() const {
    return d.node_name();
  }
  std::string address() const {
    return ip + ":" + std::to_string(fed_port);
  }
  void start() {
    d.start(args, 20s);
  }
  process_result cli(std::vector<std::string> a, std::chrono::milliseconds t = 30s) const {
    std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
    argv.insert(argv.end(), a.begin(), a.end());
    return run_process(argv, t);
  }
  /// `cyto node ls --json` as this node sees the federation: name -> object.
  std::map<std::string, json> nodes() const {
    auto r = cli({"node", "ls", "--json"});
    if (r.code() != 0)
      throw std::runtime_error("node ls on " + name() + " failed: " + r.err);
    std::map<std::string, json> out;
    for (auto& line : lines_of(r.out))
      if (!line.empty()) {
        auto j = json::parse(line);
        out[j["name"].get<std::string>()] = j;
      }
    return out;
  }
  std::string state_of(const std::string& node) const {
    auto all = nodes();
    auto i = all.find(node);
    return i == all.end() ? "absent" : i->second["state"].get<std::string>();
  }
};

/// The switch namespace, the PKI and three members that list each other as peers.
struct federation_world {
  temp_dir dir;
  test_netns sw;
  std::vector<std::unique_ptr<member>> nodes;

  /// `extra_certs`: more node certificates to make (for impostors), not started.
  explicit federation_world(int count = 3, std::vector<std::string> extra_certs = {}) {
    sw.ip({"link", "add", "br0", "type", "bridge"});
    sw.ip({"addr", "add", std::string{subnet} + "254/24", "dev", "br0"});
    sw.ip({"link", "set", "br0", "up"});
    for (int i = 1; i <= count; ++i) {
      auto m = std::make_unique<member>();
      m->ip = subnet + std::to_string(i);
      auto veth = "vf" + std::to_string(::getpid() % 100000) + "-" + std::to_string(i);
      m->ns.ip({"link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns",
                sw.path().substr(std::string{"/run/netns/"}.size())});
      sw.ip({"link", "set", veth, "master", "br0", "up"});
      m->ns.ip({"addr", "add", m->ip + "/24", "dev", "eth0"});
      m->ns.ip({"link", "set", "eth0", "up"});
      run_in(m->d, m->ns);
      nodes.push_back(std::move(m));
    }
    std::vector<std::string> pki{std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki", pki_dir()};
    for (auto& m : nodes)
      pki.insert(pki.end(), {"--node", m->name()});
    for (auto& x : extra_certs)
      pki.insert(pki.end(), {"--node", x});
    if (auto r = run_process(pki, 60s); r.code() != 0)
      throw std::runtime_error("make-pki failed: " + r.err);
    for (auto& m : nodes) {
      m->args = tls_args(pki_dir(), m->name());
      m->args.insert(m->args.end(), {"--federation-listen", m->address()});
      for (auto& p : nodes)
        if (p != m)
          m->args.insert(m->args.end(), {"--peer", p->name() + "@" + p->address()});
    }
    for (auto& m : nodes)
      m->start();
  }

  std::string pki_dir() const {
    return dir / "pki";
  }
  static std::vector<std::string> tls_args(const std::string& pki, const std::string& name) {
    return {"--federation-cert", pki + "/nodes/" + name + ".crt", "--federation-key",
            pki + "/nodes/" + name + ".key", "--federation-ca", pki + "/ca.crt"};
  }
  member& a() {
    return *nodes[0];
  }
  member& b() {
    return *nodes[1];
  }
  member& c() {
    return *nodes.at(2);
  }

  /// Polls until `pred` holds; returns the time it took, or throws after `timeout`.
  template <class Pred>
  std::chrono::milliseconds wait_until(Pred pred, std::chrono::milliseconds timeout,
                                       const std::string& what) {
    auto start = steady::now();
    while (!pred()) {
      if (steady::now() - start > timeout)
        throw std::runtime_error("timed out waiting until " + what + logs());
      std::this_thread::sleep_for(20ms);
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - start);
  }

  /// Whether `viewer` lists the three members up (others it may know are not asked).
  bool all_up(const member& viewer) {
    auto all = viewer.nodes();
    for (auto& m : nodes)
      if (!all.count(m->name()) || all[m->name()]["state"] != "up")
        return false;
    return true;
  }

  void wait_formed() {
    wait_until(
      [&] {
        for (auto& m : nodes)
          if (!all_up(*m))
            return false;
        return true;
      },
      15s, "every node lists every other one up");
  }

  std::string logs() const {
    std::string out;
    for (auto& m : nodes)
      out += "\n--- cytod " + m->name() + " log:\n" + m->d.log();
    return out;
  }
};

/// How often `what` occurs in `text`.
inline size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1))
    ++n;
  return n;
}

} // namespace cyto::test
