// Integration tests of observability: cgroup stats, executables' output and kernel events
// through Cap'n Proto (and the cyto CLI), against a real cytod, real cgroups and (for
// events) the real eBPF probes. Needs root (exits 77 = skipped otherwise); the event
// tests skip, with the reason, when the daemon reports kernel events unavailable.
#define BOOST_TEST_MODULE integration_observe
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "schema/cells.capnp.h"
#include "schema/node.capnp.h"
#include "schema/observe.capnp.h"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace schema = cyto::schema;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

// -- sinks that record what the daemon pushes ------------------------------------------

struct stats_seen {
  std::vector<std::map<std::string, uint64_t>> memory; // per sample: cell -> memory.current
  std::vector<std::map<std::string, uint64_t>> pids;
  std::vector<std::map<std::string, uint64_t>> cpu;
  size_t samples = 0;
};

class stats_recorder final : public schema::StatsSink::Server {
public:
  explicit stats_recorder(std::shared_ptr<stats_seen> seen) : seen_(std::move(seen)) {}
  kj::Promise<void> sample(SampleContext context) override {
    std::map<std::string, uint64_t> mem, pids, cpu;
    for (auto c : context.getParams().getCells()) {
      mem[c.getCell()] = c.getMemoryCurrent();
      pids[c.getCell()] = c.getPidsCurrent();
      cpu[c.getCell()] = c.getCpuUsageUsec();
    }
    seen_->memory.push_back(mem);
    seen_->pids.push_back(pids);
    seen_->cpu.push_back(cpu);
    ++seen_->samples;
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<stats_seen> seen_;
};

struct output_seen {
  std::vector<std::pair<int, std::string>> lines; // stream (1, 2), text
  uint64_t dropped = 0;
};

class output_recorder final : public schema::OutputSink::Server {
public:
  explicit output_recorder(std::shared_ptr<output_seen> seen) : seen_(std::move(seen)) {}
  kj::Promise<void> lines(LinesContext context) override {
    auto p = context.getParams();
    seen_->dropped += p.getDropped();
    for (auto l : p.getLines())
      seen_->lines.emplace_back(l.getStream() == schema::OutputStream::STDERR ? 2 : 1,
                                l.getLine().cStr());
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<output_seen> seen_;
};

struct event_record {
  schema::EventKind kind;
  std::string cell, executable, comm;
  uint32_t tgid, ns_pid;
  int32_t signo, exit_code, exit_signal;
  uint32_t sender_tgid;
};

struct events_seen {
  std::vector<event_record> events;
  uint64_t lost = 0;
  /// While set, the sink does not return: the daemon must not wait for it.
  kj::Maybe<kj::ForkedPromise<void>> stall;
};

class event_recorder final : public schema::EventSink::Server {
public:
  explicit event_recorder(std::shared_ptr<events_seen> seen) : seen_(std::move(seen)) {}
  kj::Promise<void> events(EventsContext context) override {
    auto p = context.getParams();
    seen_->lost += p.getLost();
    for (auto e : p.getEvents())
      seen_->events.push_back({e.getKind(), e.getCell(), e.getExecutable(), e.getComm(),
                               e.getTgid(), e.getNsPid(), e.getSigno(), e.getExitCode(),
                               e.getExitSignal(), e.getSenderTgid()});
    KJ_IF_MAYBE (s, seen_->stall) {
      return s->addBranch();
    }
    return kj::READY_NOW;
  }

private:
  std::shared_ptr<events_seen> seen_;
};

// -- a daemon with a client ------------------------------------------------------------

struct observed_daemon {
  daemon_fixture d;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::unique_ptr<rpc_connection> conn = d.connect(io);
  schema::Cells::Client cells = wait_for(io, conn->node().cellsRequest().send()).getService();
  schema::Observe::Client observe = wait_for(io, conn->node().observeRequest().send()).getService();

  void allocate(const std::string& name, uint64_t memory_max = 0, bool isolate = false) {
    auto req = cells.allocateRequest();
    req.initCell().setName(name);
    req.getCell().initMemory().setMax(memory_max);
    req.getCell().setIsolateProcess(isolate);
    wait_for(io, req.send());
  }

  /// Starts `sh -c command` as executable `name`; returns its host pid and ns pid.
  std::pair<uint32_t, uint32_t> start(const std::string& cell, const std::string& name,
                                      const std::string& command) {
    auto req = cells.startRequest();
    req.setCellName(cell);
    auto e = req.initExecutable();
    e.setName(name);
    e.setCommand(command);
    auto info = wait_for(io, req.send()).getInfo();
    return {info.getPid(), info.getNsPid()};
  }

  /// Observe status (use within one expression: the reader points into the response).
  capnp::Response<schema::Observe::StatusResults> status() {
    return wait_for(io, observe.statusRequest().send());
  }

  /// The error text of a call that must fail, or "" if it succeeded.
  template <class T>
  std::string error_of(kj::Promise<T>&& p) {
    try {
      wait_for(io, kj::mv(p));
      return "";
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
  }

  /// Kernel events: the tests that need them are skipped (precondition have_btf) where the
  /// kernel has no BTF; with BTF they must be available, so their absence fails.
  bool events_available() {
    auto resp = wait_for(io, observe.statusRequest().send());
    BOOST_TEST(resp.getStatus().getEventsAvailable(),
               "kernel events unavailable although the kernel has BTF: "
                 << resp.getStatus().getEventsUnavailable().cStr());
    return resp.getStatus().getEventsAvailable();
  }

  kj::Promise<void> subscribe_stats(const std::string& cell, uint64_t interval_ms,
                                    std::shared_ptr<stats_seen> seen) {
    auto req = observe.statsRequest();
    req.initTarget().setCell(cell);
    req.setIntervalMs(interval_ms);
    req.setSink(kj::heap<stats_recorder>(std::move(seen)));
    return req.send().ignoreResult();
  }

  kj::Promise<void> subscribe_output(const std::string& cell, const std::string& exe,
                                     schema::OutputStream which, bool follow,
                                     std::shared_ptr<output_seen> seen) {
    auto req = observe.outputRequest();
    req.setCell(cell);
    req.setExecutable(exe);
    req.setWhich(which);
    req.setFollow(follow);
    req.setFromStart(true);
    req.setSink(kj::heap<output_recorder>(std::move(seen)));
    return req.send().ignoreResult();
  }

  kj::Promise<void> subscribe_events(bool signals, const std::string& cell, bool nested,
                                     std::shared_ptr<events_seen> seen) {
    auto sink = kj::heap<event_recorder>(std::move(seen));
    if (signals) {
      auto req = observe.signalsRequest();
      req.initFilter().setCell(cell);
      req.getFilter().setNested(nested);
      req.setSink(kj::mv(sink));
      return req.send().ignoreResult();
    }
    auto req = observe.processEventsRequest();
    req.initFilter().setCell(cell);
    req.getFilter().setNested(nested);
    req.setSink(kj::mv(sink));
    return req.send().ignoreResult();
  }
};

std::vector<std::string> texts(const std::vector<std::pair<int, std::string>>& lines, int stream) {
  std::vector<std::string> out;
  for (auto& [s, t] : lines)
    if (s == stream)
      out.push_back(t);
  return out;
}

std::vector<std::string> numbers(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i <= to; ++i)
    out.push_back(std::to_string(i));
  return out;
}

} // namespace

// -- stats -------------------------------------------------------------------------------

/// Skips (counted as skipped, with the reason) a test that needs kernel events.
boost::test_tools::assertion_result have_btf(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r{std::filesystem::exists("/sys/kernel/btf/vmlinux")};
  r.message() << "no kernel BTF at /sys/kernel/btf/vmlinux: no eBPF events";
  return r;
}

BOOST_AUTO_TEST_CASE(stats_memory_grows_when_a_process_allocates) {
  observed_daemon t;
  t.allocate("mem");
  auto gate = t.d.dir() + "/allocate-now";
  // Holds 96 MiB of touched memory once the gate file exists.
  t.start("mem", "hog",
          "while [ ! -e " + gate +
              " ]; do sleep 0.02; done; "
              "exec python3 -c 'import time; b = b\"x\" * (96 << 20); time.sleep(30)'");
  auto seen = std::make_shared<stats_seen>();
  auto call = t.subscribe_stats("mem", 50, seen).eagerlyEvaluate(nullptr);
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return seen->samples >= 2; }, 5s));
  auto before = seen->memory.back()["mem"];
  BOOST_TEST(seen->pids.back()["mem"] >= 1u);
  write_text(gate, "");
  BOOST_REQUIRE_MESSAGE(
      pump_until(
          t.io, [&] { return seen->memory.back()["mem"] > before + (64u << 20); }, 15s),
      "memory.current of the cell never grew by 64 MiB; last " << seen->memory.back()["mem"]);
  // CPU time only ever grows.
  for (size_t i = 1; i < seen->cpu.size(); ++i)
    BOOST_TEST(seen->cpu[i]["mem"] >= seen->cpu[i - 1]["mem"]);
}

BOOST_AUTO_TEST_CASE(stats_bad_inputs_are_refused) {
  observed_daemon t;
  t.allocate("c");
  auto seen = std::make_shared<stats_seen>();
  auto short_err = t.error_of(t.subscribe_stats("c", 9, seen));
  BOOST_TEST(contains(short_err, "cyto.invalid_argument"), short_err);
  auto long_err = t.error_of(t.subscribe_stats("c", 3'600'001, seen));
  BOOST_TEST(contains(long_err, "cyto.invalid_argument"), long_err);
  auto missing = t.error_of(t.subscribe_stats("nope", 100, seen));
  BOOST_TEST(contains(missing, "cyto.not_found"), missing);
  BOOST_TEST(seen->samples == 0u);
  BOOST_TEST(t.status().getStatus().getStatsSubscribers() == 0u);
  // The CLI says the same.
  auto r = run_process({cli_path, "top", "nope", "--socket", t.d.socket_path()});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.not_found"), r.err);
  r = run_process({cli_path, "top", "--interval", "5ms", "--socket", t.d.socket_path()});
  BOOST_TEST(contains(r.err, "cyto.invalid_argument"), r.err);
}

BOOST_AUTO_TEST_CASE(top_json_streams_one_object_per_sample) {
  observed_daemon t;
  t.allocate("a");
  t.allocate("b");
  child_process top{
      {cli_path, "top", "--json", "--interval", "20ms", "--socket", t.d.socket_path()}};
  BOOST_REQUIRE(top.read_until([](auto& out) { return lines_of(out).size() >= 3; }, 5s));
  top.kill_and_wait(SIGTERM, 5s);
  auto lines = lines_of(top.out());
  auto j = json::parse(lines[1]);
  BOOST_REQUIRE(j["cells"].size() == 2u);
  BOOST_TEST(j["cells"][0]["cell"] == "a");
  BOOST_TEST(j["cells"][1]["cell"] == "b");
  BOOST_TEST(j["cells"][0]["intervalUsec"].get<uint64_t>() > 0u);
}

// -- output ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(output_with_follow_returns_history_then_new_lines_in_order) {
  observed_daemon t;
  t.allocate("app");
  // 3000 numbered lines written over about a second, with stderr lines among them.
  t.start("app", "count",
          "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; "
          "if [ $((i % 100)) = 0 ]; then echo e$i >&2; sleep 0.03; fi; done");
  auto out_file = t.d.state_dir() + "/logs/app/count.stdout";
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return lines_of(read_text(out_file)).size() >= 500; }, 10s));
  // Subscribe while it is writing: history and live lines must join without a gap or
  // a repeat.
  auto seen = std::make_shared<output_seen>();
  wait_for(t.io, t.subscribe_output("app", "count", schema::OutputStream::BOTH, true, seen),
           20 * kj::SECONDS);
  BOOST_TEST(texts(seen->lines, 1) == numbers(1, 3000), boost::test_tools::per_element());
  std::vector<std::string> errs;
  for (int i = 100; i <= 3000; i += 100)
    errs.push_back("e" + std::to_string(i));
  BOOST_TEST(texts(seen->lines, 2) == errs, boost::test_tools::per_element());
  BOOST_TEST(seen->dropped == 0u);
}

BOOST_AUTO_TEST_CASE(output_through_the_cli_and_its_bad_inputs) {
  observed_daemon t;
  t.allocate("cli");
  t.start("cli", "hello", "echo out1; echo err1 >&2; echo out2; printf tail");
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return contains(read_text(t.d.state_dir() + "/logs/cli/hello.stdout"), "tail"); },
      5s));
  auto r = run_process({cli_path, "logs", "cli/hello", "--socket", t.d.socket_path()});
  BOOST_TEST(r.code() == 0, r.err);
  BOOST_TEST(r.out == "out1\nout2\ntail\n");
  r = run_process(
      {cli_path, "logs", "cli/hello", "--stderr", "--json", "--socket", t.d.socket_path()});
  BOOST_TEST(r.code() == 0, r.err);
  BOOST_TEST(json::parse(r.out)["line"] == "err1");
  // -f on an executable that ended returns after its history.
  r = run_process({cli_path, "logs", "cli/hello", "-f", "--socket", t.d.socket_path()}, 5s);
  BOOST_TEST(r.out == "out1\nout2\ntail\n");
  // The daemon log keeps working.
  r = run_process({cli_path, "logs", "--daemon", "--tail", "5", "--socket", t.d.socket_path()});
  BOOST_TEST(r.code() == 0);
  BOOST_TEST(contains(r.out, "cytod"));

  auto seen = std::make_shared<output_seen>();
  auto e1 =
      t.error_of(t.subscribe_output("nope", "hello", schema::OutputStream::STDOUT, false, seen));
  BOOST_TEST(contains(e1, "cyto.not_found"), e1);
  auto e2 =
      t.error_of(t.subscribe_output("cli", "nope", schema::OutputStream::STDOUT, false, seen));
  BOOST_TEST(contains(e2, "cyto.not_found"), e2);
  // A name without a slash is a container's name.
  r = run_process({cli_path, "logs", "nocell", "--socket", t.d.socket_path()});
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto.not_found: container nocell"), r.err);
  r = run_process({cli_path, "logs", "cli/", "--socket", t.d.socket_path()});
  BOOST_TEST(contains(r.err, "cyto.invalid_argument"), r.err);
  BOOST_TEST(t.status().getStatus().getOutputSubscribers() == 0u);
}

// -- subscriptions are cleaned up ---------------------------------------------------------

BOOST_AUTO_TEST_CASE(thousand_subscribe_disconnect_cycles_leave_no_subscriber) {
  observed_daemon t;
  t.allocate("c");
  bool events = t.events_available();
  for (int i = 0; i < 1000; ++i) {
    // A connection of its own that goes away mid-stream, without cancelling.
    auto conn = t.d.connect(t.io);
    auto obs = wait_for(t.io, conn->node().observeRequest().send()).getService();
    auto seen = std::make_shared<stats_seen>();
    auto req = obs.statsRequest();
    req.initTarget().setCell("c");
    req.setIntervalMs(10);
    req.setSink(kj::heap<stats_recorder>(seen));
    auto call = req.send().ignoreResult().eagerlyEvaluate(nullptr);
    kj::Maybe<kj::Promise<void>> ev;
    if (events) {
      auto ereq = obs.signalsRequest();
      ereq.setSink(kj::heap<event_recorder>(std::make_shared<events_seen>()));
      ev = ereq.send().ignoreResult().eagerlyEvaluate(nullptr);
    }
    BOOST_REQUIRE(pump_until(
        t.io, [&] { return seen->samples >= 1; }, 5s));
  }
  BOOST_REQUIRE(pump_until(
      t.io,
      [&] {
        auto resp = t.status();
        auto s = resp.getStatus();
        return s.getStatsSubscribers() == 0 && s.getEventSubscribers() == 0;
      },
      10s));
  auto resp = t.status();
  auto s = resp.getStatus();
  BOOST_TEST(s.getStatsSubscribers() == 0u);
  BOOST_TEST(s.getEventSubscribers() == 0u);
  auto r = run_process({cli_path, "observe-status", "--json", "--socket", t.d.socket_path()});
  BOOST_TEST(json::parse(r.out)["statsSubscribers"] == 0);
}

// -- kernel events -------------------------------------------------------------------------

namespace {

/// Waits until the daemon counts `n` event subscribers (a subscription is live only
/// once the observe actor has it; the streaming call itself returns at the end).
void wait_event_subscribers(observed_daemon& t, uint64_t n) {
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return t.status().getStatus().getEventSubscribers() >= n; }, 5s));
}

/// Events of `kind` about process `tgid` (and signal `signo`, if not 0).
std::vector<event_record> of(const events_seen& s, schema::EventKind kind, uint32_t tgid,
                             int signo = 0) {
  std::vector<event_record> out;
  for (auto& e : s.events)
    if (e.kind == kind && e.tgid == tgid && (signo == 0 || e.signo == signo))
      out.push_back(e);
  return out;
}

/// A shell that ignores SIGUSR1 (signals to it are still generated, then discarded).
const std::string ignore_usr1 = "trap '' USR1; echo ready; while :; do sleep 0.05; done";

/// Waits until executable `exe` of `cell` has written "ready" (its signal trap is set: a
/// SIGUSR1 before that would end it).
void wait_ready(observed_daemon& t, const std::string& cell, const std::string& exe) {
  auto path = t.d.state_dir() + "/logs/" + cell + "/" + exe + ".stdout";
  BOOST_REQUIRE(pump_until(t.io, [&] { return contains(read_text(path), "ready"); }, 5s));
}

} // namespace

BOOST_AUTO_TEST_CASE(sigusr1_to_a_process_in_a_cell_gives_one_signal_event, *boost::unit_test::precondition(have_btf)) {
  observed_daemon t;
  if (!t.events_available())
    return;
  t.allocate("sig", 0, true); // own pid namespace: the ns pid differs from the host pid
  auto [pid, ns_pid] =
      t.start("sig", "target", "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done");
  wait_ready(t, "sig", "target");
  BOOST_REQUIRE(ns_pid != pid);
  auto seen = std::make_shared<events_seen>();
  auto call = t.subscribe_events(true, "sig", false, seen).eagerlyEvaluate(nullptr);
  wait_event_subscribers(t, 1);
  BOOST_REQUIRE(::kill(static_cast<pid_t>(pid), SIGUSR1) == 0);
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return !of(*seen, schema::EventKind::SIGNAL, pid, SIGUSR1).empty(); }, 5s));
  t.io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).wait(t.io.waitScope);
  auto sigs = of(*seen, schema::EventKind::SIGNAL, pid, SIGUSR1);
  BOOST_REQUIRE(sigs.size() == 1u);
  BOOST_TEST(sigs[0].cell == "sig");
  BOOST_TEST(sigs[0].executable == "target");
  BOOST_TEST(sigs[0].ns_pid == ns_pid);
  BOOST_TEST(sigs[0].sender_tgid == static_cast<uint32_t>(::getpid()));
  // Only signals reach a signals stream, and only this cell's.
  for (auto& e : seen->events) {
    BOOST_TEST((e.kind == schema::EventKind::SIGNAL));
    BOOST_TEST(e.cell == "sig");
  }
}

BOOST_AUTO_TEST_CASE(a_nested_filter_sees_a_child_cells_event_and_a_siblings_does_not, *boost::unit_test::precondition(have_btf)) {
  observed_daemon t;
  if (!t.events_available())
    return;
  t.allocate("par");
  t.allocate("par/kid");
  t.allocate("sib");
  auto [pid, ns_pid] = t.start("par/kid", "target", ignore_usr1);
  wait_ready(t, "par/kid", "target");
  auto parent = std::make_shared<events_seen>();
  auto sibling = std::make_shared<events_seen>();
  auto exact = std::make_shared<events_seen>();
  auto c1 = t.subscribe_events(true, "par", true, parent).eagerlyEvaluate(nullptr);
  auto c2 = t.subscribe_events(true, "sib", true, sibling).eagerlyEvaluate(nullptr);
  auto c3 = t.subscribe_events(true, "par", false, exact).eagerlyEvaluate(nullptr);
  wait_event_subscribers(t, 3);
  BOOST_REQUIRE(::kill(static_cast<pid_t>(pid), SIGUSR1) == 0);
  BOOST_REQUIRE(pump_until(
      t.io, [&] { return !of(*parent, schema::EventKind::SIGNAL, pid, SIGUSR1).empty(); }, 5s));
  t.io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).wait(t.io.waitScope);
  auto got = of(*parent, schema::EventKind::SIGNAL, pid, SIGUSR1);
  BOOST_REQUIRE(got.size() == 1u);
  BOOST_TEST(got[0].cell == "par/kid");
  BOOST_TEST(got[0].ns_pid == ns_pid);
  BOOST_TEST(sibling->events.empty());
  BOOST_TEST(of(*exact, schema::EventKind::SIGNAL, pid).empty());
}

BOOST_AUTO_TEST_CASE(exec_and_exit_events_carry_the_program_and_the_exit_code, *boost::unit_test::precondition(have_btf)) {
  observed_daemon t;
  if (!t.events_available())
    return;
  t.allocate("ex");
  auto seen = std::make_shared<events_seen>();
  auto call = t.subscribe_events(false, "ex", false, seen).eagerlyEvaluate(nullptr);
  wait_event_subscribers(t, 1);
  auto [pid, ns_pid] = t.start("ex", "seven", "sleep 0.2; exit 7");
  auto [pid2, ns_pid2] = t.start("ex", "killed", "kill -9 $$");
  bool both = pump_until(
      t.io,
      [&] {
        return !of(*seen, schema::EventKind::EXIT, pid).empty() &&
               !of(*seen, schema::EventKind::EXIT, pid2).empty();
      },
      10s);
  if (!both) { // what did arrive, to tell a lost event from a wrong pid
    BOOST_TEST_MESSAGE("pids " << pid << " " << pid2 << ", lost " << seen->lost);
    for (auto& e : seen->events)
      BOOST_TEST_MESSAGE("event kind " << static_cast<int>(e.kind) << " cell " << e.cell << " exe "
                                       << e.executable << " comm " << e.comm << " tgid " << e.tgid);
  }
  BOOST_REQUIRE(both);
  auto exits = of(*seen, schema::EventKind::EXIT, pid);
  BOOST_REQUIRE(exits.size() == 1u);
  BOOST_TEST(exits[0].exit_code == 7);
  BOOST_TEST(exits[0].exit_signal == 0);
  BOOST_TEST(exits[0].cell == "ex");
  BOOST_TEST(exits[0].ns_pid == ns_pid);
  auto killed = of(*seen, schema::EventKind::EXIT, pid2);
  BOOST_REQUIRE(killed.size() == 1u);
  BOOST_TEST(killed[0].exit_signal == SIGKILL);
  auto execs = of(*seen, schema::EventKind::EXEC, pid);
  BOOST_REQUIRE(execs.size() >= 1u);
  BOOST_TEST(execs[0].cell == "ex");
  // The shell's own child (sleep) is seen exec'ing too, in the same cell.
  bool sleep_seen = std::any_of(seen->events.begin(), seen->events.end(), [](auto& e) {
    return e.kind == schema::EventKind::EXEC && e.comm == "sleep";
  });
  BOOST_TEST(sleep_seen);
  for (auto& e : seen->events)
    BOOST_TEST((e.kind != schema::EventKind::SIGNAL));
}

BOOST_AUTO_TEST_CASE(an_oom_killed_process_gives_an_oom_event, *boost::unit_test::precondition(have_btf)) {
  observed_daemon t;
  if (!t.events_available())
    return;
  t.allocate("oom", 32u << 20);
  auto seen = std::make_shared<events_seen>();
  auto call = t.subscribe_events(false, "oom", false, seen).eagerlyEvaluate(nullptr);
  wait_event_subscribers(t, 1);
  auto [pid, ns_pid] =
      t.start("oom", "hog", "exec python3 -c 'b = bytearray(b\"x\" * (256 << 20))'");
  BOOST_REQUIRE_MESSAGE(pump_until(
                            t.io,
                            [&] {
                              return !of(*seen, schema::EventKind::OOM, pid).empty() &&
                                     !of(*seen, schema::EventKind::EXIT, pid).empty();
                            },
                            20s),
                        "no OOM and exit event for pid " << pid);
  auto ooms = of(*seen, schema::EventKind::OOM, pid);
  BOOST_TEST(ooms[0].cell == "oom");
  BOOST_TEST(ooms[0].executable == "hog");
  BOOST_TEST(of(*seen, schema::EventKind::EXIT, pid)[0].exit_signal == SIGKILL);
}

BOOST_AUTO_TEST_CASE(a_stalled_subscriber_does_not_delay_another, *boost::unit_test::precondition(have_btf)) {
  observed_daemon t;
  if (!t.events_available())
    return;
  t.allocate("burst");
  auto [pid, ns_pid] = t.start("burst", "target", ignore_usr1);
  wait_ready(t, "burst", "target");
  // The stalled reader: its own connection, its sink never returns.
  auto stalled = std::make_shared<events_seen>();
  auto never = kj::newPromiseAndFulfiller<void>();
  stalled->stall = never.promise.fork();
  auto conn2 = t.d.connect(t.io);
  auto obs2 = wait_for(t.io, conn2->node().observeRequest().send()).getService();
  auto sreq = obs2.signalsRequest();
  sreq.setSink(kj::heap<event_recorder>(stalled));
  auto stalled_call = sreq.send().ignoreResult().eagerlyEvaluate(nullptr);
  auto fast = std::make_shared<events_seen>();
  auto fast_call = t.subscribe_events(true, "burst", false, fast).eagerlyEvaluate(nullptr);
  wait_event_subscribers(t, 2);
  // More signals than the stalled reader's queue and credit hold (about 74k), paced at
  // about 50k/s (a rate the pipeline sustains) while the loop keeps reading.
  constexpr int n = 150'000;
  for (int sent = 0; sent < n; sent += 500) {
    for (int i = 0; i < 500; ++i)
      ::kill(static_cast<pid_t>(pid), SIGUSR1);
    t.io.provider->getTimer().afterDelay(10 * kj::MILLISECONDS).wait(t.io.waitScope);
  }
  BOOST_REQUIRE_MESSAGE(
      pump_until(
          t.io,
          [&] {
            return of(*fast, schema::EventKind::SIGNAL, pid, SIGUSR1).size() + fast->lost >=
                   size_t{n};
          },
          30s),
      "the fast reader got " << of(*fast, schema::EventKind::SIGNAL, pid, SIGUSR1).size() << " of "
                             << n << " (" << fast->events.size() << " events, " << fast->lost
                             << " lost); stalled got " << stalled->events.size() << "; daemon: "
                             << run_process({cli_path, "observe-status", "--json", "--socket",
                                             t.d.socket_path()})
                                    .out);
  auto resp = t.status();
  auto s = resp.getStatus();
  BOOST_TEST(fast->lost == 0u);
  BOOST_TEST(s.getEventsLostRingbuf() == 0u);
  BOOST_TEST(s.getEventsLostSubscribers() > 0u); // the stalled one lost, counted
  BOOST_TEST(stalled->events.size() < size_t{n});
  never.fulfiller->fulfill();
}
