// cyto pod create|ls|stop|rm: pods (shared network, ipc and uts namespaces; one parent cell).
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/containers.capnp.h"

namespace cyto::cli {

namespace cmd_pod_impl {

schema::Pods::Client pods(client& c) {
  return wait(c, c.node().podsRequest().send()).getService();
}

nlohmann::json pod_json(schema::PodInfo::Reader p) {
  auto containers = nlohmann::json::array();
  for (auto n : p.getContainers())
    containers.push_back(n.cStr());
  auto ips = nlohmann::json::array();
  for (auto n : p.getIps())
    ips.push_back(n.cStr());
  return {{"name", p.getSpec().getName().cStr()},
          {"cell", p.getCell().cStr()},
          {"running", p.getRunning()},
          {"pausePid", p.getPausePid()},
          {"network", p.getSpec().getNetwork().cStr()},
          {"containers", containers},
          {"ips", ips},
          {"created", iso_time(p.getCreatedUnixNanos())}};
}

struct pod_flags {
  std::string name, network;
  limit_flags limits;
  std::vector<std::string> ports, names;
  uint32_t timeout_s = 10;
  bool force = false;
};

int create(const global_options& g, const pod_flags& f) {
  client c{g};
  auto req = pods(c).createRequest();
  auto s = req.initSpec();
  s.setName(f.name);
  s.setNetwork(f.network);
  fill_limits(f.limits, s.initLimits());
  auto ports = s.initPorts(f.ports.size());
  for (size_t i = 0; i < f.ports.size(); ++i)
    parse_port(f.ports[i], ports[i]);
  auto resp = wait(c, req.send());
  auto info = resp.getInfo();
  if (g.json)
    print_json(pod_json(info));
  else
    std::printf("%s\n", info.getSpec().getName().cStr());
  return 0;
}

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, pods(c).listRequest().send());
  if (g.json) {
    auto out = nlohmann::json::array();
    for (auto p : resp.getPods())
      out.push_back(pod_json(p));
    print_json(out);
    return 0;
  }
  std::printf("%-20s  %-8s  %-10s  %-24s  %s\n", "NAME", "STATUS", "PAUSE PID", "CREATED",
              "CONTAINERS");
  for (auto p : resp.getPods()) {
    std::vector<std::string> names;
    for (auto n : p.getContainers())
      names.emplace_back(n.cStr());
    std::printf("%-20s  %-8s  %-10u  %-24s  %s\n", p.getSpec().getName().cStr(),
                p.getRunning() ? "running" : "stopped", p.getPausePid(),
                iso_time(p.getCreatedUnixNanos()).c_str(), join(names, ",").c_str());
  }
  return 0;
}

int stop(const global_options& g, const pod_flags& f) {
  client c{g};
  auto svc = pods(c);
  for (auto& n : f.names) {
    auto req = svc.stopRequest();
    req.setName(n);
    req.setTimeoutMs(f.timeout_s * 1000);
    auto resp = wait(c, req.send());
    auto info = resp.getInfo();
    if (g.json)
      print_json(pod_json(info));
    else
      std::printf("%s\n", n.c_str());
  }
  return 0;
}

int remove(const global_options& g, const pod_flags& f) {
  client c{g};
  auto svc = pods(c);
  for (auto& n : f.names) {
    auto req = svc.removeRequest();
    req.setName(n);
    req.setForce(f.force);
    wait(c, req.send());
    std::printf("%s\n", n.c_str());
  }
  return 0;
}

} // namespace cmd_pod_impl

void add_pod_commands(CLI::App& app, global_options& g, std::function<int()>& action) {
  using namespace cmd_pod_impl;
  static pod_flags f;
  auto* pod = app.add_subcommand(
      "pod", "pods: containers sharing network, ipc and hostname (cyto run --pod NAME ...)");
  pod->require_subcommand(1);
  auto common = [&g](CLI::App* sub) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  };
  auto* create_cmd = pod->add_subcommand("create", "make a pod and its pause process: NAME");
  create_cmd->add_option("name", f.name, "pod name (also its hostname)")->required();
  create_cmd->add_option("--network", f.network, "attach the pod to this network");
  create_cmd->add_option("-p,--publish", f.ports, "publish HOST_PORT:CONTAINER_PORT[/udp]")
      ->allow_extra_args(false);
  create_cmd->add_option("-m,--memory", f.limits.memory, "memory limit of the whole pod (256M)");
  create_cmd->add_option("--cpus", f.limits.cpus, "CPU limit of the whole pod (0.5)");
  common(create_cmd);
  create_cmd->callback([&] { action = [&] { return create(g, f); }; });

  auto* ls = pod->add_subcommand("ls", "list pods");
  common(ls);
  ls->callback([&] { action = [&] { return list(g); }; });

  auto* stop_cmd = pod->add_subcommand("stop", "stop a pod's containers, then the pod");
  stop_cmd->add_option("-t,--time", f.timeout_s, "seconds before SIGKILL")->capture_default_str();
  stop_cmd->add_option("names", f.names, "pod names")->required();
  common(stop_cmd);
  stop_cmd->callback([&] { action = [&] { return stop(g, f); }; });

  auto* rm = pod->add_subcommand("rm", "remove pods and their containers (-f: also running ones)");
  rm->add_flag("-f,--force", f.force, "kill running containers first");
  rm->add_option("names", f.names, "pod names")->required();
  common(rm);
  rm->callback([&] { action = [&] { return remove(g, f); }; });
}

} // namespace cyto::cli
