// cyto node ls: the nodes of the federation as the node we talk to sees them.
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"

namespace cyto::cli {

namespace cmd_node_impl {

const char* state_name(schema::NodeState s) {
  return s == schema::NodeState::UP ? "up" : "down";
}

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, c.node().nodesRequest().send());
  auto nodes = resp.getNodes();
  if (g.json) {
    for (auto n : nodes)
      print_json({
        {"name", n.getName().cStr()},
        {"address", n.getAddress().cStr()},
        {"state", state_name(n.getState())},
        {"local", n.getLocal()},
        {"lastHeartbeatNanos", n.getLastHeartbeatNanos()},
        {"rttNanos", n.getRttNanos()},
        {"detail", n.getDetail().cStr()},
      });
    return 0;
  }
  std::printf("%-20s %-24s %-6s %-10s %-26s %s\n", "NAME", "ADDRESS", "STATE", "RTT",
              "LAST HEARTBEAT", "DETAIL");
  for (auto n : nodes) {
    std::string name = n.getName().cStr();
    if (n.getLocal())
      name += " *";
    char rtt[32] = "-";
    if (!n.getLocal() && n.getRttNanos() > 0)
      std::snprintf(rtt, sizeof(rtt), "%.2fms", static_cast<double>(n.getRttNanos()) / 1e6);
    auto seen = n.getLastHeartbeatNanos() == 0 ? std::string{"never"}
                                               : iso_time(n.getLastHeartbeatNanos());
    std::printf("%-20s %-24s %-6s %-10s %-26s %s\n", name.c_str(),
                n.getAddress().size() ? n.getAddress().cStr() : "-", state_name(n.getState()),
                rtt, seen.c_str(), n.getDetail().cStr());
  }
  return 0;
}

} // namespace cmd_node_impl

void add_node_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_node_impl;
  auto* node = app.add_subcommand("node", "the nodes of the federation");
  node->require_subcommand(1);
  auto* ls = node->add_subcommand(
    "ls", "list the nodes (* marks the one answering): state, round trip, last heartbeat");
  ls->callback([&] { run = [&] { return list(g); }; });
  for (auto* sub : {ls}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "list as this node of the federation sees it");
    sub->add_flag("--json", g.json, "print JSON (one object per node) for scripts");
  }
}

} // namespace cyto::cli
