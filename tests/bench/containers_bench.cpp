// containers_bench: N `cyto run -d --name bench-I demo sleep 3600` in a row, then
// `cyto rm -f bench-I` of all N, through a cytod started for the bench (the integration
// tests' daemon_fixture: its own socket, state dir and cgroup root; the daemon imports
// the build's demo image before timing starts). Each call is timed from fork of the CLI
// to its exit: CLI + capnp + containers actor (cell, overlay rootfs, bundle, shim,
// started.json; for rm: SIGKILL, exit, unmount, removal of cell, bundle and record).
//
// Prints ONE JSON document on stdout: per phase the total (s), the calls per second and
// min/p50/p90/p99/max/mean (ms) per call; cytod's RSS with N containers running. Never
// fails because of a time. On every path the containers it made are removed.
//
// Usage: containers_bench [--count N]   (default 100)

#include "tests/bench/bench_common.hpp"
#include "tests/integration/daemon_fixture.hpp"

namespace cyto::bench {
const char* const bench_name = "containers_bench";
}

namespace {

namespace t = cyto::test;
namespace b = cyto::bench;

struct phase {
  std::vector<double> ms;
  double total_s = 0;
  std::string error;

  b::json to_json() const {
    std::vector<double> copy = ms;
    b::json j = b::latency_stats(copy);
    j["unit"] = "ms";
    j["total_s"] = total_s;
    j["calls_per_s"] = total_s > 0 ? static_cast<double>(ms.size()) / total_s : 0.0;
    if (!error.empty())
      j["error"] = error;
    return j;
  }
};

/// Runs `cyto ARGS` on the daemon's socket; its wall time (ms), or the failure in `error`.
bool timed_cli(t::daemon_fixture& d, const std::vector<std::string>& args, phase& p) {
  std::vector<std::string> argv{t::cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto t0 = b::steady::now();
  auto r = t::run_process(argv, std::chrono::seconds(60));
  auto ms = b::micros_between(t0, b::steady::now()) / 1000.0;
  if (r.code() != 0) {
    p.error = "cyto " + args.front() + " " + args.back() + ": " + b::describe_status(r.status) +
              ": " + r.err;
    return false;
  }
  p.ms.push_back(ms);
  return true;
}

} // namespace

int main(int argc, char** argv) {
  int count = 100;
  for (int i = 1; i < argc; ++i)
    if (std::string{argv[i]} == "--count" && i + 1 < argc)
      count = std::max(1, std::atoi(argv[++i]));
  if (::geteuid() != 0) {
    std::fprintf(stderr, "containers_bench needs root (cytod makes cgroups and mounts)\n");
    return 2;
  }
  b::json out = b::json::obj();
  out["bench"] = "containers_bench";
  out["machine"] = b::machine_info_head(false);
  out["count"] = count;
  int rc = 0;
  try {
    t::daemon_fixture daemon{false};
    daemon.start({}, std::chrono::seconds(30));
    std::vector<std::string> made;
    phase runs, removals, warm;
    // One container first, so the image's first use is not in the figures.
    timed_cli(daemon, {"run", "--rm", "demo", "true"}, warm);
    b::note("%d x cyto run -d", count);
    auto t0 = b::steady::now();
    for (int i = 0; i < count; ++i) {
      auto name = "bench-" + std::to_string(i);
      if (!timed_cli(daemon, {"run", "-d", "--name", name, "demo", "sleep", "3600"}, runs))
        break;
      made.push_back(name);
    }
    runs.total_s = b::seconds_between(t0, b::steady::now());
    out["cytod_rss_kib_running"] = b::optional_number(b::status_field(daemon.pid(), "VmRSS"));
    b::note("%zu x cyto rm -f", made.size());
    t0 = b::steady::now();
    std::vector<std::string> left;
    for (auto& name : made)
      if (!timed_cli(daemon, {"rm", "-f", name}, removals))
        left.push_back(name);
    removals.total_s = b::seconds_between(t0, b::steady::now());
    // What failed to go is removed without timing (the daemon's kill does not stop them).
    for (auto& name : left)
      t::run_process({t::cli_path, "--socket", daemon.socket_path(), "rm", "-f", name},
                     std::chrono::seconds(60));
    out["run_detached"] = runs.to_json();
    out["remove_force"] = removals.to_json();
    if (!runs.error.empty() || !removals.error.empty())
      rc = 1;
    daemon.stop();
  } catch (const std::exception& e) {
    out["error"] = b::describe_exception(e);
    rc = 1;
  }
  b::machine_info_tail(out["machine"]);
  std::printf("%s\n", out.dump().c_str());
  return rc;
}
