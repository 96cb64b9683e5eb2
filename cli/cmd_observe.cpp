// cyto logs CELL/EXE [-f] [--stderr|--both], cyto top [CELL], cyto events [...]
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <tuple>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/observe.capnp.h"

namespace cyto::cli {

namespace cmd_observe_impl {

[[noreturn]] void bad(const std::string& what) {
  throw cli_error("cyto.invalid_argument: " + what);
}

schema::Observe::Client observe_service(client& c) {
  return wait(c, c.node().observeRequest().send()).getService();
}

// -- logs CELL/EXE ------------------------------------------------------------------

class output_printer final : public schema::OutputSink::Server {
public:
  explicit output_printer(bool json, bool timestamps = false)
    : json_(json), timestamps_(timestamps) {}

  kj::Promise<void> lines(LinesContext context) override {
    auto p = context.getParams();
    if (p.getDropped() > 0) {
      if (json_)
        print_json({{"dropped", p.getDropped()}});
      else
        std::fprintf(stderr, "-- %llu lines dropped --\n",
                     static_cast<unsigned long long>(p.getDropped()));
    }
    for (auto l : p.getLines()) {
      bool err = l.getStream() == schema::OutputStream::STDERR;
      if (json_) {
        nlohmann::json j{{"stream", err ? "stderr" : "stdout"}, {"line", l.getLine().cStr()}};
        if (l.getUnixNanos() != 0)
          j["time"] = rfc3339_nanos(l.getUnixNanos());
        print_json(j);
      } else if (timestamps_) {
        std::fprintf(err ? stderr : stdout, "%s %s\n", rfc3339_nanos(l.getUnixNanos()).c_str(),
                     l.getLine().cStr());
      } else {
        std::fprintf(err ? stderr : stdout, "%s\n", l.getLine().cStr());
      }
    }
    std::fflush(stdout);
    return kj::READY_NOW;
  }

private:
  bool json_;
  bool timestamps_;
};

/// --since/--until as Unix nanoseconds (0: not given).
int64_t time_option(const char* flag, const std::string& text) {
  if (text.empty())
    return 0;
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto t = parse_time_nanos(text, now);
  if (!t || *t <= 0)
    bad(std::string{flag} + ": '" + text
        + "' is not a duration (10m, 1h30m), an RFC 3339 time or Unix seconds");
  return *t;
}

int workload_logs(const global_options& g, const logs_options& o) {
  if (o.stderr_only && o.both)
    bad("logs: --stderr and --both exclude each other");
  auto since = time_option("--since", o.since);
  auto until = time_option("--until", o.until);
  if (until != 0 && until < since)
    bad("logs: --until is before --since");
  client c{g};
  std::string cell, exe;
  auto slash = o.target.rfind('/');
  bool container = slash == std::string::npos;
  if (container) {
    // A container name: its output is that of its cell's shim executable.
    std::tie(cell, exe) = container_output(c, o.target);
  } else if (slash == 0 || slash + 1 == o.target.size()) {
    bad("logs: give a container NAME, CELL/EXECUTABLE or --daemon, got '" + o.target + "'");
  } else {
    cell = o.target.substr(0, slash);
    exe = o.target.substr(slash + 1);
  }
  auto req = observe_service(c).outputRequest();
  req.setCell(cell);
  req.setExecutable(exe);
  // A container's log is both streams (podman's habit); an executable's is stdout.
  req.setWhich(o.both || (container && !o.stderr_only) ? schema::OutputStream::BOTH
               : o.stderr_only                         ? schema::OutputStream::STDERR
                                                       : schema::OutputStream::STDOUT);
  req.setFollow(o.follow);
  req.setFromStart(true);
  req.setSinceNanos(since);
  req.setUntilNanos(until);
  req.setTail(o.tail ? static_cast<int64_t>(*o.tail) : -1);
  req.setSink(kj::heap<output_printer>(g.json, o.timestamps));
  wait(c, req.send().ignoreResult());
  return 0;
}

} // namespace cmd_observe_impl

kj::Promise<void> follow_output(client& c, const std::string& cell, const std::string& exe,
                                bool from_start) {
  using namespace cmd_observe_impl;
  auto req = observe_service(c).outputRequest();
  req.setCell(cell);
  req.setExecutable(exe);
  req.setWhich(schema::OutputStream::BOTH);
  req.setFollow(true);
  req.setFromStart(from_start);
  req.setSink(output_to_terminal());
  return req.send().ignoreResult();
}

schema::OutputSink::Client output_to_terminal() {
  return kj::heap<cmd_observe_impl::output_printer>(false);
}

namespace cmd_observe_impl {

// -- top ------------------------------------------------------------------------------

class stats_printer final : public schema::StatsSink::Server {
public:
  stats_printer(bool json, bool tty) : json_(json), tty_(tty) {}

  kj::Promise<void> sample(SampleContext context) override {
    auto p = context.getParams();
    if (json_) {
      nlohmann::json cells = nlohmann::json::array();
      for (auto s : p.getCells())
        cells.push_back({{"cell", s.getCell().cStr()},
                         {"cpuUsageUsec", s.getCpuUsageUsec()},
                         {"cpuPercent", s.getCpuPercent()},
                         {"intervalUsec", s.getIntervalUsec()},
                         {"memoryCurrent", s.getMemoryCurrent()},
                         {"memoryPeak", s.getMemoryPeak()},
                         {"pidsCurrent", s.getPidsCurrent()},
                         {"ioReadBytes", s.getIoReadBytes()},
                         {"ioWriteBytes", s.getIoWriteBytes()},
                         {"oomKills", s.getOomKills()}});
      print_json({{"time", iso_time(p.getUnixNanos())},
                  {"unixNanos", p.getUnixNanos()},
                  {"cells", cells}});
      return kj::READY_NOW;
    }
    if (tty_)
      std::printf("\033[H\033[2J"); // home, clear: a live table
    std::printf("%s  %u cells\n", iso_time(p.getUnixNanos()).c_str(), p.getCells().size());
    std::printf("%-30s %7s %10s %10s %6s %10s %10s %4s\n", "CELL", "CPU%", "MEM", "PEAK", "PIDS",
                "IO-READ", "IO-WRITE", "OOM");
    for (auto s : p.getCells()) {
      char cpu[16];
      if (s.getIntervalUsec() == 0)
        std::snprintf(cpu, sizeof(cpu), "-");
      else
        std::snprintf(cpu, sizeof(cpu), "%.1f", s.getCpuPercent());
      std::printf("%-30s %7s %10s %10s %6llu %10s %10s %4llu\n", s.getCell().cStr(), cpu,
                  human_size(s.getMemoryCurrent()).c_str(), human_size(s.getMemoryPeak()).c_str(),
                  static_cast<unsigned long long>(s.getPidsCurrent()),
                  human_size(s.getIoReadBytes()).c_str(), human_size(s.getIoWriteBytes()).c_str(),
                  static_cast<unsigned long long>(s.getOomKills()));
    }
    if (!tty_)
      std::printf("\n");
    std::fflush(stdout);
    return kj::READY_NOW;
  }

private:
  bool json_;
  bool tty_;
};

struct top_options {
  std::string cell;
  std::string interval = "1s";
};

int top(const global_options& g, const top_options& o) {
  auto us = parse_duration_us(o.interval);
  if (!us)
    bad("--interval: '" + o.interval + "' is not a duration like 500ms or 2s");
  client c{g};
  auto req = observe_service(c).statsRequest();
  req.initTarget().setCell(o.cell);
  req.setIntervalMs(*us / 1000);
  req.setSink(kj::heap<stats_printer>(g.json, ::isatty(STDOUT_FILENO) == 1));
  wait(c, req.send().ignoreResult());
  return 0;
}

// -- events ---------------------------------------------------------------------------

const char* kind_name(schema::EventKind k) {
  switch (k) {
  case schema::EventKind::SIGNAL:
    return "signal";
  case schema::EventKind::EXEC:
    return "exec";
  case schema::EventKind::EXIT:
    return "exit";
  case schema::EventKind::OOM:
    return "oom";
  default:
    return "unknown";
  }
}

std::string signal_name(int sig) {
  auto* n = sig > 0 ? sigabbrev_np(sig) : nullptr;
  return n ? std::string{"SIG"} + n : std::to_string(sig);
}

class event_printer final : public schema::EventSink::Server {
public:
  explicit event_printer(bool json) : json_(json) {}

  kj::Promise<void> events(EventsContext context) override {
    auto p = context.getParams();
    if (p.getLost() > 0) {
      if (json_)
        print_json({{"lost", p.getLost()}});
      else
        std::printf("-- %llu events lost (this reader fell behind) --\n",
                    static_cast<unsigned long long>(p.getLost()));
    }
    for (auto e : p.getEvents()) {
      if (json_) {
        nlohmann::json j{{"kind", kind_name(e.getKind())},
                         {"monotonicNanos", e.getMonotonicNanos()},
                         {"cell", e.getCell().cStr()},
                         {"executable", e.getExecutable().cStr()},
                         {"pid", e.getPid()},
                         {"tgid", e.getTgid()},
                         {"nsPid", e.getNsPid()},
                         {"ppid", e.getPpid()},
                         {"comm", e.getComm().cStr()}};
        switch (e.getKind()) {
        case schema::EventKind::SIGNAL:
          j["signal"] = e.getSigno();
          j["signalName"] = signal_name(e.getSigno());
          j["result"] = e.getSignalResult();
          j["senderPid"] = e.getSenderPid();
          j["senderTgid"] = e.getSenderTgid();
          j["senderComm"] = e.getSenderComm().cStr();
          break;
        case schema::EventKind::EXIT:
          j["exitCode"] = e.getExitCode();
          j["exitSignal"] = e.getExitSignal();
          break;
        case schema::EventKind::EXEC:
          j["filename"] = e.getFilename().cStr();
          break;
        default:
          break;
        }
        print_json(j);
        continue;
      }
      std::string what;
      switch (e.getKind()) {
      case schema::EventKind::SIGNAL:
        what = signal_name(e.getSigno()) + " from " + std::to_string(e.getSenderTgid()) + " (" +
               e.getSenderComm().cStr() + ")";
        break;
      case schema::EventKind::EXIT:
        what = e.getExitSignal() ? "killed by " + signal_name(e.getExitSignal())
                                 : "code " + std::to_string(e.getExitCode());
        break;
      case schema::EventKind::EXEC:
        what = e.getFilename().cStr();
        break;
      default:
        break;
      }
      std::printf("%-6s %-24s %-12s pid=%u nspid=%u %-16s %s\n", kind_name(e.getKind()),
                  e.getCell().size() ? e.getCell().cStr() : "-",
                  e.getExecutable().size() ? e.getExecutable().cStr() : "-", e.getTgid(),
                  e.getNsPid(), e.getComm().cStr(), what.c_str());
    }
    std::fflush(stdout);
    return kj::READY_NOW;
  }

private:
  bool json_;
};

struct events_options {
  std::string cell, executable;
  bool nested = false, signals = false, processes = false;
};

int events(const global_options& g, const events_options& o) {
  if (o.nested && o.cell.empty())
    bad("--nested needs --cell");
  client c{g};
  auto obs = observe_service(c);
  auto fill = [&](schema::EventFilter::Builder f) {
    f.setCell(o.cell);
    f.setNested(o.nested);
    f.setExecutable(o.executable);
  };
  auto sink = schema::EventSink::Client{kj::heap<event_printer>(g.json)};
  kj::Vector<kj::Promise<void>> calls;
  // Neither flag: both streams, into one printer.
  if (o.signals || !o.processes) {
    auto req = obs.signalsRequest();
    fill(req.initFilter());
    req.setSink(sink);
    calls.add(req.send().ignoreResult());
  }
  if (o.processes || !o.signals) {
    auto req = obs.processEventsRequest();
    fill(req.initFilter());
    req.setSink(sink);
    calls.add(req.send().ignoreResult());
  }
  wait(c, kj::joinPromises(calls.releaseAsArray()));
  return 0;
}

// -- observe status ------------------------------------------------------------------

int status(const global_options& g) {
  client c{g};
  auto resp = wait(c, observe_service(c).statusRequest().send());
  auto s = resp.getStatus();
  std::vector<std::pair<std::string, uint64_t>> rows = {
      {"logSubscribers", s.getLogSubscribers()},
      {"statsSubscribers", s.getStatsSubscribers()},
      {"outputSubscribers", s.getOutputSubscribers()},
      {"eventSubscribers", s.getEventSubscribers()},
      {"eventsSubmitted", s.getEventsSubmitted()},
      {"eventsLostRingbuf", s.getEventsLostRingbuf()},
      {"eventsConsumed", s.getEventsConsumed()},
      {"eventsLostActor", s.getEventsLostActor()},
      {"eventsSeen", s.getEventsSeen()},
      {"eventsDelivered", s.getEventsDelivered()},
      {"eventsLostSubscribers", s.getEventsLostSubscribers()},
      {"logEntriesSeen", s.getLogEntriesSeen()},
      {"logEntriesDropped", s.getLogEntriesDropped()},
  };
  if (g.json) {
    nlohmann::json j{{"eventsAvailable", s.getEventsAvailable()},
                     {"eventsUnavailable", s.getEventsUnavailable().cStr()}};
    for (auto& [k, v] : rows)
      j[k] = v;
    print_json(j);
    return 0;
  }
  std::vector<std::pair<std::string, std::string>> table{
      {"events", s.getEventsAvailable()
                     ? std::string{"on"}
                     : std::string{"off ("} + s.getEventsUnavailable().cStr() + ")"}};
  for (auto& [k, v] : rows)
    table.emplace_back(k, std::to_string(v));
  print_table(table);
  return 0;
}

} // namespace cmd_observe_impl

int cmd_workload_logs(const global_options& g, const logs_options& o) {
  using namespace cmd_observe_impl;
  return workload_logs(g, o);
}

void add_observe_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_observe_impl;
  static top_options to;
  auto* t = app.add_subcommand("top", "live usage of cells (cpu, memory, pids, io), refreshing");
  t->add_option("cell", to.cell, "one cell (default: every cell)");
  t->add_option("--interval", to.interval, "time between samples, 10ms..1h")->capture_default_str();
  t->callback([&] { run = [&] { return top(g, to); }; });

  static events_options eo;
  auto* ev = app.add_subcommand("events", "kernel events (signals, exec, exit, OOM kills), live");
  ev->add_option("--cell", eo.cell, "only processes in this cell (default: the whole host)");
  ev->add_flag("--nested", eo.nested, "also the cells nested under --cell");
  ev->add_option("--executable", eo.executable, "only this executable of --cell");
  ev->add_flag("--signals", eo.signals, "only signals");
  ev->add_flag("--processes", eo.processes, "only exec, exit and OOM kills");
  ev->callback([&] { run = [&] { return events(g, eo); }; });

  auto* st =
      app.add_subcommand("observe-status", "observe subscribers and event pipeline counters");
  st->callback([&] { run = [&] { return status(g); }; });

  for (auto* sub : {t, ev, st}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON (one object per line) for scripts");
  }
}

} // namespace cyto::cli
