// cyto-runtime: a runc-compatible command line over the cyto OCI runtime library, so
// other engines (podman --runtime, containerd shims) and the OCI validation suite can
// drive it. Verbs: create, start, state, kill, delete, run, spec, list; and the helpers the
// containers actor runs in a container's cell: shim, exec, idle.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "actors/containers/cgroupfs_provider.hpp"
#include "actors/containers/runtime.hpp"
#include "actors/containers/shim.hpp"
#include "cyto/version.hpp"

namespace {

using namespace cyto::containers;
using json = nlohmann::json;

struct globals {
  std::string root = "/run/cyto-runtime";
  std::string log;
  std::string log_format = "text";
  bool default_seccomp = false;
  bool systemd_cgroup = false;
  bool debug = false;
};

/// An error to stderr and, with --log, to the log file (runc's JSON shape with --log-format json).
int report(const globals& g, const status& st) {
  auto text = st.render();
  std::fprintf(stderr, "cyto-runtime: %s\n", text.c_str());
  if (!g.log.empty()) {
    int fd = ::open(g.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      char when[64];
      time_t now = ::time(nullptr);
      tm t{};
      ::gmtime_r(&now, &t);
      std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
      std::string line = g.log_format == "json"
                           ? json{{"level", "error"}, {"msg", text}, {"time", when}}.dump()
                           : std::string{when} + " error " + text;
      line += "\n";
      (void)!::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  return st.exit_code();
}

/// runc's `features` shape: what configs this runtime accepts.
json features_json() {
  json caps = json::array();
  for (int c = 0; c <= 40; ++c)
    if (auto n = oci::capability_name(c); n.rfind("CAP_", 0) == 0)
      caps.push_back(n);
  return {
    {"ociVersionMin", "1.0.0"},
    {"ociVersionMax", "1.3.0"},
    {"hooks", {"prestart", "createRuntime", "createContainer", "startContainer", "poststart",
               "poststop"}},
    {"mountOptions", {"ro", "rw", "bind", "rbind", "nosuid", "suid", "nodev", "dev", "noexec",
                      "exec", "relatime", "norelatime", "strictatime", "noatime", "private",
                      "rprivate", "shared", "rshared", "slave", "rslave"}},
    {"linux",
     {{"namespaces", {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}},
      {"capabilities", caps},
      {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}}},
      {"seccomp", {{"enabled", true}}},
      {"apparmor", {{"enabled", false}}},
      {"selinux", {{"enabled", false}}}}},
    {"annotations", {{"org.cyto.runtime.version", cyto::version}}}};
}

json default_spec(bool rootless) {
  json caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  json spec = {
    {"ociVersion", "1.0.2"},
    {"process",
     {{"terminal", true},
      {"user", {{"uid", 0}, {"gid", 0}}},
      {"args", {"sh"}},
      {"env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"}},
      {"cwd", "/"},
      {"capabilities",
       {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
      {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
      {"noNewPrivileges", true}}},
    {"root", {{"path", "rootfs"}, {"readonly", true}}},
    {"hostname", "cyto"},
    {"mounts",
     {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/sys/fs/cgroup"},
       {"type", "cgroup"},
       {"source", "cgroup"},
       {"options", {"nosuid", "noexec", "nodev", "relatime", "ro"}}}}},
    {"linux",
     {{"namespaces",
       {{{"type", "pid"}}, {{"type", "network"}}, {{"type", "ipc"}}, {{"type", "uts"}},
        {{"type", "mount"}}}},
      {"maskedPaths",
       {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
        "/proc/scsi"}},
      {"readonlyPaths",
       {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
  if (rootless) {
    spec["linux"]["namespaces"].push_back({{"type", "user"}});
    spec["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", ::getuid()}, {"size", 1}}};
    spec["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", ::getgid()}, {"size", 1}}};
  }
  return spec;
}

} // namespace

int main(int argc, char** argv) {
  globals g;
  CLI::App app{"cyto-runtime: run OCI containers (runtime-spec 1.0/1.1), runc-compatible"};
  app.set_version_flag("-v,--version", std::string{"cyto-runtime version "} + cyto::version
                                         + "\nspec: " + cyto::containers::oci::spec_version);
  app.add_option("--root", g.root, "directory for the containers' state")
    ->capture_default_str();
  app.add_option("--log", g.log, "append errors to this file");
  app.add_option("--log-format", g.log_format, "text or json")
    ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--default-seccomp", g.default_seccomp,
               "give containers without linux.seccomp the default (podman-like) profile");
  app.add_flag("--systemd-cgroup", g.systemd_cgroup,
               "accepted for compatibility; cgroupsPath must be a cgroupfs path");
  app.add_flag("--debug", g.debug, "accepted for compatibility");
  app.require_subcommand(1);

  std::string id, bundle = ".", pid_file, console_socket, sig = "SIGTERM";
  bool force = false, all = false, detach = false, rootless = false, no_keyring = false,
       no_pivot = false;
  int preserve_fds = 0;
  auto add_create_flags = [&](CLI::App* c) {
    c->add_option("-b,--bundle", bundle, "bundle directory (holds config.json)")
      ->capture_default_str();
    c->add_option("--pid-file", pid_file, "write the container's pid here");
    c->add_option("--console-socket", console_socket,
                  "unix socket that receives the pty master when process.terminal is set");
    c->add_flag("--no-new-keyring", no_keyring, "accepted for compatibility");
    c->add_flag("--no-pivot", no_pivot, "not supported: pivot_root is always used");
    c->add_option("--preserve-fds", preserve_fds, "accepted when 0");
    c->add_option("id", id, "container id")->required();
  };
  auto* create = app.add_subcommand("create", "create a container (its process waits for start)");
  add_create_flags(create);
  auto* run = app.add_subcommand("run", "create and start a container, wait, delete it; "
                                        "exits with the container's status");
  add_create_flags(run);
  run->add_flag("-d,--detach", detach, "return after start instead of waiting");
  auto* start = app.add_subcommand("start", "start a created container");
  start->add_option("id", id, "container id")->required();
  auto* state = app.add_subcommand("state", "print the state of a container as JSON");
  state->add_option("id", id, "container id")->required();
  auto* kill = app.add_subcommand("kill", "send a signal (default SIGTERM) to a container");
  kill->add_flag("-a,--all", all, "signal every process in the container's cgroup");
  kill->add_option("id", id, "container id")->required();
  kill->add_option("signal", sig, "signal name or number")->capture_default_str();
  auto* del = app.add_subcommand("delete", "delete a stopped (or with --force any) container");
  del->add_flag("-f,--force", force, "kill the container first if it runs");
  del->add_option("id", id, "container id")->required();
  auto* spec = app.add_subcommand("spec", "write a default config.json into the bundle");
  spec->add_option("-b,--bundle", bundle, "bundle directory")->capture_default_str();
  spec->add_flag("--rootless", rootless, "map the caller's uid and gid to root in a user ns");
  auto* list = app.add_subcommand("list", "list containers");
  auto* pause = app.add_subcommand("pause", "freeze every process of a running container");
  pause->add_option("id", id, "container id")->required();
  auto* resume = app.add_subcommand("resume", "thaw a paused container");
  resume->add_option("id", id, "container id")->required();
  std::string ps_format = "table";
  auto* ps = app.add_subcommand("ps", "the processes of a container (host pids)");
  ps->add_option("-f,--format", ps_format, "table or json")
    ->check(CLI::IsMember({"table", "json"}))
    ->capture_default_str();
  ps->add_option("id", id, "container id")->required();
  // runc's update flags map onto linux.resources; --resources takes the JSON object.
  std::string upd_file, upd_cpus, upd_mems;
  std::optional<int64_t> upd_memory, upd_reservation, upd_swap, upd_quota, upd_pids;
  std::optional<uint64_t> upd_shares, upd_period;
  std::optional<uint16_t> upd_blkio;
  auto* update = app.add_subcommand("update", "change a container's linux.resources");
  update->add_option("-r,--resources", upd_file, "linux.resources as JSON (\"-\": stdin)");
  update->add_option("--memory", upd_memory, "memory limit in bytes");
  update->add_option("--memory-reservation", upd_reservation, "soft limit in bytes");
  update->add_option("--memory-swap", upd_swap, "memory + swap limit in bytes");
  update->add_option("--cpu-shares", upd_shares, "cpu shares");
  update->add_option("--cpu-quota", upd_quota, "cfs quota in us (-1: none)");
  update->add_option("--cpu-period", upd_period, "cfs period in us");
  update->add_option("--cpuset-cpus", upd_cpus, "cpus, e.g. 0-1");
  update->add_option("--cpuset-mems", upd_mems, "memory nodes");
  update->add_option("--pids-limit", upd_pids, "maximum number of processes");
  update->add_option("--blkio-weight", upd_blkio, "10..1000");
  update->add_option("id", id, "container id")->required();
  app.add_subcommand("features", "what this runtime implements, as JSON (runc features)");

  auto* shim = app.add_subcommand(
    "shim", "create a container and supervise it for the daemon: writes created.json, "
            "starts on SIGUSR1 (started.json), aborts on SIGTERM/SIGINT before that, "
            "forwards TERM/INT/HUP/QUIT/USR2 while it runs, writes exit.json, deletes it; "
            "exits with its code. Without linux.cgroupsPath the container stays in the "
            "shim's cgroup");
  shim->add_option("-b,--bundle", bundle, "bundle directory (holds config.json)")
    ->capture_default_str();
  bool shim_interactive = false;
  shim->add_flag("-i,--interactive", shim_interactive,
                 "keep the container's stdin open: a pipe fed through <bundle>/attach.sock "
                 "(process.terminal: the pty, whose output attach.sock also carries)");
  shim->add_option("id", id, "container id")->required();
  std::vector<std::string> exec_env, exec_cmd;
  std::string exec_cwd, exec_user;
  auto* exec = app.add_subcommand(
    "exec", "run another process in a running container (its namespaces, cgroup and process "
            "settings); exits with its status, 127 when the command is not found");
  exec->add_option("-e,--env", exec_env, "K=V added to (or replacing in) the environment")
    ->allow_extra_args(false); // one value each: never the id or a `--`
  exec->add_option("--cwd", exec_cwd, "working directory instead of process.cwd");
  exec->add_option("--user", exec_user, "UID[:GID] instead of process.user");
  std::string exec_process_file;
  bool exec_tty = false;
  int exec_preserve_fds = 0;
  exec->add_option("-p,--process", exec_process_file,
                   "process.json (an OCI process object) instead of config.json's process");
  exec->add_flag("-t,--tty", exec_tty, "a pty for the process (needs --console-socket)");
  std::string exec_attach;
  exec->add_option("--attach-socket", exec_attach,
                   "serve the process's terminal (--tty) or stdin on this unix socket "
                   "(cytod's attach); the process starts once a client is attached");
  exec->add_option("--console-socket", console_socket,
                   "unix socket that receives the pty master with --tty");
  exec->add_flag("-d,--detach", detach, "return once the process runs (see --pid-file)");
  exec->add_option("--pid-file", pid_file, "write the process's pid here");
  exec->add_option("--preserve-fds", exec_preserve_fds, "accepted when 0");
  exec->add_option("id", id, "container id")->required();
  exec->add_option("command", exec_cmd, "-- CMD [ARG...] (unless --process gives it)");
  app.add_subcommand("idle", "sleep until SIGTERM/SIGINT, then exit 0 (a pod's placeholder)");

  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<cgroup_provider> cgroups;
  auto make_runtime = [&] {
    cgroups = make_cgroupfs_provider();
    runtime_options o;
    o.root = g.root;
    o.cgroups = cgroups.get();
    o.default_seccomp = g.default_seccomp;
    return runtime{o};
  };
  create_options co;
  co.bundle = bundle;
  co.pid_file = pid_file;
  co.console_socket = console_socket;
  if ((create->parsed() || run->parsed()) && (no_pivot || preserve_fds != 0))
    return report(g, invalid(no_pivot ? "--no-pivot is not supported"
                                      : "--preserve-fds is not supported"));

  if (app.got_subcommand("idle"))
    return run_idle();
  if (shim->parsed()) {
    // The daemon's shim: the container goes into the shim's own cgroup (the cell's)
    // unless the config asks for a cgroup path.
    auto cfg = oci::load_bundle(bundle);
    cgroups = cfg && !cfg->linux.cgroups_path.empty() ? make_cgroupfs_provider() : nullptr;
    runtime_options o;
    o.root = g.root;
    o.cgroups = cgroups.get();
    o.default_seccomp = g.default_seccomp;
    runtime rt{o};
    shim_options so;
    so.tty = cfg && cfg->process && cfg->process->terminal;
    so.interactive = shim_interactive;
    return run_shim(rt, id, bundle, so);
  }
  if (exec->parsed()) {
    exec_options eo;
    if (exec_preserve_fds != 0)
      return report(g, invalid("--preserve-fds is not supported").with_exit_code(125));
    if (!exec_process_file.empty()) {
      std::ifstream in{exec_process_file};
      std::stringstream text;
      text << in.rdbuf();
      if (!in)
        return report(g, from_errno(errno, "read --process " + exec_process_file)
                           .with_exit_code(125));
      auto p = oci::parse_process_json(text.str());
      if (!p)
        return report(g, status{p.error()}.with_exit_code(125));
      eo.process = std::move(*p);
    } else if (exec_cmd.empty()) {
      return report(g, invalid("exec: a command is needed (or --process)").with_exit_code(125));
    }
    eo.tty = exec_tty;
    eo.attach_socket = exec_attach;
    eo.console_socket = console_socket;
    eo.detach = detach;
    eo.pid_file = pid_file;
    eo.args = exec_cmd;
    eo.env = exec_env;
    eo.cwd = exec_cwd;
    if (!exec_user.empty()) {
      auto colon = exec_user.find(':');
      auto number = [](const std::string& t) -> std::optional<uint32_t> {
        if (t.empty() || t.size() > 10 || !std::all_of(t.begin(), t.end(), ::isdigit))
          return std::nullopt;
        auto v = std::stoull(t);
        return v <= 0xffffffffull ? std::optional<uint32_t>{static_cast<uint32_t>(v)} : std::nullopt;
      };
      eo.uid = number(exec_user.substr(0, colon));
      if (colon != std::string::npos)
        eo.gid = number(exec_user.substr(colon + 1));
      if (!eo.uid || (colon != std::string::npos && !eo.gid))
        return report(g, invalid("--user \"" + exec_user + "\": want UID[:GID] (numbers)")
                           .with_exit_code(125));
    }
    auto code = make_runtime().exec(id, eo);
    return code ? *code : report(g, code.error());
  }
  if (create->parsed()) {
    auto rt = make_runtime();
    auto pid = rt.create(id, co);
    return pid ? 0 : report(g, pid.error());
  }
  if (run->parsed()) {
    auto rt = make_runtime();
    if (detach) {
      auto pid = rt.create(id, co);
      if (!pid)
        return report(g, pid.error());
      if (auto s = rt.start(id))
        return report(g, s);
      return 0;
    }
    auto code = rt.run(id, co);
    return code ? *code : report(g, code.error());
  }
  if (start->parsed()) {
    auto s = make_runtime().start(id);
    return s ? report(g, s) : 0;
  }
  if (state->parsed()) {
    auto st = make_runtime().state(id);
    if (!st)
      return report(g, st.error());
    std::cout << st->to_json() << "\n";
    return 0;
  }
  if (kill->parsed()) {
    auto n = parse_signal(sig);
    if (!n)
      return report(g, invalid("unknown signal \"" + sig + "\""));
    auto s = make_runtime().kill(id, *n, all);
    return s ? report(g, s) : 0;
  }
  if (del->parsed()) {
    auto s = make_runtime().remove(id, force);
    return s ? report(g, s) : 0;
  }
  if (list->parsed()) {
    json out = json::array();
    for (auto& c : make_runtime().list())
      out.push_back(json::parse(c.to_json(false)));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (pause->parsed() || resume->parsed()) {
    auto rt = make_runtime();
    auto s = pause->parsed() ? rt.pause(id) : rt.resume(id);
    return s ? report(g, s) : 0;
  }
  if (ps->parsed()) {
    auto pids = make_runtime().processes(id);
    if (!pids)
      return report(g, pids.error());
    if (ps_format == "json") {
      std::cout << json(*pids).dump() << "\n";
    } else {
      std::cout << "PID\tCMD\n";
      for (pid_t p : *pids) {
        std::ifstream comm{"/proc/" + std::to_string(p) + "/comm"};
        std::string name;
        std::getline(comm, name);
        std::cout << p << "\t" << name << "\n";
      }
    }
    return 0;
  }
  if (update->parsed()) {
    oci::resources r;
    if (!upd_file.empty()) {
      std::stringstream text;
      if (upd_file == "-") {
        text << std::cin.rdbuf();
      } else {
        std::ifstream in{upd_file};
        if (!in)
          return report(g, from_errno(errno, "read --resources " + upd_file));
        text << in.rdbuf();
      }
      auto parsed = oci::parse_resources_json(text.str());
      if (!parsed)
        return report(g, parsed.error());
      r = std::move(*parsed);
    }
    if (upd_memory) r.memory_limit = *upd_memory;
    if (upd_reservation) r.memory_reservation = *upd_reservation;
    if (upd_swap) r.memory_swap = *upd_swap;
    if (upd_shares) r.cpu_shares = *upd_shares;
    if (upd_quota) r.cpu_quota = *upd_quota;
    if (upd_period) r.cpu_period = *upd_period;
    if (!upd_cpus.empty()) r.cpu_cpus = upd_cpus;
    if (!upd_mems.empty()) r.cpu_mems = upd_mems;
    if (upd_pids) r.pids_limit = *upd_pids;
    if (upd_blkio) {
      if (*upd_blkio < 10 || *upd_blkio > 1000)
        return report(g, invalid("--blkio-weight: out of range (10..1000)"));
      r.blkio_weight = *upd_blkio;
    }
    if (!r.any())
      return report(g, invalid("update: nothing to change (give --resources or a flag)"));
    auto s = make_runtime().update(id, r);
    return s ? report(g, s) : 0;
  }
  if (app.got_subcommand("features")) {
    std::cout << features_json().dump(2) << "\n";
    return 0;
  }
  if (spec->parsed()) {
    auto path = bundle + "/config.json";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
      return report(g, from_errno(errno, "create " + path));
    auto text = default_spec(rootless).dump(2) + "\n";
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok ? 0 : report(g, from_errno(errno, "write " + path));
  }
  return 1;
}
