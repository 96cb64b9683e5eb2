#pragma once
// Shared pieces of the integration tests: a real cytod in a temporary directory, a
// Cap'n Proto client for it, and bounded helpers to run and watch child processes.
//
// Every wait here has a deadline; helpers throw std::runtime_error (which Boost.Test
// reports as a failure of the running test) instead of hanging.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>

#include "schema/node.capnp.h"

namespace cyto::test {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

inline constexpr const char* cytod_path = CYTOD_PATH;
inline constexpr const char* cli_path = CYTO_CLI_PATH;
inline constexpr uid_t nobody_uid = 65534;
inline constexpr gid_t nobody_gid = 65534;

// -- skipping ---------------------------------------------------------------------

/// Integration tests start cytod and switch uids: without root they cannot run at all.
/// Exit code 77 is what ctest reports as "skipped".
inline void require_root() {
  if (::geteuid() != 0) {
    std::printf("SKIP: integration tests need root (they run cytod and switch to uid %u); "
                "euid is %u\n",
                nobody_uid, ::geteuid());
    std::fflush(stdout);
    std::exit(77);
  }
}

/// Use as BOOST_TEST_GLOBAL_FIXTURE(root_required); it skips the whole executable.
struct root_required {
  root_required() {
    require_root();
    for (auto* p : {cytod_path, cli_path})
      if (::access(p, X_OK) != 0) {
        std::fprintf(stderr, "FATAL: %s is not an executable: %s\n", p, std::strerror(errno));
        std::exit(1);
      }
  }
};

/// One T for a whole test executable (its registry, daemon, images), made after the root
/// check: `using world_fixture = suite_world<world>; BOOST_TEST_GLOBAL_FIXTURE(world_fixture);`
/// and reached with world_fixture::get().
template <class T>
struct suite_world {
  suite_world() {
    require_root();
    ptr() = new T();
  }
  ~suite_world() {
    delete ptr();
    ptr() = nullptr;
  }
  static T& get() {
    return *ptr();
  }

private:
  static T*& ptr() {
    static T* p = nullptr;
    return p;
  }
};

// -- small helpers ----------------------------------------------------------------

inline std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out{path, std::ios::trunc};
  out << text;
  if (!out)
    throw std::runtime_error("cannot write " + path);
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    out.push_back(line);
  return out;
}

/// Unix nanoseconds now (the daemon runs on this host: one clock).
inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// RFC 3339 UTC with nanoseconds, as logs --since takes it.
inline std::string rfc3339(int64_t nanos) {
  time_t secs = nanos / 1'000'000'000;
  tm t{};
  gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(nanos % 1'000'000'000));
  return buf;
}

/// RFC 3339 back to Unix nanoseconds (timegm), or -1.
inline int64_t from_rfc3339(const std::string& text) {
  tm t{};
  long frac = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%9ldZ", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec, &frac) != 7 || text.size() != 30)
    return -1;
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&t)) * 1'000'000'000 + frac;
}

/// The non-empty fields of `text` separated by `sep`.
inline std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == sep) {
      if (!cur.empty())
        out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty())
    out.push_back(cur);
  return out;
}

/// A cgroup or cgroup2 mount of this host, read from /proc/self/mountinfo by the tests
/// themselves (independently of cytod's own parser).
struct host_cgroup_mount {
  std::string path;
  bool v2 = false;
  /// Super options (for v1 these name the controllers).
  std::vector<std::string> options;
};

inline std::vector<host_cgroup_mount> host_cgroup_mounts() {
  std::vector<host_cgroup_mount> out;
  for (auto& line : lines_of(read_text("/proc/self/mountinfo"))) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos)
      continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.empty() || (right[0] != "cgroup" && right[0] != "cgroup2"))
      continue;
    out.push_back({left[4], right[0] == "cgroup2",
                   right.size() >= 3 ? split(right[2], ',') : std::vector<std::string>{}});
  }
  return out;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::string describe_status(int status) {
  if (WIFEXITED(status))
    return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string{"killed by signal "} + std::to_string(WTERMSIG(status)) + " ("
           + ::strsignal(WTERMSIG(status)) + ")";
  return "wait status " + std::to_string(status);
}

/// Exit code of a wait status, or -1000 - signal if it did not exit normally.
inline int exit_code(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return -1000 - WTERMSIG(status);
  return -2000;
}

inline sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    throw std::runtime_error("socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

/// A blocking connect; returns the fd or -1 with errno set.
inline int try_connect_unix(const std::string& path) {
  auto addr = unix_address(path);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

inline int connect_unix(const std::string& path) {
  int fd = try_connect_unix(path);
  if (fd < 0)
    throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
  return fd;
}

/// waitpid with a deadline. Returns the wait status, or nullopt if the child is still
/// running when the deadline passes.
inline std::optional<int> wait_pid_for(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return status;
    if (r < 0 && errno != EINTR)
      throw std::runtime_error("waitpid " + std::to_string(pid) + ": " + std::strerror(errno));
    if (steady::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

/// Waits for pid; SIGKILLs and reaps it when the deadline passes (then throws).
inline int wait_pid_or_kill(pid_t pid, std::chrono::milliseconds timeout, const std::string& what) {
  if (auto st = wait_pid_for(pid, timeout))
    return *st;
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  throw std::runtime_error(what + " (pid " + std::to_string(pid) + ") did not finish within "
                           + std::to_string(timeout.count()) + " ms; killed");
}

/// In a forked child: give up root for good (nobody/nogroup, no supplementary groups).
inline bool drop_to_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setgid(nobody_gid) == 0 && ::setuid(nobody_uid) == 0
         && ::geteuid() == nobody_uid;
}

/// Prepares a forked child that will exec: default signal mask, dies with the test.
inline void child_common_setup() {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
}

// -- temporary directory --------------------------------------------------------------

class temp_dir {
public:
  temp_dir() {
    char tmpl[] = "/tmp/cyto-test-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
      throw std::runtime_error(std::string{"mkdtemp: "} + std::strerror(errno));
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const {
    return path_;
  }
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

// -- child processes ------------------------------------------------------------------

/// A child process whose stdout and stderr the test reads through pipes (or which
/// writes both to a file). The destructor SIGKILLs and reaps it if it still runs.
class child_process {
public:
  /// Starts argv[0] with argv. With log_file, stdout and stderr go (appended) there.
  explicit child_process(const std::vector<std::string>& argv,
                         std::optional<std::string> log_file = std::nullopt) {
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (!log_file && (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0))
      throw std::runtime_error(std::string{"pipe2: "} + std::strerror(errno));
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
    if (pid_ == 0) {
      child_common_setup();
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      if (log_file) {
        int fd = ::open(log_file->c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0)
          ::_exit(126);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      } else {
        ::dup2(out[1], 1);
        ::dup2(err[1], 2);
      }
      ::execv(args[0], args.data());
      std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    if (!log_file) {
      ::close(out[1]);
      ::close(err[1]);
      out_fd_ = out[0];
      err_fd_ = err[0];
    }
  }

  ~child_process() {
    if (out_fd_ >= 0)
      ::close(out_fd_);
    if (err_fd_ >= 0)
      ::close(err_fd_);
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const {
    return pid_;
  }
  const std::string& out() const {
    return out_;
  }
  const std::string& err() const {
    return err_;
  }
  std::optional<int> status() const {
    return status_;
  }

  /// Reads output until pred(stdout) holds, both pipes reach EOF, or the timeout passes.
  /// Returns whether pred held.
  bool read_until(const std::function<bool(const std::string&)>& pred,
                  std::chrono::milliseconds timeout) {
    auto deadline = steady::now() + timeout;
    while (true) {
      if (pred(out_))
        return true;
      if (out_fd_ < 0 && err_fd_ < 0)
        return false;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
      if (left <= 0ms)
        return false;
      pump(static_cast<int>(std::min<long long>(left.count(), 100)));
    }
  }

  /// Reads everything until EOF and waits for exit; kills the child (and throws) if it
  /// takes longer than the timeout. Returns the wait status.
  int wait(std::chrono::milliseconds timeout) {
    if (status_)
      return *status_;
    auto deadline = steady::now() + timeout;
    while ((out_fd_ >= 0 || err_fd_ >= 0) && steady::now() < deadline)
      pump(50);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
    auto st = wait_pid_for(pid_, std::max(left, 0ms));
    if (!st) {
      ::kill(pid_, SIGKILL);
      int s = 0;
      ::waitpid(pid_, &s, 0);
      status_ = s;
      drain();
      throw std::runtime_error("child " + std::to_string(pid_) + " did not finish within "
                               + std::to_string(timeout.count()) + " ms; killed. stdout: " + out_
                               + " stderr: " + err_);
    }
    status_ = *st;
    drain();
    return *status_;
  }

  /// Reaps the child if it has exited (without blocking); returns its status then.
  std::optional<int> try_wait() {
    if (status_)
      return status_;
    if (auto st = wait_pid_for(pid_, 0ms)) {
      status_ = *st;
      drain();
    }
    return status_;
  }

  /// Sends sig and waits (bounded) for the child to end; returns the wait status.
  int kill_and_wait(int sig, std::chrono::milliseconds timeout) {
    if (!status_)
      ::kill(pid_, sig);
    return wait(timeout);
  }

private:
  void drain() {
    while (out_fd_ >= 0 || err_fd_ >= 0)
      if (!pump(0))
        break;
  }

  /// One poll round over the open pipes; returns false if nothing was ready.
  bool pump(int timeout_ms) {
    pollfd fds[2];
    int n = 0;
    if (out_fd_ >= 0)
      fds[n++] = {out_fd_, POLLIN, 0};
    if (err_fd_ >= 0)
      fds[n++] = {err_fd_, POLLIN, 0};
    if (n == 0)
      return false;
    int r = ::poll(fds, n, timeout_ms);
    if (r <= 0)
      return false;
    for (int i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
        continue;
      bool is_out = fds[i].fd == out_fd_;
      char buf[4096];
      auto got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got > 0) {
        (is_out ? out_ : err_).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        (is_out ? out_fd_ : err_fd_) = -1;
      }
    }
    return true;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::optional<int> status_;
};

struct process_result {
  int status = -1;
  std::string out;
  std::string err;
  int code() const {
    return exit_code(status);
  }
};

/// Runs argv to completion (bounded) and returns its status and output.
inline process_result run_process(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout = 15s) {
  child_process p{argv};
  int st = p.wait(timeout);
  return {st, p.out(), p.err()};
}

// -- Cap'n Proto client -------------------------------------------------------------

/// One RPC connection to cytod on the given kj event loop.
class rpc_connection {
public:
  rpc_connection(kj::AsyncIoContext& io, const std::string& socket_path)
    : stream_(io.lowLevelProvider->wrapSocketFd(connect_unix(socket_path),
                                                kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      client_(kj::heap<capnp::TwoPartyClient>(*stream_)),
      node_(client_->bootstrap().castAs<schema::Node>()) {
  }

  schema::Node::Client& node() {
    return node_;
  }

private:
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> client_;
  schema::Node::Client node_;
};

/// Waits for a promise on the loop; throws kj's "timed out" exception after the timeout.
template <class T>
T wait_for(kj::AsyncIoContext& io, kj::Promise<T>&& promise,
           kj::Duration timeout = 10 * kj::SECONDS) {
  return io.provider->getTimer().timeoutAfter(timeout, kj::mv(promise)).wait(io.waitScope);
}

template <class T>
capnp::Response<T> wait_for(kj::AsyncIoContext& io, capnp::RemotePromise<T>&& promise,
                            kj::Duration timeout = 10 * kj::SECONDS) {
  return wait_for(io, kj::Promise<capnp::Response<T>>(kj::mv(promise)), timeout);
}

/// Turns the loop until pred() holds or the timeout passes; returns whether it held.
template <class Pred>
bool pump_until(kj::AsyncIoContext& io, Pred&& pred, std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  while (!pred()) {
    if (steady::now() >= deadline)
      return false;
    io.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(io.waitScope);
  }
  return true;
}

// -- the daemon -----------------------------------------------------------------------

/// A real cytod in a fresh temporary directory:
///   <dir>/cyto.sock   the socket
///   <dir>/state/      the state dir
///   <dir>/cytod.log   its stdout and stderr
class daemon_fixture {
public:
  explicit daemon_fixture(bool start_now = true) {
    static std::atomic<int> counter{0};
    node_name_ = "itest-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    if (start_now)
      start();
  }

  ~daemon_fixture() {
    if (proc_ && !proc_->status()) {
      ::kill(proc_->pid(), SIGKILL);
      try {
        proc_->wait(10s);
      } catch (...) {
      }
    }
    proc_.reset();
    remove_cgroup_root();
    unmount_state_mounts();
  }

  daemon_fixture(const daemon_fixture&) = delete;
  daemon_fixture& operator=(const daemon_fixture&) = delete;

  const std::string& dir() const {
    return dir_.path();
  }
  std::string socket_path() const {
    return dir_ / "cyto.sock";
  }
  std::string state_dir() const {
    return dir_ / "state";
  }
  std::string log_path() const {
    return dir_ / "cytod.log";
  }
  const std::string& node_name() const {
    return node_name_;
  }
  /// The daemon's own cgroup subtree (one per fixture, removed with it).
  std::string cgroup_root() const {
    return "cyto-test-" + node_name_;
  }

  /// Kills whatever still runs in this fixture's cgroup subtree and removes it in
  /// every hierarchy (cells outlive a killed daemon by design; tests must not leak them).
  void remove_cgroup_root() const {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec}) {
      auto top = h.path() / cgroup_root();
      if (!fs::is_directory(top, ec))
        continue;
      std::vector<fs::path> dirs{top};
      for (auto& e : fs::recursive_directory_iterator{top, ec})
        if (e.is_directory(ec))
          dirs.push_back(e.path());
      for (int round = 0; round < 200; ++round) {
        bool any = false;
        for (auto& d : dirs) {
          std::ifstream procs{d / "cgroup.procs"};
          pid_t p;
          while (procs >> p) {
            ::kill(p, SIGKILL);
            any = true;
          }
        }
        if (!any)
          break;
        std::this_thread::sleep_for(10ms);
      }
      std::sort(dirs.begin(), dirs.end(),
                [](auto& a, auto& b) { return a.string().size() > b.string().size(); });
      for (auto& d : dirs)
        ::rmdir(d.c_str());
    }
  }

  /// Everything mounted below the state dir (netns files, containers' and images' rootfs),
  /// deepest first: a test that ends early leaves them behind a killed daemon, and the
  /// temporary directory cannot go while they are mounted.
  void unmount_state_mounts() const {
    std::vector<std::string> mounts;
    auto prefix = state_dir() + "/";
    for (auto& line : lines_of(read_text("/proc/self/mountinfo"))) {
      auto f = split(line, ' ');
      if (f.size() > 4 && f[4].rfind(prefix, 0) == 0)
        mounts.push_back(f[4]);
    }
    std::sort(mounts.begin(), mounts.end(),
              [](auto& a, auto& b) { return a.size() > b.size(); });
    for (auto& m : mounts)
      ::umount2(m.c_str(), MNT_DETACH);
  }

  pid_t pid() const {
    return proc_ ? proc_->pid() : -1;
  }

  /// Runs cytod through this command (an absolute path first), e.g.
  /// {"/usr/bin/nsenter", "--net=/run/netns/x", "--"} to run it in a test's netns.
  void set_wrapper(std::vector<std::string> wrapper) {
    wrapper_ = std::move(wrapper);
  }

  /// Lets containers and pods made without --network join the default network (off
  /// otherwise: a daemon on the host's namespace must never make a bridge, veth or
  /// iptables rule there). Only for a daemon run in a test's netns (set_wrapper first).
  void use_default_network() {
    if (wrapper_.empty())
      throw std::runtime_error("use_default_network: run the daemon in a test netns first");
    default_network_ = true;
  }

  std::vector<std::string> argv(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = wrapper_;
    for (auto& x : {std::string{cytod_path}, std::string{"--socket"}, socket_path(),
                    std::string{"--state-dir"}, state_dir(), std::string{"--node-name"},
                    node_name_, std::string{"--cgroup-root"}, cgroup_root()})
      a.push_back(x);
    if (!default_network_) {
      a.push_back("--default-network");
      a.push_back("none");
    }
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  /// Starts cytod and waits (at most `timeout`) until its socket accepts connections
  /// and it has logged that it is ready.
  void start(const std::vector<std::string>& extra = {}, std::chrono::milliseconds timeout = 10s) {
    if (proc_ && !proc_->status())
      throw std::runtime_error("cytod is already running");
    proc_ = std::make_unique<child_process>(argv(extra), log_path());
    auto deadline = steady::now() + timeout;
    while (true) {
      if (auto st = proc_->try_wait()) {
        throw std::runtime_error("cytod exited during start-up (" + describe_status(*st)
                                 + "); its log:\n" + log());
      }
      int fd = try_connect_unix(socket_path());
      if (fd >= 0) {
        ::close(fd);
        // This process's ready line (the log holds those of earlier starts too, and a
        // child of a killed predecessor, between its clone and exec, may still hold the
        // listening socket).
        auto text = log();
        if (contains(text, " ready: ")
            && contains(text, " pid=" + std::to_string(proc_->pid()) + "\n"))
          return;
      }
      if (steady::now() >= deadline) {
        ::kill(proc_->pid(), SIGKILL);
        proc_->wait(5s);
        throw std::runtime_error("cytod was not ready within "
                                 + std::to_string(timeout.count()) + " ms; its log:\n" + log());
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  /// Sends sig and waits for cytod to exit; returns the wait status. SIGKILLs it and
  /// throws if it does not exit in time.
  int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = 10s) {
    if (!proc_)
      throw std::runtime_error("cytod was never started");
    if (proc_->status())
      return *proc_->status();
    ::kill(proc_->pid(), sig);
    auto deadline = steady::now() + timeout;
    while (steady::now() < deadline) {
      if (auto st = proc_->try_wait())
        return *st;
      std::this_thread::sleep_for(5ms);
    }
    ::kill(proc_->pid(), SIGKILL);
    proc_->wait(5s);
    throw std::runtime_error("cytod did not exit within " + std::to_string(timeout.count())
                             + " ms after signal " + std::to_string(sig) + "; its log:\n" + log());
  }

  /// True while the daemon process has not exited (reaps it if it has).
  bool running() {
    return proc_ && !proc_->try_wait();
  }

  std::optional<int> exit_status() const {
    return proc_ ? proc_->status() : std::nullopt;
  }

  std::string log() const {
    return read_text(log_path());
  }

  /// Lets every uid reach the socket (directory 0711, socket 0666), so that the
  /// daemon's own peer check is the only thing that refuses other users.
  void open_to_everyone() const {
    if (::chmod(dir().c_str(), 0711) != 0 || ::chmod(socket_path().c_str(), 0666) != 0)
      throw std::runtime_error(std::string{"chmod: "} + std::strerror(errno));
  }

  std::unique_ptr<rpc_connection> connect(kj::AsyncIoContext& io) const {
    return std::make_unique<rpc_connection>(io, socket_path());
  }

  /// Forks a child that becomes uid/gid 65534 and connects to the socket (raw, no RPC),
  /// then closes. The daemon refuses it and logs "refused peer pid=<child>". Returns the
  /// child's pid once it has finished; throws if it could not connect.
  pid_t connect_as_nobody() const {
    auto path = socket_path();
    pid_t pid = ::fork();
    if (pid < 0)
      throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
    if (pid == 0) {
      if (!drop_to_nobody())
        ::_exit(3);
      int fd = try_connect_unix(path);
      if (fd < 0)
        ::_exit(4);
      ::close(fd);
      ::_exit(0);
    }
    int st = wait_pid_or_kill(pid, 10s, "connect-as-nobody child");
    if (exit_code(st) != 0)
      throw std::runtime_error("connect-as-nobody child failed: " + describe_status(st)
                               + " (3: could not drop to nobody, 4: connect refused by the "
                                 "file system; did you call open_to_everyone()?)");
    return pid;
  }

private:
  temp_dir dir_;
  std::string node_name_;
  std::vector<std::string> wrapper_;
  bool default_network_ = false;
  std::unique_ptr<child_process> proc_;
};

/// The daemon's log lines whose level (second field) is one of the given levels.
inline std::vector<std::string> log_lines_at(const std::string& log,
                                             std::initializer_list<std::string_view> levels) {
  std::vector<std::string> out;
  for (auto& line : lines_of(log)) {
    std::istringstream ss{line};
    std::string time, level;
    ss >> time >> level;
    for (auto l : levels)
      if (level == l)
        out.push_back(line);
  }
  return out;
}

} // namespace cyto::test
