// cyto cell allocate|start|ls|inspect|stop|wait|free
#include <csignal>
#include <cstdio>
#include <cstring>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/cells.capnp.h"

namespace cyto::cli {

namespace cmd_cell_impl {

struct cell_flags {
  std::string name;
  uint64_t cpu_weight = 0;
  std::string cpu_max, cpus, mems, memory_min, memory_low, memory_high, memory_max;
  uint64_t pids_max = 0;
  uint64_t io_weight = 0;
  bool isolate_process = false;
  bool isolate_network = false;
  std::string network;
  std::vector<std::string> ports;
};

struct start_flags {
  std::string cell, name, shell, cwd, description;
  std::vector<std::string> env, argv;
  int64_t uid = -1, gid = -1;
  bool wait = false;
};

struct target_flags {
  std::string cell, exe, signal = "TERM", timeout = "10s";
  bool recursive = false, force = false;
};

[[noreturn]] void bad(const std::string& what) {
  throw cli_error("cyto.invalid_argument: " + what);
}

uint64_t size_flag(const std::string& flag, const std::string& text) {
  if (text.empty())
    return 0;
  auto v = parse_size(text);
  if (!v)
    bad(flag + ": '" + text + "' is not a size like 256M or 1G");
  return *v;
}

schema::Cells::Client cells(client& c) {
  return wait(c, c.node().cellsRequest().send()).getService();
}

std::string status_text(schema::ExitStatus::Reader s) {
  if (!s.getExited())
    return "running";
  if (!s.getKnown())
    return "exited (status unknown)";
  if (s.getSignal() != 0) {
    auto* name = sigabbrev_np(s.getSignal());
    return "killed by SIG" + std::string{name ? name : std::to_string(s.getSignal())};
  }
  return "exited " + std::to_string(s.getCode());
}

nlohmann::json status_json(schema::ExitStatus::Reader s) {
  return {{"exited", s.getExited()}, {"known", s.getKnown()}, {"code", s.getCode()},
          {"signal", s.getSignal()}};
}

nlohmann::json exe_json(schema::ExecutableInfo::Reader e) {
  nlohmann::json argv = nlohmann::json::array();
  for (auto a : e.getExecutable().getArgv())
    argv.push_back(a.cStr());
  return {{"name", e.getExecutable().getName().cStr()},
          {"cell", e.getCellName().cStr()},
          {"argv", argv},
          {"pid", e.getPid()},
          {"nsPid", e.getNsPid()},
          {"startedUnixNanos", e.getStartedUnixNanos()},
          {"status", status_json(e.getStatus())},
          {"stdout", e.getStdoutPath().cStr()},
          {"stderr", e.getStderrPath().cStr()}};
}

nlohmann::json cell_json(schema::CellInfo::Reader info) {
  auto c = info.getCell();
  nlohmann::json exes = nlohmann::json::array(), kids = nlohmann::json::array(),
                 pids = nlohmann::json::array();
  for (auto e : info.getExecutables())
    exes.push_back(exe_json(e));
  for (auto k : info.getChildren())
    kids.push_back(cell_json(k));
  for (auto p : info.getPids())
    pids.push_back(p);
  nlohmann::json ips = nlohmann::json::array();
  for (auto ip : info.getIps())
    ips.push_back(ip.cStr());
  return {{"name", c.getName().cStr()},
          {"cpu",
           {{"weight", c.getCpu().getWeight()},
            {"maxQuotaUs", c.getCpu().getMaxQuotaUs()},
            {"maxPeriodUs", c.getCpu().getMaxPeriodUs()}}},
          {"cpuset", {{"cpus", c.getCpuset().getCpus().cStr()}, {"mems", c.getCpuset().getMems().cStr()}}},
          {"memory",
           {{"min", c.getMemory().getMin()},
            {"low", c.getMemory().getLow()},
            {"high", c.getMemory().getHigh()},
            {"max", c.getMemory().getMax()}}},
          {"pidsMax", c.getPidsMax()},
          {"isolateProcess", c.getIsolateProcess()},
          {"isolateNetwork", c.getIsolateNetwork()},
          {"cgroupPath", info.getCgroupPath().cStr()},
          {"network", c.getNetwork().cStr()},
          {"ips", ips},
          {"netns", info.getNetnsPath().cStr()},
          {"pids", pids},
          {"executables", exes},
          {"children", kids}};
}

std::string limits_text(schema::Cell::Reader c) {
  std::vector<std::string> parts;
  if (c.getCpu().getWeight())
    parts.push_back("cpu.weight=" + std::to_string(c.getCpu().getWeight()));
  if (auto q = c.getCpu().getMaxQuotaUs()) {
    auto p = c.getCpu().getMaxPeriodUs() ? c.getCpu().getMaxPeriodUs() : 100000;
    parts.push_back("cpu.max=" + (q == UINT64_MAX ? std::string{"max"} : std::to_string(q) + "us")
                    + "/" + std::to_string(p) + "us");
  }
  if (c.getCpuset().getCpus().size())
    parts.push_back(std::string{"cpus="} + c.getCpuset().getCpus().cStr());
  std::pair<const char*, uint64_t> mem[] = {{"memory.min", c.getMemory().getMin()},
                                            {"memory.low", c.getMemory().getLow()},
                                            {"memory.high", c.getMemory().getHigh()},
                                            {"memory.max", c.getMemory().getMax()}};
  for (auto& [k, v] : mem)
    if (v)
      parts.push_back(std::string{k} + "=" + human_size(v));
  if (c.getPidsMax())
    parts.push_back("pids.max=" + std::to_string(c.getPidsMax()));
  if (c.getIsolateProcess())
    parts.push_back("isolate-process");
  if (c.getIsolateNetwork())
    parts.push_back("isolate-network");
  if (c.getNetwork().size())
    parts.push_back(std::string{"network="} + c.getNetwork().cStr());
  return parts.empty() ? "-" : join(parts);
}

void print_tree(schema::CellInfo::Reader info, const std::string& indent) {
  auto c = info.getCell();
  auto name = std::string{c.getName().cStr()};
  auto short_name = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
  std::printf("%s%-*s %s\n", indent.c_str(), static_cast<int>(std::max<size_t>(1, 24 - indent.size())),
              short_name.c_str(), limits_text(c).c_str());
  for (auto e : info.getExecutables()) {
    std::string argv;
    for (auto a : e.getExecutable().getArgv())
      argv += (argv.empty() ? "" : " ") + std::string{a.cStr()};
    std::printf("%s  - %s pid=%u nspid=%u %s: %s\n", indent.c_str(),
                e.getExecutable().getName().cStr(), e.getPid(), e.getNsPid(),
                status_text(e.getStatus()).c_str(), argv.c_str());
  }
  for (auto k : info.getChildren())
    print_tree(k, indent + "  ");
}

int allocate(const global_options& g, const cell_flags& f) {
  client c{g};
  auto req = cells(c).allocateRequest();
  auto cell = req.initCell();
  cell.setName(f.name);
  auto cpu = cell.initCpu();
  cpu.setWeight(f.cpu_weight);
  if (!f.cpu_max.empty()) {
    auto m = parse_cpu_max(f.cpu_max);
    if (!m)
      bad("--cpu-max: '" + f.cpu_max + "' is not like 50ms/100ms, 20ms or max");
    cpu.setMaxQuotaUs(m->quota_us);
    cpu.setMaxPeriodUs(m->period_us);
  }
  auto cs = cell.initCpuset();
  cs.setCpus(f.cpus);
  cs.setMems(f.mems);
  auto mem = cell.initMemory();
  mem.setMin(size_flag("--memory-min", f.memory_min));
  mem.setLow(size_flag("--memory-low", f.memory_low));
  mem.setHigh(size_flag("--memory-high", f.memory_high));
  mem.setMax(size_flag("--memory-max", f.memory_max));
  cell.setPidsMax(f.pids_max);
  cell.initIo().setWeight(f.io_weight);
  cell.setIsolateProcess(f.isolate_process);
  cell.setIsolateNetwork(f.isolate_network);
  cell.setNetwork(f.network);
  auto ports = cell.initPorts(f.ports.size());
  for (uint i = 0; i < f.ports.size(); ++i) {
    auto p = parse_port(f.ports[i]);
    if (!p)
      bad("--publish: '" + f.ports[i] + "' is not [IP:]HOST_PORT:CELL_PORT[/tcp|udp|sctp]");
    ports[i].setHostPort(p->host_port);
    ports[i].setContainerPort(p->container_port);
    ports[i].setProtocol(p->protocol);
    ports[i].setHostIp(p->host_ip);
  }
  auto resp = wait(c, req.send());
  auto info = resp.getInfo();
  if (g.json) {
    print_json(cell_json(info));
  } else {
    std::string ips;
    for (auto ip : info.getIps())
      ips += std::string{ips.empty() ? "" : ","} + ip.cStr();
    std::printf("allocated %s (%s)%s\n", f.name.c_str(), info.getCgroupPath().cStr(),
                ips.empty() ? "" : (" on " + f.network + " " + ips).c_str());
  }
  return 0;
}

int wait_exit(client& c, schema::Cells::Client& svc, const std::string& cell, const std::string& exe,
              bool json) {
  auto req = svc.waitRequest();
  req.setCellName(cell);
  req.setExecutableName(exe);
  auto resp = wait(c, req.send());
  auto s = resp.getStatus();
  if (json)
    print_json(status_json(s));
  else
    std::printf("%s/%s %s\n", cell.c_str(), exe.c_str(), status_text(s).c_str());
  if (s.getSignal() != 0)
    return 128 + s.getSignal();
  return s.getCode();
}

int start(const global_options& g, const start_flags& f) {
  client c{g};
  auto svc = cells(c);
  auto req = svc.startRequest();
  req.setCellName(f.cell);
  auto e = req.initExecutable();
  e.setName(f.name);
  auto argv = e.initArgv(f.argv.size());
  for (uint i = 0; i < f.argv.size(); ++i)
    argv.set(i, f.argv[i]);
  e.setCommand(f.shell);
  auto env = e.initEnv(f.env.size());
  for (uint i = 0; i < f.env.size(); ++i) {
    if (f.env[i].find('=') == std::string::npos)
      bad("--env: '" + f.env[i] + "' is not KEY=VALUE");
    env.set(i, f.env[i]);
  }
  e.setCwd(f.cwd);
  e.setUid(f.uid);
  e.setGid(f.gid);
  e.setDescription(f.description);
  auto resp = wait(c, req.send());
  auto info = resp.getInfo();
  if (g.json)
    print_json(exe_json(info));
  else
    std::printf("started %s/%s pid=%u nspid=%u\n", f.cell.c_str(),
                info.getExecutable().getName().cStr(), info.getPid(), info.getNsPid());
  if (f.wait)
    return wait_exit(c, svc, f.cell, info.getExecutable().getName().cStr(), g.json);
  return 0;
}

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, cells(c).listRequest().send());
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto cell : resp.getCells())
      out.push_back(cell_json(cell));
    print_json(out);
    return 0;
  }
  if (resp.getCells().size() == 0)
    std::printf("no cells\n");
  for (auto cell : resp.getCells())
    print_tree(cell, "");
  return 0;
}

int inspect(const global_options& g, const std::string& name) {
  client c{g};
  auto req = cells(c).getRequest();
  req.setName(name);
  auto resp = wait(c, req.send());
  auto j = cell_json(resp.getInfo());
  std::printf("%s\n", g.json ? j.dump().c_str() : j.dump(2).c_str());
  return 0;
}

int stop(const global_options& g, const target_flags& f) {
  auto sig = parse_signal(f.signal);
  if (!sig)
    bad("--signal: '" + f.signal + "' is not a signal name or number 1..64");
  auto timeout = parse_duration_us(f.timeout);
  if (!timeout)
    bad("--timeout: '" + f.timeout + "' is not a duration like 10s or 500ms");
  client c{g};
  auto req = cells(c).stopRequest();
  req.setCellName(f.cell);
  req.setExecutableName(f.exe);
  req.setSignal(*sig);
  req.setTimeoutMs(static_cast<uint32_t>(std::min<uint64_t>(*timeout / 1000, UINT32_MAX)));
  auto resp = wait(c, req.send());
  if (g.json)
    print_json(status_json(resp.getStatus()));
  else
    std::printf("%s/%s %s\n", f.cell.c_str(), f.exe.c_str(), status_text(resp.getStatus()).c_str());
  return 0;
}

int free_cell(const global_options& g, const target_flags& f) {
  client c{g};
  auto req = cells(c).freeRequest();
  req.setName(f.cell);
  req.setRecursive(f.recursive);
  req.setForce(f.force);
  wait(c, req.send());
  if (g.json)
    print_json({{"freed", f.cell}});
  else
    std::printf("freed %s\n", f.cell.c_str());
  return 0;
}

} // namespace cmd_cell_impl

void add_cell_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_cell_impl;
  auto* cell = app.add_subcommand("cell", "cells: cgroup-limited, nestable process groups");
  cell->require_subcommand(1);

  static cell_flags af;
  auto* alloc = cell->add_subcommand("allocate", "make a cell (NAME or PARENT/CHILD)");
  alloc->add_option("name", af.name, "cell name")->required();
  alloc->add_option("--cpu-weight", af.cpu_weight, "relative cpu weight 1..10000 (cpu.weight)");
  alloc->add_option("--cpu-max", af.cpu_max, "cpu bandwidth: QUOTA/PERIOD, e.g. 50ms/100ms (cpu.max)");
  alloc->add_option("--cpus", af.cpus, "cpus the cell may use, e.g. 0-1 (cpuset.cpus)");
  alloc->add_option("--mems", af.mems, "memory nodes, e.g. 0 (cpuset.mems)");
  alloc->add_option("--memory-min", af.memory_min, "protected memory, e.g. 64M (v2 only)");
  alloc->add_option("--memory-low", af.memory_low, "best-effort protection (v2 only)");
  alloc->add_option("--memory-high", af.memory_high, "throttle above (v1: soft limit)");
  alloc->add_option("--memory-max", af.memory_max, "hard limit; above it the OOM killer acts");
  alloc->add_option("--pids-max", af.pids_max, "most processes in the cell");
  alloc->add_option("--io-weight", af.io_weight, "relative io weight 1..10000");
  alloc->add_flag("--isolate-process", af.isolate_process, "own pid (and /proc), uts, ipc, mount ns");
  alloc->add_flag("--isolate-network", af.isolate_network, "own network namespace with only lo");
  alloc->add_option("--network", af.network, "attach the cell to this network (cyto network ls)");
  alloc->add_option("-p,--publish", af.ports,
                    "forward a host port: [IP:]HOST_PORT:CELL_PORT[/tcp|udp], repeat (needs --network)");
  alloc->callback([&] { run = [&] { return allocate(g, af); }; });

  static start_flags sf;
  auto* st = cell->add_subcommand("start", "start a program in a cell: cyto cell start CELL -- CMD ARGS...");
  st->add_option("cell", sf.cell, "cell name")->required();
  st->add_option("--name", sf.name, "executable name (default: program name)");
  st->add_option("--shell", sf.shell, "run this command with /bin/sh -c instead of CMD");
  st->add_option("-e,--env", sf.env, "environment KEY=VALUE (repeat)");
  st->add_option("--cwd", sf.cwd, "working directory");
  st->add_option("--uid", sf.uid, "run as this uid");
  st->add_option("--gid", sf.gid, "run as this gid");
  st->add_option("--description", sf.description, "free text kept with the executable");
  st->add_flag("--wait", sf.wait, "wait for it to exit; its exit code becomes ours");
  st->add_option("cmd", sf.argv, "program and arguments (after --)");
  st->callback([&] { run = [&] { return start(g, sf); }; });

  auto* ls = cell->add_subcommand("ls", "list cells as a tree with limits and processes");
  ls->callback([&] { run = [&] { return list(g); }; });

  static std::string inspect_name;
  auto* in = cell->add_subcommand("inspect", "show one cell in full (JSON)");
  in->add_option("name", inspect_name, "cell name")->required();
  in->callback([&] { run = [&] { return inspect(g, inspect_name); }; });

  static target_flags tf;
  auto* sp = cell->add_subcommand("stop", "signal an executable, SIGKILL after a timeout");
  sp->add_option("cell", tf.cell, "cell name")->required();
  sp->add_option("executable", tf.exe, "executable name")->required();
  sp->add_option("-s,--signal", tf.signal, "signal name or number")->capture_default_str();
  sp->add_option("-t,--timeout", tf.timeout, "then SIGKILL after this long (0 = never)")
    ->capture_default_str();
  sp->callback([&] { run = [&] { return stop(g, tf); }; });

  static target_flags wf;
  auto* wt = cell->add_subcommand("wait", "wait for an executable to exit; its exit code becomes ours");
  wt->add_option("cell", wf.cell, "cell name")->required();
  wt->add_option("executable", wf.exe, "executable name")->required();
  wt->callback([&] {
    run = [&] {
      client c{g};
      auto svc = cells(c);
      return wait_exit(c, svc, wf.cell, wf.exe, g.json);
    };
  });

  static target_flags ff;
  auto* fr = cell->add_subcommand("free", "remove a cell (and its cgroup)");
  fr->add_option("name", ff.cell, "cell name")->required();
  fr->add_flag("-r,--recursive", ff.recursive, "also remove its child cells");
  fr->add_flag("-f,--force", ff.force, "kill its processes first");
  fr->callback([&] { run = [&] { return free_cell(g, ff); }; });

  for (auto* sub : {alloc, st, ls, in, sp, wt, fr}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  }
}

} // namespace cyto::cli
