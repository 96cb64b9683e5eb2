// cytod under systemd's protocols, without systemd: the test plays systemd. It makes the
// listening socket itself and starts cytod the way systemd does (fork; in the child
// LISTEN_FDS=1, LISTEN_PID=<its own pid>, the socket on fd 3; exec), restarts it with the
// same socket while a client loop runs, and listens on a NOTIFY_SOCKET of its own for
// READY/STATUS/WATCHDOG/STOPPING. Bad input: the wrong kind of fd, another process's
// LISTEN_PID, an unreadable config file.
#define BOOST_TEST_MODULE integration_socket_activation
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

extern "C" char** environ;

/// A listening unix stream socket at `path` (what cytod.socket makes).
int listening_socket(const std::string& path, int backlog = 128) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto addr = unix_address(path);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, backlog) != 0)
    throw std::runtime_error("listening socket " + path + ": " + std::strerror(errno));
  return fd;
}

struct activation_env {
  /// The fd that becomes fd 3 in the child (-1: none passed).
  int fd = -1;
  /// LISTEN_PID: the child's own pid unless set.
  std::optional<pid_t> listen_pid;
  /// Extra "K=V" entries (NOTIFY_SOCKET, WATCHDOG_USEC); "WATCHDOG_PID=self" becomes
  /// the child's pid.
  std::vector<std::string> extra;
  bool as_nobody = false;
};

/// cytod started like systemd starts a socket-activated service. Output goes to `log`.
class activated_cytod {
public:
  activated_cytod(const std::vector<std::string>& argv, const std::string& log,
                  const activation_env& env)
      : log_(log) {
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      if (kv.rfind("LISTEN_", 0) != 0 && kv.rfind("NOTIFY_SOCKET=", 0) != 0 &&
          kv.rfind("WATCHDOG_", 0) != 0)
        envs.push_back(kv);
    }
    bool self_watchdog = false;
    for (auto& x : env.extra) {
      if (x == "WATCHDOG_PID=self")
        self_watchdog = true;
      else
        envs.push_back(x);
    }
    if (env.fd >= 0)
      envs.push_back("LISTEN_FDS=1");
    std::vector<char*> args, envp;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    for (auto& e : envs)
      envp.push_back(const_cast<char*>(e.c_str()));
    // Filled in by the child with its own pid (or the given one), as systemd does.
    char listen_pid[32] = {}, watchdog_pid[32] = {};
    if (env.fd >= 0)
      envp.push_back(listen_pid);
    if (self_watchdog)
      envp.push_back(watchdog_pid);
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0)
      throw std::runtime_error(std::string{"fork: "} + std::strerror(errno));
    if (pid_ == 0) {
      child_common_setup();
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (out < 0 || devnull < 0)
        ::_exit(126);
      ::dup2(devnull, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      if (env.fd >= 0) {
        if (env.fd == 3)
          ::fcntl(3, F_SETFD, 0);
        else if (::dup2(env.fd, 3) != 3) // dup2 clears close-on-exec on the copy
          ::_exit(125);
        std::snprintf(listen_pid, sizeof(listen_pid), "LISTEN_PID=%d",
                      env.listen_pid ? *env.listen_pid : ::getpid());
      }
      if (self_watchdog)
        std::snprintf(watchdog_pid, sizeof(watchdog_pid), "WATCHDOG_PID=%d", ::getpid());
      if (env.as_nobody && !drop_to_nobody())
        ::_exit(124);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
  }

  ~activated_cytod() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }

  pid_t pid() const {
    return pid_;
  }

  std::string log() const {
    return read_text(log_);
  }

  /// Waits until the log says ready (throws if cytod exits first or takes too long).
  void wait_ready(std::chrono::milliseconds timeout = 20s) {
    auto deadline = steady::now() + timeout;
    while (!contains(log(), " ready: node=")) {
      if (auto st = wait_pid_for(pid_, 0ms)) {
        status_ = *st;
        throw std::runtime_error("cytod exited during start-up (" + describe_status(*st) +
                                 "); its log:\n" + log());
      }
      if (steady::now() > deadline)
        throw std::runtime_error("cytod not ready in time; its log:\n" + log());
      std::this_thread::sleep_for(5ms);
    }
  }

  /// Waits for exit; returns the wait status.
  int wait(std::chrono::milliseconds timeout = 20s) {
    if (!status_)
      status_ = wait_pid_or_kill(pid_, timeout, "cytod");
    return *status_;
  }

  int stop(int sig = SIGTERM) {
    if (!status_)
      ::kill(pid_, sig);
    return wait();
  }

private:
  std::string log_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

process_result cli(const daemon_fixture& d, std::vector<std::string> args) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, 60s);
}

/// Seconds as a double since `t0`.
double since(steady::time_point t0, steady::time_point t) {
  return std::chrono::duration<double>(t - t0).count();
}

} // namespace

BOOST_AUTO_TEST_CASE(restart_on_an_inherited_socket_loses_no_client_call) {
  daemon_fixture d{false};
  int sock = listening_socket(d.socket_path());
  auto argv = d.argv();
  auto first = std::make_unique<activated_cytod>(argv, d.log_path(), activation_env{sock});
  first->wait_ready();
  BOOST_TEST(contains(first->log(), "listening on inherited socket " + d.socket_path()),
             first->log());

  // Workloads started before the restart: a container and a cell's executable.
  auto run = cli(d, {"run", "-d", "--name", "keep", "demo", "sleep", "300"});
  BOOST_TEST_REQUIRE(run.code() == 0, run.err);
  auto before = cli(d, {"--json", "ps"});
  BOOST_TEST_REQUIRE(before.code() == 0, before.err);
  BOOST_TEST_REQUIRE(cli(d, {"cell", "allocate", "kept"}).code() == 0);
  auto started = cli(d, {"cell", "start", "kept", "--name", "nap", "--", "/bin/sleep", "300"});
  BOOST_TEST_REQUIRE(started.code() == 0, started.err);
  auto exe_pid = [&] {
    auto r = cli(d, {"--json", "cell", "inspect", "kept"});
    if (r.code() != 0) {
      BOOST_TEST_MESSAGE("cell inspect: " << r.err);
      return -1;
    }
    auto cell = nlohmann::json::parse(r.out);
    for (auto& e : cell.at("executables"))
      if (e.at("name") == "nap")
        return e.at("pid").get<int>();
    return -1;
  };
  auto nap_before = exe_pid();
  BOOST_TEST_REQUIRE(nap_before > 0);
  auto listed = nlohmann::json::parse(before.out);
  BOOST_TEST_REQUIRE(listed.size() == 1u, before.out);
  auto pid_before = listed.at(0).at("pid").get<int>();

  // A client: one `cyto discover` after the other, each a fresh connection; it never
  // retries, so any refused or dropped connection is an error it reports.
  struct call {
    steady::time_point start, end;
    int code;
    std::string err;
  };
  // Three such clients at once, so that connections also arrive while the old daemon
  // drains and while the new one starts.
  constexpr int clients = 3;
  std::vector<call> per_client[clients];
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      while (!stop) {
        call c;
        c.start = steady::now();
        auto r = cli(d, {"discover"});
        c.end = steady::now();
        c.code = r.code();
        c.err = r.err;
        per_client[i].push_back(std::move(c));
      }
    });
  std::this_thread::sleep_for(400ms);
  auto t_term = steady::now();
  BOOST_TEST(exit_code(first->stop()) == 0);
  auto t_down = steady::now();
  // The path stays: the socket is the test's (systemd's), not the daemon's to remove.
  BOOST_TEST(std::filesystem::exists(d.socket_path()));
  auto second = std::make_unique<activated_cytod>(argv, d.log_path() + ".2", activation_env{sock});
  second->wait_ready();
  auto t_up = steady::now();
  std::this_thread::sleep_for(400ms);
  stop = true;
  for (auto& t : threads)
    t.join();
  std::vector<call> calls;
  for (auto& v : per_client)
    calls.insert(calls.end(), v.begin(), v.end());

  size_t failed = 0, queued = 0;
  for (auto& c : calls) {
    if (c.code != 0) {
      ++failed;
      BOOST_TEST_MESSAGE("failed call at +" << since(t_term, c.start) << " s: " << c.err);
    }
    // Under way while no daemon was accepting (the old one serves only calls it accepted
    // before SIGTERM, all done by its exit): it waited in the backlog for the new one.
    if (c.start < t_up && c.end > t_down)
      ++queued;
  }
  std::printf("{\"calls\": %zu, \"failed\": %zu, \"queued_during_restart\": %zu, "
              "\"stop_s\": %.3f, \"start_s\": %.3f}\n",
              calls.size(), failed, queued, since(t_term, t_down), since(t_down, t_up));
  BOOST_TEST(failed == 0u);
  BOOST_TEST(calls.size() > 10u);
  BOOST_TEST(queued >= static_cast<size_t>(clients));

  // The new daemon re-adopted the container: same process, still running.
  auto after = cli(d, {"--json", "ps"});
  BOOST_TEST_REQUIRE(after.code() == 0, after.err);
  auto after_list = nlohmann::json::parse(after.out);
  BOOST_TEST_REQUIRE(after_list.size() == 1u, after.out);
  auto j = after_list.at(0);
  BOOST_TEST(j.at("name").get<std::string>() == "keep");
  BOOST_TEST(j.at("pid").get<int>() == pid_before);
  BOOST_TEST(::kill(pid_before, 0) == 0);
  // And the cell's executable: the same process, known to the new daemon.
  BOOST_TEST(exe_pid() == nap_before);
  BOOST_TEST(::kill(nap_before, 0) == 0);
  BOOST_TEST(cli(d, {"rm", "-f", "keep"}).code() == 0);
  BOOST_TEST(cli(d, {"cell", "free", "kept", "--force"}).code() == 0);
  BOOST_TEST(exit_code(second->stop()) == 0);
  ::close(sock);
}

BOOST_AUTO_TEST_CASE(notify_socket_gets_ready_status_watchdog_and_stopping) {
  daemon_fixture d{false};
  int sock = listening_socket(d.socket_path());
  auto notify_path = d.dir() + "/notify.sock";
  int notify = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  auto addr = unix_address(notify_path);
  BOOST_TEST_REQUIRE(::bind(notify, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  activation_env env{sock};
  env.extra = {"NOTIFY_SOCKET=" + notify_path, "WATCHDOG_USEC=300000", "WATCHDOG_PID=self"};
  activated_cytod daemon{d.argv(), d.log_path(), env};
  daemon.wait_ready();
  std::string got;
  auto read_for = [&](std::chrono::milliseconds t) {
    auto deadline = steady::now() + t;
    while (steady::now() < deadline) {
      pollfd p{notify, POLLIN, 0};
      if (::poll(&p, 1, 20) == 1) {
        char buf[4096];
        auto n = ::recv(notify, buf, sizeof(buf), 0);
        if (n > 0)
          got.append(buf, static_cast<size_t>(n)).append("\n");
      }
    }
  };
  read_for(1000ms);
  BOOST_TEST(contains(got, "READY=1"));
  BOOST_TEST(contains(got, "STATUS=serving on " + d.socket_path() + " (socket activated)"));
  size_t pings = 0;
  for (size_t at = got.find("WATCHDOG=1"); at != std::string::npos;
       at = got.find("WATCHDOG=1", at + 1))
    ++pings;
  // Every 150 ms (half of WATCHDOG_USEC), each after the node actor answered.
  BOOST_TEST(pings >= 3u, got);
  ::kill(daemon.pid(), SIGTERM);
  read_for(500ms);
  BOOST_TEST(contains(got, "STOPPING=1"));
  BOOST_TEST(exit_code(daemon.wait()) == 0);
  ::close(notify);
  ::close(sock);
}

namespace {

/// cytod with `fd` passed as its socket must refuse to start with `why` in its error,
/// and create nothing (no state dir).
void expect_refused(int fd, std::optional<pid_t> listen_pid, const std::string& why) {
  daemon_fixture d{false};
  activation_env env{fd, listen_pid};
  activated_cytod daemon{d.argv(), d.log_path(), env};
  int st = daemon.wait();
  auto log = daemon.log();
  BOOST_TEST(exit_code(st) == 2, log);
  BOOST_TEST(contains(log, "cytod: cyto.invalid_argument: "), log);
  BOOST_TEST(contains(log, why), log);
  BOOST_TEST(!std::filesystem::exists(d.state_dir()));
}

} // namespace

BOOST_AUTO_TEST_CASE(a_datagram_socket_is_refused) {
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  expect_refused(fd, std::nullopt, "fd 3 is a unix socket of type SOCK_DGRAM, not SOCK_STREAM");
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(a_regular_file_is_refused) {
  temp_dir t;
  int fd = ::open((t / "not-a-socket").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  expect_refused(fd, std::nullopt, "fd 3 is a regular file, not a listening unix stream socket");
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(a_socket_that_does_not_listen_is_refused) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  expect_refused(fd, std::nullopt, "fd 3 is a unix stream socket that is not listening");
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(listen_pid_of_another_process_is_refused) {
  temp_dir t;
  int fd = listening_socket(t / "s.sock");
  // The test's own pid: the sockets were meant for it, not for the cytod it started.
  expect_refused(fd, ::getpid(),
                 "LISTEN_PID=" + std::to_string(::getpid()) + " names another process");
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(an_unreadable_config_file_is_named) {
  daemon_fixture d{false};
  auto missing = d.dir() + "/missing.toml";
  auto r = run_process({cytod_path, "--config", missing, "--state-dir", d.state_dir()});
  BOOST_TEST(r.code() == 2);
  BOOST_TEST(contains(r.err, "cytod: config " + missing + ": cannot read the file: No such file"),
             r.err);
  // A directory opens like a file but is none.
  r = run_process({cytod_path, "--config", d.dir(), "--state-dir", d.state_dir()});
  BOOST_TEST(r.code() == 2);
  BOOST_TEST(contains(r.err, "config " + d.dir() + ": cannot read the file: not a regular file"),
             r.err);
  // Permission denied, for a cytod that is not root (root reads any file).
  auto secret = d.dir() + "/secret.toml";
  write_text(secret, "log_level = \"info\"\n");
  ::chmod(secret.c_str(), 0600);
  ::chmod(d.dir().c_str(), 0711);
  activation_env env;
  env.as_nobody = true;
  activated_cytod nobody{{cytod_path, "--config", secret, "--state-dir", d.dir() + "/nobody"},
                         d.dir() + "/nobody.log",
                         env};
  int st = nobody.wait();
  BOOST_TEST(exit_code(st) == 2);
  BOOST_TEST(
      contains(nobody.log(), "config " + secret + ": cannot read the file: Permission denied"),
      nobody.log());
  BOOST_TEST(!std::filesystem::exists(d.state_dir()));
}
