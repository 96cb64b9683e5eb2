// Integration tests of -i/-t: the cyto CLI runs under a pty the test opens (like a user's
// terminal), talks to a real cytod, and what the container's shell sees (its tty, its
// window size, signals) is read back through that terminal. Needs root (exits 77 otherwise).
#define BOOST_TEST_MODULE integration_tty
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// One daemon (it imports the build's demo image on start) for the suite.
struct suite {
  daemon_fixture d;
  suite() {
    // The demo image is imported in the background: wait for it.
    for (int i = 0; i < 300; ++i) {
      auto r = run_process({cli_path, "--socket", d.socket_path(), "image", "inspect", "demo"});
      if (r.code() == 0)
        return;
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("the demo image was not imported:\n" + d.log());
  }
};

suite& env() {
  static suite s;
  return s;
}

std::vector<std::string> cyto_argv(std::vector<std::string> args) {
  std::vector<std::string> argv{cli_path, "--socket", env().d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

process_result cli(const std::vector<std::string>& args, std::chrono::milliseconds t = 30s) {
  return run_process(cyto_argv(args), t);
}

/// The CLI on a pty of ours: its stdin, stdout and stderr and controlling terminal are
/// the slave; the test types into the master and reads what the CLI shows.
class pty_cli {
public:
  explicit pty_cli(const std::vector<std::string>& args, unsigned short rows = 24,
                   unsigned short cols = 80) {
    winsize ws{};
    ws.ws_row = rows;
    ws.ws_col = cols;
    if (::openpty(&master_, &slave_, nullptr, nullptr, &ws) != 0)
      throw std::runtime_error(std::string{"openpty: "} + std::strerror(errno));
    ::tcgetattr(slave_, &before_);
    auto argv = cyto_argv(args);
    std::vector<char*> av;
    for (auto& a : argv)
      av.push_back(a.data());
    av.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      child_common_setup();
      ::setsid();
      ::ioctl(slave_, TIOCSCTTY, 0);
      for (int fd = 0; fd < 3; ++fd)
        ::dup2(slave_, fd);
      ::close(master_);
      ::execv(av[0], av.data());
      ::_exit(127);
    }
  }
  ~pty_cli() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(master_);
    ::close(slave_);
  }

  void type(const std::string& text) {
    BOOST_REQUIRE_EQUAL(::write(master_, text.data(), text.size()),
                        static_cast<ssize_t>(text.size()));
  }

  /// Reads until `what` has been shown (true) or `timeout` passed (false).
  bool expect(const std::string& what, std::chrono::milliseconds timeout = 20s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (screen_.find(what, seen_) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[4096];
      auto n = ::read(master_, buf, sizeof(buf));
      if (n > 0)
        screen_.append(buf, static_cast<size_t>(n));
      else
        std::this_thread::sleep_for(10ms);
    }
    seen_ = screen_.find(what, seen_) + what.size();
    return true;
  }

  /// The CLI's exit code (-1 after the timeout).
  int wait(std::chrono::milliseconds timeout = 20s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = st;
        drain();
        return exit_code(st);
      }
      drain();
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

  void resize(unsigned short rows, unsigned short cols) {
    winsize ws{};
    ws.ws_row = rows;
    ws.ws_col = cols;
    ::ioctl(master_, TIOCSWINSZ, &ws);
  }
  void signal(int sig) {
    ::kill(pid_, sig);
  }
  /// The slave's mode now is the one before the CLI ran (echo, canonical, signals).
  bool mode_restored() const {
    termios now{};
    ::tcgetattr(slave_, &now);
    return now.c_lflag == before_.c_lflag && now.c_iflag == before_.c_iflag &&
           now.c_oflag == before_.c_oflag;
  }
  const std::string& screen() const {
    return screen_;
  }

private:
  void drain() {
    char buf[4096];
    pollfd p{master_, POLLIN, 0};
    while (::poll(&p, 1, 0) > 0) {
      auto n = ::read(master_, buf, sizeof(buf));
      if (n <= 0)
        break;
      screen_.append(buf, static_cast<size_t>(n));
    }
  }

  int master_ = -1, slave_ = -1;
  pid_t pid_ = -1;
  std::optional<int> status_;
  termios before_{};
  std::string screen_;
  size_t seen_ = 0;
};

json inspect(const std::string& name) {
  auto r = cli({"inspect", "--json", name});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "inspect " << name << ": " << r.err);
  return json::parse(r.out).at(0);
}

std::set<std::string> all_names() {
  auto r = cli({"ps", "-a", "--json"});
  BOOST_REQUIRE_EQUAL(r.code(), 0);
  std::set<std::string> out;
  for (auto& c : json::parse(r.out))
    out.insert(c.at("name").get<std::string>());
  return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(run_it_gives_a_shell_on_a_terminal) {
  pty_cli t{{"run", "-it", "--rm", "--name", "tty-sh", "demo", "sh"}};
  t.type("echo $((6*7)); tty; exit 3\n");
  BOOST_CHECK_MESSAGE(t.expect("42"), t.screen());
  BOOST_CHECK_MESSAGE(t.expect("/dev/pts/"), t.screen());
  BOOST_CHECK_EQUAL(t.wait(), 3);
  BOOST_CHECK_MESSAGE(t.mode_restored(), "the terminal is still in raw mode");
  BOOST_CHECK(!all_names().count("tty-sh"));
}

BOOST_AUTO_TEST_CASE(run_i_pipes_stdin_to_the_container) {
  auto line = "printf 'a\\nb\\n' | " + std::string{cli_path} + " --socket " +
              env().d.socket_path() + " run -i --rm demo wc -l";
  auto r = run_process({"/bin/sh", "-c", line}, 30s);
  BOOST_CHECK_EQUAL(r.code(), 0);
  BOOST_CHECK_EQUAL(r.out.substr(r.out.find_first_not_of(' ')), "2\n");
}

BOOST_AUTO_TEST_CASE(run_i_reads_a_stdin_epoll_cannot_watch) {
  // A regular file and /dev/null as stdin (epoll refuses both with EPERM).
  auto file = env().d.state_dir() + "/../stdin.txt";
  {
    std::ofstream out{file};
    out << "one\ntwo\nthree\n";
  }
  auto base = std::string{cli_path} + " --socket " + env().d.socket_path() + " run -i --rm";
  auto r = run_process({"/bin/sh", "-c", base + " --name from-file demo wc -l < " + file}, 30s);
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out.substr(r.out.find_first_not_of(' ')), "3\n");
  r = run_process({"/bin/sh", "-c", base + " --name from-null demo cat < /dev/null"}, 30s);
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "");
  BOOST_CHECK(!all_names().count("from-file"));
  BOOST_CHECK(!all_names().count("from-null"));
  std::remove(file.c_str());
}

BOOST_AUTO_TEST_CASE(ctrl_c_in_a_foreground_run_reaches_the_container) {
  pty_cli t{{"run", "--rm", "--name", "tty-int", "demo", "sh", "-c",
             "trap 'echo got INT; exit 5' INT; echo ready; while :; do sleep 0.1; done"}};
  auto log = [] {
    auto l = env().d.log();
    return l.substr(l.size() > 3000 ? l.size() - 3000 : 0);
  };
  BOOST_REQUIRE_MESSAGE(t.expect("ready"), t.screen() << "\ndaemon log:\n" << log());
  // A SIGINT forwarded within a few ms of "ready" was seen lost (busybox sh as pid 1, its
  // first fork in flight); one a second later arrives: give the shell a moment.
  std::this_thread::sleep_for(1s);
  t.signal(SIGINT);
  BOOST_CHECK_MESSAGE(t.expect("got INT"), t.screen() << "\ndaemon log:\n" << log());
  BOOST_CHECK_EQUAL(t.wait(), 5);
}

BOOST_AUTO_TEST_CASE(resize_reaches_the_containers_terminal) {
  pty_cli t{{"run", "-it", "--rm", "demo", "sh"}, 24, 80};
  t.type("stty size\n");
  BOOST_CHECK_MESSAGE(t.expect("24 80"), t.screen());
  t.resize(33, 101);
  std::this_thread::sleep_for(300ms);
  t.type("stty size; exit\n");
  BOOST_CHECK_MESSAGE(t.expect("33 101"), t.screen());
  BOOST_CHECK_EQUAL(t.wait(), 0);
}

BOOST_AUTO_TEST_CASE(attach_and_detach_keys_leave_it_running) {
  BOOST_REQUIRE_EQUAL(cli({"run", "-dit", "--name", "tty-att", "demo", "sh"}).code(), 0);
  {
    pty_cli t{{"attach", "tty-att"}};
    t.type("echo at$((40+2))\n");
    BOOST_CHECK_MESSAGE(t.expect("at42"), t.screen());
    t.type("\x10\x11"); // ctrl-p, ctrl-q
    BOOST_CHECK_EQUAL(t.wait(), 0);
    BOOST_CHECK(t.mode_restored());
  }
  BOOST_CHECK_EQUAL(inspect("tty-att").at("state"), "running");
  {
    // Attached again: the same shell, and its exit ends the attach with its code.
    pty_cli t{{"attach", "--detach-keys", "ctrl-a,d", "tty-att"}};
    t.type("exit 4\n");
    BOOST_CHECK_EQUAL(t.wait(), 4);
  }
  BOOST_CHECK_EQUAL(inspect("tty-att").at("state"), "stopped");
  // Stopped: nothing to attach to.
  auto r = cli({"attach", "tty-att"});
  BOOST_CHECK_EQUAL(r.code(), 125);
  BOOST_CHECK_MESSAGE(r.err.find("cyto.failed_precondition") != std::string::npos, r.err);
  BOOST_CHECK_EQUAL(cli({"rm", "tty-att"}).code(), 0);
}

BOOST_AUTO_TEST_CASE(tty_without_a_terminal_is_refused_and_makes_nothing) {
  auto before = all_names();
  auto r = cli({"run", "-t", "--rm", "--name", "tty-bad", "demo", "true"});
  BOOST_CHECK_EQUAL(r.code(), 125);
  BOOST_CHECK_MESSAGE(r.err.find("the input device is not a TTY") != std::string::npos, r.err);
  BOOST_CHECK(all_names() == before);
  auto keys = cli({"run", "-i", "--detach-keys", "ctrl-1", "--rm", "demo", "true"});
  BOOST_CHECK_EQUAL(keys.code(), 125);
  BOOST_CHECK_MESSAGE(keys.err.find("cyto.invalid_argument") != std::string::npos, keys.err);
  BOOST_CHECK(all_names() == before);
}

BOOST_AUTO_TEST_CASE(exec_it_runs_a_shell_in_a_running_container) {
  BOOST_REQUIRE_EQUAL(cli({"run", "-d", "--name", "tty-ex", "demo", "sleep", "60"}).code(), 0);
  {
    pty_cli t{{"exec", "-it", "tty-ex", "sh"}};
    t.type("echo ex$((2*21)); tty; exit 6\n");
    BOOST_CHECK_MESSAGE(t.expect("ex42"), t.screen());
    BOOST_CHECK_MESSAGE(t.expect("/dev/pts/"), t.screen());
    BOOST_CHECK_EQUAL(t.wait(), 6);
    BOOST_CHECK(t.mode_restored());
  }
  // exec -i without -t: a pipe.
  auto line = "printf 'x\\ny\\nz\\n' | " + std::string{cli_path} + " --socket " +
              env().d.socket_path() + " exec -i tty-ex wc -l";
  auto r = run_process({"/bin/sh", "-c", line}, 30s);
  BOOST_CHECK_EQUAL(r.code(), 0);
  BOOST_CHECK_EQUAL(r.out.substr(r.out.find_first_not_of(' ')), "3\n");
  BOOST_CHECK_EQUAL(inspect("tty-ex").at("state"), "running");
  BOOST_CHECK_EQUAL(cli({"rm", "-f", "tty-ex"}).code(), 0);
}
