// cyto discover / health / version
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cyto/version.hpp"
#include "schema/discovery.capnp.h"

namespace cyto::cli {

namespace cmd_discover_impl {

const char* mode_name(schema::CgroupMode m) {
  switch (m) {
    case schema::CgroupMode::V1: return "v1";
    case schema::CgroupMode::HYBRID: return "hybrid";
    case schema::CgroupMode::V2: return "v2";
    default: return "unknown";
  }
}

std::vector<std::string> texts(capnp::List<capnp::Text>::Reader xs) {
  std::vector<std::string> out;
  for (auto x : xs)
    out.emplace_back(x.cStr());
  return out;
}

const char* yes_no(bool b) {
  return b ? "yes" : "no";
}

schema::Discovery::Client discovery(client& c) {
  return wait(c, c.node().discoveryRequest().send()).getService();
}

} // namespace cmd_discover_impl

int cmd_discover(const global_options& g) {
  using namespace cmd_discover_impl;
  client c{g};
  auto disc = discovery(c);
  auto resp = wait(c, disc.discoverRequest().send());
  auto info = resp.getInfo();
  auto f = info.getFeatures();
  if (g.json) {
    print_json({
      {"nodeName", info.getNodeName().cStr()},
      {"version", info.getVersion().cStr()},
      {"healthy", info.getHealthy()},
      {"uptimeNanos", info.getUptimeNanos()},
      {"pid", info.getPid()},
      {"features",
       {
         {"cgroupMode", mode_name(f.getCgroupMode())},
         {"cgroupControllers", texts(f.getCgroupControllers())},
         {"namespaces", texts(f.getNamespaces())},
         {"ebpf", f.getEbpf()},
         {"btf", f.getBtf()},
         {"tracefs", f.getTracefs()},
         {"ebpfDetail", f.getEbpfDetail().cStr()},
         {"kvm", f.getKvm()},
         {"vmAccel", f.getVmAccel().cStr()},
         {"vmAccelReason", f.getVmAccelReason().cStr()},
         {"overlayfs", f.getOverlayfs()},
         {"pidfd", f.getPidfd()},
         {"kernelRelease", f.getKernelRelease().cStr()},
       }},
    });
    return 0;
  }
  print_table({
    {"node", info.getNodeName().cStr()},
    {"version", info.getVersion().cStr()},
    {"healthy", yes_no(info.getHealthy())},
    {"uptime", human_duration(info.getUptimeNanos())},
    {"pid", std::to_string(info.getPid())},
    {"kernel", f.getKernelRelease().cStr()},
    {"cgroups", std::string{mode_name(f.getCgroupMode())} + " ("
                  + join(texts(f.getCgroupControllers())) + ")"},
    {"namespaces", join(texts(f.getNamespaces()))},
    {"ebpf", std::string{yes_no(f.getEbpf())} + " (btf " + yes_no(f.getBtf()) + ", tracefs " +
               yes_no(f.getTracefs()) + ")" +
               (f.getEbpf() ? std::string{} : std::string{": "} + f.getEbpfDetail().cStr())},
    {"kvm", yes_no(f.getKvm())},
    {"vm accel", std::string{f.getVmAccel().cStr()} + " (" + f.getVmAccelReason().cStr() + ")"},
    {"overlayfs", yes_no(f.getOverlayfs())},
    {"pidfd", yes_no(f.getPidfd())},
  });
  return 0;
}

int cmd_health(const global_options& g) {
  using namespace cmd_discover_impl;
  client c{g};
  auto disc = discovery(c);
  auto resp = wait(c, disc.healthRequest().send());
  auto h = resp.getHealth();
  if (g.json) {
    nlohmann::json j{{"healthy", h.getHealthy()},
                     {"problems", texts(h.getProblems())},
                     {"notices", texts(h.getNotices())}};
    if (h.hasGateway()) {
      auto gw = h.getGateway();
      j["gateway"] = {{"connections", gw.getConnections()},
                      {"pendingCalls", gw.getPendingCalls()},
                      {"messageBytes", gw.getMessageBytes()},
                      {"messageLimit", gw.getMessageLimit()},
                      {"expiredCalls", gw.getExpiredCalls()}};
    }
    print_json(j);
  } else {
    std::printf("%s\n", h.getHealthy() ? "healthy" : "unhealthy");
    for (auto p : h.getProblems())
      std::printf("  %s\n", p.cStr());
    if (h.getNotices().size() > 0)
      std::printf("notices:\n");
    for (auto n : h.getNotices())
      std::printf("  %s\n", n.cStr());
  }
  return h.getHealthy() ? 0 : 1;
}

int cmd_version(const global_options& g) {
  using namespace cmd_discover_impl;
  std::string daemon;
  std::string problem;
  try {
    client c{g};
    daemon = wait(c, discovery(c).discoverRequest().send()).getInfo().getVersion().cStr();
  } catch (const cli_error& e) {
    problem = e.what();
  }
  if (g.json) {
    nlohmann::json j{{"cli", cyto::version},
                     {"cliRevision", cyto::git_revision},
                     {"daemon", daemon.empty() ? nullptr : nlohmann::json(daemon)}};
    if (!problem.empty())
      j["daemonError"] = problem;
    print_json(j);
    return 0;
  }
  std::printf("cyto  %s\n", cyto::version);
  std::printf("revision %s\n", cyto::git_revision);
  std::printf("cytod %s\n", daemon.empty() ? ("unreachable: " + problem).c_str() : daemon.c_str());
  return 0;
}

} // namespace cyto::cli
