// runtime_bench: how fast cyto-runtime runs a container, against crun and runc.
//
// One busybox-static bundle (rootfs = /bin/busybox + applet links, the usual namespaces,
// mounts, masked and readonly paths, capabilities and rlimits of `runc spec`) in a temp
// dir; process.args = /bin/true. Each sample is one `<runtime> --root R run --bundle B ID`:
// create + start + wait + delete, timed from fork of the runtime to its exit.
// Runtimes take turns sample by sample, so load from other processes on this small
// shared machine falls on all of them alike.
//
//   cyto-runtime  with linux.cgroupsPath /cyto-test-bench-<pid>/c: makes and removes a
//                 cgroup in every v1 hierarchy (or the v2 tree) each run
//   runc          the same config (runc makes the same cgroups)
//   cyto-runtime shim  the daemon's helper on the same bundle: `shim`, wait for
//                 created.json (inotify, as the containers actor does), SIGUSR1, wait for
//                 the shim's exit; the same cgroups as cyto-runtime run
//   crun          through /work/shared/tools/crun-here (this host's hybrid layout makes
//                 crun refuse cgroups): crun is timed WITHOUT cgroups, a stricter reference
//   cyto run      `cyto run --rm demo true` through a cytod started for the bench (its
//                 own socket, state dir and cgroup root <root>-daemon): CLI + capnp +
//                 containers actor (cell, overlay rootfs, bundle, shim, wait, removal);
//                 the demo image is imported by the daemon before timing starts
//
// Prints ONE JSON document on stdout: p50/p90/p99/mean (ms) per runtime and
// cyto_vs_crun_p50 against the target (<= 0.8). A runtime that is not installed is
// reported as missing. Never fails because of a time. On every path the cgroup root
// and the temp dir are removed.
//
// Usage: runtime_bench [--runs N] [--runtime PATH] [--no-daemon]   (default 50 runs)
// CYTO_BENCH_CYTOD / CYTO_BENCH_CLI: another build's cytod and cyto (to compare builds).

#include "tests/bench/bench_common.hpp"

#include <filesystem>

#include <csignal>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>

namespace cyto::bench {
const char* const bench_name = "runtime_bench";
}

using namespace cyto::bench;
namespace fs = std::filesystem;

namespace {

std::string g_cg_root;
/// The bench's own cytod (0: none running).
pid_t g_daemon = 0;

void remove_cgroup_root() {
  std::error_code ec;
  if (g_daemon > 0) {
    ::kill(g_daemon, SIGKILL);
    ::waitpid(g_daemon, nullptr, 0);
    g_daemon = 0;
  }
  for (auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec}) {
    for (auto& root : {g_cg_root, g_cg_root + "-daemon"}) {
      auto top = h.path() / root;
      if (g_cg_root.empty() || !fs::exists(top, ec))
        continue;
      std::vector<fs::path> dirs;
      for (auto& d : fs::recursive_directory_iterator{top, ec})
        if (d.is_directory(ec))
          dirs.push_back(d.path());
      std::sort(dirs.begin(), dirs.end(),
                [](auto& a, auto& b) { return a.string().size() > b.string().size(); });
      dirs.push_back(top);
      for (auto& d : dirs)
        ::rmdir(d.c_str());
    }
  }
}

/// The binary `var` names, else this build's.
std::string bench_binary(const char* var, const char* built) {
  const char* v = std::getenv(var);
  return v && *v ? v : built;
}

/// Starts cytod on <tmp>/cytod.sock (state <tmp>/cytod-state, cgroup root
/// <g_cg_root>-daemon) and waits until it is ready. Returns the error text on failure.
std::string start_daemon(const std::string& tmp) {
  auto sock = tmp + "/cytod.sock";
  // No default network: crun's run has none either, and the bench must not make a bridge
  // on the host's network.
  std::vector<std::string> argv{bench_binary("CYTO_BENCH_CYTOD", CYTOD_PATH), "--socket", sock,
                                "--state-dir",        tmp + "/cytod-state", "--cgroup-root",
                                g_cg_root + "-daemon", "--default-network",  "none"};
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int log = ::open((tmp + "/cytod.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  g_daemon = pid;
  for (int i = 0; i < 600; ++i) {
    int fd = try_connect_unix(sock);
    if (fd >= 0) {
      ::close(fd);
      if (read_text(tmp + "/cytod.log").find(" ready: ") != std::string::npos)
        return {};
    }
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      g_daemon = 0;
      return "cytod exited during start-up: " + read_text(tmp + "/cytod.log");
    }
    sleep_s(0.05);
  }
  return "cytod was not ready within 30 s";
}

void cleanup() {
  remove_cgroup_root();
  if (g_tmpdir[0]) {
    std::error_code ec;
    fs::remove_all(g_tmpdir, ec);
  }
}

void on_signal(int) {
  write_stderr("[runtime_bench] interrupted, cleaning up\n");
  cleanup();
  ::_exit(3);
}

void on_terminate() {
  cleanup();
  std::abort();
}

std::string config_json(const std::string& cgroups_path) {
  return R"({
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
    "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true},
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "bench",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]}],
  "linux": {
    "cgroupsPath": ")" +
         cgroups_path + R"(",
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                   {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]}
})";
}

/// Starts argv with stdio on /dev/null.
pid_t spawn_quiet(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

/// Runs argv with stdio on /dev/null; returns the wall time in µs, or nothing on failure.
std::optional<double> timed_run(const std::vector<std::string>& argv, std::string& error) {
  auto t0 = steady::now();
  pid_t pid = spawn_quiet(argv);
  int st = 0;
  ::waitpid(pid, &st, 0);
  auto t1 = steady::now();
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    error = argv[0] + ": " + describe_status(st);
    return std::nullopt;
  }
  return micros_between(t0, t1);
}

/// The shim protocol's round trip: start `argv` (a shim on `bundle`), wait for
/// created.json to be renamed into place, send SIGUSR1, wait for the exit; µs.
std::optional<double> timed_shim(const std::vector<std::string>& argv, const std::string& bundle,
                                 std::string& error) {
  int in = ::inotify_init1(IN_CLOEXEC);
  ::inotify_add_watch(in, bundle.c_str(), IN_MOVED_TO);
  auto created = bundle + "/created.json";
  auto t0 = steady::now();
  pid_t pid = spawn_quiet(argv);
  while (::access(created.c_str(), F_OK) != 0) {
    pollfd p{in, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0)
      break;
    char buf[4096];
    (void)!::read(in, buf, sizeof(buf));
  }
  ::kill(pid, SIGUSR1);
  int st = 0;
  ::waitpid(pid, &st, 0);
  auto t1 = steady::now();
  ::close(in);
  for (auto* f : {"created.json", "started.json", "exit.json"})
    ::unlink((bundle + "/" + f).c_str());
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    error = argv[0] + " shim: " + describe_status(st);
    return std::nullopt;
  }
  return micros_between(t0, t1);
}

} // namespace

int main(int argc, char** argv) {
  int runs = 50;
  std::string cyto_runtime = CYTO_RUNTIME_PATH;
  bool daemon = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-daemon")
      daemon = false;
    else if (a == "--runs" && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--runtime" && i + 1 < argc)
      cyto_runtime = argv[++i];
    else {
      std::fprintf(stderr, "usage: runtime_bench [--runs N] [--runtime PATH] [--no-daemon]\n");
      return 2;
    }
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "runtime_bench needs root\n");
    return 2;
  }
  g_cg_root = "cyto-test-bench-" + std::to_string(::getpid());
  install_handlers(on_signal, on_terminate);
  auto tmp = make_tmpdir();
  ::chmod(tmp.c_str(), 0755);
  auto bundle = tmp + "/bundle";
  for (auto* d : {"bin", "proc", "dev", "sys", "tmp"})
    fs::create_directories(bundle + "/rootfs/" + d);
  fs::copy_file("/bin/busybox", bundle + "/rootfs/bin/busybox");
  for (auto* a : {"sh", "true"})
    fs::create_symlink("busybox", bundle + "/rootfs/bin/" + a);
  {
    std::ofstream out{bundle + "/config.json"};
    out << config_json("/" + g_cg_root + "/c");
  }

  struct runtime {
    std::string name;
    std::vector<std::string> prefix; // argv before "run"
    std::vector<double> us;
    std::string error;
    bool present = true;
    bool shim = false;
  };
  std::string crun_here = "/work/shared/tools/crun-here";
  std::vector<runtime> rts = {
      {"cyto-runtime", {cyto_runtime, "--root", tmp + "/state-cyto"}, {}, {}, true},
      {"cyto-runtime shim", {cyto_runtime, "--root", tmp + "/state-cyto"}, {}, {}, true, true},
      {"crun", {crun_here, "--root", tmp + "/state-crun"}, {}, {}, true},
      {"runc", {"/usr/sbin/runc", "--root", tmp + "/state-runc"}, {}, {}, true}};
  for (auto& r : rts)
    if (::access(r.prefix[0].c_str(), X_OK) != 0 ||
        (r.name == "crun" && ::access("/usr/bin/crun", X_OK) != 0)) {
      r.present = false;
      r.error = r.prefix[0] + " not installed";
    }
  // `cyto run --rm demo true` through a daemon: its own argv, no bundle argument.
  runtime through_daemon{
      "cyto run",
      {bench_binary("CYTO_BENCH_CLI", CYTO_CLI_PATH), "--socket", tmp + "/cytod.sock", "run",
       "--rm", "demo", "true"},
      {},
      {},
      daemon};
  if (!daemon)
    through_daemon.error = "skipped (--no-daemon)";
  else if (auto err = start_daemon(tmp); !err.empty())
    through_daemon.error = err;

  note("bundle %s, %d runs per runtime (+3 warm-up)", bundle.c_str(), runs);
  for (int i = -3; i < runs; ++i)
    for (auto& r : rts) {
      if (!r.present || !r.error.empty())
        continue;
      auto argv2 = r.prefix;
      for (auto* a : {r.shim ? "shim" : "run", "--bundle"})
        argv2.push_back(a);
      argv2.push_back(bundle);
      argv2.push_back("b" + std::to_string(i + 3));
      auto us = r.shim ? timed_shim(argv2, bundle, r.error) : timed_run(argv2, r.error);
      if (us && i >= 0)
        r.us.push_back(*us);
    }
  for (int i = -3; i < runs && through_daemon.present && through_daemon.error.empty(); ++i) {
    auto us = timed_run(through_daemon.prefix, through_daemon.error);
    if (us && i >= 0)
      through_daemon.us.push_back(*us);
  }
  rts.push_back(through_daemon);

  json out = json::obj();
  out["bench"] = "runtime_bench";
  auto machine = machine_info_head(false);
  machine_info_tail(machine);
  out["machine"] = machine;
  out["runs"] = runs;
  out["workload"] = "run --bundle (busybox, /bin/true): create+start+wait+delete";
  json results = json::obj();
  double cyto_p50 = NAN, crun_p50 = NAN, runc_p50 = NAN, shim_p50 = NAN, daemon_p50 = NAN;
  for (auto& r : rts) {
    json j = json::obj();
    if (!r.present)
      j["missing"] = r.error;
    else if (!r.error.empty())
      j["error"] = r.error;
    std::vector<double> ms;
    for (double u : r.us)
      ms.push_back(u / 1000.0);
    j["latency_ms"] = latency_stats(ms);
    results[r.name] = j;
    double p50 = ms.empty() ? NAN : median(ms);
    if (r.name == "cyto-runtime shim")
      shim_p50 = p50;
    else if (r.name == "cyto run")
      daemon_p50 = p50;
    else
      (r.name == "cyto-runtime" ? cyto_p50 : r.name == "crun" ? crun_p50 : runc_p50) = p50;
  }
  out["results"] = results;
  json cmp = json::obj();
  cmp["cyto_vs_crun_p50"] = cyto_p50 / crun_p50;
  cmp["cyto_vs_runc_p50"] = cyto_p50 / runc_p50;
  cmp["shim_vs_crun_p50"] = shim_p50 / crun_p50;
  cmp["target_vs_crun"] = 0.8;
  cmp["meets_target"] = cyto_p50 / crun_p50 <= 0.8;
  cmp["cyto_run_vs_crun_p50"] = daemon_p50 / crun_p50;
  cmp["cyto_run_target_vs_crun"] = 1.2;
  cmp["cyto_run_meets_target"] = daemon_p50 / crun_p50 <= 1.2;
  cmp["note"] = "crun runs via crun-here: no cgroups (cyto-runtime and runc make them); "
                "cyto run goes through the CLI, capnp and cytod";
  out["comparison"] = cmp;
  cleanup();
  std::printf("%s\n", out.dump().c_str());
  bool failed = false;
  for (auto& r : rts)
    failed = failed || (r.present && !r.error.empty());
  return failed ? 1 : 0;
}
