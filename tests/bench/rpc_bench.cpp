// rpc_bench: how fast is a call through cytod's gateway, against the floors beneath it.
//
// Prints ONE JSON document on stdout (progress goes to stderr) with, all on unix sockets
// in a private temp dir:
//   raw_unix                   64-byte echo round trips with a forked child: the physical floor
//   bare_capnp                 a bare Cap'n Proto Echo server in a forked child with its own kj
//                              loop, same transport, no actor bus: the ceiling for our stack
//   bare_discover              the same kind of bare server answering Node.discovery() and
//                              Discovery.discover() with a NodeInfo like cytod's: the
//                              gateway's payload without the bus
//   gateway_discover           the real cytod (--scheduler sharing): Discovery.discover()
//   gateway_discover_stealing  the same with --scheduler stealing (paired with a second
//                              bare_capnp run, bare_capnp_with_stealing)
// Each has sequential round trips (p50/p99/mean), pipelined calls/s from one connection
// (64 calls in flight) and from 8 connections in one kj loop (64 each). The servers run
// side by side and every phase is measured in interleaved rounds, so that load from other
// processes on this small shared machine falls on bare and gateway alike.
//
// Then gateway/bare ratios against the targets (calls/s >= 0.7x bare, p50 <= 1.5x bare):
// "ratios" and "ratios_stealing" against bare_capnp as the targets are defined,
// "ratios_vs_bare_discover" against the same payload; and cytod's RSS when idle and after
// the run. It never fails because of a time: the targets are only "meets_target" fields.
// It exits 1 if a part could not run (cytod did not start, a call failed, a server hung or
// died; the JSON then says which, with "error"), 2 on a bad command line, 3 if the overall
// watchdog fired. Every child (echo servers, cytod) is stopped by its PID and the temp dir
// removed, also on errors and on SIGINT/SIGTERM.
//
// Usage: rpc_bench [--quick] [--cytod PATH] [--cytod-threads N]
//   --quick   fewer iterations (CI smoke, < 10 s); default is the full run (< 60 s)

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <dirent.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/common.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/io.h>
#include <kj/timer.h>

#include "schema/discovery.capnp.h"
#include "schema/node.capnp.h"
#include "tests/bench/bench_common.hpp"
#include "tests/bench/echo.capnp.h"

#ifndef CYTOD_PATH
#define CYTOD_PATH "cytod"
#endif

const char* const cyto::bench::bench_name = "rpc_bench";

namespace {

using namespace cyto::bench;

/// The time point `seconds` from now.
steady::time_point after(double seconds) {
  return steady::now()
         + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
}

// -- children and the temp dir: always cleaned up --------------------------------------
//
// Every child's PID is kept in a fixed table so a signal handler can stop it with only
// async-signal-safe calls (kill, waitpid, fork, execve, _exit).

constexpr int max_children = 16;
volatile pid_t g_children[max_children] = {};

void register_child(pid_t pid) {
  for (auto& slot : g_children)
    if (slot == 0) {
      slot = pid;
      return;
    }
}

void unregister_child(pid_t pid) {
  for (auto& slot : g_children)
    if (slot == pid)
      slot = 0;
}

void kill_children_now() {
  for (auto& slot : g_children) {
    pid_t pid = slot;
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      slot = 0;
    }
  }
}

void remove_tmpdir_now() {
  if (!g_tmpdir[0])
    return;
  pid_t pid = ::fork();
  if (pid == 0) {
    char rm[] = "rm", rf[] = "-rf", dd[] = "--";
    char* argv[] = {rm, rf, dd, g_tmpdir, nullptr};
    char* envp[] = {nullptr};
    ::execve("/bin/rm", argv, envp);
    ::execve("/usr/bin/rm", argv, envp);
    ::_exit(127);
  }
  if (pid > 0)
    ::waitpid(pid, nullptr, 0);
  g_tmpdir[0] = 0;
}

/// cytod makes an (empty) cgroup root per run in every hierarchy. Their paths are laid
/// out here before any daemon starts, so a signal handler can rmdir them safely.
constexpr int max_cgroup_dirs = 64;
char g_cgroup_dirs[max_cgroup_dirs][160] = {};

std::string cgroup_root_name(const std::string& policy) {
  return "cyto-test-rpc-bench-" + std::to_string(::getpid()) + "-" + policy;
}

void prepare_cgroup_cleanup() {
  int n = 0;
  std::error_code ec;
  for (auto& h : std::filesystem::directory_iterator{"/sys/fs/cgroup", ec})
    for (const char* policy : {"sharing", "stealing"})
      if (n < max_cgroup_dirs)
        std::snprintf(g_cgroup_dirs[n++], sizeof(g_cgroup_dirs[0]), "%s",
                      (h.path() / cgroup_root_name(policy)).c_str());
}

void remove_cgroup_dirs_now() {
  for (auto& d : g_cgroup_dirs)
    if (d[0])
      ::rmdir(d);
}

extern "C" void on_fatal_signal(int sig) {
  write_stderr(sig == SIGALRM ? "[rpc_bench] overall time limit exceeded: stopping\n"
                              : "[rpc_bench] interrupted: stopping children\n");
  kill_children_now();
  remove_cgroup_dirs_now();
  remove_tmpdir_now();
  ::_exit(sig == SIGALRM ? 3 : 128 + sig);
}

void on_terminate() {
  write_stderr("[rpc_bench] terminate called: stopping children\n");
  kill_children_now();
  remove_cgroup_dirs_now();
  remove_tmpdir_now();
  std::abort();
}

/// Forks a child that runs `body` and _exits with its result. The child dies with us
/// (PR_SET_PDEATHSIG) and starts with default signal handling.
pid_t fork_child(const std::function<int()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  sigset_t all, old;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &old);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid == 0) {
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGPIPE})
      std::signal(sig, SIG_DFL);
    ::alarm(0);
    for (auto& slot : g_children)
      slot = 0;
    g_tmpdir[0] = 0;
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(1);
    int rc = 1;
    try {
      rc = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "[rpc_bench] child: %s\n", e.what());
    } catch (...) {
    }
    ::_exit(rc);
  }
  int err = errno;
  if (pid > 0)
    register_child(pid);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    errno = err;
    throw std::runtime_error(errno_text("fork"));
  }
  return pid;
}

/// Owns one child process: stops it (by PID) when asked or when destroyed.
class child_guard {
public:
  explicit child_guard(pid_t pid) : pid_(pid) {
  }
  child_guard(const child_guard&) = delete;
  child_guard& operator=(const child_guard&) = delete;
  ~child_guard() {
    if (pid_ > 0)
      stop(SIGKILL, 2.0);
  }

  pid_t pid() const noexcept {
    return pid_;
  }

  /// The child's exit status if it has exited already.
  std::optional<int> exited() {
    if (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_)
        reaped(status);
    }
    if (pid_ > 0)
      return std::nullopt;
    return status_;
  }

  /// Sends `sig`, waits up to `grace` seconds, then SIGKILLs. Returns the wait status and
  /// whether it ended within the grace period.
  std::pair<int, bool> stop(int sig, double grace) {
    if (pid_ <= 0)
      return {status_, true};
    ::kill(pid_, sig);
    auto until = after(grace);
    int status = 0;
    bool in_time = false;
    while (true) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        in_time = true;
        break;
      }
      if (steady::now() >= until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    reaped(status);
    return {status, in_time};
  }

private:
  void reaped(int status) {
    unregister_child(pid_);
    pid_ = -1;
    status_ = status;
  }

  pid_t pid_;
  int status_ = 0;
};

// -- unix sockets ----------------------------------------------------------------------

int listen_unix(const std::string& path) {
  auto addr = unix_address(path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error(errno_text("socket"));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::listen(fd, 128) != 0) {
    auto err = errno_text("listen on " + path);
    ::close(fd);
    throw std::runtime_error(err);
  }
  return fd;
}

int connect_unix(const std::string& path) {
  int fd = try_connect_unix(path);
  if (fd < 0)
    throw std::runtime_error(errno_text("connect to " + path));
  return fd;
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      throw std::runtime_error(errno_text("write"));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_exact(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r == 0)
      throw std::runtime_error("read: peer closed the connection");
    if (r < 0)
      throw std::runtime_error(errno_text(errno == EAGAIN ? "read timed out" : "read"));
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// -- /proc -----------------------------------------------------------------------------

/// CPU time and context switches of a whole process (all its threads).
struct proc_sample {
  double cpu_s = 0;
  double main_thread_cpu_s = 0; // the thread whose id is the pid (cytod: the kj gateway loop)
  int64_t ctxt_switches = 0;
};

/// utime + stime of a /proc/.../stat file, in seconds.
double stat_cpu_s(const std::string& path) {
  auto stat = read_text(path);
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 > stat.size())
    return 0;
  std::istringstream ss{stat.substr(close + 2)};
  std::vector<std::string> fields;
  std::string f;
  while (ss >> f)
    fields.push_back(f);
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  if (fields.size() <= 12)
    return 0;
  return static_cast<double>(std::stoll(fields[11]) + std::stoll(fields[12]))
         / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// Time on CPU of one thread in ns from /proc/.../schedstat (exact, unlike stat's ticks).
std::optional<double> schedstat_cpu_s(const std::string& path) {
  std::ifstream in{path};
  long long ns = -1;
  if (!(in >> ns) || ns < 0)
    return std::nullopt;
  return static_cast<double>(ns) / 1e9;
}

/// CPU time of all threads (from schedstat: the process's threads live for the whole
/// run; falls back to stat's clock ticks), of the main thread, and context switches.
proc_sample sample_process(pid_t pid) {
  proc_sample s;
  auto task_dir = "/proc/" + std::to_string(pid) + "/task";
  double sched_sum = 0;
  bool sched_ok = true;
  if (DIR* d = ::opendir(task_dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.')
        continue;
      auto dir = task_dir + "/" + e->d_name;
      if (auto cpu = schedstat_cpu_s(dir + "/schedstat"))
        sched_sum += *cpu;
      else
        sched_ok = false;
      std::ifstream in{dir + "/status"};
      std::string line;
      while (std::getline(in, line))
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0
            || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
          s.ctxt_switches += std::strtoll(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
    ::closedir(d);
  } else {
    sched_ok = false;
  }
  auto main_dir = task_dir + "/" + std::to_string(pid);
  auto main_sched = schedstat_cpu_s(main_dir + "/schedstat");
  if (sched_ok && main_sched) {
    s.cpu_s = sched_sum;
    s.main_thread_cpu_s = *main_sched;
  } else {
    s.cpu_s = stat_cpu_s("/proc/" + std::to_string(pid) + "/stat");
    s.main_thread_cpu_s = stat_cpu_s(main_dir + "/stat");
  }
  return s;
}

double self_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

/// CPU used by a server process and by this client over some stretch of time.
struct cpu_usage {
  double wall_s = 0, server_s = 0, server_main_s = 0, client_s = 0;
  int64_t server_ctxt = 0;

  cpu_usage& operator+=(const cpu_usage& o) {
    wall_s += o.wall_s;
    server_s += o.server_s;
    server_main_s += o.server_main_s;
    client_s += o.client_s;
    server_ctxt += o.server_ctxt;
    return *this;
  }

  /// Adds server/client CPU fields for `calls` calls to `out`.
  void report(json& out, uint64_t calls) const {
    double n = calls > 0 ? static_cast<double>(calls) : NAN;
    double w = wall_s > 0 ? wall_s : NAN;
    out["server_cpu_us_per_call"] = server_s * 1e6 / n;
    out["server_cpu_cores"] = server_s / w;
    out["server_main_thread_cpu_cores"] = server_main_s / w;
    out["server_ctxt_switches_per_call"] = static_cast<double>(server_ctxt) / n;
    out["client_cpu_us_per_call"] = client_s * 1e6 / n;
    out["client_cpu_cores"] = client_s / w;
  }
};

/// Brackets a stretch of time: CPU use of the server process and of this client.
class cpu_meter {
public:
  explicit cpu_meter(pid_t server)
    : server_(server), start_(steady::now()), server0_(sample_process(server)),
      client0_(self_cpu_s()) {
  }

  cpu_usage stop() const {
    auto s1 = sample_process(server_);
    cpu_usage u;
    u.wall_s = seconds_between(start_, steady::now());
    u.server_s = s1.cpu_s - server0_.cpu_s;
    u.server_main_s = s1.main_thread_cpu_s - server0_.main_thread_cpu_s;
    u.server_ctxt = s1.ctxt_switches - server0_.ctxt_switches;
    u.client_s = self_cpu_s() - client0_;
    return u;
  }

private:
  pid_t server_;
  steady::time_point start_;
  proc_sample server0_;
  double client0_;
};

// -- settings --------------------------------------------------------------------------

struct settings {
  bool quick = false;
  std::string cytod = CYTOD_PATH;
  std::optional<unsigned> cytod_threads;

  size_t raw_warmup = 2000, raw_calls = 20000;
  unsigned rounds = 5;          // each phase runs in this many interleaved rounds per target
  size_t seq_warmup = 500;      // sequential calls per target, not measured
  size_t seq_calls = 5000;      // sequential calls per target, spread over the rounds
  double seq_cap_s = 10;        // a target's sequential phase stops early after this long
  unsigned window = 64;         // calls in flight per connection
  static constexpr unsigned connections = 8; // for the pipelined_8conn phase
  double pipe_warmup_s = 0.2;   // per target and pipelined phase, not measured
  double pipe_s = 0.4;          // one pipelined round ...
  uint64_t pipe_max_calls = 1'000'000; // ... or this many calls in it
  double idle_s = 1.0;          // cytod idles this long before its RSS is read
  double hang_s = 15;           // a round still running this long after its end has hung
  unsigned watchdog_s = 170;    // the whole run

  void make_quick() {
    quick = true;
    raw_warmup = 200;
    raw_calls = 2000;
    rounds = 2;
    seq_warmup = 60;
    seq_calls = 600;
    seq_cap_s = 2;
    pipe_warmup_s = 0.03;
    pipe_s = 0.1;
    pipe_max_calls = 100'000;
    hang_s = 10;
    watchdog_s = 60;
  }

  json describe() const {
    json j = json::obj();
    j["raw_warmup"] = raw_warmup;
    j["raw_round_trips"] = raw_calls;
    j["rounds"] = rounds;
    j["sequential_warmup"] = seq_warmup;
    j["sequential_calls"] = seq_calls;
    j["pipeline_window_per_connection"] = window;
    j["pipeline_connections_multi"] = connections;
    j["pipeline_warmup_s"] = pipe_warmup_s;
    j["pipeline_round_s"] = pipe_s;
    j["pipeline_max_calls_per_round"] = pipe_max_calls;
    j["cytod_idle_s"] = idle_s;
    j["cytod_threads"] = cytod_threads ? json{*cytod_threads} : json{"default"};
    return j;
  }
};

// -- 1. raw unix-socket echo -----------------------------------------------------------

constexpr size_t raw_message_bytes = 64;

void run_raw_unix(json& j, const settings& cfg, const std::string& dir) {
  auto path = dir + "/raw.sock";
  int lfd = listen_unix(path);
  kj::AutoCloseFd listen_closer{lfd};
  child_guard child{fork_child([lfd] {
    int c = ::accept(lfd, nullptr, nullptr);
    ::close(lfd);
    if (c < 0)
      return 1;
    char buf[4096];
    while (true) {
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return 0;
      write_all(c, buf, static_cast<size_t>(n));
    }
  })};
  listen_closer = nullptr;

  int fd = connect_unix(path);
  kj::AutoCloseFd closer{fd};
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

  char msg[raw_message_bytes], back[raw_message_bytes];
  std::memset(msg, 'x', sizeof(msg));
  std::vector<double> samples;
  samples.reserve(cfg.raw_calls);
  cpu_meter meter{child.pid()};
  auto cap = after(cfg.seq_cap_s);
  size_t total = cfg.raw_warmup + cfg.raw_calls, done = 0;
  for (; done < total && steady::now() < cap; ++done) {
    std::memcpy(msg, &done, sizeof(done));
    auto t0 = steady::now();
    write_all(fd, msg, sizeof(msg));
    read_exact(fd, back, sizeof(back));
    auto t1 = steady::now();
    if (std::memcmp(msg, back, sizeof(msg)) != 0)
      throw std::runtime_error("raw echo returned different bytes");
    if (done >= cfg.raw_warmup)
      samples.push_back(micros_between(t0, t1));
  }
  j["message_bytes"] = raw_message_bytes;
  j["rtt_us"] = latency_stats(std::move(samples));
  meter.stop().report(j, done);
  closer = nullptr;
  child.stop(SIGTERM, 2.0);
}

// -- the capnp client side, shared by the bare servers and the gateway -----------------

/// One connection able to make the measured call.
class endpoint {
public:
  endpoint(kj::AsyncIoContext& io, const std::string& path)
    : stream_(io.lowLevelProvider->wrapSocketFd(connect_unix(path),
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      client_(kj::heap<capnp::TwoPartyClient>(*stream_)) {
  }
  virtual ~endpoint() = default;
  virtual kj::Promise<void> call(uint64_t seq) = 0;

protected:
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
};

class echo_endpoint final : public endpoint {
public:
  echo_endpoint(kj::AsyncIoContext& io, const std::string& path)
    : endpoint(io, path), echo_(client_->bootstrap().castAs<cyto::bench::Echo>()) {
  }

  kj::Promise<void> call(uint64_t seq) override {
    auto req = echo_.echoRequest();
    req.setValue(seq);
    return req.send().then([seq](capnp::Response<cyto::bench::Echo::EchoResults>&& r) {
      if (r.getValue() != seq)
        throw std::runtime_error("echo returned a different value");
    });
  }

private:
  cyto::bench::Echo::Client echo_;
};

class discover_endpoint final : public endpoint {
public:
  discover_endpoint(kj::AsyncIoContext& io, const std::string& path)
    : endpoint(io, path),
      node_(client_->bootstrap().castAs<cyto::schema::Node>()),
      discovery_(node_.discoveryRequest().send().getService()) {
  }

  kj::Promise<void> call(uint64_t) override {
    return discovery_.discoverRequest().send().then(
      [](capnp::Response<cyto::schema::Discovery::DiscoverResults>&& r) {
        if (r.getInfo().getPid() == 0)
          throw std::runtime_error("discover returned no pid");
      });
  }

  cyto::schema::Discovery::Client& discovery() {
    return discovery_;
  }

private:
  cyto::schema::Node::Client node_;
  cyto::schema::Discovery::Client discovery_;
};

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", s);
  return buf;
}

/// Runs a round's promise to its end; a round still running `limit_s` later has hung.
void wait_round(kj::AsyncIoContext& io, double limit_s, kj::Promise<void> round) {
  try {
    io.provider->getTimer().timeoutAfter(kj_duration(limit_s), kj::mv(round)).wait(io.waitScope);
  } catch (const kj::Exception& e) {
    std::string why = e.getDescription().cStr();
    if (e.getType() == kj::Exception::Type::OVERLOADED && why.find("timed out") != std::string::npos)
      throw std::runtime_error("a round did not finish within " + fmt_seconds(limit_s)
                               + ": the server hangs");
    throw std::runtime_error(why);
  }
}

// Sequential: one call at a time on one connection, each timed on its own.
struct sequential_run {
  endpoint& ep;
  size_t calls;
  std::vector<double>* samples; // null: warm-up, not recorded
  steady::time_point cap;
  size_t issued = 0;

  kj::Promise<void> step() {
    if (issued >= calls || steady::now() >= cap)
      return kj::READY_NOW;
    auto seq = issued++;
    auto t0 = steady::now();
    return ep.call(seq).then([this, t0]() {
      auto t1 = steady::now();
      if (samples)
        samples->push_back(micros_between(t0, t1));
      return step();
    });
  }
};

// Pipelined: `window` calls kept in flight on each connection until a deadline.
struct pipelined_run {
  std::vector<endpoint*> eps;
  unsigned window;
  steady::time_point deadline;
  uint64_t max_calls;
  uint64_t issued = 0, completed = 0;
  steady::time_point last_done{};

  kj::Promise<void> slot(endpoint& ep) {
    if (issued >= max_calls || steady::now() >= deadline)
      return kj::READY_NOW;
    auto seq = issued++;
    return ep.call(seq).then([this, &ep]() {
      ++completed;
      last_done = steady::now();
      return slot(ep);
    });
  }

  kj::Promise<void> start() {
    auto builder = kj::heapArrayBuilder<kj::Promise<void>>(eps.size() * window);
    for (auto* ep : eps)
      for (unsigned k = 0; k < window; ++k)
        builder.add(slot(*ep));
    return kj::joinPromises(builder.finish());
  }
};

using endpoint_factory = std::function<std::unique_ptr<endpoint>(kj::AsyncIoContext&)>;

struct pipe_stats {
  std::vector<double> rates; // calls/s per round, in round order
  uint64_t calls = 0;
  double secs = 0;
  cpu_usage cpu;
};

/// A server being measured and what was measured of it so far.
struct target {
  target(std::string n, pid_t pid, endpoint_factory f, json& o)
    : name(std::move(n)), server(pid), make(std::move(f)), out(o) {
  }

  std::string name;
  pid_t server;
  endpoint_factory make;
  json& out; // the results go here
  /// Pause after each round against this target before the next one starts, so that its
  /// server is quiet again (see daemon_process::settle_s).
  double settle_s = 0;
  std::string error;
  std::vector<std::unique_ptr<endpoint>> conns;
  std::vector<double> seq_samples;
  uint64_t seq_calls = 0;
  cpu_usage seq_cpu;
  pipe_stats p1, p8;
};

void sequential_round(kj::AsyncIoContext& io, const settings& cfg, target& t, size_t calls,
                      bool record) {
  double cap_s = cfg.seq_cap_s / cfg.rounds;
  sequential_run run{*t.conns.at(0), calls, record ? &t.seq_samples : nullptr, after(cap_s)};
  cpu_meter meter{t.server};
  wait_round(io, cap_s + cfg.hang_s, run.step());
  if (record) {
    t.seq_cpu += meter.stop();
    t.seq_calls += run.issued;
  }
}

void pipelined_round(kj::AsyncIoContext& io, const settings& cfg, target& t, bool multi,
                     pipe_stats* into) {
  std::vector<endpoint*> eps;
  for (size_t k = 0; k < (multi ? t.conns.size() : 1); ++k)
    eps.push_back(t.conns.at(k).get());
  double secs = into ? cfg.pipe_s : cfg.pipe_warmup_s;
  pipelined_run run{eps, cfg.window, after(secs), cfg.pipe_max_calls};
  cpu_meter meter{t.server};
  auto t0 = steady::now();
  run.last_done = t0;
  wait_round(io, secs + cfg.hang_s, run.start());
  if (!into)
    return;
  double s = seconds_between(t0, run.last_done);
  into->rates.push_back(s > 0 ? static_cast<double>(run.completed) / s : 0);
  into->calls += run.completed;
  into->secs += s;
  into->cpu += meter.stop();
}

void report(const settings& cfg, target& t) {
  if (t.seq_calls > 0) {
    auto j = latency_stats(t.seq_samples);
    t.seq_cpu.report(j, t.seq_calls);
    t.out["sequential_us"] = j;
  }
  auto pipe = [&](const pipe_stats& p, unsigned conns) {
    json j = json::obj();
    j["connections"] = conns;
    j["window_per_connection"] = cfg.window;
    j["calls"] = p.calls;
    j["seconds"] = p.secs;
    j["calls_per_s"] = median(p.rates);
    json::array rounds;
    for (double r : p.rates)
      rounds.emplace_back(r);
    j["calls_per_s_rounds"] = json{std::move(rounds)};
    p.cpu.report(j, p.calls);
    return j;
  };
  if (!t.p1.rates.empty())
    t.out["pipelined_1conn"] = pipe(t.p1, 1);
  if (!t.p8.rates.empty())
    t.out["pipelined_8conn"] = pipe(t.p8, cfg.connections);
  if (!t.error.empty())
    t.out["error"] = t.error;
}

/// Runs every phase against every target with their rounds interleaved: round r visits
/// the targets in turn, starting at a different one each round, so that load from
/// elsewhere on the machine (this one has 2 cores and is shared) falls on all alike. A
/// target that fails keeps its error and drops out; the others go on.
void run_block(kj::AsyncIoContext& io, const settings& cfg, const std::vector<target*>& ts) {
  if (ts.empty())
    return;
  auto visit = [&](unsigned r, const std::function<void(target&)>& fn) {
    for (size_t k = 0; k < ts.size(); ++k) {
      auto& t = *ts[(r + k) % ts.size()];
      if (!t.error.empty())
        continue;
      try {
        fn(t);
      } catch (const std::exception& e) {
        t.error = describe_exception(e);
        note("%s failed: %s", t.name.c_str(), t.error.c_str());
      }
      if (t.settle_s > 0)
        sleep_s(t.settle_s);
    }
  };
  std::string names;
  for (auto* t : ts)
    names += (names.empty() ? "" : ", ") + t->name;

  visit(0, [&](target& t) {
    for (unsigned k = 0; k < cfg.connections; ++k)
      t.conns.push_back(t.make(io));
  });

  note("[%s] sequential: %zu calls each in %u interleaved rounds", names.c_str(), cfg.seq_calls,
       cfg.rounds);
  visit(0, [&](target& t) { sequential_round(io, cfg, t, cfg.seq_warmup, false); });
  size_t per_round = cfg.seq_calls / cfg.rounds;
  for (unsigned r = 0; r < cfg.rounds; ++r) {
    size_t n = r + 1 == cfg.rounds ? cfg.seq_calls - per_round * r : per_round;
    visit(r, [&](target& t) { sequential_round(io, cfg, t, n, true); });
  }

  for (bool multi : {false, true}) {
    note("[%s] pipelined, %u connection(s) x %u in flight: %u interleaved rounds of %.2f s",
         names.c_str(), multi ? cfg.connections : 1, cfg.window, cfg.rounds, cfg.pipe_s);
    visit(0, [&](target& t) { pipelined_round(io, cfg, t, multi, nullptr); });
    for (unsigned r = 0; r < cfg.rounds; ++r)
      visit(r, [&](target& t) { pipelined_round(io, cfg, t, multi, multi ? &t.p8 : &t.p1); });
  }
  for (auto* t : ts)
    report(cfg, *t);
}

// -- 2. bare Cap'n Proto servers: the ceiling ------------------------------------------

class echo_server final : public cyto::bench::Echo::Server {
public:
  kj::Promise<void> echo(EchoContext context) override {
    context.getResults().setValue(context.getParams().getValue());
    return kj::READY_NOW;
  }
};

// The bare Node/Discovery server answers Discovery.discover() on its own kj thread with a
// NodeInfo much like cytod's (this host's namespaces, cgroup controllers and kernel
// release), so gateway/bare_discover separates the cost of the actor bus from the cost of
// the bigger answer.

struct fake_node_info {
  std::string kernel_release;
  std::vector<std::string> controllers, namespaces;
};

fake_node_info host_like_node_info() {
  fake_node_info f;
  utsname u{};
  ::uname(&u);
  f.kernel_release = u.release;
  std::istringstream ctl{read_text("/sys/fs/cgroup/cgroup.controllers")};
  for (std::string c; ctl >> c;)
    f.controllers.push_back(c);
  if (DIR* d = ::opendir("/proc/self/ns")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.')
        f.namespaces.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(f.namespaces.begin(), f.namespaces.end());
  return f;
}

class bare_discovery final : public cyto::schema::Discovery::Server {
public:
  explicit bare_discovery(const fake_node_info& f) : f_(f) {
  }

  kj::Promise<void> discover(DiscoverContext context) override {
    auto out = context.getResults().initInfo();
    out.setHealthy(true);
    out.setVersion("0.1.0");
    out.setNodeName("rpc-bench");
    out.setUptimeNanos(static_cast<uint64_t>(steady::now().time_since_epoch().count()));
    out.setPid(static_cast<uint32_t>(::getpid()));
    auto feat = out.initFeatures();
    feat.setCgroupMode(cyto::schema::CgroupMode::V2);
    auto ctl = feat.initCgroupControllers(static_cast<uint>(f_.controllers.size()));
    for (uint i = 0; i < ctl.size(); ++i)
      ctl.set(i, f_.controllers[i]);
    auto ns = feat.initNamespaces(static_cast<uint>(f_.namespaces.size()));
    for (uint i = 0; i < ns.size(); ++i)
      ns.set(i, f_.namespaces[i]);
    feat.setEbpf(true);
    feat.setBtf(true);
    feat.setOverlayfs(true);
    feat.setPidfd(true);
    feat.setKernelRelease(f_.kernel_release);
    return kj::READY_NOW;
  }

private:
  const fake_node_info& f_;
};

class bare_node final : public cyto::schema::Node::Server {
public:
  explicit bare_node(const fake_node_info& f) : f_(f) {
  }

  kj::Promise<void> discovery(DiscoveryContext context) override {
    context.getResults().setService(kj::heap<bare_discovery>(f_));
    return kj::READY_NOW;
  }

private:
  const fake_node_info& f_;
};

/// Forks a child serving `make_bootstrap()` with capnp's TwoPartyServer on a unix socket at
/// `path`. Must be called while this process has no kj event loop (the child makes one).
std::unique_ptr<child_guard> start_bare_server(
  const std::string& path, std::function<capnp::Capability::Client()> make_bootstrap) {
  int lfd = listen_unix(path);
  kj::AutoCloseFd listen_closer{lfd};
  auto child = std::make_unique<child_guard>(fork_child([lfd, &make_bootstrap] {
    auto io = kj::setupAsyncIo();
    auto listener = io.lowLevelProvider->wrapListenSocketFd(
      lfd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyServer server{make_bootstrap()};
    server.listen(*listener).wait(io.waitScope);
    return 0;
  }));
  return child;
}

// -- 3. the gateway: the real cytod ----------------------------------------------------

/// One cytod started for the benchmark, stopped (by PID) when this goes away.
class daemon_process {
public:
  /// Starts cytod, waits until it listens, lets it idle and records startup time, idle
  /// RSS, threads and idle CPU in `out`. Throws if it does not come up.
  daemon_process(const settings& cfg, const std::string& tmp, const std::string& policy,
                 json& out)
    : node_name_("rpc-bench"), policy_(policy),
      cgroup_root_(cgroup_root_name(policy)) {
    if (::access(cfg.cytod.c_str(), X_OK) != 0)
      throw std::runtime_error(errno_text("cytod at " + cfg.cytod));
    auto dir = tmp + "/gw-" + policy;
    if (::mkdir(dir.c_str(), 0700) != 0)
      throw std::runtime_error(errno_text("mkdir " + dir));
    socket_ = dir + "/cyto.sock";
    auto config = dir + "/cytod.toml";
    std::ofstream{config} << "# rpc_bench: its own config so the host's /etc/cyto is not read;\n"
                          << "# no default network: nothing of it on the host's namespace\n"
                          << "[containers]\ndefault_network = \"none\"\n";

    std::vector<std::string> args{cfg.cytod, "--config", config, "--socket", socket_,
                                  "--state-dir", dir + "/state", "--node-name", node_name_,
                                  "--log-level", "warn", "--scheduler", policy,
                                  "--cgroup-root", cgroup_root_};
    if (cfg.cytod_threads) {
      args.push_back("--threads");
      args.push_back(std::to_string(*cfg.cytod_threads));
    }
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);

    note("cytod (--scheduler %s): starting %s", policy.c_str(), cfg.cytod.c_str());
    auto t_spawn = steady::now();
    child_ = std::make_unique<child_guard>(fork_child([&argv] {
      ::dup2(STDERR_FILENO, STDOUT_FILENO); // our stdout carries only the JSON
      ::execv(argv[0], argv.data());
      std::fprintf(stderr, "[rpc_bench] exec %s: %s\n", argv[0], std::strerror(errno));
      return 127;
    }));

    // Ready when the socket accepts a connection.
    auto give_up = t_spawn + std::chrono::seconds(10);
    while (true) {
      if (auto st = child_->exited())
        throw std::runtime_error("cytod exited during startup: " + describe_status(*st));
      int fd = try_connect_unix(socket_);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      if (steady::now() >= give_up)
        throw std::runtime_error("cytod did not listen on " + socket_ + " within 10 s");
      sleep_s(0.005);
    }
    out["scheduler"] = policy;
    out["cytod_pid"] = pid();
    out["startup_ms"] = seconds_between(t_spawn, steady::now()) * 1e3;

    // Idle: the second half of the idle time shows what it burns while nobody calls (the
    // first half still has its start-up; CAF workers' idle polling shows up here).
    sleep_s(cfg.idle_s / 2);
    auto idle0 = sample_process(pid());
    auto t_idle = steady::now();
    sleep_s(cfg.idle_s / 2);
    auto idle1 = sample_process(pid());
    double idle_wall = seconds_between(t_idle, steady::now());
    out["cytod_idle_rss_kib"] = optional_number(status_field(pid(), "VmRSS"));
    out["cytod_idle_threads"] = optional_number(status_field(pid(), "Threads"));
    out["cytod_idle_cpu_percent"] = 100 * (idle1.cpu_s - idle0.cpu_s) / idle_wall;
    out["cytod_idle_ctxt_switches_per_s"]
      = static_cast<double>(idle1.ctxt_switches - idle0.ctxt_switches) / idle_wall;
  }

  pid_t pid() const {
    return child_->pid();
  }

  /// How long cytod keeps burning CPU after its last message. CAF's stealing policy has
  /// idle workers poll: 100 tries, then 500 tries 50 us apart (~50 ms with the kernel's
  /// 50 us timer slack), then every 10 ms. On 2 cores that tail would land on whichever
  /// server is measured next, so rounds against it are followed by this pause. Sharing
  /// workers block on a condition variable at once.
  double settle_s() const {
    return policy_ == "stealing" ? 0.08 : 0;
  }

  ~daemon_process() {
    child_.reset(); // stops cytod first
    // cytod made its (empty) cgroup subtree in every hierarchy; never leave it behind.
    std::error_code ec;
    for (auto& h : std::filesystem::directory_iterator{"/sys/fs/cgroup", ec})
      ::rmdir((h.path() / cgroup_root_).c_str());
  }

  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  const std::string& socket() const {
    return socket_;
  }

  std::optional<int> exited() {
    return child_->exited();
  }

  /// One checked call: the answer must come from the daemon we started.
  void check_identity(kj::AsyncIoContext& io, json& out, double limit_s) {
    discover_endpoint probe{io, socket_};
    std::string failure;
    auto check = probe.discovery().discoverRequest().send().then(
      [&](capnp::Response<cyto::schema::Discovery::DiscoverResults>&& r) {
        auto info = r.getInfo();
        if (info.getPid() != static_cast<uint32_t>(pid())
            || info.getNodeName() != kj::StringPtr{node_name_.c_str()})
          failure = "discover answered with pid " + std::to_string(info.getPid()) + " node "
                    + info.getNodeName().cStr() + ": not the cytod we started";
        out["cytod_version"] = std::string{info.getVersion().cStr()};
      });
    wait_round(io, limit_s, kj::mv(check));
    if (!failure.empty())
      throw std::runtime_error(failure);
  }

  /// After the clients are gone: RSS, then SIGTERM and the exit status. Returns whether
  /// cytod was still running and then exited cleanly.
  bool finish(json& out) {
    sleep_s(0.1); // let the daemon see the disconnects
    if (auto st = child_->exited()) {
      out["cytod_exit"] = "died during the benchmark: " + describe_status(*st);
      out["cytod_clean_exit"] = false;
      return false;
    }
    out["cytod_rss_after_kib"] = optional_number(status_field(pid(), "VmRSS"));
    out["cytod_threads_after"] = optional_number(status_field(pid(), "Threads"));
    auto [status, in_time] = child_->stop(SIGTERM, 5.0);
    bool clean = in_time && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    out["cytod_exit"] = in_time ? describe_status(status) : "killed after 5 s without exiting";
    out["cytod_clean_exit"] = clean;
    return clean;
  }

private:
  std::string node_name_;
  std::string policy_;
  std::string cgroup_root_;
  std::string socket_;
  std::unique_ptr<child_guard> child_;
};

// -- ratios ----------------------------------------------------------------------------

constexpr double target_calls_ratio = 0.7; // gateway calls/s >= 0.7x bare
constexpr double target_p50_ratio = 1.5;   // gateway p50 <= 1.5x bare

const json* member_at(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (auto* k : path)
    if (!(p = p->find(k)))
      return nullptr;
  return p;
}

std::optional<double> number_at(const json& j, std::initializer_list<const char*> path) {
  auto* p = member_at(j, path);
  return p ? p->number() : std::nullopt;
}

/// gateway/bare calls/s for a phase: the median of the per-round ratios when both were
/// measured in the same interleaved rounds, else the ratio of the medians.
std::optional<double> calls_ratio(const json& gw, const json& bare, const char* phase) {
  auto* g = member_at(gw, {phase, "calls_per_s_rounds"});
  auto* b = member_at(bare, {phase, "calls_per_s_rounds"});
  if (g && b && g->as_array() && b->as_array() && g->as_array()->size() == b->as_array()->size()) {
    std::vector<double> rs;
    for (size_t k = 0; k < g->as_array()->size(); ++k) {
      auto gv = (*g->as_array())[k].number(), bv = (*b->as_array())[k].number();
      if (gv && bv && *bv > 0)
        rs.push_back(*gv / *bv);
    }
    if (!rs.empty())
      return median(rs);
  }
  auto gv = number_at(gw, {phase, "calls_per_s"}), bv = number_at(bare, {phase, "calls_per_s"});
  if (!gv || !bv || *bv <= 0)
    return std::nullopt;
  return *gv / *bv;
}

json ratios(const json& gw, const json& bare, const char* compared) {
  json j = json::obj();
  j["compared"] = compared;
  auto latency = [&](const char* stat) -> std::optional<double> {
    auto g = number_at(gw, {"sequential_us", stat}), b = number_at(bare, {"sequential_us", stat});
    if (!g || !b || *b <= 0)
      return std::nullopt;
    return *g / *b;
  };
  auto c1 = calls_ratio(gw, bare, "pipelined_1conn");
  auto c8 = calls_ratio(gw, bare, "pipelined_8conn");
  auto p50 = latency("p50");
  auto num = [](std::optional<double> v) { return v ? json{*v} : json{nullptr}; };
  auto ge = [](std::optional<double> v) { return v ? json{*v >= target_calls_ratio} : json{nullptr}; };
  auto le = [](std::optional<double> v) { return v ? json{*v <= target_p50_ratio} : json{nullptr}; };

  auto& a = j["calls_per_s_1conn"];
  a["gateway_over_bare"] = num(c1);
  a["target_min"] = target_calls_ratio;
  a["meets_target"] = ge(c1);
  auto& b = j["calls_per_s_8conn"];
  b["gateway_over_bare"] = num(c8);
  b["target_min"] = target_calls_ratio;
  b["meets_target"] = ge(c8);
  auto& c = j["p50"];
  c["gateway_over_bare"] = num(p50);
  c["target_max"] = target_p50_ratio;
  c["meets_target"] = le(p50);
  j["p99_gateway_over_bare"] = num(latency("p99"));
  j["mean_gateway_over_bare"] = num(latency("mean"));
  j["meets_target"] = c1 && c8 && p50 ? json{*c1 >= target_calls_ratio && *c8 >= target_calls_ratio
                                             && *p50 <= target_p50_ratio}
                                      : json{nullptr};
  return j;
}

// -- main ------------------------------------------------------------------------------

json machine_info() {
  json j = machine_info_head(false);
  machine_info_tail(j);
  return j;
}

int usage(const char* argv0, int rc) {
  std::fprintf(stderr,
               "usage: %s [--quick] [--cytod PATH] [--cytod-threads N]\n"
               "  --quick            fewer iterations (CI smoke, < 10 s)\n"
               "  --cytod PATH       the cytod binary (default %s)\n"
               "  --cytod-threads N  pass --threads N to cytod (default: its own default)\n"
               "Prints one JSON document on stdout; progress on stderr.\n",
               argv0, CYTOD_PATH);
  return rc;
}

/// Runs `fn`, which may throw: the error goes to `out["error"]` and `failed` is set.
template <class F>
auto attempt(json& out, bool& failed, const char* what, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    auto why = describe_exception(e);
    note("%s failed: %s", what, why.c_str());
    out["error"] = why;
    failed = true;
    return {};
  }
}

/// Blocks A and B: the bare servers and cytod, measured in interleaved rounds.
void run_rpc_parts(const settings& cfg, const std::string& tmp, json& doc, bool& failed) {
  json bare = json::obj(), bare_disc = json::obj(), gw_out = json::obj(),
       gws_out = json::obj(), bare2 = json::obj();

  // Children with their own kj loop are forked before this process makes one.
  auto echo_path = tmp + "/echo.sock", node_path = tmp + "/node.sock";
  auto echo_srv = attempt(bare, failed, "bare_capnp", [&] {
    return start_bare_server(echo_path, [] { return kj::heap<echo_server>(); });
  });
  auto node_srv = attempt(bare_disc, failed, "bare_discover", [&] {
    return start_bare_server(node_path, [] {
      static const fake_node_info info = host_like_node_info();
      return kj::heap<bare_node>(info);
    });
  });
  auto echo_factory = [&](kj::AsyncIoContext& io) -> std::unique_ptr<endpoint> {
    return std::make_unique<echo_endpoint>(io, echo_path);
  };
  auto discover_factory = [](const std::string& path) {
    return [path](kj::AsyncIoContext& io) -> std::unique_ptr<endpoint> {
      return std::make_unique<discover_endpoint>(io, path);
    };
  };
  auto check_child = [&](target& t, child_guard& c, const char* what) {
    if (auto st = c.exited()) {
      t.error = std::string{what} + " died: " + describe_status(*st)
                + (t.error.empty() ? "" : " (" + t.error + ")");
      t.out["error"] = t.error;
    }
  };

  auto gw = attempt(gw_out, failed, "gateway_discover", [&] {
    return std::make_unique<daemon_process>(cfg, tmp, "sharing", gw_out);
  });
  auto t0 = steady::now();
  auto io = kj::setupAsyncIo();
  {
    // Block A: bare echo, bare discover and the gateway (sharing), round by round.
    std::vector<std::unique_ptr<target>> ts;
    if (echo_srv)
      ts.push_back(std::make_unique<target>("bare_capnp", echo_srv->pid(), echo_factory, bare));
    if (node_srv)
      ts.push_back(std::make_unique<target>("bare_discover", node_srv->pid(),
                                            discover_factory(node_path), bare_disc));
    if (gw && attempt(gw_out, failed, "gateway_discover", [&] {
          gw->check_identity(io, gw_out, cfg.hang_s);
          return true;
        }))
    {
      ts.push_back(std::make_unique<target>("gateway_discover", gw->pid(),
                                            discover_factory(gw->socket()), gw_out));
      ts.back()->settle_s = gw->settle_s();
    }
    std::vector<target*> block;
    for (auto& t : ts)
      block.push_back(t.get());
    run_block(io, cfg, block);
    for (auto& t : ts) {
      t->conns.clear();
      if (t->name == "bare_capnp")
        check_child(*t, *echo_srv, "the bare echo server");
      if (t->name == "bare_discover")
        check_child(*t, *node_srv, "the bare discover server");
      if (t->name == "gateway_discover" && !t->error.empty())
        if (auto st = gw->exited())
          t->out["error"] = "cytod died during the benchmark (" + describe_status(*st)
                            + "): " + t->error;
      failed |= !t->error.empty();
    }
  }
  if (gw && !gw->finish(gw_out))
    failed = true;
  gw.reset();
  if (node_srv)
    node_srv->stop(SIGTERM, 2.0);
  note("sharing block: done in %.2f s", seconds_between(t0, steady::now()));

  // Block B: the gateway with --scheduler stealing, paired again with the bare echo.
  // (cytod is exec'd at once, so forking it while we have a kj loop is fine.)
  t0 = steady::now();
  auto gws = attempt(gws_out, failed, "gateway_discover_stealing", [&] {
    return std::make_unique<daemon_process>(cfg, tmp, "stealing", gws_out);
  });
  {
    std::vector<std::unique_ptr<target>> ts;
    if (echo_srv)
      ts.push_back(std::make_unique<target>("bare_capnp", echo_srv->pid(), echo_factory, bare2));
    if (gws && attempt(gws_out, failed, "gateway_discover_stealing", [&] {
          gws->check_identity(io, gws_out, cfg.hang_s);
          return true;
        }))
    {
      ts.push_back(std::make_unique<target>("gateway_discover_stealing", gws->pid(),
                                            discover_factory(gws->socket()), gws_out));
      ts.back()->settle_s = gws->settle_s();
    }
    std::vector<target*> block;
    for (auto& t : ts)
      block.push_back(t.get());
    if (gws)
      run_block(io, cfg, block);
    for (auto& t : ts) {
      t->conns.clear();
      if (t->name == "bare_capnp")
        check_child(*t, *echo_srv, "the bare echo server");
      if (t->name == "gateway_discover_stealing" && !t->error.empty())
        if (auto st = gws->exited())
          t->out["error"] = "cytod died during the benchmark (" + describe_status(*st)
                            + "): " + t->error;
      failed |= !t->error.empty();
    }
  }
  if (gws && !gws->finish(gws_out))
    failed = true;
  gws.reset();
  if (echo_srv)
    echo_srv->stop(SIGTERM, 2.0);
  note("stealing block: done in %.2f s", seconds_between(t0, steady::now()));

  doc["bare_capnp"] = std::move(bare);
  doc["bare_discover"] = std::move(bare_disc);
  doc["gateway_discover"] = std::move(gw_out);
  doc["gateway_discover_stealing"] = std::move(gws_out);
  bare2["note"] = "bare_capnp measured again, interleaved with gateway_discover_stealing; "
                  "ratios_stealing compares against this";
  doc["bare_capnp_with_stealing"] = std::move(bare2);
}

} // namespace

int main(int argc, char** argv) {
  settings cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      cfg.make_quick();
    } else if (a == "--cytod" && i + 1 < argc) {
      cfg.cytod = argv[++i];
    } else if (a == "--cytod-threads" && i + 1 < argc) {
      char* end = nullptr;
      auto n = std::strtoul(argv[++i], &end, 10);
      if (!end || *end)
        return usage(argv[0], 2);
      cfg.cytod_threads = static_cast<unsigned>(n);
    } else if (a == "--help" || a == "-h") {
      return usage(argv[0], 0);
    } else {
      std::fprintf(stderr, "rpc_bench: unknown argument %s\n", a.c_str());
      return usage(argv[0], 2);
    }
  }

  prepare_cgroup_cleanup();
  install_handlers(on_fatal_signal, on_terminate);
  ::alarm(cfg.watchdog_s);
  auto t_start = steady::now();

  json doc = json::obj();
  doc["benchmark"] = "rpc_bench";
  doc["mode"] = cfg.quick ? "quick" : "full";
  doc["machine"] = machine_info();
  doc["settings"] = cfg.describe();
  doc["method"] = "latencies in microseconds: round trips timed by the client. The bare "
                  "servers and cytod run side by side and each phase is measured in "
                  "interleaved rounds (bare, gateway, bare, ...) so that load from other "
                  "processes hits both alike; calls_per_s is the median over rounds and a "
                  "calls/s ratio the median of the per-round ratios. *_cpu_* fields come "
                  "from /proc/PID/task/*/schedstat; server_main_thread is cytod's kj gateway "
                  "loop.";

  bool failed = false;
  std::string tmp;
  try {
    tmp = make_tmpdir();
  } catch (const std::exception& e) {
    note("%s", e.what());
    return 1;
  }

  {
    auto t0 = steady::now();
    json raw = json::obj();
    note("raw_unix: %zu round trips", cfg.raw_calls);
    attempt(raw, failed, "raw_unix", [&] {
      run_raw_unix(raw, cfg, tmp);
      return true;
    });
    doc["raw_unix"] = std::move(raw);
    note("raw_unix: done in %.2f s", seconds_between(t0, steady::now()));
  }
  json rest = json::obj();
  attempt(rest, failed, "benchmark", [&] {
    run_rpc_parts(cfg, tmp, doc, failed);
    return true;
  });
  if (rest.find("error"))
    doc["error"] = *rest.find("error");

  auto& gw = doc["gateway_discover"];
  auto& gws = doc["gateway_discover_stealing"];
  doc["ratios"] = ratios(gw, doc["bare_capnp"], "gateway_discover / bare_capnp");
  doc["ratios_stealing"] = ratios(gws, doc["bare_capnp_with_stealing"],
                                  "gateway_discover_stealing / bare_capnp_with_stealing");
  // Same answer (NodeInfo) on both sides: what the bus alone costs.
  doc["ratios_vs_bare_discover"] = ratios(gw, doc["bare_discover"],
                                          "gateway_discover / bare_discover (same payload)");
  auto copy = [](const json* v) { return v ? *v : json{nullptr}; };
  doc["cytod_idle_rss_kib"] = copy(gw.find("cytod_idle_rss_kib"));
  doc["cytod_rss_after_kib"] = copy(gw.find("cytod_rss_after_kib"));
  doc["machine"]["loadavg_1m_at_end"] = loadavg_1m();
  doc["total_seconds"] = seconds_between(t_start, steady::now());
  doc["ok"] = !failed;

  ::alarm(0);
  kill_children_now(); // none should be left; stop any that is
  remove_tmpdir_now();

  auto text = doc.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return failed ? 1 : 0;
}
