// cells_bench: how fast cytod starts processes in cells and handles many cells, against
// the floor beneath it.
//
// Prints ONE JSON document on stdout (progress goes to stderr) with:
//   start_latency_us    Cells.start(/bin/true) -> answer, through the whole RPC path (the
//                       answer comes once the process has exec'd inside its cell's cgroup);
//                       each executable gets a new name and is waited for (Cells.wait)
//                       outside the timed part
//   floor_fork_exec_us  the floor, measured in the same run: a bare fork + exec of /bin/true
//                       from this process into the same kind of cgroup (v1: one leaf per
//                       controller hierarchy cytod uses); the child waits on a pipe until
//                       the parent has written its pid into every cgroup.procs, then execs;
//                       timed from fork to exec done (EOF on a close-on-exec pipe)
//   rpc_noop_us         Node.services() round trips on the same connection: what the RPC
//                       path alone costs
//   start_vs_floor      start p50 / floor p50 against the target (<= 1.5x)
//   allocate_1000       allocating N cells (1000; --quick: 200) one call at a time (total
//                       and per-call latency) and pipelined (64 calls in flight)
//   list_ms             one Cells.list() with the N cells, repeated
//   free                freeing the N cells again (for information)
//   rss_kib             cytod's VmRSS idle after start, with the N cells, after list, after free
// start, floor and no-op calls are measured in interleaved rounds so that load from other
// processes on this small shared machine falls on all of them alike. It never fails
// because of a time: the targets are only "meets_target" fields.
//
// cytod runs with a private socket and state dir in a temp dir and with the cgroup root
// cyto-test-bench-<pid> (never the default one). On every path (errors, SIGINT/SIGTERM,
// the watchdog) cells are freed, cytod is stopped by its PID, the cgroup root is removed in
// every hierarchy (killing, by PID, any process left inside it) and the temp dir is removed.
// Exit status: 0 ok, 1 a part failed (the JSON says which, with "error"), 2 bad command
// line, 3 the overall watchdog fired.
//
// Usage: cells_bench [--quick] [--cytod PATH]
//   --quick   fewer iterations (CI smoke, < 15 s); default is the full run (< 90 s)
// (cells_bench --cleanup-only ROOT TMPDIR is what the signal handler runs.)

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
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/common.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <kj/vector.h>

#include "schema/cells.capnp.h"
#include "tests/bench/bench_common.hpp"
#include "schema/node.capnp.h"

#ifndef CYTOD_PATH
#define CYTOD_PATH "cytod"
#endif

const char* const cyto::bench::bench_name = "cells_bench";

namespace {

using namespace cyto::bench;
namespace fs = std::filesystem;

// -- /proc -----------------------------------------------------------------------------

/// CPU time of all threads of a process in seconds (from /proc/PID/task/*/schedstat).
/// Threads that ended in between are missed; good enough for a per-phase estimate.
double process_cpu_s(pid_t pid) {
  double sum = 0;
  auto task_dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = ::opendir(task_dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      if (e->d_name[0] == '.')
        continue;
      std::ifstream in{task_dir + "/" + e->d_name + "/schedstat"};
      long long ns = 0;
      if (in >> ns)
        sum += static_cast<double>(ns) / 1e9;
    }
    ::closedir(d);
  }
  return sum;
}

// -- cgroups ---------------------------------------------------------------------------

constexpr const char* cgroup_mount = "/sys/fs/cgroup";
/// The v1 controllers cytod uses (actors/cells/cgroup_v1.cpp); cpu and cpuacct may share
/// one hierarchy.
constexpr const char* wanted_controllers[] = {"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio"};

struct hierarchy {
  std::string dir; // canonical mount point
  std::vector<std::string> controllers;
  bool cpuset = false;
};

/// The mounted v1 hierarchies of the wanted controllers, as cytod finds them.
std::vector<hierarchy> v1_hierarchies() {
  std::vector<hierarchy> out;
  std::error_code ec;
  for (auto* c : wanted_controllers) {
    auto dir = fs::path{cgroup_mount} / c;
    if (!fs::exists(dir / "cgroup.procs", ec))
      continue;
    auto real = fs::canonical(dir, ec).string();
    if (ec)
      continue;
    auto i = std::find_if(out.begin(), out.end(), [&](auto& h) { return h.dir == real; });
    if (i == out.end())
      i = out.insert(out.end(), hierarchy{real, {}, false});
    i->controllers.push_back(c);
    if (std::string{c} == "cpuset")
      i->cpuset = true;
  }
  return out;
}

void write_text(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    throw std::runtime_error(errno_text("open " + path));
  auto n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    errno = err;
    throw std::runtime_error(errno_text("write '" + value + "' to " + path));
  }
}

/// v1 cpusets start empty: copy the parent's cpus and mems so tasks may join.
void inherit_cpuset(const std::string& dir) {
  auto parent = fs::path{dir}.parent_path().string();
  for (auto* f : {"cpuset.cpus", "cpuset.mems"}) {
    auto v = read_text(parent + "/" + f);
    while (!v.empty() && (v.back() == '\n' || v.back() == ' '))
      v.pop_back();
    if (!v.empty())
      write_text(dir + "/" + f, v);
  }
}

std::vector<pid_t> read_procs(const std::string& path) {
  std::vector<pid_t> out;
  std::ifstream in{path};
  pid_t p;
  while (in >> p)
    out.push_back(p);
  return out;
}

/// Every directory at or under `top`, deepest first.
std::vector<std::string> dirs_deepest_first(const std::string& top) {
  std::vector<std::string> dirs;
  std::error_code ec;
  if (!fs::is_directory(top, ec))
    return dirs;
  for (auto& e : fs::recursive_directory_iterator{top, ec})
    if (e.is_directory(ec) && !e.is_symlink(ec))
      dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
  dirs.push_back(top);
  return dirs;
}

/// Removes `root` under every hierarchy mounted below /sys/fs/cgroup (and a v2 root):
/// kills (SIGKILL, by PID) any process still inside it, then rmdirs deepest first,
/// retrying while the kernel still counts dying tasks. Returns what is left.
std::vector<std::string> remove_cgroup_root(const std::string& root) {
  std::vector<std::string> tops;
  std::error_code ec;
  if (root.empty() || root.find('/') != std::string::npos || root.rfind("cyto-test-", 0) != 0)
    return tops; // never anything but our own test root
  for (auto& e : fs::directory_iterator{cgroup_mount, ec}) {
    auto top = e.path() / root;
    if (fs::is_directory(top, ec))
      tops.push_back(top.string());
  }
  if (fs::exists(fs::path{cgroup_mount} / root / "cgroup.procs", ec)) // a v2 host
    tops.push_back((fs::path{cgroup_mount} / root).string());
  pid_t self = ::getpid();
  for (int attempt = 0; attempt < 150 && !tops.empty(); ++attempt) {
    std::vector<std::string> left;
    for (auto& top : tops) {
      auto dirs = dirs_deepest_first(top);
      for (auto& d : dirs)
        for (pid_t p : read_procs(d + "/cgroup.procs"))
          if (p > 1 && p != self)
            ::kill(p, SIGKILL);
      for (auto& d : dirs)
        ::rmdir(d.c_str());
      if (fs::exists(top, ec))
        left.push_back(top);
    }
    tops = std::move(left);
    if (!tops.empty())
      sleep_s(0.02);
  }
  return tops;
}

/// Any /sys/fs/cgroup/*/<root> still there.
std::vector<std::string> leftover_dirs(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{cgroup_mount, ec})
    if (fs::exists(e.path() / root, ec))
      out.push_back((e.path() / root).string());
  return out;
}

// -- cleanup on every path -------------------------------------------------------------
//
// The signal handler may only use async-signal-safe calls: it SIGKILLs cytod and the
// floor child by PID, then runs this program again as `--cleanup-only ROOT TMPDIR`
// (fork + execve), which removes the cgroup root and the temp dir.

volatile pid_t g_cytod = 0;
volatile pid_t g_floor_child = 0;
char g_root[64] = {};

void emergency_cleanup() {
  for (pid_t pid : {g_floor_child, g_cytod})
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  g_floor_child = 0;
  g_cytod = 0;
  if (!g_root[0] && !g_tmpdir[0])
    return;
  pid_t pid = ::fork();
  if (pid == 0) {
    char self[] = "cells_bench", flag[] = "--cleanup-only", dash[] = "-";
    char* argv[] = {self, flag, g_root[0] ? g_root : dash, g_tmpdir[0] ? g_tmpdir : dash, nullptr};
    char* envp[] = {nullptr};
    ::execve("/proc/self/exe", argv, envp);
    ::_exit(127);
  }
  if (pid > 0)
    ::waitpid(pid, nullptr, 0);
  g_root[0] = 0;
  g_tmpdir[0] = 0;
}

extern "C" void on_fatal_signal(int sig) {
  write_stderr(sig == SIGALRM ? "[cells_bench] overall time limit exceeded: cleaning up\n"
                              : "[cells_bench] interrupted: cleaning up\n");
  emergency_cleanup();
  ::_exit(sig == SIGALRM ? 3 : 128 + sig);
}

void on_terminate() {
  write_stderr("[cells_bench] terminate called: cleaning up\n");
  emergency_cleanup();
  std::abort();
}

int cleanup_only(const std::string& root, const std::string& tmp) {
  int rc = 0;
  if (root != "-" && !remove_cgroup_root(root).empty())
    rc = 1;
  if (tmp != "-" && tmp.find("/cells_bench.") != std::string::npos) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
  }
  return rc;
}

// -- settings --------------------------------------------------------------------------

struct settings {
  bool quick = false;
  std::string cytod = CYTOD_PATH;
  unsigned rounds = 5;        // start/floor/no-op are measured in this many interleaved rounds
  size_t warmup = 20;         // starts, floors and no-ops before measuring (not recorded)
  size_t starts = 300;        // measured Cells.start calls (and as many floors)
  size_t noops = 300;         // measured Node.services calls
  size_t cells = 1000;        // cells to allocate
  unsigned window = 64;       // pipelined allocations in flight
  unsigned list_repeats = 5;
  double idle_s = 0.5;        // cytod idles this long before its RSS is read
  double call_limit_s = 30;   // one call (or one pipelined batch) longer than this has hung
  unsigned watchdog_s = 240;  // the whole run

  void make_quick() {
    quick = true;
    rounds = 2;
    warmup = 5;
    starts = 50;
    noops = 50;
    cells = 200;
    list_repeats = 5;
    idle_s = 0.3;
    call_limit_s = 10;
    watchdog_s = 60;
  }

  json describe() const {
    json j = json::obj();
    j["rounds"] = rounds;
    j["warmup_per_kind"] = warmup;
    j["starts"] = starts;
    j["floor_spawns"] = starts;
    j["rpc_noops"] = noops;
    j["cells"] = cells;
    j["pipeline_window"] = window;
    j["list_repeats"] = list_repeats;
    j["cytod_idle_s"] = idle_s;
    return j;
  }
};

constexpr double target_start_ratio = 1.5;   // start p50 <= 1.5x floor p50
constexpr double target_allocate_s = 2.0;    // 1000 allocations
constexpr double target_list_ms = 50.0;      // list() with 1000 cells
constexpr size_t target_cells = 1000;

// -- cytod -----------------------------------------------------------------------------

/// The cytod we run: started on construction, stopped (SIGTERM, then SIGKILL) by PID.
class daemon_process {
public:
  daemon_process(const settings& cfg, const std::string& tmp, const std::string& root, json& out) {
    if (::access(cfg.cytod.c_str(), X_OK) != 0)
      throw std::runtime_error(errno_text("cytod at " + cfg.cytod));
    socket_ = tmp + "/s.sock";
    auto config = tmp + "/cytod.toml";
    std::ofstream{config} << "# cells_bench: its own config so the host's /etc/cyto is not read;\n"
                          << "# no default network: nothing of it on the host's namespace\n"
                          << "[containers]\ndefault_network = \"none\"\n";
    std::vector<std::string> args{cfg.cytod,   "--config",      config,
                                  "--socket",  socket_,         "--state-dir",
                                  tmp + "/state", "--cgroup-root", root,
                                  "--node-name", "cells-bench", "--log-level",
                                  "warn"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);

    note("cytod: starting %s (cgroup root %s)", cfg.cytod.c_str(), root.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    sigset_t all, old;
    sigfillset(&all);
    ::sigprocmask(SIG_BLOCK, &all, &old);
    pid_t parent = ::getpid();
    auto t_spawn = steady::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGALRM, SIGPIPE})
        std::signal(sig, SIG_DFL);
      ::alarm(0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent)
        ::_exit(1);
      ::dup2(STDERR_FILENO, STDOUT_FILENO); // our stdout carries only the JSON
      ::execv(argv[0], argv.data());
      write_stderr("[cells_bench] exec cytod failed\n");
      ::_exit(127);
    }
    int err = errno;
    if (pid > 0)
      g_cytod = pid_ = pid;
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) {
      errno = err;
      throw std::runtime_error(errno_text("fork"));
    }

    // Ready when the socket accepts a connection (cytod listens only after the cells
    // actor has set up its cgroup root).
    auto give_up = t_spawn + std::chrono::seconds(15);
    while (true) {
      if (auto st = exited())
        throw std::runtime_error("cytod exited during startup: " + describe_status(*st));
      int fd = try_connect_unix(socket_);
      if (fd >= 0) {
        ::close(fd);
        break;
      }
      if (steady::now() >= give_up)
        throw std::runtime_error("cytod did not listen on " + socket_ + " within 15 s");
      sleep_s(0.005);
    }
    out["pid"] = pid_;
    out["startup_ms"] = seconds_between(t_spawn, steady::now()) * 1e3;
  }

  ~daemon_process() {
    stop(SIGKILL, 2.0);
  }

  pid_t pid() const noexcept {
    return pid_;
  }

  const std::string& socket() const noexcept {
    return socket_;
  }

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

  /// Sends `sig`, waits up to `grace` s, then SIGKILLs. Returns a description.
  std::string stop(int sig, double grace) {
    if (pid_ <= 0)
      return "had exited: " + describe_status(status_);
    ::kill(pid_, sig);
    auto until = steady::now() + std::chrono::duration_cast<steady::duration>(
                                   std::chrono::duration<double>(grace));
    int status = 0;
    while (true) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped(status);
        return describe_status(status);
      }
      if (steady::now() >= until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        reaped(status);
        return "did not exit within " + std::to_string(grace) + " s: killed";
      }
      sleep_s(0.005);
    }
  }

private:
  void reaped(int status) {
    g_cytod = 0;
    pid_ = -1;
    status_ = status;
  }

  std::string socket_;
  pid_t pid_ = -1;
  int status_ = 0;
};

// -- the capnp client ------------------------------------------------------------------

class client {
public:
  client(kj::AsyncIoContext& io, const std::string& path, double limit_s)
    : io_(io), limit_s_(limit_s) {
    int fd = try_connect_unix(path);
    if (fd < 0)
      throw std::runtime_error(errno_text("connect to " + path));
    stream_ = io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    rpc_ = kj::heap<capnp::TwoPartyClient>(*stream_);
    node_ = rpc_->bootstrap().castAs<cyto::schema::Node>();
    cells_ = node_.cellsRequest().send().getService();
  }

  /// Waits for `p` at most the call limit; errors name `what`.
  template <class T>
  T wait(kj::Promise<T>&& p, const std::string& what, double limit_s = 0) {
    try {
      return io_.provider->getTimer()
        .timeoutAfter(kj_duration(limit_s > 0 ? limit_s : limit_s_), kj::mv(p))
        .wait(io_.waitScope);
    } catch (const kj::Exception& e) {
      throw std::runtime_error(what + ": " + e.getDescription().cStr());
    }
  }

  void wait_void(kj::Promise<void>&& p, const std::string& what, double limit_s = 0) {
    try {
      io_.provider->getTimer()
        .timeoutAfter(kj_duration(limit_s > 0 ? limit_s : limit_s_), kj::mv(p))
        .wait(io_.waitScope);
    } catch (const kj::Exception& e) {
      throw std::runtime_error(what + ": " + e.getDescription().cStr());
    }
  }

  cyto::schema::Node::Client& node() {
    return node_;
  }
  cyto::schema::Cells::Client& cells() {
    return cells_;
  }

  // Requests, each returning the plain kj promise of its response.
  kj::Promise<capnp::Response<cyto::schema::Cells::AllocateResults>> allocate(
    const std::string& name) {
    auto req = cells_.allocateRequest();
    req.initCell().setName(name);
    return req.send();
  }

  kj::Promise<capnp::Response<cyto::schema::Cells::FreeResults>> free(const std::string& name,
                                                                       bool recursive, bool force) {
    auto req = cells_.freeRequest();
    req.setName(name);
    req.setRecursive(recursive);
    req.setForce(force);
    return req.send();
  }

  kj::Promise<capnp::Response<cyto::schema::Cells::StartResults>> start(
    const std::string& cell, const std::string& name, const std::vector<std::string>& argv) {
    auto req = cells_.startRequest();
    req.setCellName(cell);
    auto e = req.initExecutable();
    e.setName(name);
    auto a = e.initArgv(static_cast<unsigned>(argv.size()));
    for (unsigned i = 0; i < argv.size(); ++i)
      a.set(i, argv[i]);
    return req.send();
  }

  kj::Promise<capnp::Response<cyto::schema::Cells::WaitResults>> wait_exit(
    const std::string& cell, const std::string& name) {
    auto req = cells_.waitRequest();
    req.setCellName(cell);
    req.setExecutableName(name);
    return req.send();
  }

  kj::Promise<capnp::Response<cyto::schema::Cells::StopResults>> stop(const std::string& cell,
                                                                       const std::string& name,
                                                                       int sig) {
    auto req = cells_.stopRequest();
    req.setCellName(cell);
    req.setExecutableName(name);
    req.setSignal(sig);
    req.setTimeoutMs(2000);
    return req.send();
  }

  kj::Promise<capnp::Response<cyto::schema::Cells::ListResults>> list() {
    return cells_.listRequest().send();
  }

  kj::Promise<capnp::Response<cyto::schema::Node::ServicesResults>> services() {
    return node_.servicesRequest().send();
  }

private:
  kj::AsyncIoContext& io_;
  double limit_s_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> rpc_;
  cyto::schema::Node::Client node_{nullptr};
  cyto::schema::Cells::Client cells_{nullptr};
};

// -- the floor: fork + exec into our own v1 cgroups ------------------------------------

constexpr const char* floor_program = "/bin/true";
constexpr const char* default_path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

class floor_spawner {
public:
  /// Makes <hierarchy>/<root>/floor/_ in every hierarchy cytod uses (cpusets filled in).
  explicit floor_spawner(const std::string& root) {
    auto hs = v1_hierarchies();
    if (hs.empty())
      throw std::runtime_error("no cgroup v1 controller hierarchy is mounted under /sys/fs/cgroup");
    for (auto& h : hs) {
      std::string dir = h.dir + "/" + root;
      for (auto* part : {"", "/floor", "/floor/_"}) {
        auto d = dir + part;
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST)
          throw std::runtime_error(errno_text("mkdir " + d));
        if (*part)
          made_.push_back(d);
        if (h.cpuset)
          inherit_cpuset(d);
      }
      procs_.push_back(dir + "/floor/_/cgroup.procs");
      controllers_.push_back(h.dir);
    }
  }

  ~floor_spawner() {
    for (auto i = made_.rbegin(); i != made_.rend(); ++i)
      ::rmdir(i->c_str());
  }

  const std::vector<std::string>& hierarchies() const {
    return controllers_;
  }

  /// The times of one spawn, in microseconds.
  struct timing {
    double total = 0;  // before pipe2+fork .. exec done
    double fork = 0;   // .. fork returned in the parent
    double attach = 0; // .. pid written to every cgroup.procs
    double exec = 0;   // release .. exec done (EOF on the close-on-exec pipe)
  };

  /// One spawn: fork, attach to every hierarchy (unless `attach` is false: the bare
  /// fork+exec), release, wait for exec. The child is reaped after the clock stops.
  timing spawn_once(bool attach = true) {
    char prog[] = "true";
    char pathenv[128];
    std::snprintf(pathenv, sizeof(pathenv), "%s", default_path);
    char* argv[] = {prog, nullptr};
    char* envp[] = {pathenv, nullptr};

    auto t0 = steady::now();
    int sync[2], exec_pipe[2];
    if (::pipe2(sync, O_CLOEXEC) != 0)
      throw std::runtime_error(errno_text("pipe2"));
    if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
      int err = errno;
      ::close(sync[0]);
      ::close(sync[1]);
      errno = err;
      throw std::runtime_error(errno_text("pipe2"));
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::close(sync[1]);
      ::close(exec_pipe[0]);
      char c;
      ssize_t n;
      do {
        n = ::read(sync[0], &c, 1);
      } while (n < 0 && errno == EINTR);
      if (n != 1)
        ::_exit(126); // the parent gave up (or died): never exec outside the cgroup
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(floor_program, argv, envp);
      int err = errno;
      [[maybe_unused]] auto w = ::write(exec_pipe[1], &err, sizeof(err));
      ::_exit(127);
    }
    int fork_err = errno;
    ::close(sync[0]);
    ::close(exec_pipe[1]);
    if (pid < 0) {
      ::close(sync[1]);
      ::close(exec_pipe[0]);
      errno = fork_err;
      throw std::runtime_error(errno_text("fork"));
    }
    g_floor_child = pid;
    auto t_fork = steady::now();
    std::string failure;
    try {
      auto text = std::to_string(pid);
      if (attach)
        for (auto& p : procs_)
          write_text(p, text);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    auto t_attach = steady::now();
    if (failure.empty()) {
      char go = 1;
      if (::write(sync[1], &go, 1) != 1)
        failure = errno_text("release the floor child");
    }
    ::close(sync[1]);
    int child_err = 0;
    ssize_t n = 0;
    if (failure.empty()) {
      do {
        n = ::read(exec_pipe[0], &child_err, sizeof(child_err));
      } while (n < 0 && errno == EINTR);
    }
    auto t1 = steady::now();
    ::close(exec_pipe[0]);
    if (!failure.empty())
      ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    g_floor_child = 0;
    if (!failure.empty())
      throw std::runtime_error("floor spawn: " + failure);
    if (n != 0)
      throw std::runtime_error(std::string{"floor child could not exec "} + floor_program + ": "
                               + std::strerror(child_err));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("floor child: " + describe_status(status));
    return {micros_between(t0, t1), micros_between(t0, t_fork), micros_between(t_fork, t_attach),
            micros_between(t_attach, t1)};
  }

  /// For comparison: the same spawn the way posix_spawn does it, clone(CLONE_VM |
  /// CLONE_VFORK) so no address space is copied, the child moving itself into every leaf
  /// (writing "0" to each cgroup.procs) before it execs; the parent resumes at exec.
  /// Returns microseconds from before pipe2+clone to exec done.
  double vfork_once() {
    struct child_args {
      const std::vector<std::string>* procs;
      int err_fd;
    };
    static char prog[] = "true";
    static char pathenv[128];
    std::snprintf(pathenv, sizeof(pathenv), "%s", default_path);
    static char* argv[] = {prog, nullptr};
    static char* envp[] = {pathenv, nullptr};
    static constexpr size_t stack_size = 256 * 1024;
    if (!stack_)
      stack_ = std::make_unique<char[]>(stack_size);

    auto t0 = steady::now();
    int exec_pipe[2];
    if (::pipe2(exec_pipe, O_CLOEXEC) != 0)
      throw std::runtime_error(errno_text("pipe2"));
    child_args args{&procs_, exec_pipe[1]};
    auto child = [](void* p) -> int {
      // Shares our memory until exec: syscalls only, nothing allocated.
      auto* a = static_cast<child_args*>(p);
      for (auto& path : *a->procs) {
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::write(fd, "0", 1) != 1) {
          int err = errno;
          [[maybe_unused]] auto w = ::write(a->err_fd, &err, sizeof(err));
          ::_exit(126);
        }
        ::close(fd);
      }
      ::execve(floor_program, argv, envp);
      int err = errno;
      [[maybe_unused]] auto w = ::write(a->err_fd, &err, sizeof(err));
      ::_exit(127);
    };
    pid_t pid = ::clone(child, stack_.get() + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
    int clone_err = errno;
    ::close(exec_pipe[1]);
    if (pid < 0) {
      ::close(exec_pipe[0]);
      errno = clone_err;
      throw std::runtime_error(errno_text("clone(CLONE_VM|CLONE_VFORK)"));
    }
    g_floor_child = pid;
    int child_err = 0;
    ssize_t n;
    do {
      n = ::read(exec_pipe[0], &child_err, sizeof(child_err));
    } while (n < 0 && errno == EINTR);
    auto t1 = steady::now();
    ::close(exec_pipe[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    g_floor_child = 0;
    if (n != 0)
      throw std::runtime_error(std::string{"vfork child could not attach or exec: "}
                               + std::strerror(child_err));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error("vfork child: " + describe_status(status));
    return micros_between(t0, t1);
  }

private:
  std::unique_ptr<char[]> stack_;
  std::vector<std::string> procs_;
  std::vector<std::string> controllers_;
  std::vector<std::string> made_; // created dirs, parents first
};

// -- the phases ------------------------------------------------------------------------

/// Checks once that Cells.start really puts the process into the cell's v1 leaf in every
/// hierarchy: a `sleep 5` is started, its /proc/PID/cgroup read, then it is stopped.
json check_placement(client& c, const std::string& cell, const std::string& root,
                     const std::vector<std::string>& hierarchies) {
  json j = json::obj();
  auto r = c.wait(c.start(cell, "placement-check", {"/bin/sleep", "5"}), "start placement check");
  auto pid = r.getInfo().getPid();
  auto text = read_text("/proc/" + std::to_string(pid) + "/cgroup");
  auto want = "/" + root + "/" + cell + "/_";
  size_t in_leaf = 0, lines = 0;
  std::istringstream ss{text};
  std::string line;
  std::vector<std::string> outside;
  while (std::getline(ss, line)) {
    // "ID:controllers:path"
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    auto ctrls = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    bool wanted = false;
    for (auto* w : wanted_controllers) {
      std::istringstream cs{ctrls};
      std::string one;
      while (std::getline(cs, one, ','))
        wanted = wanted || one == w;
    }
    if (!wanted)
      continue;
    ++lines;
    if (path == want)
      ++in_leaf;
    else
      outside.push_back(ctrls + ":" + path);
  }
  c.wait(c.stop(cell, "placement-check", SIGKILL), "stop placement check");
  j["pid"] = pid;
  j["expected_path"] = want;
  j["hierarchies_checked"] = lines;
  j["in_cell_leaf"] = in_leaf;
  j["ok"] = lines > 0 && in_leaf == lines && lines == hierarchies.size();
  if (!outside.empty()) {
    json::array a;
    for (auto& o : outside)
      a.emplace_back(o);
    j["outside"] = json{a};
  }
  return j;
}

/// Start latency, the fork+exec floor and RPC no-ops, in interleaved rounds.
void run_start_phase(const settings& cfg, client& c, daemon_process& d, floor_spawner& fl,
                     json& doc) {
  const std::string cell = "lat";
  c.wait(c.allocate(cell), "allocate cell " + cell);
  doc["placement_check"] = check_placement(c, cell, g_root, fl.hierarchies());

  uint64_t seq = 0;
  auto one_start = [&](std::vector<double>* out) {
    auto name = "t" + std::to_string(seq++);
    auto t0 = steady::now();
    auto r = c.wait(c.start(cell, name, {floor_program}), "start " + name);
    auto t1 = steady::now();
    if (r.getInfo().getPid() == 0)
      throw std::runtime_error("start " + name + ": answer without a pid");
    // Untimed: wait for the exit so that the next start finds a quiet daemon.
    auto st = c.wait(c.wait_exit(cell, name), "wait " + name);
    if (!st.getStatus().getExited() || st.getStatus().getCode() != 0)
      throw std::runtime_error("executable " + name + " did not exit with 0 (code "
                               + std::to_string(st.getStatus().getCode()) + ", signal "
                               + std::to_string(st.getStatus().getSignal()) + ")");
    if (out)
      out->push_back(micros_between(t0, t1));
  };
  auto one_noop = [&](std::vector<double>* out) {
    auto t0 = steady::now();
    auto r = c.wait(c.services(), "Node.services");
    auto t1 = steady::now();
    if (r.getNames().size() == 0)
      throw std::runtime_error("Node.services returned no service");
    if (out)
      out->push_back(micros_between(t0, t1));
  };

  note("start phase: warm-up");
  for (size_t i = 0; i < cfg.warmup; ++i) {
    one_start(nullptr);
    fl.spawn_once();
    fl.spawn_once(false);
    fl.vfork_once();
    one_noop(nullptr);
  }

  std::vector<double> starts, floors, noops, bare, vforks;
  std::vector<double> floor_fork, floor_attach, floor_exec, bare_fork, bare_exec;
  double cytod_cpu = 0, start_wall = 0;
  size_t per_round = (cfg.starts + cfg.rounds - 1) / cfg.rounds;
  size_t noops_per_round = (cfg.noops + cfg.rounds - 1) / cfg.rounds;
  for (unsigned r = 0; r < cfg.rounds; ++r) {
    note("start phase: round %u/%u", r + 1, cfg.rounds);
    auto do_starts = [&] {
      double cpu0 = process_cpu_s(d.pid());
      auto t0 = steady::now();
      for (size_t i = 0; i < per_round && starts.size() < cfg.starts; ++i)
        one_start(&starts);
      start_wall += seconds_between(t0, steady::now());
      cytod_cpu += process_cpu_s(d.pid()) - cpu0;
    };
    auto do_floors = [&] {
      for (size_t i = 0; i < per_round && floors.size() < cfg.starts; ++i) {
        auto t = fl.spawn_once(true);
        floors.push_back(t.total);
        floor_fork.push_back(t.fork);
        floor_attach.push_back(t.attach);
        floor_exec.push_back(t.exec);
        auto b = fl.spawn_once(false);
        bare.push_back(b.total);
        bare_fork.push_back(b.fork);
        bare_exec.push_back(b.exec);
        vforks.push_back(fl.vfork_once());
      }
    };
    // Alternate the order so neither kind always runs right after the other.
    if (r % 2 == 0) {
      do_starts();
      do_floors();
    } else {
      do_floors();
      do_starts();
    }
    for (size_t i = 0; i < noops_per_round && noops.size() < cfg.noops; ++i)
      one_noop(&noops);
  }

  auto start_stats = latency_stats(starts);
  auto floor_stats = latency_stats(floors);
  doc["start_latency_us"] = start_stats;
  doc["start_latency_us"]["program"] = floor_program;
  doc["start_latency_us"]["cytod_cpu_us_per_start_incl_wait"]
    = cytod_cpu * 1e6 / static_cast<double>(std::max<size_t>(1, starts.size()));
  doc["start_latency_us"]["phase_wall_s_incl_wait"] = start_wall;
  doc["floor_fork_exec_us"] = floor_stats;
  doc["floor_fork_exec_us"]["program"] = floor_program;
  doc["floor_fork_exec_us"]["cgroup_procs_files"] = fl.hierarchies().size();
  {
    json parts = json::obj();
    parts["fork"] = latency_stats(floor_fork);
    parts["attach_to_cgroups"] = latency_stats(floor_attach);
    parts["release_to_exec_done"] = latency_stats(floor_exec);
    doc["floor_fork_exec_us"]["parts"] = std::move(parts);
  }
  // The same fork+exec without moving the child into any cgroup: what the cgroup
  // attach costs on top (information only; the target is against the floor above).
  doc["fork_exec_no_cgroup_us"] = latency_stats(bare);
  {
    json parts = json::obj();
    parts["fork"] = latency_stats(bare_fork);
    parts["release_to_exec_done"] = latency_stats(bare_exec);
    doc["fork_exec_no_cgroup_us"]["parts"] = std::move(parts);
  }
  // posix_spawn-style: no address space copied, the child attaches itself (information:
  // what a vfork-style spawn in cytod could reach on this host).
  doc["vfork_exec_self_attach_us"] = latency_stats(vforks);
  doc["rpc_noop_us"] = latency_stats(noops);
  doc["rpc_noop_us"]["call"] = "Node.services()";

  auto ratio = [&](const char* stat) -> json {
    auto s = start_stats.find(stat), f = floor_stats.find(stat);
    if (!s || !f || !s->number() || !f->number() || *f->number() <= 0)
      return nullptr;
    return *s->number() / *f->number();
  };
  json v = json::obj();
  v["ratio_p50"] = ratio("p50");
  v["ratio_p99"] = ratio("p99");
  v["ratio_mean"] = ratio("mean");
  v["target_max_ratio_p50"] = target_start_ratio;
  auto rp = v.find("ratio_p50")->number();
  v["meets_target"] = rp ? json{*rp <= target_start_ratio} : json{nullptr};
  auto sp = start_stats.find("p50"), fp = floor_stats.find("p50"),
       np = doc["rpc_noop_us"].find("p50");
  if (sp && fp && sp->number() && fp->number()) {
    v["start_minus_floor_p50_us"] = *sp->number() - *fp->number();
    if (np && np->number())
      v["start_minus_floor_minus_rpc_noop_p50_us"]
        = *sp->number() - *fp->number() - *np->number();
  }
  doc["start_vs_floor"] = std::move(v);

  c.wait(c.free(cell, true, true), "free cell " + cell);
}

std::string cell_name(const char* prefix, size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%04zu", prefix, i);
  return buf;
}

/// `n` calls of `make(i)` with up to `window` in flight on one connection; returns seconds.
template <class Make>
double pipelined(client& c, size_t n, unsigned window, Make make, const std::string& what,
                 double limit_s) {
  size_t next = 0;
  std::function<kj::Promise<void>()> lane = [&]() -> kj::Promise<void> {
    if (next >= n)
      return kj::READY_NOW;
    auto i = next++;
    return make(i).then([&](auto&&) { return lane(); });
  };
  auto t0 = steady::now();
  kj::Vector<kj::Promise<void>> lanes;
  for (unsigned w = 0; w < window && w < n; ++w)
    lanes.add(lane());
  c.wait_void(kj::joinPromises(lanes.releaseAsArray()), what, limit_s);
  return seconds_between(t0, steady::now());
}

json projected_target(double measured, size_t n, double target, const char* unit) {
  json j = json::obj();
  bool full = n == target_cells;
  double at_1000 = measured * static_cast<double>(target_cells) / static_cast<double>(n);
  j[std::string{"target_max_"} + unit + "_for_1000"] = target;
  if (!full)
    j[std::string{"projected_"} + unit + "_for_1000"] = at_1000;
  j["target_basis"] = full ? "measured with 1000 cells"
                           : "projected linearly from " + std::to_string(n) + " cells";
  j["meets_target"] = at_1000 <= target;
  return j;
}

/// What list() costs in the kernel alone: this process reads every cell's cgroup.procs
/// the way cytod's v1 pids() does (the cell dir and each dir under it, in the pids
/// hierarchy). Returns milliseconds.
double walk_cells_ms(const std::string& root, size_t n) {
  auto hs = v1_hierarchies();
  const hierarchy* h = nullptr;
  for (auto* want : {"pids", "memory"})
    for (auto& x : hs)
      if (!h && std::find(x.controllers.begin(), x.controllers.end(), want) != x.controllers.end())
        h = &x;
  if (!h && !hs.empty())
    h = &hs.front();
  if (!h)
    return NAN;
  auto t0 = steady::now();
  size_t pids = 0;
  for (size_t i = 0; i < n; ++i) {
    auto top = h->dir + "/" + root + "/" + cell_name("c", i);
    pids += read_procs(top + "/cgroup.procs").size();
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator{top, ec})
      if (e.is_directory(ec))
        pids += read_procs(e.path().string() + "/cgroup.procs").size();
  }
  auto ms = micros_between(t0, steady::now()) / 1e3;
  if (pids != 0)
    throw std::runtime_error("the benchmark's cells hold processes");
  return ms;
}

/// Allocate N cells sequentially, list, free; then allocate N pipelined and free pipelined.
void run_cells_phase(const settings& cfg, client& c, daemon_process& d, json& doc) {
  size_t n = cfg.cells;
  // Members of `doc` are filled in as each part completes (no references into it are
  // held across insertions: its members live in a vector).
  json alloc = json::obj();
  alloc["cells"] = n;

  // Sequential allocations, each timed.
  note("allocate: %zu cells, one call at a time", n);
  std::vector<double> per_call;
  per_call.reserve(n);
  double cpu0 = process_cpu_s(d.pid());
  auto t0 = steady::now();
  for (size_t i = 0; i < n; ++i) {
    auto name = cell_name("c", i);
    auto t = steady::now();
    auto r = c.wait(c.allocate(name), "allocate " + name);
    per_call.push_back(micros_between(t, steady::now()));
    if (r.getInfo().getCell().getName() != kj::StringPtr{name.c_str()})
      throw std::runtime_error("allocate " + name + ": answer for another cell");
  }
  double seq_s = seconds_between(t0, steady::now());
  double seq_cpu = process_cpu_s(d.pid()) - cpu0;
  json s = json::obj();
  s["total_s"] = seq_s;
  s["calls_per_s"] = static_cast<double>(n) / seq_s;
  s["per_call_us"] = latency_stats(per_call);
  {
    // Does an allocation get slower as cells accumulate?
    size_t tenth = std::max<size_t>(1, n / 10);
    s["per_call_p50_us_first_10pct"]
      = median(std::vector<double>(per_call.begin(), per_call.begin() + tenth));
    s["per_call_p50_us_last_10pct"]
      = median(std::vector<double>(per_call.end() - tenth, per_call.end()));
  }
  s["cytod_cpu_us_per_call"] = seq_cpu * 1e6 / static_cast<double>(n);
  alloc["sequential"] = std::move(s);
  json seq_target = projected_target(seq_s, n, target_allocate_s, "s");
  for (auto key : {"target_max_s_for_1000", "projected_s_for_1000", "target_basis"})
    if (auto* v = seq_target.find(key))
      alloc[key] = *v;
  alloc["target_on"] = "sequential total_s";
  alloc["meets_target"] = *seq_target.find("meets_target");
  doc["allocate_1000"] = alloc;
  note("allocate: %.3f s sequential", seq_s);

  sleep_s(0.1);
  doc["rss_kib"]["cells"] = n;
  doc["rss_kib"]["with_cells"] = optional_number(status_field(d.pid(), "VmRSS"));

  // list() with N cells.
  note("list: %u times with %zu cells", cfg.list_repeats, n);
  std::vector<double> lists;
  size_t bytes = 0;
  for (unsigned k = 0; k < cfg.list_repeats; ++k) {
    auto t = steady::now();
    auto r = c.wait(c.list(), "list");
    lists.push_back(micros_between(t, steady::now()) / 1e3);
    auto count = r.getCells().size();
    // Our cells plus none other: the start phase's cell is freed already.
    if (count != n)
      throw std::runtime_error("list returned " + std::to_string(count) + " cells, expected "
                               + std::to_string(n));
    bytes = r.totalSize().wordCount * 8;
  }
  json l = json::obj();
  l["cells"] = n;
  l["repeats"] = lists.size();
  l["min"] = *std::min_element(lists.begin(), lists.end());
  l["median"] = median(lists);
  l["max"] = *std::max_element(lists.begin(), lists.end());
  l["response_bytes"] = bytes;
  {
    std::vector<double> walks;
    for (unsigned k = 0; k < cfg.list_repeats; ++k)
      walks.push_back(walk_cells_ms(g_root, n));
    json w = json::obj();
    w["what"] = "this process reading each cell's cgroup.procs files as cytod's v1 pids() does "
                "(no RPC, no actor)";
    w["min"] = *std::min_element(walks.begin(), walks.end());
    w["median"] = median(walks);
    l["kernel_walk_floor_ms"] = std::move(w);
  }
  json list_target = projected_target(median(lists), n, target_list_ms, "ms");
  for (auto key : {"target_max_ms_for_1000", "projected_ms_for_1000", "target_basis",
                   "meets_target"})
    if (auto* v = list_target.find(key))
      l[key] = *v;
  l["target_on"] = "median";
  doc["list_ms"] = std::move(l);
  doc["rss_kib"]["after_list"] = optional_number(status_field(d.pid(), "VmRSS"));

  // Free them one at a time (information: the lead may want it).
  note("free: %zu cells, one call at a time", n);
  t0 = steady::now();
  for (size_t i = 0; i < n; ++i)
    c.wait(c.free(cell_name("c", i), false, false), "free " + cell_name("c", i));
  double free_seq_s = seconds_between(t0, steady::now());

  // Pipelined allocations: `window` in flight on the one connection.
  note("allocate: %zu cells pipelined (%u in flight)", n, cfg.window);
  double pipe_s = pipelined(
    c, n, cfg.window, [&](size_t i) { return c.allocate(cell_name("p", i)); },
    "pipelined allocate", cfg.call_limit_s * 4);
  json p = json::obj();
  p["window"] = cfg.window;
  p["total_s"] = pipe_s;
  p["calls_per_s"] = static_cast<double>(n) / pipe_s;
  json pipe_target = projected_target(pipe_s, n, target_allocate_s, "s");
  p["meets_target"] = *pipe_target.find("meets_target");
  alloc["pipelined"] = std::move(p);
  doc["allocate_1000"] = alloc;
  auto listed = c.wait(c.list(), "list after pipelined allocate").getCells().size();
  if (listed != n)
    throw std::runtime_error("after the pipelined allocations list shows " + std::to_string(listed)
                             + " cells, expected " + std::to_string(n));

  note("free: %zu cells pipelined", n);
  double free_pipe_s = pipelined(
    c, n, cfg.window, [&](size_t i) { return c.free(cell_name("p", i), false, false); },
    "pipelined free", cfg.call_limit_s * 4);
  json f = json::obj();
  f["cells"] = n;
  f["sequential_total_s"] = free_seq_s;
  f["pipelined_total_s"] = free_pipe_s;
  doc["free"] = std::move(f);

  sleep_s(0.1);
  doc["rss_kib"]["after_free"] = optional_number(status_field(d.pid(), "VmRSS"));
}

/// Frees whatever cells cytod still has (recursive, force). Returns how many.
size_t free_all(client& c) {
  auto r = c.wait(c.list(), "list for cleanup");
  std::vector<std::string> names;
  for (auto cell : r.getCells())
    names.emplace_back(cell.getCell().getName().cStr());
  for (auto& n : names)
    c.wait(c.free(n, true, true), "free " + n);
  return names.size();
}

// -- main ------------------------------------------------------------------------------

json machine_info(const std::vector<hierarchy>& hs) {
  json j = machine_info_head(true);
  std::error_code ec;
  bool unified = fs::exists(fs::path{cgroup_mount} / "cgroup.controllers", ec);
  bool v2_beside = fs::exists(fs::path{cgroup_mount} / "unified" / "cgroup.controllers", ec);
  j["cgroup_layout"] = unified ? "v2 (unified)" : v2_beside ? "hybrid (v1 + v2 at unified)" : "v1";
  json::array a;
  for (auto& h : hs) {
    std::string c;
    for (auto& x : h.controllers)
      c += (c.empty() ? "" : ",") + x;
    a.emplace_back(h.dir + " (" + c + ")");
  }
  j["cgroup_v1_hierarchies_used"] = json{a};
  machine_info_tail(j);
  return j;
}

int usage(const char* argv0, int rc) {
  std::fprintf(stderr,
               "usage: %s [--quick] [--cytod PATH]\n"
               "  --quick       fewer iterations (CI smoke, < 15 s)\n"
               "  --cytod PATH  the cytod binary (default %s)\n"
               "Needs root and cgroup v1 controller hierarchies (hybrid hosts). Prints one JSON\n"
               "document on stdout; progress on stderr.\n",
               argv0, CYTOD_PATH);
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string{argv[1]} == "--cleanup-only")
    return cleanup_only(argv[2], argv[3]);

  settings cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      cfg.make_quick();
    } else if (a == "--cytod" && i + 1 < argc) {
      cfg.cytod = argv[++i];
    } else if (a == "--help" || a == "-h") {
      return usage(argv[0], 0);
    } else {
      std::fprintf(stderr, "cells_bench: unknown argument %s\n", a.c_str());
      return usage(argv[0], 2);
    }
  }

  install_handlers(on_fatal_signal, on_terminate);
  ::alarm(cfg.watchdog_s);
  auto t_start = steady::now();

  auto hs = v1_hierarchies();
  json doc = json::obj();
  doc["benchmark"] = "cells_bench";
  doc["mode"] = cfg.quick ? "quick" : "full";
  doc["machine"] = machine_info(hs);
  doc["settings"] = cfg.describe();
  doc["method"]
    = "latencies in microseconds, timed by this client. start: Cells.start(/bin/true) from "
      "request to answer (cytod answers once the process has exec'd in the cell's leaf "
      "cgroup), new executable name each time, Cells.wait for its exit outside the timed "
      "part. floor: fork of this process, the parent writes the child's pid into "
      "<hierarchy>/<root>/floor/_/cgroup.procs of every hierarchy cytod uses (open/write/"
      "close each, as cytod does), releases the child through a pipe, the child execs "
      "/bin/true; timed from before pipe2+fork to EOF on a close-on-exec pipe. start, "
      "floor and Node.services() no-ops run in interleaved rounds. allocate: Cells.allocate "
      "of cells with no limits, one call at a time and then pipelined on one connection. "
      "Targets for 1000 cells are projected linearly in quick mode.";

  std::snprintf(g_root, sizeof(g_root), "cyto-test-bench-%d", static_cast<int>(::getpid()));
  const std::string root = g_root;
  doc["cgroup_root"] = root;

  bool failed = false;
  std::string tmp;
  try {
    tmp = make_tmpdir();
  } catch (const std::exception& e) {
    note("%s", e.what());
    return 1;
  }

  std::unique_ptr<daemon_process> daemon;
  json cytod = json::obj();
  json cleanup = json::obj();
  {
    std::unique_ptr<kj::AsyncIoContext> io;
    std::unique_ptr<client> conn;
    std::unique_ptr<floor_spawner> floor;
    try {
      if (::geteuid() != 0)
        throw std::runtime_error("must run as root (it makes cgroups and runs cytod's cells)");
      if (hs.empty())
        throw std::runtime_error("no cgroup v1 hierarchy of cpu/cpuacct/cpuset/memory/pids/blkio "
                                 "is mounted under /sys/fs/cgroup: this benchmark measures the "
                                 "v1 (hybrid) path");
      // cytod is forked (and exec'd) before this process sets up its kj loop.
      daemon = std::make_unique<daemon_process>(cfg, tmp, root, cytod);
      sleep_s(cfg.idle_s);
      doc["rss_kib"]["idle"] = optional_number(status_field(daemon->pid(), "VmRSS"));
      cytod["threads_idle"] = optional_number(status_field(daemon->pid(), "Threads"));
      io = std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
      conn = std::make_unique<client>(*io, daemon->socket(), cfg.call_limit_s);
      auto services = conn->wait(conn->services(), "Node.services");
      bool has_cells = false;
      for (auto s : services.getNames())
        has_cells = has_cells || s == "cells";
      if (!has_cells)
        throw std::runtime_error("cytod does not offer the cells service");
      floor = std::make_unique<floor_spawner>(root);

      auto t0 = steady::now();
      run_start_phase(cfg, *conn, *daemon, *floor, doc);
      note("start phase: done in %.2f s", seconds_between(t0, steady::now()));
      floor.reset(); // its dirs go now; the rest of the root is cytod's

      t0 = steady::now();
      run_cells_phase(cfg, *conn, *daemon, doc);
      note("cells phase: done in %.2f s", seconds_between(t0, steady::now()));
      if (auto st = daemon->exited())
        throw std::runtime_error("cytod died during the benchmark: " + describe_status(*st));
    } catch (const std::exception& e) {
      auto why = describe_exception(e);
      if (daemon)
        if (auto st = daemon->exited())
          why = "cytod died (" + describe_status(*st) + "): " + why;
      note("failed: %s", why.c_str());
      doc["error"] = why;
      failed = true;
    }

    // Cleanup, on every path: free the cells through cytod while it still answers.
    floor.reset();
    if (conn && daemon && !daemon->exited()) {
      try {
        cleanup["cells_freed_at_end"] = free_all(*conn);
      } catch (const std::exception& e) {
        cleanup["free_error"] = describe_exception(e);
        failed = true;
      }
    }
    conn.reset();
    io.reset();
  }
  if (daemon) {
    sleep_s(0.05);
    cytod["rss_kib_at_end"] = optional_number(status_field(daemon->pid(), "VmRSS"));
    auto how = daemon->stop(SIGTERM, 5.0);
    cytod["exit"] = how;
    cytod["clean_exit"] = how == "exit 0";
    daemon.reset();
  }
  doc["cytod"] = std::move(cytod);

  auto left = remove_cgroup_root(root);
  for (auto& x : leftover_dirs(root))
    if (std::find(left.begin(), left.end(), x) == left.end())
      left.push_back(x);
  json::array l;
  for (auto& x : left)
    l.emplace_back(x);
  cleanup["cgroup_dirs_left"] = json{l};
  if (!left.empty())
    failed = true;
  {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    cleanup["tmpdir_removed"] = !fs::exists(tmp, ec);
    g_tmpdir[0] = 0;
  }
  g_root[0] = 0;
  doc["cleanup"] = std::move(cleanup);

  doc["machine"]["loadavg_1m_at_end"] = loadavg_1m();
  doc["total_seconds"] = seconds_between(t_start, steady::now());
  doc["ok"] = !failed;
  ::alarm(0);

  auto text = doc.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return failed ? 1 : 0;
}
