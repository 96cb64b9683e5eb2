// cyto run|ps|exec|stop|kill|rm|inspect|wait: containers, with podman's habits.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/terminal.hpp"
#include "cli/units.hpp"
#include "schema/cells.capnp.h"
#include "schema/containers.capnp.h"
#include "schema/images.capnp.h"

namespace cyto::cli {

namespace cmd_container_impl {

/// podman's exit code for a failure of the engine (not of the container's program).
constexpr int exit_engine = 125;

[[noreturn]] void bad(const std::string& what) {
  throw cli_error("cyto.invalid_argument: " + what);
}

schema::Containers::Client containers(client& c) {
  return wait(c, c.node().containersRequest().send()).getService();
}

const char* state_name(schema::ContainerState s) {
  switch (s) {
  case schema::ContainerState::CREATED:
    return "created";
  case schema::ContainerState::RUNNING:
    return "running";
  case schema::ContainerState::STOPPED:
    return "stopped";
  }
  return "unknown";
}

int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ago(int64_t unix_nanos) {
  auto d = now_nanos() - unix_nanos;
  return human_duration(d > 0 ? static_cast<uint64_t>(d) : 0) + " ago";
}

nlohmann::json texts_json(capnp::List<capnp::Text>::Reader xs) {
  auto out = nlohmann::json::array();
  for (auto x : xs)
    out.push_back(x.cStr());
  return out;
}

nlohmann::json container_json(schema::ContainerInfo::Reader x) {
  auto s = x.getSpec();
  auto l = s.getLimits();
  nlohmann::json mounts = nlohmann::json::array();
  for (auto m : s.getMounts())
    mounts.push_back({{"kind", m.getKind().cStr()},
                      {"source", m.getSource().cStr()},
                      {"target", m.getTarget().cStr()},
                      {"readOnly", m.getReadOnly()},
                      {"sizeBytes", m.getSizeBytes()}});
  nlohmann::json ports = nlohmann::json::array();
  for (auto p : s.getPorts())
    ports.push_back({{"hostPort", p.getHostPort()},
                     {"containerPort", p.getContainerPort()},
                     {"protocol", p.getProtocol().cStr()},
                     {"hostIp", p.getHostIp().cStr()}});
  return {{"id", x.getId().cStr()},
          {"name", s.getName().cStr()},
          {"image", s.getImage().cStr()},
          {"imageName", x.getImageName().cStr()},
          {"imageDigest", x.getImageDigest().cStr()},
          {"state", state_name(x.getState())},
          {"pid", x.getPid()},
          {"exitCode", x.getExitCode()},
          {"exitSignal", x.getExitSignal()},
          {"error", x.getError().cStr()},
          {"command", texts_json(x.getCommand())},
          {"cell", x.getCell().cStr()},
          {"executable", x.getExecutable().cStr()},
          {"bundle", x.getBundle().cStr()},
          {"pod", s.getPod().cStr()},
          {"network", s.getNetwork().cStr()},
          {"ips", texts_json(x.getIps())},
          {"ports", ports},
          {"env", texts_json(s.getEnv())},
          {"entrypoint", texts_json(s.getEntrypoint())},
          {"args", texts_json(s.getArgs())},
          {"workdir", s.getWorkdir().cStr()},
          {"user", s.getUser().cStr()},
          {"hostname", s.getHostname().cStr()},
          {"autoRemove", s.getAutoRemove()},
          {"readOnly", s.getReadOnly()},
          {"capAdd", texts_json(s.getCapAdd())},
          {"sysctls", texts_json(s.getSysctls())},
          {"mounts", mounts},
          {"restart",
           {{"mode", s.getRestart().getMode().cStr()},
            {"maxRetries", s.getRestart().getMaxRetries()}}},
          {"restartCount", x.getRestartCount()},
          {"tty", s.getTty()},
          {"interactive", s.getInteractive()},
          {"limits",
           {{"memoryMax", l.getMemory().getMax()},
            {"cpuMaxQuotaUs", l.getCpu().getMaxQuotaUs()},
            {"cpuMaxPeriodUs", l.getCpu().getMaxPeriodUs()},
            {"pidsMax", l.getPidsMax()}}},
          {"created", iso_time(x.getCreatedUnixNanos())},
          {"createdUnixNanos", x.getCreatedUnixNanos()},
          {"startedUnixNanos", x.getStartedUnixNanos()},
          {"finishedUnixNanos", x.getFinishedUnixNanos()}};
}

} // namespace cmd_container_impl

/// "8080:80", "127.0.0.1:8080:80/udp".
void parse_port(const std::string& text, schema::PortMapping::Builder out) {
  using namespace cmd_container_impl;
  static const std::regex re{R"(^(?:([0-9.]+):)?([0-9]+):([0-9]+)(?:/(tcp|udp))?$)"};
  std::smatch m;
  if (!std::regex_match(text, m, re))
    bad("-p: '" + text + "' is not [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]");
  auto port = [&](const std::string& p) {
    auto v = std::stoul(p);
    if (v == 0 || v > 65535)
      bad("-p: port " + p + " is not 1..65535");
    return static_cast<uint16_t>(v);
  };
  out.setHostIp(m[1].str());
  out.setHostPort(port(m[2].str()));
  out.setContainerPort(port(m[3].str()));
  out.setProtocol(m[4].matched ? m[4].str() : "tcp");
}

void fill_limits(const limit_flags& f, schema::Cell::Builder cell) {
  using namespace cmd_container_impl;
  if (!f.memory.empty()) {
    auto v = parse_size(f.memory);
    if (!v)
      bad("--memory: '" + f.memory + "' is not a size like 256M or 1G");
    cell.initMemory().setMax(*v);
  }
  if (!f.cpus.empty()) {
    char* end = nullptr;
    double cpus = std::strtod(f.cpus.c_str(), &end);
    if (end == f.cpus.c_str() || *end != '\0' || !(cpus > 0) || cpus > 1024)
      bad("--cpus: '" + f.cpus + "' is not a number of CPUs like 0.5 or 2");
    auto cpu = cell.initCpu();
    cpu.setMaxPeriodUs(100000);
    cpu.setMaxQuotaUs(static_cast<uint64_t>(cpus * 100000 + 0.5));
  }
  cell.setPidsMax(f.pids);
}

namespace cmd_container_impl {

struct run_flags {
  bool rm = false, detach = false, read_only = false, tty = false, interactive = false;
  std::string detach_keys = "ctrl-p,ctrl-q";
  /// --pull missing|always|never.
  std::string pull = "missing";
  std::string name, pod, network, hostname, entrypoint, user, workdir, restart;
  std::vector<std::string> env, env_files, ports, cap_add, sysctls;
  limit_flags limits;
  container_mount_flags mounts;
  /// IMAGE [CMD...], everything after the options.
  std::vector<std::string> rest;
};

/// --restart no|on-failure[:N]|always|unless-stopped, as podman spells it.
void parse_restart(const std::string& text, bool rm, schema::RestartPolicy::Builder out) {
  static const std::regex re{R"(^(no|always|unless-stopped|on-failure)(?::([0-9]{1,9}))?$)"};
  std::smatch m;
  if (!text.empty() && !std::regex_match(text, m, re))
    bad("--restart: '" + text + "' is not no, on-failure[:MAX_RETRIES], always or unless-stopped");
  auto mode = text.empty() ? std::string{"no"} : m[1].str();
  if (m.size() > 2 && m[2].matched && mode != "on-failure")
    bad("--restart: '" + text + "': a retry count goes with on-failure only");
  if (rm && mode != "no")
    bad("--rm and --restart " + text + " exclude each other: an auto-removed container cannot "
        "be restarted");
  out.setMode(mode);
  out.setMaxRetries(m.size() > 2 && m[2].matched ? static_cast<uint32_t>(std::stoul(m[2].str())) : 0);
}

/// One variable as podman takes it: KEY=VALUE as is; a bare KEY takes KEY's value from
/// the caller's environment and is left out when that has none.
void add_env(std::vector<std::string>& out, const std::string& e) {
  if (e.find('=') != std::string::npos) {
    out.push_back(e);
  } else if (const char* v = std::getenv(e.c_str())) {
    out.push_back(e + "=" + v);
  }
}

/// The container's environment: the --env-file files in order (podman's format: KEY=VALUE
/// or KEY lines, '#' comments and blank lines skipped), then -e, later ones winning.
/// An unreadable file is cyto.invalid_argument.
std::vector<std::string> container_env(const run_flags& f) {
  std::vector<std::string> out;
  for (auto& path : f.env_files) {
    std::ifstream in{path};
    if (!in)
      bad("--env-file " + path + ": cannot read the file: " + std::strerror(errno));
    if (std::error_code ec; std::filesystem::is_directory(path, ec))
      bad("--env-file " + path + ": cannot read the file: it is a directory");
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
      ++n;
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#')
        continue;
      line.erase(0, first);
      if (line.front() == '=')
        bad("--env-file " + path + ": line " + std::to_string(n) + ": no variable name");
      add_env(out, line);
    }
  }
  for (auto& e : f.env)
    add_env(out, e);
  return out;
}

void fill_spec(const char* verb, const run_flags& f, schema::ContainerSpec::Builder s) {
  if (f.rest.empty())
    bad(std::string{verb} + ": give an IMAGE (e.g. cyto " + verb + " --name web demo httpd -f)");
  s.setName(f.name);
  s.setImage(f.rest.front());
  if (!f.entrypoint.empty()) {
    auto e = s.initEntrypoint(1);
    e.set(0, f.entrypoint);
  }
  auto args = s.initArgs(f.rest.size() - 1);
  for (size_t i = 1; i < f.rest.size(); ++i)
    args.set(i - 1, f.rest[i]);
  auto vars = container_env(f);
  auto env = s.initEnv(vars.size());
  for (size_t i = 0; i < vars.size(); ++i)
    env.set(i, vars[i]);
  s.setWorkdir(f.workdir);
  s.setUser(f.user);
  s.setHostname(f.hostname);
  fill_limits(f.limits, s.initLimits());
  s.setPod(f.pod);
  s.setNetwork(f.network);
  auto ports = s.initPorts(f.ports.size());
  for (size_t i = 0; i < f.ports.size(); ++i)
    parse_port(f.ports[i], ports[i]);
  s.setAutoRemove(f.rm);
  s.setReadOnly(f.read_only);
  auto caps = s.initCapAdd(f.cap_add.size());
  for (size_t i = 0; i < f.cap_add.size(); ++i)
    caps.set(i, f.cap_add[i]);
  auto sysctls = s.initSysctls(f.sysctls.size());
  for (size_t i = 0; i < f.sysctls.size(); ++i)
    sysctls.set(i, f.sysctls[i]);
  parse_restart(f.restart, f.rm, s.initRestart());
  fill_mounts(f.mounts, s);
  s.setTty(f.tty);
  s.setInteractive(f.interactive);
}

/// -t needs a terminal on our stdin (podman's check); nothing is made without one.
bool refuse_tty(bool tty) {
  if (!tty || ::isatty(0))
    return false;
  std::fprintf(stderr, "cyto: cyto.invalid_argument: the input device is not a TTY (-t needs "
                       "a terminal on stdin; drop -t to pipe input with -i)\n");
  return true;
}

/// A failed create/run: the message, and podman's exit code (the runtime's 126/127 when
/// the error carries "(exit code N)", else 125).
int engine_failure(const std::string& message) {
  std::fprintf(stderr, "cyto: %s\n", message.c_str());
  static const std::regex re{R"(\(exit code ([0-9]+)\)\s*$)"};
  std::smatch m;
  if (std::regex_search(message, m, re))
    return std::stoi(m[1].str());
  return exit_engine;
}

schema::PullPolicy parse_pull(const std::string& text) {
  if (text == "missing")
    return schema::PullPolicy::MISSING;
  if (text == "always")
    return schema::PullPolicy::ALWAYS;
  if (text == "never")
    return schema::PullPolicy::NEVER;
  bad("--pull: '" + text + "' is not missing, always or never");
}

/// The image as --pull wants it, before a create (or a run with -i/-t, which is not one call).
void ensure_image(client& c, const std::string& image, schema::PullPolicy policy) {
  if (policy == schema::PullPolicy::ALWAYS)
    return pull_for_run(c, image);
  auto images = wait(c, c.node().imagesRequest().send()).getService();
  auto req = images.inspectRequest();
  req.setRef(image);
  try {
    req.send().wait(c.wait_scope());
  } catch (const kj::Exception& e) {
    auto text = describe(e);
    if (text.rfind("cyto.not_found", 0) != 0)
      throw cli_error(text);
    if (policy == schema::PullPolicy::NEVER)
      throw cli_error("cyto.not_found: image " + image +
                      " is not in the store and the pull policy is never (pull it first, or "
                      "run with --pull missing)");
    pull_for_run(c, image);
  }
}

/// How a foreground container (or exec process) ended.
struct outcome {
  int code = 0;
  std::string error;
};

/// The end of a foreground run, start -a, exec or attach: relays our terminal to `att`
/// (with -i/-t) until `finished` resolves or the detach keys are typed (then 0: it runs
/// on), gives its output a moment to end, and returns its exit code.
int to_the_end(client& c, std::optional<attachment>& att, const terminal_options& o,
               kj::Promise<outcome> finished, kj::Promise<void> output) {
  auto done = finished.fork();
  try {
    if (att && relay_terminal(c, att->input, o, done.addBranch().ignoreResult())) {
      std::fprintf(stderr, "\r\n");
      return 0; // detached: it runs on
    }
    auto r = done.addBranch().wait(c.wait_scope());
    // The output stream ends when the shim exits; give its last lines a moment.
    c.wait_scope().poll();
    wait_briefly(c, kj::mv(output), o.tty ? 2000 : 1000000);
    if (!r.error.empty())
      std::fprintf(stderr, "cyto: %s\n", r.error.c_str());
    return r.code;
  } catch (const kj::Exception& e) {
    return engine_failure(describe(e));
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
}

/// A container's answer as an outcome.
outcome ended(schema::ContainerInfo::Reader info) {
  return {info.getExitCode(), info.getError()};
}

/// A name like the daemon's generated ones (12 hex digits), so signals can be forwarded
/// to a container from before the one call that makes it has answered.
std::string generated_name() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%06x%06x", rd() & 0xffffff, rd() & 0xffffff);
  return buf;
}

int attached_start(client& c, schema::Containers::Client& svc, const std::string& name,
                   const std::string& cell, const std::string& exe, bool from_start);

/// Every flag checked before the daemon is asked anything (a bad one pulls nothing).
void check_flags(const char* verb, const run_flags& f) {
  capnp::MallocMessageBuilder scratch;
  fill_spec(verb, f, scratch.initRoot<schema::ContainerSpec>());
}

using containers_client = schema::Containers::Client;

/// The start of run and create: the flags checked, the image pulled if missing, then `go`.
int with_image(const global_options& g, const char* verb, const run_flags& f,
               const std::function<int(client&, containers_client&)>& go) {
  try {
    check_flags(verb, f);
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  client c{g};
  auto svc = containers(c);
  try {
    ensure_image(c, f.rest.front(), parse_pull(f.pull));
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  return go(c, svc);
}

/// A container made in the background: its id, or (--json) all of it.
void print_made(const global_options& g, schema::ContainerInfo::Reader info) {
  if (g.json)
    print_json(container_json(info));
  else
    std::printf("%s\n", info.getId().cStr());
}

/// What a one-call run saw of a pull the daemon made for it: "pulled REF" goes to stderr
/// (as pull_for_run says it) before the container's first line, or at the end.
struct pull_note {
  std::string ref;
  bool pulled = false, said = false;

  void say() {
    if (pulled && !said)
      std::fprintf(stderr, "pulled %s\n", ref.c_str());
    said = true;
  }
};

/// Pull progress to stderr, noting that there was a pull.
class noting_progress final : public schema::PullSink::Server {
public:
  explicit noting_progress(pull_note& note) : note_(note) {}

  kj::Promise<void> progress(ProgressContext context) override {
    note_.pulled = true;
    auto req = to_.progressRequest();
    req.setLayer(context.getParams().getLayer());
    return req.send();
  }

private:
  pull_note& note_;
  schema::PullSink::Client to_ = pull_progress_to_stderr();
};

/// The container's lines to our terminal, after the pull's note.
class noting_output final : public schema::OutputSink::Server {
public:
  explicit noting_output(pull_note& note) : note_(note) {}

  kj::Promise<void> lines(LinesContext context) override {
    note_.say();
    auto req = to_.linesRequest();
    req.setLines(context.getParams().getLines());
    req.setDropped(context.getParams().getDropped());
    return req.send();
  }

private:
  pull_note& note_;
  schema::OutputSink::Client to_ = output_to_terminal();
};

/// run without -i/-t: one Containers.run call. The daemon pulls the image as --pull says
/// (progress to our stderr), creates, streams the output here from its first line, starts
/// and answers once it has stopped (and is removed with --rm). Our signals meanwhile go to
/// the container as kill; leaving (killed, the connection gone) leaves it running.
int run_in_one_call(const global_options& g, const run_flags& f) {
  schema::PullPolicy pull;
  try {
    check_flags("run", f); // before we connect: a bad flag is the answer even without cytod
    pull = parse_pull(f.pull);
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  client c{g};
  auto svc = containers(c);
  auto req = svc.runRequest();
  std::string name;
  fill_spec("run", f, req.initSpec());
  req.setPull(pull);
  pull_note note{f.rest.front()};
  req.setProgress(kj::heap<noting_progress>(note));
  req.setWait(!f.detach);
  if (f.detach) {
    try {
      auto resp = req.send().wait(c.wait_scope());
      note.say();
      print_made(g, resp.getInfo());
    } catch (const kj::Exception& e) {
      note.say();
      return engine_failure(describe(e));
    }
    return 0;
  }
  name = f.name.empty() ? generated_name() : f.name;
  req.getSpec().setName(name);
  req.setOutput(kj::heap<noting_output>(note));
  auto forwarding = forward_signals(c, svc, name).eagerlyEvaluate(nullptr);
  std::optional<attachment> none;
  return to_the_end(c, none, {}, req.send().then([&note](auto r) {
    note.say();
    return ended(r.getInfo());
  }), kj::READY_NOW);
}

int run(const global_options& g, const run_flags& f) {
  if (!f.detach && refuse_tty(f.tty))
    return exit_engine;
  std::string detach_keys;
  try {
    detach_keys = parse_detach_keys(f.detach_keys);
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  if (f.detach || (!f.tty && !f.interactive))
    return run_in_one_call(g, f);
  // -i/-t: our stdin must reach the container from its start, so create, attach, start.
  return with_image(g, "run", f, [&](client& c, containers_client& svc) {
    auto create = svc.createRequest();
    fill_spec("run", f, create.initSpec());
    std::string name, cell, exe;
    try {
      auto resp = create.send().wait(c.wait_scope());
      name = resp.getInfo().getSpec().getName();
      cell = resp.getInfo().getCell();
      exe = resp.getInfo().getExecutable();
    } catch (const kj::Exception& e) {
      return engine_failure(describe(e));
    }
    // A terminal's bytes come through attach (from before the program starts); without
    // one (-i alone), the output is the shim's, followed from its start.
    std::optional<attachment> att;
    try {
      att.emplace(attach(c, svc, name));
    } catch (const cli_error& e) {
      auto rm = svc.removeRequest();
      rm.setName(name);
      rm.setForce(true);
      rm.send().ignoreResult().catch_([](kj::Exception&&) {}).wait(c.wait_scope());
      return engine_failure(e.what());
    }
    kj::Promise<void> output = f.tty ? kj::mv(att->output_done)
                                     : follow_output(c, cell, exe).catch_([](kj::Exception&&) {});
    auto forwarding = forward_signals(c, svc, name).eagerlyEvaluate(nullptr);
    auto start = svc.startRequest();
    start.setName(name);
    start.setWait(true);
    return to_the_end(c, att, {f.tty, f.interactive, detach_keys},
                      start.send().then([](auto r) { return ended(r.getInfo()); }),
                      kj::mv(output));
  });
}

int create(const global_options& g, const run_flags& f) {
  return with_image(g, "create", f, [&](client& c, containers_client& svc) {
    auto req = svc.createRequest();
    fill_spec("create", f, req.initSpec());
    try {
      print_made(g, req.send().wait(c.wait_scope()).getInfo());
    } catch (const kj::Exception& e) {
      return engine_failure(describe(e));
    }
    return 0;
  });
}

/// Follows a created container's output (from the first line of its log, or only what
/// its new process writes), starts it and waits: its exit code is the answer. Signals to
/// us go to the container meanwhile, as in a foreground run.
int attached_start(client& c, schema::Containers::Client& svc, const std::string& name,
                   const std::string& cell, const std::string& exe, bool from_start) {
  auto output = follow_output(c, cell, exe, from_start).catch_([](kj::Exception&&) {});
  auto forwarding = forward_signals(c, svc, name).eagerlyEvaluate(nullptr);
  auto start = svc.startRequest();
  start.setName(name);
  start.setWait(true);
  std::optional<attachment> none;
  return to_the_end(c, none, {}, start.send().then([](auto r) { return ended(r.getInfo()); }),
                    kj::mv(output));
}

int ps(const global_options& g, bool all) {
  client c{g};
  auto resp = wait(c, containers(c).listRequest().send());
  if (g.json) {
    auto out = nlohmann::json::array();
    for (auto x : resp.getContainers())
      if (all || x.getState() != schema::ContainerState::STOPPED)
        out.push_back(container_json(x));
    print_json(out);
    return 0;
  }
  std::printf("%-12s  %-28s  %-22s  %-14s  %-22s  %s\n", "CONTAINER ID", "IMAGE", "COMMAND",
              "CREATED", "STATUS", "NAMES");
  for (auto x : resp.getContainers()) {
    if (!all && x.getState() == schema::ContainerState::STOPPED)
      continue;
    std::vector<std::string> cmd;
    for (auto a : x.getCommand())
      cmd.emplace_back(a.cStr());
    auto command = join(cmd);
    if (command.size() > 22)
      command = command.substr(0, 19) + "...";
    std::string status;
    switch (x.getState()) {
    case schema::ContainerState::CREATED:
      status = "Created";
      break;
    case schema::ContainerState::RUNNING:
      status = "Up " + human_duration(static_cast<uint64_t>(
                           std::max<int64_t>(0, now_nanos() - x.getStartedUnixNanos())));
      break;
    case schema::ContainerState::STOPPED:
      status = "Exited (" + std::to_string(x.getExitCode()) + ") " + ago(x.getFinishedUnixNanos());
      break;
    }
    if (x.getRestartCount() > 0)
      status += ", " + std::to_string(x.getRestartCount()) + " restarts";
    std::string name = x.getSpec().getName();
    if (x.getSpec().getPod().size() > 0)
      name += " (pod " + std::string{x.getSpec().getPod().cStr()} + ")";
    std::printf("%-12s  %-28s  %-22s  %-14s  %-22s  %s\n",
                std::string{x.getId()}.substr(0, 12).c_str(), x.getImageName().cStr(),
                command.c_str(), ago(x.getCreatedUnixNanos()).c_str(), status.c_str(),
                name.c_str());
  }
  return 0;
}

struct exec_flags {
  bool tty = false, interactive = false;
  std::string detach_keys = "ctrl-p,ctrl-q";
  std::vector<std::string> env;
  std::string workdir, user;
  /// NAME CMD...
  std::vector<std::string> rest;
};

int exec(const global_options& g, const exec_flags& f) {
  if (f.rest.size() < 2)
    bad("exec: give a container NAME and a COMMAND");
  if (refuse_tty(f.tty))
    return exit_engine;
  std::string keys;
  try {
    keys = parse_detach_keys(f.detach_keys);
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  client c{g};
  auto svc = containers(c);
  auto req = svc.execRequest();
  req.setTty(f.tty);
  req.setInteractive(f.interactive);
  req.setName(f.rest.front());
  auto argv = req.initArgv(f.rest.size() - 1);
  for (size_t i = 1; i < f.rest.size(); ++i)
    argv.set(i - 1, f.rest[i]);
  auto env = req.initEnv(f.env.size());
  for (size_t i = 0; i < f.env.size(); ++i)
    env.set(i, f.env[i]);
  req.setCwd(f.workdir);
  req.setUser(f.user);
  std::string cell, exe;
  try {
    auto resp = req.send().wait(c.wait_scope());
    auto info = resp.getInfo();
    cell = info.getCell();
    exe = info.getExecutable();
  } catch (const kj::Exception& e) {
    return engine_failure(describe(e));
  }
  // The process waits for this attach before it runs (its socket appears meanwhile).
  std::optional<attachment> att;
  if (f.tty || f.interactive) {
    try {
      att.emplace(attach(c, svc, f.rest.front(), exe, 5000));
    } catch (const cli_error& e) {
      return engine_failure(e.what());
    }
  }
  kj::Promise<void> output = f.tty ? kj::mv(att->output_done)
                                   : follow_output(c, cell, exe).catch_([](kj::Exception&&) {});
  auto cells = wait(c, c.node().cellsRequest().send()).getService();
  auto w = cells.waitRequest();
  w.setCellName(cell);
  w.setExecutableName(exe);
  auto finished = w.send().then([](capnp::Response<schema::Cells::WaitResults> r) {
    auto s = r.getStatus();
    return outcome{s.getSignal() ? 128 + s.getSignal() : s.getCode(), {}};
  });
  return to_the_end(c, att, {f.tty, f.interactive, keys}, kj::mv(finished), kj::mv(output));
}

int attach_cmd(const global_options& g, const std::string& name, const std::string& keys_text) {
  std::string keys;
  try {
    keys = parse_detach_keys(keys_text);
  } catch (const cli_error& e) {
    return engine_failure(e.what());
  }
  client c{g};
  auto svc = containers(c);
  auto ireq = svc.inspectRequest();
  ireq.setName(name);
  bool tty = false, interactive = false;
  std::string cell, exe;
  try {
    auto resp = ireq.send().wait(c.wait_scope());
    auto info = resp.getInfo();
    tty = info.getSpec().getTty();
    interactive = info.getSpec().getInteractive();
    cell = info.getCell();
    exe = info.getExecutable();
  } catch (const kj::Exception& e) {
    return engine_failure(describe(e));
  }
  std::optional<attachment> att;
  if (tty || interactive) {
    try {
      att.emplace(attach(c, svc, name));
    } catch (const cli_error& e) {
      return engine_failure(e.what());
    }
  }
  // Without a terminal the output is the shim's, from now on.
  kj::Promise<void> output = tty ? kj::mv(att->output_done)
                                 : follow_output(c, cell, exe, false).catch_([](kj::Exception&&) {});
  auto forwarding = forward_signals(c, svc, name).eagerlyEvaluate(nullptr);
  auto w = svc.waitRequest();
  w.setName(name);
  return to_the_end(c, att, {tty, interactive, keys},
                    w.send().then([](auto r) { return outcome{r.getInfo().getExitCode(), {}}; }),
                    kj::mv(output));
}

struct target_flags {
  std::vector<std::string> names;
  uint32_t timeout_s = 10;
  std::string signal = "KILL";
  bool force = false;
  bool attach = false;
};

/// Runs `one(name)` for each name (podman prints each name done); a failure is printed
/// and the rest go on; the exit code is 125 if any failed.
int each_name(
    const global_options& g, const target_flags& f,
    const std::function<void(client&, schema::Containers::Client&, const std::string&)>& one) {
  client c{g};
  auto svc = containers(c);
  int rc = 0;
  for (auto& n : f.names) {
    try {
      one(c, svc, n);
    } catch (const kj::Exception& e) {
      std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
      rc = exit_engine;
    }
  }
  return rc;
}

int stop(const global_options& g, const target_flags& f) {
  return each_name(g, f, [&](client& c, schema::Containers::Client& svc, const std::string& n) {
    auto req = svc.stopRequest();
    req.setName(n);
    req.setTimeoutMs(f.timeout_s * 1000);
    auto resp = req.send().wait(c.wait_scope());
    if (g.json)
      print_json(container_json(resp.getInfo()));
    else
      std::printf("%s\n", n.c_str());
  });
}

/// Starts one container (detached) and says so.
void start_one(const global_options& g, client& c, schema::Containers::Client& svc,
               const std::string& n) {
  auto req = svc.startRequest();
  req.setName(n);
  auto resp = req.send().wait(c.wait_scope());
  if (g.json)
    print_json(container_json(resp.getInfo()));
  else
    std::printf("%s\n", n.c_str());
}

int start(const global_options& g, const target_flags& f) {
  if (f.attach) {
    if (f.names.size() != 1)
      bad("start --attach: give one container");
    client c{g};
    auto svc = containers(c);
    std::string name, cell, exe;
    bool fresh = false;
    try {
      auto req = svc.inspectRequest();
      req.setName(f.names.front());
      auto resp = req.send().wait(c.wait_scope());
      auto info = resp.getInfo();
      fresh = info.getState() == schema::ContainerState::CREATED;
      if (info.getState() == schema::ContainerState::STOPPED) {
        // A new process first, so its output is followed from its first line on.
        auto init = svc.initRequest();
        init.setName(f.names.front());
        init.send().wait(c.wait_scope());
      }
      name = info.getSpec().getName();
      cell = info.getCell();
      exe = info.getExecutable();
    } catch (const kj::Exception& e) {
      return engine_failure(describe(e));
    }
    // A container never started shows its whole log; one that ran before only the new run's.
    return attached_start(c, svc, name, cell, exe, fresh);
  }
  return each_name(g, f, [&](client& c, schema::Containers::Client& svc, const std::string& n) {
    start_one(g, c, svc, n);
  });
}

int restart(const global_options& g, const target_flags& f) {
  return each_name(g, f, [&](client& c, schema::Containers::Client& svc, const std::string& n) {
    auto stop = svc.stopRequest();
    stop.setName(n);
    stop.setTimeoutMs(f.timeout_s * 1000);
    stop.send().wait(c.wait_scope());
    start_one(g, c, svc, n);
  });
}

int kill(const global_options& g, const target_flags& f) {
  auto sig = parse_signal(f.signal);
  if (!sig)
    bad("--signal: '" + f.signal + "' is not a signal name or number");
  return each_name(g, f, [&](client& c, schema::Containers::Client& svc, const std::string& n) {
    auto req = svc.killRequest();
    req.setName(n);
    req.setSignal(*sig);
    req.send().wait(c.wait_scope());
    std::printf("%s\n", n.c_str());
  });
}

int rm(const global_options& g, const target_flags& f) {
  return each_name(g, f, [&](client& c, schema::Containers::Client& svc, const std::string& n) {
    auto req = svc.removeRequest();
    req.setName(n);
    req.setForce(f.force);
    req.send().wait(c.wait_scope());
    std::printf("%s\n", n.c_str());
  });
}

int inspect(const global_options& g, const target_flags& f) {
  client c{g};
  auto svc = containers(c);
  auto out = nlohmann::json::array();
  for (auto& n : f.names) {
    auto req = svc.inspectRequest();
    req.setName(n);
    out.push_back(container_json(wait(c, req.send()).getInfo()));
  }
  if (g.json)
    print_json(out);
  else
    std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

int wait_cmd(const global_options& g, const target_flags& f) {
  client c{g};
  auto svc = containers(c);
  int last = 0;
  for (auto& n : f.names) {
    auto req = svc.waitRequest();
    req.setName(n);
    auto resp = wait(c, req.send());
    auto info = resp.getInfo();
    last = info.getExitCode();
    std::printf("%d\n", last);
  }
  return 0;
}

/// The flags of `run` and `create` (the container's spec), shared.
void add_spec_flags(CLI::App* cmd, run_flags& rf) {
  cmd->add_flag("-i,--interactive", rf.interactive,
                "keep its stdin open: ours goes to it (EOF closes it)");
  cmd->add_flag("-t,--tty", rf.tty,
                "give it a terminal (ours in raw mode, window size followed); needs a "
                "terminal on stdin");
  cmd->add_option("--detach-keys", rf.detach_keys,
                  "keys that detach and leave it running (with -i; \"\" for none)")
      ->capture_default_str();
  cmd->add_flag("--rm", rf.rm, "remove the container once it has exited");
  cmd->add_option("--pull", rf.pull,
                  "pull the image: missing (only if not in the store), always, never "
                  "(a missing image is an error)")
      ->capture_default_str();
  cmd->add_option("--name", rf.name, "container name (default: generated)");
  cmd->add_option("-e,--env", rf.env, "set KEY=VALUE (KEY alone: take it from here); repeat")
      ->allow_extra_args(false);
  cmd->add_option("--env-file", rf.env_files,
                  "read variables from FILE (KEY=VALUE or KEY lines, # comments); repeat")
      ->allow_extra_args(false);
  cmd->add_option("-m,--memory", rf.limits.memory, "memory limit (256M, 1G)");
  cmd->add_option("--cpus", rf.limits.cpus, "CPU limit in CPUs (0.5)");
  cmd->add_option("--pids-limit", rf.limits.pids, "most processes in the container");
  cmd->add_option("--pod", rf.pod, "run in this pod (shares its network, ipc and hostname)");
  cmd->add_option("--network", rf.network, "attach to this network");
  cmd->add_option("-p,--publish", rf.ports, "publish HOST_PORT:CONTAINER_PORT[/udp]; repeat")
      ->allow_extra_args(false);
  cmd->add_option("--hostname", rf.hostname, "hostname (default: the name)");
  cmd->add_option("--entrypoint", rf.entrypoint, "replace the image's entrypoint");
  cmd->add_option("-u,--user", rf.user, "USER[:GROUP] or UID[:GID] in the container");
  cmd->add_option("-w,--workdir", rf.workdir, "working directory in the container");
  cmd->add_flag("--read-only", rf.read_only, "mount the rootfs read-only (/tmp stays writable)");
  cmd->add_option("--cap-add", rf.cap_add, "add a capability (NET_ADMIN, ALL); repeat")
      ->allow_extra_args(false);
  cmd->add_option("--sysctl", rf.sysctls,
                  "set a namespaced sysctl KEY=VALUE (net.*, kernel.shm*, kernel.msg*, "
                  "kernel.sem, fs.mqueue.*); repeat")
      ->allow_extra_args(false);
  cmd->add_option("--restart", rf.restart,
                  "when its process exits, start it again: no (default), on-failure[:N] "
                  "(a non-zero exit, at most N times), always, unless-stopped; never after "
                  "a stop or kill by a user");
  add_mount_flags(cmd, rf.mounts);
}

} // namespace cmd_container_impl

std::pair<std::string, std::string> container_output(client& c, const std::string& name) {
  using namespace cmd_container_impl;
  auto req = containers(c).inspectRequest();
  req.setName(name);
  auto resp = wait(c, req.send());
  auto info = resp.getInfo();
  return {info.getCell(), info.getExecutable()};
}

void add_container_commands(CLI::App& app, global_options& g, std::function<int()>& action) {
  using namespace cmd_container_impl;
  static run_flags rf;
  static exec_flags ef;
  static target_flags tf;
  static bool all = false;
  auto common = [&g](CLI::App* sub) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  };

  auto* run_cmd = app.add_subcommand(
      "run", "run a container from an image (pulled if missing): IMAGE [COMMAND [ARG...]]");
  run_cmd->footer("The container's output is shown and its exit code becomes cyto's; failures "
                  "of cyto itself exit 125, a command missing in the image 127.\n"
                  "Example: cyto run --rm demo echo hello");
  run_cmd->add_flag("-d,--detach", rf.detach, "run in the background and print its id");
  add_spec_flags(run_cmd, rf);
  // IMAGE [COMMAND [ARG...]]: everything from the image on is the container's.
  run_cmd->prefix_command();
  common(run_cmd);
  run_cmd->callback([&, run_cmd] {
    rf.rest = run_cmd->remaining();
    action = [&] { return run(g, rf); };
  });

  static run_flags cf;
  auto* create_cmd = app.add_subcommand(
      "create", "make a container without starting it and print its id: IMAGE [COMMAND [ARG...]]");
  create_cmd->footer("Takes run's flags (but -d); start it with cyto start.\n"
                     "Example: cyto create --name web --restart always demo httpd -f -p 8080");
  add_spec_flags(create_cmd, cf);
  create_cmd->prefix_command();
  common(create_cmd);
  create_cmd->callback([&, create_cmd] {
    cf.rest = create_cmd->remaining();
    action = [&] { return create(g, cf); };
  });

  auto* start_cmd = app.add_subcommand(
      "start", "start created or stopped containers (a stopped one runs again: same id and "
               "rootfs, its log goes on)");
  start_cmd->add_flag("-a,--attach", tf.attach,
                      "show its output and exit with its exit code, like a foreground run");
  start_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(start_cmd);
  start_cmd->callback([&] { action = [&] { return start(g, tf); }; });

  auto* restart_cmd = app.add_subcommand(
      "restart", "stop containers (SIGTERM, SIGKILL after -t seconds) and start them again");
  restart_cmd->add_option("-t,--time", tf.timeout_s, "seconds before SIGKILL")
      ->capture_default_str();
  restart_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(restart_cmd);
  restart_cmd->callback([&] { action = [&] { return restart(g, tf); }; });

  auto* ps_cmd = app.add_subcommand("ps", "list running containers (-a: all)");
  ps_cmd->add_flag("-a,--all", all, "also created and stopped containers");
  common(ps_cmd);
  ps_cmd->callback([&] { action = [&] { return ps(g, all); }; });

  auto* exec_cmd = app.add_subcommand(
      "exec", "run a command in a running container: NAME COMMAND [ARG...]; exits with its code");
  exec_cmd->add_option("-e,--env", ef.env, "set KEY=VALUE; repeat")->allow_extra_args(false);
  exec_cmd->add_flag("-i,--interactive", ef.interactive, "our stdin goes to it (EOF closes it)");
  exec_cmd->add_flag("-t,--tty", ef.tty, "give it a terminal; needs a terminal on stdin");
  exec_cmd->add_option("--detach-keys", ef.detach_keys,
                       "keys that detach and leave it running (\"\" for none)")
      ->capture_default_str();
  exec_cmd->add_option("-w,--workdir", ef.workdir, "working directory");
  exec_cmd->add_option("-u,--user", ef.user, "UID[:GID]");
  exec_cmd->prefix_command();
  common(exec_cmd);
  exec_cmd->callback([&, exec_cmd] {
    ef.rest = exec_cmd->remaining();
    action = [&] { return exec(g, ef); };
  });

  static std::string attach_name, attach_keys = "ctrl-p,ctrl-q";
  auto* attach_sub = app.add_subcommand(
      "attach", "attach to a running container's terminal (-t) or stdin (-i) and output: NAME");
  attach_sub->footer("The detach keys (default ctrl-p,ctrl-q) leave it running; otherwise cyto "
                     "exits with its exit code once it stops. Signals to cyto go to it.");
  attach_sub->add_option("--detach-keys", attach_keys, "keys that detach (\"\" for none)")
      ->capture_default_str();
  attach_sub->add_option("name", attach_name, "container name or id")->required();
  common(attach_sub);
  attach_sub->callback(
      [&] { action = [&] { return attach_cmd(g, attach_name, attach_keys); }; });

  auto* stop_cmd = app.add_subcommand("stop", "stop containers: SIGTERM, SIGKILL after -t seconds");
  stop_cmd->add_option("-t,--time", tf.timeout_s, "seconds before SIGKILL")->capture_default_str();
  stop_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(stop_cmd);
  stop_cmd->callback([&] { action = [&] { return stop(g, tf); }; });

  auto* kill_cmd = app.add_subcommand("kill", "send a signal (default KILL) to containers");
  kill_cmd->add_option("-s,--signal", tf.signal, "signal name or number")->capture_default_str();
  kill_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(kill_cmd);
  kill_cmd->callback([&] { action = [&] { return kill(g, tf); }; });

  auto* rm_cmd = app.add_subcommand("rm", "remove containers (-f: also running ones)");
  rm_cmd->add_flag("-f,--force", tf.force, "kill a running container first");
  rm_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(rm_cmd);
  rm_cmd->callback([&] { action = [&] { return rm(g, tf); }; });

  auto* inspect_cmd = app.add_subcommand("inspect", "show containers as JSON");
  inspect_cmd->add_option("names", tf.names, "container names or ids")->required();
  common(inspect_cmd);
  inspect_cmd->callback([&] { action = [&] { return inspect(g, tf); }; });

  auto* wait_sub = app.add_subcommand("wait", "wait for containers to stop; print exit codes");
  wait_sub->add_option("names", tf.names, "container names or ids")->required();
  common(wait_sub);
  wait_sub->callback([&] { action = [&] { return wait_cmd(g, tf); }; });
}

} // namespace cyto::cli
