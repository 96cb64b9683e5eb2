// cyto stats [--no-stream] [--json] [NAME...]: podman's stats of containers, from the
// observe service's cgroup samples of their cells (the CLI reads no cgroup itself).
#include <cstdio>
#include <map>
#include <set>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/containers.capnp.h"
#include "schema/observe.capnp.h"

namespace cyto::cli {

namespace cmd_stats_impl {

/// podman's exit code for a failure of the engine.
constexpr int exit_engine = 125;

struct stats_options {
  std::vector<std::string> names;
  bool no_stream = false;
  std::string interval = "1s";
};

struct target {
  std::string name, id, cell;
};

/// One container's latest sample.
struct row {
  bool have = false;
  bool rate = false; // cpu_percent is over an interval (not the first sample)
  double cpu_percent = 0;
  uint64_t mem = 0, limit = 0, pids = 0, io_read = 0, io_write = 0, net_rx = 0, net_tx = 0;
  bool net = false;
};

/// Collects the samples of every container's stream and prints a table (or a JSON array)
/// once each has reported since the last one; with --no-stream, once, then `done`.
class collector {
public:
  collector(std::vector<target> targets, bool json, bool once, bool tty,
            kj::Own<kj::PromiseFulfiller<void>> done)
    : targets_(std::move(targets)), json_(json), once_(once), tty_(tty), done_(std::move(done)) {
    for (auto& t : targets_)
      live_.insert(t.cell);
  }

  void sample(const std::string& cell, schema::CellStats::Reader s) {
    auto& r = rows_[cell];
    r.have = true;
    r.rate = s.getIntervalUsec() > 0;
    r.cpu_percent = s.getCpuPercent();
    r.mem = s.getMemoryCurrent();
    r.limit = s.getMemoryLimit();
    r.pids = s.getPidsCurrent();
    r.io_read = s.getIoReadBytes();
    r.io_write = s.getIoWriteBytes();
    r.net = s.getNetAvailable();
    r.net_rx = s.getNetRxBytes();
    r.net_tx = s.getNetTxBytes();
    fresh_.insert(cell);
    maybe_print();
  }

  /// A container's stream ended (it stopped or went away): it is left out from now on.
  void gone(const std::string& cell) {
    live_.erase(cell);
    rows_.erase(cell);
    fresh_.erase(cell);
    if (live_.empty()) {
      if (!printed_)
        print();
      finish();
      return;
    }
    maybe_print();
  }

private:
  void maybe_print() {
    for (auto& c : live_) {
      if (!fresh_.count(c))
        return;
      // One-shot output waits for a CPU rate (the second sample).
      if (once_ && !rows_[c].rate)
        return;
    }
    print();
    fresh_.clear();
    if (once_)
      finish();
  }

  void finish() {
    if (done_->isWaiting())
      done_->fulfill();
  }

  void print() {
    printed_ = true;
    if (json_) {
      auto out = nlohmann::json::array();
      for (auto& t : targets_) {
        auto i = rows_.find(t.cell);
        if (!live_.count(t.cell) || i == rows_.end())
          continue;
        auto& r = i->second;
        nlohmann::json j{{"name", t.name},
                         {"id", t.id},
                         {"cell", t.cell},
                         {"cpuPercent", r.cpu_percent},
                         {"memUsage", r.mem},
                         {"memLimit", r.limit},
                         {"memPercent", r.limit ? 100.0 * static_cast<double>(r.mem)
                                                      / static_cast<double>(r.limit)
                                                : 0.0},
                         {"pids", r.pids},
                         {"blockRead", r.io_read},
                         {"blockWrite", r.io_write}};
        j["netRx"] = r.net ? nlohmann::json(r.net_rx) : nlohmann::json(nullptr);
        j["netTx"] = r.net ? nlohmann::json(r.net_tx) : nlohmann::json(nullptr);
        out.push_back(std::move(j));
      }
      print_json(out);
      return;
    }
    if (tty_ && !once_)
      std::printf("\033[H\033[2J"); // home, clear: a live table
    std::printf("%-12s  %-20s  %7s  %-24s  %7s  %-21s  %-21s  %5s\n", "ID", "NAME", "CPU %",
                "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS");
    for (auto& t : targets_) {
      auto i = rows_.find(t.cell);
      if (!live_.count(t.cell) || i == rows_.end())
        continue;
      auto& r = i->second;
      char cpu[16], memp[16];
      if (r.rate)
        std::snprintf(cpu, sizeof(cpu), "%.2f%%", r.cpu_percent);
      else
        std::snprintf(cpu, sizeof(cpu), "--");
      if (r.limit)
        std::snprintf(memp, sizeof(memp), "%.2f%%",
                      100.0 * static_cast<double>(r.mem) / static_cast<double>(r.limit));
      else
        std::snprintf(memp, sizeof(memp), "--");
      auto mem = human_size(r.mem) + " / " + (r.limit ? human_size(r.limit) : "unlimited");
      auto net = r.net ? human_size(r.net_rx) + " / " + human_size(r.net_tx) : std::string{"--"};
      auto io = human_size(r.io_read) + " / " + human_size(r.io_write);
      std::printf("%-12s  %-20s  %7s  %-24s  %7s  %-21s  %-21s  %5llu\n",
                  t.id.substr(0, 12).c_str(), t.name.c_str(), cpu, mem.c_str(), memp, net.c_str(),
                  io.c_str(), static_cast<unsigned long long>(r.pids));
    }
    if (!tty_ || once_)
      std::printf("\n");
    std::fflush(stdout);
  }

  std::vector<target> targets_;
  bool json_, once_, tty_;
  bool printed_ = false;
  kj::Own<kj::PromiseFulfiller<void>> done_;
  std::set<std::string> live_, fresh_;
  std::map<std::string, row> rows_;
};

class stats_sink final : public schema::StatsSink::Server {
public:
  stats_sink(collector& c, std::string cell) : c_(c), cell_(std::move(cell)) {}

  kj::Promise<void> sample(SampleContext context) override {
    for (auto s : context.getParams().getCells())
      if (cell_ == s.getCell().cStr())
        c_.sample(cell_, s);
    return kj::READY_NOW;
  }

private:
  collector& c_;
  std::string cell_;
};

int stats(const global_options& g, const stats_options& o) {
  auto us = parse_duration_us(o.interval);
  if (!us || *us < 10'000)
    throw cli_error("cyto.invalid_argument: --interval: '" + o.interval
                    + "' is not a duration of 10ms or more (500ms, 2s)");
  client c{g};
  auto containers = wait(c, c.node().containersRequest().send()).getService();
  std::vector<target> targets;
  if (o.names.empty()) {
    auto resp = wait(c, containers.listRequest().send());
    for (auto x : resp.getContainers())
      if (x.getState() == schema::ContainerState::RUNNING)
        targets.push_back({x.getSpec().getName(), x.getId(), x.getCell()});
  } else {
    for (auto& n : o.names) {
      auto req = containers.inspectRequest();
      req.setName(n);
      try {
        auto info = req.send().wait(c.wait_scope()).getInfo();
        if (info.getState() != schema::ContainerState::RUNNING) {
          std::fprintf(stderr, "cyto: cyto.failed_precondition: container %s is not running\n",
                       n.c_str());
          return exit_engine;
        }
        targets.push_back({info.getSpec().getName(), info.getId(), info.getCell()});
      } catch (const kj::Exception& e) {
        std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
        return exit_engine;
      }
    }
  }
  if (targets.empty()) {
    if (g.json)
      print_json(nlohmann::json::array());
    else
      std::printf("no running containers\n");
    return 0;
  }
  auto observe = wait(c, c.node().observeRequest().send()).getService();
  auto done = kj::newPromiseAndFulfiller<void>();
  collector coll{targets, g.json, o.no_stream, ::isatty(STDOUT_FILENO) == 1,
                 kj::mv(done.fulfiller)};
  kj::Vector<kj::Promise<void>> calls;
  for (auto& t : targets) {
    auto req = observe.statsRequest();
    req.initTarget().setCell(t.cell);
    req.setIntervalMs(o.no_stream ? 1000 : *us / 1000);
    req.setSink(kj::heap<stats_sink>(coll, t.cell));
    auto cell = t.cell;
    calls.add(req.send().ignoreResult().then([&coll, cell] { coll.gone(cell); },
                                             [&coll, cell](kj::Exception&&) { coll.gone(cell); }));
  }
  auto all = kj::joinPromises(calls.releaseAsArray());
  wait(c, done.promise.exclusiveJoin(kj::mv(all)));
  return 0;
}

} // namespace cmd_stats_impl

void add_stats_command(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_stats_impl;
  static stats_options so;
  auto* s = app.add_subcommand(
      "stats", "containers' CPU %, memory usage / limit, net and block I/O and pids, refreshing "
               "(default: every running container)");
  s->add_option("names", so.names, "container names or ids");
  s->add_flag("--no-stream", so.no_stream, "print one sample (CPU % over 1 s) and exit");
  s->add_option("--interval", so.interval, "time between samples when streaming")
      ->capture_default_str();
  s->add_option("--socket", g.socket, "cytod's socket");
  s->add_option("--node", g.node, "run the verb against this node of the federation");
  s->add_flag("--json", g.json, "print a JSON array per sample for scripts");
  s->callback([&] { run = [&] { return stats(g, so); }; });
}

} // namespace cyto::cli
