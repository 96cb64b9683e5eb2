#define BOOST_TEST_MODULE unit_actors_cells_watcher
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <cstdio>
#include <string>
#include <thread>
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

namespace {

/// Records runs of output and the exit, for the flow-control cases.
struct output_recorder {
  struct run {
    int stream;
    std::string data;
    uint64_t offset;
    uint64_t skipped;
    int64_t unix_nanos;
  };
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<run> runs;
  bool exited = false;
  bool exit_after_output = true; // no output came after the exit

  exit_watcher::callback on_exit() {
    return [this](uint64_t, exit_report) {
      std::lock_guard guard{mtx};
      exited = true;
      cv.notify_all();
    };
  }
  exit_watcher::output_callback on_output() {
    return [this](uint64_t, int stream, std::string data, uint64_t offset, uint64_t skipped,
                  int64_t unix_nanos) {
      std::lock_guard guard{mtx};
      if (exited)
        exit_after_output = false;
      runs.push_back(run{stream, std::move(data), offset, skipped, unix_nanos});
      cv.notify_all();
    };
  }
  size_t bytes() {
    std::lock_guard guard{mtx};
    size_t n = 0;
    for (auto& r : runs)
      n += r.data.size();
    return n;
  }
  /// Acknowledges every run from `from` on; returns the new count of runs.
  size_t ack_from(exit_watcher& w, size_t from) {
    std::lock_guard guard{mtx};
    for (size_t i = from; i < runs.size(); ++i)
      w.ack(7, runs[i].stream, runs[i].data.size());
    return runs.size();
  }
  bool has_exited() {
    std::lock_guard guard{mtx};
    return exited;
  }
};

/// A temp file and a child that writes `lines` numbered lines ("%07d\n") to it once told
/// (a byte on `go`), then exits.
struct numbered_writer {
  char path[32] = "/tmp/cyto-watcher-XXXXXX";
  int fd = ::mkstemp(path);
  int go[2] = {-1, -1};
  int pidfd = -1;

  explicit numbered_writer(int lines) {
    BOOST_REQUIRE(fd >= 0);
    BOOST_REQUIRE(::pipe(go) == 0);
    pidfd = spawn_child([&] {
      char c;
      [[maybe_unused]] auto n = ::read(go[0], &c, 1);
      FILE* f = ::fdopen(fd, "w");
      for (int i = 1; i <= lines; ++i)
        std::fprintf(f, "%07d\n", i);
      std::fclose(f);
      return 0;
    });
  }
  void start() {
    [[maybe_unused]] auto n = ::write(go[1], "x", 1);
  }
  ~numbered_writer() {
    ::close(pidfd);
    ::close(fd);
    ::close(go[0]);
    ::close(go[1]);
    ::unlink(path);
    ::unlink((std::string{path} + ".times").c_str());
  }
};

/// The records of `<path>.times`, as the history reader reads them.
std::vector<cyto::output_time_record> read_times(const std::string& path) {
  std::vector<cyto::output_time_record> out;
  int fd = ::open((path + ".times").c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  cyto::output_time_record r;
  ssize_t n;
  while ((n = ::read(fd, &r, sizeof(r))) == static_cast<ssize_t>(sizeof(r)))
    out.push_back(r);
  BOOST_TEST(n == 0); // whole records only
  ::close(fd);
  return out;
}

/// One `.times` record per run handed on: where it ends, and the time it was handed on with.
void check_one_record_per_run(const std::vector<output_recorder::run>& runs,
                              const std::vector<cyto::output_time_record>& times) {
  BOOST_REQUIRE(times.size() == runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    BOOST_TEST(times[i].end_offset == runs[i].offset + runs[i].data.size());
    BOOST_TEST(times[i].unix_nanos == runs[i].unix_nanos);
    if (i > 0)
      BOOST_TEST(times[i].unix_nanos >= times[i - 1].unix_nanos);
  }
}

/// Waits until `pred` holds or 5 s passed.
template <class F>
bool eventually(F pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred())
      return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

} // namespace

BOOST_AUTO_TEST_CASE(followed_output_arrives_as_lines_before_the_exit) {
  recorder r;
  exit_watcher w{
    [&](uint64_t t, exit_report) { r.add("exit " + std::to_string(t)); },
    [&](uint64_t t, int stream, std::string data, uint64_t offset, uint64_t skipped,
        int64_t) {
      // Split the run as a subscriber does: each line at its own offset.
      for (size_t pos = 0; pos < data.size();) {
        auto nl = data.find('\n', pos);
        auto end = nl == std::string::npos ? data.size() : nl;
        r.add("line " + std::to_string(t) + " " + std::to_string(stream) + " "
              + data.substr(pos, end - pos) + " @" + std::to_string(offset + pos) + " skipped "
              + std::to_string(skipped));
        pos = end + 1;
      }
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
  BOOST_TEST(r.events[0] == "line 5 1 first @0 skipped 0");
  BOOST_TEST(r.events[1] == "line 5 1 second @6 skipped 0");
  BOOST_TEST(r.events[2] == "line 5 1 partial @13 skipped 0"); // flushed at exit
  BOOST_TEST(r.events[3] == "exit 5");
  // When the lines were seen: one record per run handed on, "partial" (at the exit) too.
  auto after = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  auto times = std::string{path} + ".times";
  int tfd = ::open(times.c_str(), O_RDONLY);
  BOOST_REQUIRE(tfd >= 0);
  cyto::output_time_record rec[4];
  auto got = ::read(tfd, rec, sizeof(rec));
  ::close(tfd);
  BOOST_REQUIRE(got >= static_cast<ssize_t>(2 * sizeof(rec[0])));
  BOOST_TEST(got % sizeof(rec[0]) == 0u);
  auto count = static_cast<size_t>(got) / sizeof(rec[0]);
  BOOST_TEST(rec[count - 2].end_offset == 13u); // "first\nsecond\n" (one run or two)
  BOOST_TEST(rec[count - 1].end_offset == 20u); // "partial", flushed at exit
  for (size_t k = 0; k < count; ++k) {
    BOOST_TEST(rec[k].unix_nanos >= before);
    BOOST_TEST(rec[k].unix_nanos <= after);
  }
  ::unlink(times.c_str());
  ::close(child);
  ::close(fd);
  ::close(go[0]);
  ::close(go[1]);
  ::unlink(path);
}

BOOST_AUTO_TEST_CASE(reading_pauses_at_the_window_and_the_exit_waits_for_the_last_output) {
  output_recorder r;
  output_limits limits;
  limits.window = 4096;
  limits.chunk = 1024;
  limits.max_lag = uint64_t{1} << 40; // never skip here
  exit_watcher w{r.on_exit(), r.on_output(), limits};
  constexpr int lines = 20000; // 160000 bytes
  numbered_writer child{lines};
  BOOST_REQUIRE(w.follow(7, 1, child.path));
  BOOST_REQUIRE(w.watch(7, child.pidfd));
  child.start();
  // The child writes it all and exits; unacknowledged, the watcher hands on one window
  // (the last run may go a chunk over) and holds the exit back.
  BOOST_REQUIRE(eventually([&] { return r.bytes() >= limits.window; }));
  std::this_thread::sleep_for(300ms);
  BOOST_TEST(r.bytes() <= limits.window + limits.chunk);
  BOOST_TEST(!r.has_exited());
  // Acknowledged as they come, the rest follows, then the exit.
  size_t acked = 0;
  BOOST_REQUIRE(eventually([&] {
    acked = r.ack_from(w, acked);
    return r.has_exited();
  }));
  std::string all;
  uint64_t expect = 0;
  for (auto& run : r.runs) {
    BOOST_TEST(run.offset == expect);
    BOOST_TEST(run.skipped == 0u);
    BOOST_TEST(run.data.size() <= limits.chunk);
    BOOST_TEST(run.data.back() == '\n'); // whole lines
    expect += run.data.size();
    all += run.data;
  }
  BOOST_TEST(all.size() == size_t{lines} * 8);
  BOOST_TEST(all.substr(0, 8) == "0000001\n");
  BOOST_TEST(all.substr(all.size() - 8) == "0020000\n");
  BOOST_TEST(r.exit_after_output);
  check_one_record_per_run(r.runs, read_times(child.path));
}

BOOST_AUTO_TEST_CASE(a_reader_too_far_behind_skips_ahead_and_counts_the_lines_it_skipped) {
  output_recorder r;
  output_limits limits;
  limits.window = 4096;
  limits.chunk = 1024;
  limits.max_lag = 65536;
  exit_watcher w{r.on_exit(), r.on_output(), limits};
  constexpr int lines = 200000; // 1.6 MB, far past max_lag
  numbered_writer child{lines};
  BOOST_REQUIRE(w.follow(7, 1, child.path));
  BOOST_REQUIRE(w.watch(7, child.pidfd));
  child.start();
  // Let it write everything and exit while the watcher waits for acknowledgements.
  BOOST_REQUIRE(eventually([&] { return r.bytes() >= limits.window; }));
  std::this_thread::sleep_for(500ms);
  BOOST_TEST(!r.has_exited());
  size_t acked = 0;
  BOOST_REQUIRE(eventually([&] {
    acked = r.ack_from(w, acked);
    return r.has_exited();
  }));
  // Every line is either handed on, in order, or counted as skipped; the last ones come.
  uint64_t got = 0, skipped = 0;
  int last = 0;
  bool in_order = true;
  for (auto& run : r.runs) {
    skipped += run.skipped;
    for (size_t pos = 0; pos + 8 <= run.data.size(); pos += 8) {
      int n = std::stoi(run.data.substr(pos, 7));
      if (n <= last)
        in_order = false;
      last = n;
      ++got;
    }
  }
  BOOST_TEST(in_order);
  BOOST_TEST(skipped > 0u);
  BOOST_TEST(got + skipped == uint64_t{lines});
  BOOST_TEST(last == lines);
  // What was handed on after the skip is about one window: the exit came soon.
  BOOST_TEST(got * 8 <= 3 * limits.window + 2 * limits.chunk);
  BOOST_TEST(r.exit_after_output);
  // The skipped lines take the time of the run after them; the last record is the file's end.
  auto times = read_times(child.path);
  check_one_record_per_run(r.runs, times);
  BOOST_TEST(times.back().end_offset == uint64_t{lines} * 8);
}
