#define BOOST_TEST_MODULE unit_actors_cells_watcher
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "actors/cells/watcher.hpp"
#include "bus/output_times.hpp"

using namespace cyto::cells;
using namespace std::chrono_literals;

namespace {

struct recorder {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::string> events; // "exit <token> <code> <signal>" or "line <token> <stream> <text>"

  void add(std::string e) {
    std::lock_guard guard{mtx};
    events.push_back(std::move(e));
    cv.notify_all();
  }

  bool wait_for(size_t n) {
    std::unique_lock lock{mtx};
    return cv.wait_for(lock, 5s, [&] { return events.size() >= n; });
  }
};

/// Forks a child that runs `body` and exits with its result; returns a pidfd.
template <class F>
int spawn_child(F body) {
  pid_t pid = ::fork();
  if (pid == 0)
    ::_exit(body());
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

} // namespace

BOOST_AUTO_TEST_CASE(exit_code_and_signal_are_reported_once) {
  recorder r;
  exit_watcher w{[&](uint64_t t, exit_report x) {
    r.add("exit " + std::to_string(t) + " " + std::to_string(x.code) + " " + std::to_string(x.signal));
  }};
  int a = spawn_child([] { return 7; });
  int b = spawn_child([] { ::pause(); return 0; });
  BOOST_REQUIRE(w.watch(1, a));
  BOOST_REQUIRE(w.watch(2, b));
  ::syscall(SYS_pidfd_send_signal, b, SIGUSR1, nullptr, 0);
  BOOST_REQUIRE(r.wait_for(2));
  std::sort(r.events.begin(), r.events.end());
  BOOST_TEST(r.events[0] == "exit 1 7 0");
  BOOST_TEST(r.events[1] == "exit 2 0 10");
  ::close(a);
  ::close(b);
}

BOOST_AUTO_TEST_CASE(followed_output_arrives_as_lines_before_the_exit) {
  recorder r;
  exit_watcher w{
    [&](uint64_t t, exit_report) { r.add("exit " + std::to_string(t)); },
    [&](uint64_t t, int stream, std::string line, uint64_t offset) {
      r.add("line " + std::to_string(t) + " " + std::to_string(stream) + " " + line + " @"
            + std::to_string(offset));
    }};
  auto before = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  char path[] = "/tmp/cyto-watcher-XXXXXX";
  int fd = ::mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  int go[2];
  BOOST_REQUIRE(::pipe(go) == 0);
  int child = spawn_child([&] {
    char c;
    [[maybe_unused]] auto n = ::read(go[0], &c, 1);
    ::dprintf(fd, "first\nsecond\npartial");
    return 0;
  });
  BOOST_REQUIRE(w.follow(5, 1, path));
  BOOST_REQUIRE(w.watch(5, child));
  [[maybe_unused]] auto n = ::write(go[1], "x", 1);
  BOOST_REQUIRE(r.wait_for(4));
  BOOST_TEST(r.events[0] == "line 5 1 first @0");
  BOOST_TEST(r.events[1] == "line 5 1 second @6");
  BOOST_TEST(r.events[2] == "line 5 1 partial @13"); // flushed at exit
  BOOST_TEST(r.events[3] == "exit 5");
  // When the lines were seen: one record per read, up to the last complete line.
  auto after = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  auto times = std::string{path} + ".times";
  int tfd = ::open(times.c_str(), O_RDONLY);
  BOOST_REQUIRE(tfd >= 0);
  cyto::output_time_record rec[4];
  auto got = ::read(tfd, rec, sizeof(rec));
  ::close(tfd);
  BOOST_REQUIRE(got >= static_cast<ssize_t>(sizeof(rec[0])));
  BOOST_TEST(got % sizeof(rec[0]) == 0u);
  auto last = rec[got / sizeof(rec[0]) - 1];
  BOOST_TEST(last.end_offset == 13u);
  BOOST_TEST(last.unix_nanos >= before);
  BOOST_TEST(last.unix_nanos <= after);
  ::unlink(times.c_str());
  ::close(child);
  ::close(fd);
  ::close(go[0]);
  ::close(go[1]);
  ::unlink(path);
}
