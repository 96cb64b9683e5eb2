// Integration tests of cytod itself: a real daemon on a temporary socket, spoken to
// over Cap'n Proto. Needs root (exits 77 = skipped otherwise).
#define BOOST_TEST_MODULE integration_daemon
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <random>
#include <set>

#include <sys/syscall.h>
#include <sys/utsname.h>

#include "schema/discovery.capnp.h"
#include "schema/images.capnp.h"
#include "schema/node.capnp.h"
#include "schema/observe.capnp.h"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
namespace schema = cyto::schema;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

// -- what the host says, read independently of cytod -----------------------------------


struct host_truth {
  schema::CgroupMode mode = schema::CgroupMode::UNKNOWN;
  std::set<std::string> controllers;
  std::set<std::string> namespaces;
  bool btf = false;
  bool kvm = false;
  bool hardware_kvm = false;
  bool overlayfs = false;
  bool pidfd = false;
  std::string kernel_release;
};

host_truth read_host() {
  host_truth h;
  static const std::set<std::string> v1_controllers = {
    "blkio", "cpu",  "cpuacct", "cpuset",   "devices",  "freezer", "hugetlb",
    "memory", "misc", "net_cls", "net_prio", "perf_event", "pids",  "rdma"};
  bool v1 = false, v2 = false;
  std::vector<std::string> v2_mounts;
  for (auto& m : host_cgroup_mounts()) {
    if (m.v2) {
      v2 = true;
      v2_mounts.push_back(m.path);
      continue;
    }
    v1 = true;
    for (auto& opt : m.options)
      if (v1_controllers.count(opt))
        h.controllers.insert(opt);
  }
  h.mode = v1 && v2 ? schema::CgroupMode::HYBRID
           : v1     ? schema::CgroupMode::V1
           : v2     ? schema::CgroupMode::V2
                    : schema::CgroupMode::UNKNOWN;
  if (h.mode == schema::CgroupMode::V2)
    for (auto& m : v2_mounts)
      for (auto& c : split(read_text(m + "/cgroup.controllers"), ' '))
        h.controllers.insert(c.back() == '\n' ? c.substr(0, c.size() - 1) : c);
  for (auto& e : fs::directory_iterator{"/proc/self/ns"}) {
    auto name = e.path().filename().string();
    if (!contains(name, "_for_children"))
      h.namespaces.insert(name);
  }
  h.btf = fs::exists("/sys/kernel/btf/vmlinux");
  if (int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC); fd >= 0) {
    h.kvm = true;
    ::close(fd);
  }
  h.hardware_kvm = h.kvm && (fs::exists("/sys/module/kvm_intel") || fs::exists("/sys/module/kvm_amd"));
  for (auto& line : lines_of(read_text("/proc/filesystems"))) {
    auto fields = split(line, '\t');
    if (!fields.empty() && fields.back() == "overlay")
      h.overlayfs = true;
  }
  if (int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)); fd >= 0) {
    h.pidfd = true;
    ::close(fd);
  }
  utsname u{};
  ::uname(&u);
  h.kernel_release = u.release;
  return h;
}

std::set<std::string> to_set(capnp::List<capnp::Text>::Reader xs) {
  std::set<std::string> out;
  for (auto x : xs)
    out.insert(x.cStr());
  return out;
}

std::string join_set(const std::set<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : " ") + x;
  return out;
}

// -- a LogSink implemented by the test ---------------------------------------------------

struct log_entry {
  int64_t unix_nanos;
  schema::LogLevel level;
  std::string logger;
  std::string message;
  uint64_t seq;
};

struct collected_logs {
  std::vector<log_entry> entries;
  uint64_t dropped = 0;

  bool any_message_contains(const std::string& s) const {
    return std::any_of(entries.begin(), entries.end(),
                       [&](auto& e) { return contains(e.message, s); });
  }
  std::string dump() const {
    std::string out;
    for (auto& e : entries)
      out += "  #" + std::to_string(e.seq) + " " + e.logger + ": " + e.message + "\n";
    return out;
  }
};

class collecting_sink final : public schema::LogSink::Server {
public:
  explicit collecting_sink(std::shared_ptr<collected_logs> out) : out_(std::move(out)) {
  }

  kj::Promise<void> line(LineContext context) override {
    auto e = context.getParams().getEntry();
    out_->entries.push_back(
      {e.getUnixNanos(), e.getLevel(), e.getLogger().cStr(), e.getMessage().cStr(), e.getSeq()});
    return kj::READY_NOW;
  }

  kj::Promise<void> dropped(DroppedContext context) override {
    out_->dropped += context.getParams().getCount();
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<collected_logs> out_;
};

/// State of a daemonLogs call that runs in the background.
struct call_state {
  bool finished = false;
  std::optional<std::string> error;
};

/// Starts daemonLogs on `observe`; the returned promise must be kept alive (dropping it
/// cancels the call).
kj::Promise<void> start_daemon_logs(schema::Observe::Client& observe, schema::LogLevel level,
                                    bool follow, uint32_t tail,
                                    std::shared_ptr<collected_logs> logs,
                                    std::shared_ptr<call_state> state) {
  auto req = observe.daemonLogsRequest();
  req.setLevel(level);
  req.setFollow(follow);
  req.setTail(tail);
  req.setSink(kj::heap<collecting_sink>(std::move(logs)));
  return req.send()
    .ignoreResult()
    .then([state] { state->finished = true; },
          [state](kj::Exception&& e) { state->error = e.getDescription().cStr(); })
    .eagerlyEvaluate(nullptr);
}

schema::NodeInfo::Reader discover(kj::AsyncIoContext& io, rpc_connection& c,
                                  kj::Own<capnp::Response<schema::Discovery::DiscoverResults>>& keep) {
  auto disc = c.node().discoveryRequest().send().getService();
  keep = kj::heap(wait_for(io, disc.discoverRequest().send()));
  return keep->getInfo();
}

/// Discovers over a fresh connection and returns (nodeName, pid).
std::pair<std::string, uint32_t> discover_once(const daemon_fixture& d) {
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  kj::Own<capnp::Response<schema::Discovery::DiscoverResults>> keep;
  auto info = discover(io, *c, keep);
  return {info.getNodeName().cStr(), info.getPid()};
}

void expect_seq_increasing(const collected_logs& logs) {
  for (size_t i = 1; i < logs.entries.size(); ++i)
    BOOST_TEST(logs.entries[i].seq > logs.entries[i - 1].seq,
               "seq " << logs.entries[i].seq << " follows " << logs.entries[i - 1].seq);
}

} // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(discover_reports_host_features) {
  daemon_fixture d;
  auto host = read_host();
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  kj::Own<capnp::Response<schema::Discovery::DiscoverResults>> keep1, keep2;
  auto info = discover(io, *c, keep1);
  auto f = info.getFeatures();

  BOOST_TEST(static_cast<int>(f.getCgroupMode()) == static_cast<int>(host.mode));
  BOOST_TEST(join_set(to_set(f.getCgroupControllers())) == join_set(host.controllers));
  BOOST_TEST(join_set(to_set(f.getNamespaces())) == join_set(host.namespaces));
  BOOST_TEST(f.getNamespaces().size() == host.namespaces.size()); // no duplicates
  BOOST_TEST(f.getBtf() == host.btf);
  if (!host.btf)
    BOOST_TEST(!f.getEbpf(), "ebpf needs BTF");
  // As root with BTF the event programs load, unless this build left them out.
  std::string ebpf_detail = f.getEbpfDetail().cStr();
  if (host.btf && ebpf_detail.rfind("built without eBPF programs", 0) != 0)
    BOOST_TEST(f.getEbpf(), "ebpf: " << ebpf_detail);
  BOOST_TEST(f.getEbpf() == ebpf_detail.empty(), "a reason exactly when ebpf is off");
  if (f.getEbpf())
    BOOST_TEST(f.getTracefs(), "cytod mounts tracefs with the programs");
  BOOST_TEST(f.getKvm() == host.kvm);
  // A paravirtual /dev/kvm (kvm_pvm) cannot boot a stock kernel: VMs get KVM only when a
  // hardware vendor module backs it.
  BOOST_TEST(std::string{f.getVmAccel().cStr()} == (host.hardware_kvm ? "kvm" : "tcg"));
  BOOST_TEST(f.getVmAccelReason().size() > 0u);
  BOOST_TEST(f.getOverlayfs() == host.overlayfs);
  BOOST_TEST(f.getPidfd() == host.pidfd);
  BOOST_TEST(std::string{f.getKernelRelease().cStr()} == host.kernel_release);

  BOOST_TEST(std::string{info.getNodeName().cStr()} == d.node_name());
  BOOST_TEST(!std::string{info.getVersion().cStr()}.empty());
  BOOST_TEST(info.getHealthy());
  BOOST_TEST(info.getPid() == static_cast<uint32_t>(d.pid()));
  auto up1 = info.getUptimeNanos();
  BOOST_TEST(up1 > 0u);

  std::this_thread::sleep_for(50ms);
  auto info2 = discover(io, *c, keep2);
  auto up2 = info2.getUptimeNanos();
  BOOST_TEST(up2 > up1);
  BOOST_TEST(up2 - up1 >= 50'000'000u, "uptime grew by " << (up2 - up1) << " ns over 50 ms");
  BOOST_TEST(up2 - up1 < 10'000'000'000u, "uptime grew by " << (up2 - up1) << " ns over 50 ms");
}

BOOST_AUTO_TEST_CASE(services_lists_discovery_and_observe) {
  daemon_fixture d;
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto resp = wait_for(io, c->node().servicesRequest().send());
  auto names = to_set(resp.getNames());
  BOOST_TEST(names.size() == resp.getNames().size()); // no duplicates
  BOOST_TEST(join_set(names) == "cells containers discovery images network observe pods vms volumes");

  // Both accessors hand out working capabilities.
  auto disc = wait_for(io, c->node().discoveryRequest().send()).getService();
  BOOST_TEST(wait_for(io, disc.healthRequest().send()).getHealth().getHealthy());
  auto obs = wait_for(io, c->node().observeRequest().send()).getService();
  auto logs = std::make_shared<collected_logs>();
  auto state = std::make_shared<call_state>();
  auto call = start_daemon_logs(obs, schema::LogLevel::INFO, false, 1, logs, state);
  BOOST_TEST(pump_until(io, [&] { return state->finished || state->error; }, 10s));
  BOOST_TEST(!state->error, "daemonLogs failed: " << state->error.value_or(""));
}

BOOST_AUTO_TEST_CASE(health_is_healthy) {
  daemon_fixture d;
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto disc = c->node().discoveryRequest().send().getService();
  auto resp = wait_for(io, disc.healthRequest().send());
  auto h = resp.getHealth();
  std::string problems;
  for (auto p : h.getProblems())
    problems += std::string{p.cStr()} + "; ";
  BOOST_TEST(h.getHealthy(), "problems: " << problems);
  BOOST_TEST(h.getProblems().size() == 0u, "problems: " << problems);
}

BOOST_AUTO_TEST_CASE(daemon_logs_stream_a_line_the_test_caused) {
  daemon_fixture d;
  d.open_to_everyone();
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto obs = wait_for(io, c->node().observeRequest().send()).getService();
  auto logs = std::make_shared<collected_logs>();
  auto state = std::make_shared<call_state>();
  auto call = start_daemon_logs(obs, schema::LogLevel::INFO, true, 1, logs, state);

  // The one history entry shows that the subscription is in place.
  BOOST_REQUIRE_MESSAGE(pump_until(io, [&] { return !logs->entries.empty() || state->error; }, 10s),
                        "no history entry arrived");
  BOOST_REQUIRE_MESSAGE(!state->error, "daemonLogs failed: " << *state->error);
  BOOST_TEST(logs->entries.size() == 1u, "tail 1 gave:\n" << logs->dump());

  auto child = d.connect_as_nobody();
  auto needle = "pid=" + std::to_string(child) + " ";
  bool seen = pump_until(io, [&] { return logs->any_message_contains(needle) || state->error; }, 10s);
  BOOST_REQUIRE_MESSAGE(!state->error, "daemonLogs failed: " << *state->error);
  BOOST_REQUIRE_MESSAGE(seen, "no entry with '" << needle << "' arrived; got:\n"
                                                << logs->dump() << "daemon log:\n" << d.log());
  BOOST_TEST(!state->finished, "a follow call must not return by itself");

  auto it = std::find_if(logs->entries.begin(), logs->entries.end(),
                         [&](auto& e) { return contains(e.message, needle); });
  BOOST_TEST(it->logger == "gateway");
  BOOST_TEST(static_cast<int>(it->level) == static_cast<int>(schema::LogLevel::WARN));
  BOOST_TEST(contains(it->message, "refused peer"));
  BOOST_TEST(contains(it->message, "uid=65534"));
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  BOOST_TEST(it->unix_nanos <= now);
  BOOST_TEST(it->unix_nanos > now - 60'000'000'000LL);
  BOOST_TEST(logs->dropped == 0u);
  expect_seq_increasing(*logs);
}

BOOST_AUTO_TEST_CASE(daemon_logs_history_without_follow_returns) {
  daemon_fixture d;
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto obs = c->node().observeRequest().send().getService();
  auto logs = std::make_shared<collected_logs>();
  auto state = std::make_shared<call_state>();
  auto call = start_daemon_logs(obs, schema::LogLevel::INFO, false, 10, logs, state);
  BOOST_REQUIRE_MESSAGE(pump_until(io, [&] { return state->finished || state->error; }, 10s),
                        "daemonLogs(follow=false) did not return; got so far:\n" << logs->dump());
  BOOST_REQUIRE_MESSAGE(!state->error, "daemonLogs failed: " << *state->error);
  BOOST_TEST(logs->entries.size() <= 10u);
  BOOST_TEST(!logs->entries.empty());
  auto ready = std::find_if(logs->entries.begin(), logs->entries.end(), [](auto& e) {
    return e.message.rfind("cytod ", 0) == 0 && contains(e.message, " ready");
  });
  BOOST_TEST((ready != logs->entries.end()), "no 'cytod ... ready' entry in:\n" << logs->dump());
  if (ready != logs->entries.end()) {
    BOOST_TEST(ready->logger == "cytod");
    BOOST_TEST(contains(ready->message, "node=" + d.node_name()));
  }
  expect_seq_increasing(*logs);

  // tail = 0 without follow: nothing, and still returns.
  auto none = std::make_shared<collected_logs>();
  auto state0 = std::make_shared<call_state>();
  auto call0 = start_daemon_logs(obs, schema::LogLevel::INFO, false, 0, none, state0);
  BOOST_TEST(pump_until(io, [&] { return state0->finished || state0->error; }, 5s),
             "daemonLogs(follow=false, tail=0) did not return");
  BOOST_TEST(!state0->error);
  BOOST_TEST(none->entries.empty(), "tail 0 gave:\n" << none->dump());

  // level filter: at error and above nothing of a healthy start-up shows.
  auto errors = std::make_shared<collected_logs>();
  auto state_e = std::make_shared<call_state>();
  auto call_e = start_daemon_logs(obs, schema::LogLevel::ERROR, false, 10, errors, state_e);
  BOOST_TEST(pump_until(io, [&] { return state_e->finished || state_e->error; }, 5s),
             "daemonLogs(follow=false, level=error) with no such entries did not return");
  BOOST_TEST(!state_e->error);
  BOOST_TEST(errors->entries.empty(), "level error gave:\n" << errors->dump());
}

BOOST_AUTO_TEST_CASE(second_daemon_on_same_socket_refuses) {
  daemon_fixture d;
  temp_dir other;
  auto r = run_process({cytod_path, "--socket", d.socket_path(), "--state-dir", other / "state",
                        "--node-name", "intruder"},
                       15s);
  BOOST_TEST(r.code() == 1, "second cytod: " << describe_status(r.status) << "; stderr: " << r.err);
  BOOST_TEST(contains(r.err, "another daemon"), "stderr: " << r.err);
  BOOST_TEST(fs::exists(d.socket_path()));
  BOOST_TEST(d.running());
  auto [name, pid] = discover_once(d);
  BOOST_TEST(name == d.node_name());
  BOOST_TEST(pid == static_cast<uint32_t>(d.pid()));
}

BOOST_AUTO_TEST_CASE(second_daemon_on_same_state_dir_refuses) {
  daemon_fixture d;
  temp_dir other;
  auto r = run_process({cytod_path, "--socket", other / "cyto.sock", "--state-dir", d.state_dir(),
                        "--node-name", "intruder"},
                       15s);
  BOOST_TEST(r.code() == 1, "second cytod: " << describe_status(r.status) << "; stderr: " << r.err);
  BOOST_TEST(contains(r.err, "state dir"), "stderr: " << r.err);
  BOOST_TEST(!fs::exists(other / "cyto.sock"));
  auto [name, pid] = discover_once(d);
  BOOST_TEST(name == d.node_name());
}

BOOST_AUTO_TEST_CASE(sigterm_removes_socket) {
  daemon_fixture d;
  BOOST_REQUIRE(fs::exists(d.socket_path()));
  struct stat st{};
  BOOST_REQUIRE(::stat(d.socket_path().c_str(), &st) == 0);
  BOOST_TEST(S_ISSOCK(st.st_mode));
  BOOST_TEST((st.st_mode & 0777) == 0660u, "socket mode " << std::oct << (st.st_mode & 0777));
  int status = d.stop(SIGTERM);
  BOOST_TEST(exit_code(status) == 0, describe_status(status) << "; log:\n" << d.log());
  BOOST_TEST(!fs::exists(d.socket_path()));
  BOOST_TEST(contains(d.log(), "shutting down"), "log:\n" << d.log());
}

BOOST_AUTO_TEST_CASE(sigint_shuts_down_like_sigterm) {
  daemon_fixture d;
  int status = d.stop(SIGINT);
  BOOST_TEST(exit_code(status) == 0, describe_status(status) << "; log:\n" << d.log());
  BOOST_TEST(!fs::exists(d.socket_path()));
}

BOOST_AUTO_TEST_CASE(sigterm_with_a_log_follower_attached_exits_0) {
  daemon_fixture d;
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto obs = wait_for(io, c->node().observeRequest().send()).getService();
  auto logs = std::make_shared<collected_logs>();
  auto state = std::make_shared<call_state>();
  auto call = start_daemon_logs(obs, schema::LogLevel::INFO, true, 1, logs, state);
  BOOST_REQUIRE(pump_until(io, [&] { return !logs->entries.empty() || state->error; }, 10s));
  int status = d.stop(SIGTERM, 10s);
  BOOST_TEST(exit_code(status) == 0, describe_status(status) << "; log:\n" << d.log());
  BOOST_TEST(!fs::exists(d.socket_path()));
  // The follower learns that the daemon went away.
  BOOST_TEST(pump_until(io, [&] { return state->finished || state->error; }, 10s));
}

BOOST_AUTO_TEST_CASE(stale_socket_is_replaced) {
  daemon_fixture d{false};
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd >= 0);
    auto addr = unix_address(d.socket_path());
    BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ::close(fd); // not unlinked: a stale socket file stays behind
  }
  BOOST_REQUIRE(fs::exists(d.socket_path()));
  BOOST_REQUIRE(try_connect_unix(d.socket_path()) < 0);
  BOOST_TEST(errno == ECONNREFUSED);

  d.start();
  auto [name, pid] = discover_once(d);
  BOOST_TEST(name == d.node_name());
  BOOST_TEST(pid == static_cast<uint32_t>(d.pid()));
  BOOST_TEST(contains(d.log(), "removing stale socket"), "log:\n" << d.log());
}

BOOST_AUTO_TEST_CASE(non_permitted_uid_is_refused) {
  daemon_fixture d;
  d.open_to_everyone();
  // The child speaks RPC as nobody and reports through its exit code and a pipe:
  //   0 both calls failed with cyto.permission_denied naming the uid
  //   1 a call succeeded   2 another failure   3 could not drop privileges
  int msg[2];
  BOOST_REQUIRE(::pipe2(msg, O_CLOEXEC) == 0);
  auto path = d.socket_path();
  pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(msg[0]);
    auto say = [&](const std::string& s) { (void)!::write(msg[1], s.data(), s.size()); };
    int code = 0;
    try {
      if (!drop_to_nobody())
        ::_exit(3);
      auto io = kj::setupAsyncIo();
      rpc_connection c{io, path};
      auto expect_denied = [&](auto&& promise, const char* what) {
        try {
          wait_for(io, kj::mv(promise));
          say(std::string{what} + " succeeded; ");
          code = std::max(code, 1);
        } catch (const kj::Exception& e) {
          std::string text = e.getDescription().cStr();
          if (!contains(text, "cyto.permission_denied") || !contains(text, "uid 65534")) {
            say(std::string{what} + " failed otherwise: " + text + "; ");
            code = std::max(code, 2);
          }
        }
      };
      auto disc = c.node().discoveryRequest().send().getService();
      expect_denied(disc.discoverRequest().send(), "discovery().discover()");
      expect_denied(c.node().servicesRequest().send(), "services()");
    } catch (const kj::Exception& e) {
      say(std::string{"kj exception: "} + e.getDescription().cStr());
      code = 2;
    } catch (const std::exception& e) {
      say(std::string{"exception: "} + e.what());
      code = 2;
    }
    ::_exit(code);
  }
  ::close(msg[1]);
  int status = wait_pid_or_kill(pid, 20s, "nobody client");
  std::string said;
  char buf[512];
  ssize_t n;
  while ((n = ::read(msg[0], buf, sizeof(buf))) > 0)
    said.append(buf, static_cast<size_t>(n));
  ::close(msg[0]);
  BOOST_TEST(exit_code(status) == 0, describe_status(status) << ": " << said);
  auto log = d.log();
  BOOST_TEST(contains(log, "refused peer pid=" + std::to_string(pid) + " uid=65534 gid=65534"),
             "log:\n" << log);

  // Root still gets through after the refusal.
  BOOST_TEST(discover_once(d).first == d.node_name());
  BOOST_TEST(d.running());
}

BOOST_AUTO_TEST_CASE(garbage_bytes_do_not_crash_the_daemon) {
  daemon_fixture d;
  std::mt19937 rng{12345};
  auto send_all = [](int fd, const std::vector<uint8_t>& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      auto n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        break; // the daemon may hang up on us; that is fine
      off += static_cast<size_t>(n);
    }
  };
  for (int round = 0; round < 6; ++round) {
    std::vector<uint8_t> bytes(4096 + round * 1000);
    for (auto& b : bytes)
      b = static_cast<uint8_t>(rng());
    if (round == 1) // a frame header that claims an absurd number and size of segments
      for (size_t i = 0; i < 16; ++i)
        bytes[i] = 0xff;
    if (round == 2) // a valid-looking header of one huge segment, then nothing more
      bytes = {0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f};
    int fd = connect_unix(d.socket_path());
    send_all(fd, bytes);
    ::close(fd);
  }
  // A connection that sent half a frame header and stays open must not block others.
  int half = connect_unix(d.socket_path());
  send_all(half, {0, 0, 0});

  std::this_thread::sleep_for(100ms);
  BOOST_TEST(d.running(), "cytod died: " << describe_status(d.exit_status().value_or(-1))
                                         << "; log:\n" << d.log());
  BOOST_REQUIRE(d.running());
  auto [name, pid] = discover_once(d);
  BOOST_TEST(name == d.node_name());
  BOOST_TEST(pid == static_cast<uint32_t>(d.pid()));
  ::close(half);
  BOOST_TEST(log_lines_at(d.log(), {"critical"}).empty(), "log:\n" << d.log());
  BOOST_TEST(d.running());
}

BOOST_AUTO_TEST_CASE(bad_config_exits_2_naming_the_key) {
  struct bad_case {
    std::string toml;
    std::string key;
  };
  const bad_case cases[] = {
    {"socket = { path = 5 }\n", "socket.path"},
    {"[socket]\npath = 5\n", "socket.path"},
    {"bogus = 1\n", "bogus"},
    {"[log]\nhistory = -1\n", "log.history"},
    {"log_level = \"loud\"\n", "log_level"},
    {"node_name = \"has space\"\n", "node_name"},
    {"this is not toml\n", "line 1"},
  };
  for (auto& c : cases) {
    BOOST_TEST_CONTEXT("config: " << c.toml) {
      temp_dir dir;
      write_text(dir / "cytod.toml", c.toml);
      auto r = run_process({cytod_path, "--config", dir / "cytod.toml", "--socket",
                            dir / "cyto.sock", "--state-dir", dir / "state"},
                           15s);
      BOOST_TEST(r.code() == 2, describe_status(r.status) << "; stderr: " << r.err);
      BOOST_TEST(contains(r.err, c.key), "stderr: " << r.err);
      BOOST_TEST(lines_of(r.err).size() == 1u, "stderr: " << r.err);
      BOOST_TEST(!fs::exists(dir / "cyto.sock"));
      BOOST_TEST(!fs::exists(dir / "state"));
    }
  }
  // A bad flag value is the same kind of error.
  temp_dir dir;
  auto r = run_process({cytod_path, "--socket", dir / "cyto.sock", "--state-dir", dir / "state",
                        "--log-level", "loud"},
                       15s);
  BOOST_TEST(r.code() == 2, describe_status(r.status) << "; stderr: " << r.err);
  BOOST_TEST(contains(r.err, "log_level"), "stderr: " << r.err);
  BOOST_TEST(!fs::exists(dir / "cyto.sock"));
}

BOOST_AUTO_TEST_CASE(many_log_subscribers_come_and_go) {
  daemon_fixture d;
  d.open_to_everyone();
  auto io = kj::setupAsyncIo();
  std::unique_ptr<rpc_connection> c;
  kj::Maybe<schema::Observe::Client> obs;
  int streamed = 0;
  for (int i = 0; i < 200; ++i) {
    BOOST_TEST_CONTEXT("cycle " << i) {
      if (i % 20 == 0) { // now and then the whole connection goes away instead
        obs = nullptr;
        c.reset();
        c = d.connect(io);
        obs = c->node().observeRequest().send().getService();
      }
      auto& o = KJ_ASSERT_NONNULL(obs);
      auto logs = std::make_shared<collected_logs>();
      auto state = std::make_shared<call_state>();
      auto call = start_daemon_logs(o, schema::LogLevel::INFO, true, 2, logs, state);
      if (i % 20 == 19) {
        // drop the connection while the call is still in flight
        obs = nullptr;
        c.reset();
        continue;
      }
      bool got = pump_until(io, [&] { return !logs->entries.empty() || state->error; }, 10s);
      BOOST_REQUIRE_MESSAGE(got, "no entry arrived");
      BOOST_REQUIRE_MESSAGE(!state->error, "daemonLogs failed: " << *state->error);
      ++streamed;
      // leaving the scope drops `call`: the client cancels it
    }
  }
  obs = nullptr;
  c.reset();
  BOOST_TEST(streamed == 190);

  // The daemon still answers, and a new follower still gets new lines.
  BOOST_REQUIRE(d.running());
  c = d.connect(io);
  auto disc = c->node().discoveryRequest().send().getService();
  BOOST_TEST(wait_for(io, disc.healthRequest().send()).getHealth().getHealthy());
  auto o = c->node().observeRequest().send().getService();
  auto logs = std::make_shared<collected_logs>();
  auto state = std::make_shared<call_state>();
  auto call = start_daemon_logs(o, schema::LogLevel::INFO, true, 1, logs, state);
  BOOST_REQUIRE(pump_until(io, [&] { return !logs->entries.empty() || state->error; }, 10s));
  auto child = d.connect_as_nobody();
  auto needle = "pid=" + std::to_string(child) + " ";
  BOOST_TEST(pump_until(io, [&] { return logs->any_message_contains(needle) || state->error; }, 10s),
             "got:\n" << logs->dump());
  BOOST_TEST(logs->dropped == 0u);

  auto log = d.log();
  auto bad = log_lines_at(log, {"error", "critical"});
  BOOST_TEST(bad.empty(), "error lines in the daemon log:\n" << log);
  BOOST_TEST(!contains(log, "unexpected message"), "log:\n" << log);
  BOOST_TEST(d.running());
}

// The accept loop used to end for good on its first exception (EMFILE): cytod stayed up
// but nobody could connect again. Now it logs, backs off and keeps accepting.
BOOST_AUTO_TEST_CASE(accept_survives_running_out_of_descriptors) {
  daemon_fixture d;
  BOOST_REQUIRE(d.running());
  // Shrink cytod's descriptor limit to just above what it holds now, then connect until
  // accept fails with EMFILE on its side.
  size_t open_now = 0;
  for (auto& e : fs::directory_iterator{"/proc/" + std::to_string(d.pid()) + "/fd"}) {
    (void)e;
    ++open_now;
  }
  auto limit = std::to_string(open_now + 8);
  auto pl = run_process({"/usr/bin/prlimit", "--pid", std::to_string(d.pid()),
                         "--nofile=" + limit + ":"}); // soft only: no CAP_SYS_RESOURCE here
  BOOST_REQUIRE_MESSAGE(pl.status == 0, "prlimit: " << pl.err);
  std::vector<int> fds;
  for (int i = 0; i < 40; ++i)
    fds.push_back(connect_unix(d.socket_path())); // the kernel queues them (backlog 128)
  auto deadline = steady::now() + 5s;
  while (!contains(d.log(), "accept failed") && steady::now() < deadline)
    std::this_thread::sleep_for(20ms);
  BOOST_TEST(contains(d.log(), "accept failed"), "no accept failure logged:\n" << d.log());
  for (int fd : fds)
    ::close(fd);
  // Back to a normal limit: the very next client must be served.
  pl = run_process({"/usr/bin/prlimit", "--pid", std::to_string(d.pid()), "--nofile=4096:"});
  BOOST_REQUIRE_MESSAGE(pl.status == 0, "prlimit: " << pl.err);
  BOOST_REQUIRE(d.running());
  auto [name, pid] = discover_once(d);
  BOOST_TEST(name == d.node_name());
  BOOST_TEST(pid == static_cast<uint32_t>(d.pid()));
}

/// The description of the error a call fails with, or "<success>".
template <class T>
std::string failure_of(kj::AsyncIoContext& io, capnp::RemotePromise<T>&& p) {
  try {
    wait_for(io, kj::mv(p));
    return "<success>";
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
}

// Bad inputs the gateway and actors used to answer without the cyto.<code> vocabulary.
BOOST_AUTO_TEST_CASE(null_sinks_and_empty_refs_get_cyto_errors) {
  daemon_fixture d;
  auto io = kj::setupAsyncIo();
  auto c = d.connect(io);
  auto observe = wait_for(io, c->node().observeRequest().send()).getService();
  auto logs = observe.daemonLogsRequest(); // no sink set
  auto err = failure_of(io, logs.send());
  BOOST_TEST(contains(err, "cyto.invalid_argument:"), err);
  BOOST_TEST(contains(err, "sink"), err);
  auto images = wait_for(io, c->node().imagesRequest().send()).getService();
  auto inspect = images.inspectRequest();
  inspect.setRef("");
  err = failure_of(io, inspect.send());
  BOOST_TEST(contains(err, "cyto.invalid_argument:"), err);
  BOOST_TEST(d.running());
}
