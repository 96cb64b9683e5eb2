// cytod's memory under floods with followers that never read (issue: events and logs
// followers stalled in a pipe grew cytod by 119-300 MB and kept it). One stalled
// subscriber of every stream kind — daemon logs, signal events, stats, an executable's
// output — each a real `cyto` follower whose stdout is a pipe nobody reads, while
// signals, output lines and log entries flood in. cytod's RSS must stay within a fixed
// bound, the losses must be counted, and everything must be released once they go.
// Prints the RSS figures (before, peak during, after) as JSON. Needs root.
#define BOOST_TEST_MODULE integration_flood
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// VmRSS of `pid` in KiB.
long rss_kib(pid_t pid) {
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/status")))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
}

process_result cli(const daemon_fixture& d, std::vector<std::string> args) {
  args.insert(args.begin(), {cli_path, "--socket", d.socket_path()});
  return run_process(args, 20s);
}

std::string ok(const daemon_fixture& d, const std::vector<std::string>& args) {
  auto r = cli(d, args);
  if (r.code() != 0)
    throw std::runtime_error("cyto " + args.front() + " failed: " + r.err + "\ndaemon log:\n" +
                             d.log().substr(d.log().size() > 3000 ? d.log().size() - 3000 : 0));
  return r.out;
}

json status(const daemon_fixture& d) {
  return json::parse(ok(d, {"observe-status", "--json"}));
}

/// A pid in a cell executable, from `cyto cell inspect`.
pid_t exe_pid(const daemon_fixture& d, const std::string& cell, const std::string& exe) {
  auto c = json::parse(ok(d, {"cell", "inspect", cell}));
  for (auto& e : c["executables"])
    if (e["name"] == exe)
      return e["pid"].get<pid_t>();
  throw std::runtime_error("no executable " + exe + " in " + cell);
}

bool events_available(const daemon_fixture& d) {
  return status(d)["eventsAvailable"].get<bool>();
}

} // namespace

BOOST_AUTO_TEST_CASE(stalled_followers_of_every_stream_cost_bounded_memory_and_are_released) {
  daemon_fixture d{false};
  d.start({"--log-level", "debug"});
  ok(d, {"cell", "allocate", "flood"});
  // Output: bursts of 2000 lines, 100 times a second, into its output file. (Unpaced, a
  // shell on an idle machine outruns cytod's output reader, which has no backpressure yet
  // and grows by hundreds of MB: a known gap, not what this test is about.)
  ok(d, {"cell", "start", "flood", "--name", "spam", "--shell",
         "i=0; while :; do j=0; while [ $j -lt 2000 ]; do "
         "echo \"line $i of the output flood ..................\"; j=$((j+1)); done; "
         "i=$((i+1)); sleep 0.01; done"});
  ok(d, {"cell", "start", "flood", "--name", "target", "--shell",
         "trap '' USR1; while :; do sleep 0.05; done"});
  auto target = exe_pid(d, "flood", "target");
  bool events = events_available(d);
  if (!events)
    std::printf("NOTE: kernel events unavailable here (%s): the signal flood still runs, its "
                "follower sees none\n",
                status(d)["eventsUnavailable"].get<std::string>().c_str());

  // The stalled followers: real CLI processes; their stdout pipes are never read, so once
  // 64 KiB is buffered each blocks in write() and stops taking calls from cytod.
  auto follower = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {cli_path, "--socket", d.socket_path()});
    return std::make_unique<child_process>(args);
  };
  std::vector<std::unique_ptr<child_process>> followers;
  followers.push_back(follower({"logs", "--daemon", "-f", "--level", "debug", "--tail", "0"}));
  followers.push_back(follower({"events", "--signals"}));
  followers.push_back(follower({"logs", "-f", "flood/spam"}));
  followers.push_back(follower({"top", "--interval", "10ms", "--json"}));
  auto deadline = steady::now() + 10s;
  for (;;) {
    auto s = status(d);
    if (s["logSubscribers"] >= 1 && s["eventSubscribers"] >= (events ? 1 : 0)
        && s["outputSubscribers"] >= 1 && s["statsSubscribers"] >= 1)
      break;
    if (steady::now() > deadline)
      BOOST_FAIL("the followers did not subscribe: " << s.dump());
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(1s); // their pipes fill from the output flood and history
  long before = rss_kib(d.pid());

  // 5 s of floods: SIGUSR1 in a tight loop, and a new unix connection after another (one
  // debug log entry each), while the output flood goes on.
  long peak = before;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> signals{0}, connections{0};
  std::thread signaller{[&] {
    while (!stop)
      for (int i = 0; i < 1000; ++i)
        if (::kill(target, SIGUSR1) == 0)
          ++signals;
  }};
  std::thread connector{[&] {
    while (!stop) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d.socket_path().c_str());
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0)
        ++connections;
      ::close(fd);
    }
  }};
  auto flood_end = steady::now() + 5s;
  while (steady::now() < flood_end) {
    peak = std::max(peak, rss_kib(d.pid()));
    std::this_thread::sleep_for(100ms);
  }
  stop = true;
  signaller.join();
  connector.join();
  peak = std::max(peak, rss_kib(d.pid()));
  auto during = status(d);

  // The followers go; what cytod held for them must go with them.
  for (auto& f : followers)
    ::kill(f->pid(), SIGKILL);
  followers.clear();
  ok(d, {"cell", "stop", "flood", "spam", "--timeout", "1s"});
  deadline = steady::now() + 10s;
  json after_status;
  for (;;) {
    after_status = status(d);
    if (after_status["logSubscribers"] == 0 && after_status["eventSubscribers"] == 0
        && after_status["outputSubscribers"] == 0 && after_status["statsSubscribers"] == 0)
      break;
    if (steady::now() > deadline)
      BOOST_FAIL("subscriptions not released after their followers died: " << after_status.dump());
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(2s);
  long after = rss_kib(d.pid());

  json figures{{"rss_before_kib", before},
               {"rss_peak_during_kib", peak},
               {"rss_after_kib", after},
               {"signals_sent", signals.load()},
               {"connections_made", connections.load()},
               {"events_lost_subscribers", during["eventsLostSubscribers"]},
               {"log_entries_seen", during["logEntriesSeen"]},
               {"log_entries_dropped", during["logEntriesDropped"]}};
  std::printf("flood figures: %s\n", figures.dump().c_str());
  std::fflush(stdout);

  // The floods happened (a log entry per connection), and losses are counted, not
  // hidden: the stalled events follower lost signals (its queue holds ~64k).
  BOOST_TEST(during["logEntriesSeen"].get<uint64_t>() > 5000u);
  if (events)
    BOOST_TEST(during["eventsLostSubscribers"].get<uint64_t>() > 0u);
  // Bounded: the bug grew cytod by 119-300 MB in this scenario (seen now: 20-27 MB).
  BOOST_TEST(peak - before < 48 * 1024, "grew by " << (peak - before) << " KiB during the flood");
  BOOST_TEST(after - before < 16 * 1024, "kept " << (after - before) << " KiB after the followers went");
  ok(d, {"cell", "free", "--force", "flood"});
}
