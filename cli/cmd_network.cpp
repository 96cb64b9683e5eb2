// cyto network create|ls|inspect|rm
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/network.capnp.h"

namespace cyto::cli {

namespace cmd_network_impl {

struct network_flags {
  std::string name, subnet, gateway;
  std::vector<std::string> options;
};

schema::Networks::Client networks(client& c) {
  return wait(c, c.node().networkRequest().send()).getService();
}

std::vector<std::string> texts(capnp::List<capnp::Text>::Reader xs) {
  std::vector<std::string> out;
  for (auto x : xs)
    out.emplace_back(x.cStr());
  return out;
}

std::string port_of(schema::PortMapping::Reader p) {
  port_spec s{p.getHostPort(), p.getContainerPort(), p.getProtocol(), p.getHostIp()};
  if (s.protocol.empty())
    s.protocol = "tcp";
  return port_text(s);
}

nlohmann::json attachment_json(schema::Attachment::Reader a) {
  nlohmann::json ports = nlohmann::json::array();
  for (auto p : a.getPorts())
    ports.push_back(port_of(p));
  return {{"owner", a.getOwner().cStr()},
          {"network", a.getNetwork().cStr()},
          {"netns", a.getNetnsPath().cStr()},
          {"netnsOwned", a.getNetnsOwned()},
          {"ifname", a.getIfname().cStr()},
          {"ips", texts(a.getIps())},
          {"gateway", a.getGateway().cStr()},
          {"mac", a.getMac().cStr()},
          {"dnsServers", texts(a.getDnsServers())},
          {"dnsSearch", texts(a.getDnsSearch())},
          {"ports", ports}};
}

nlohmann::json network_json(schema::NetworkInfo::Reader n) {
  nlohmann::json atts = nlohmann::json::array();
  for (auto a : n.getAttachments())
    atts.push_back(attachment_json(a));
  return {{"name", n.getName().cStr()},       {"subnet", n.getSubnet().cStr()},
          {"gateway", n.getGateway().cStr()}, {"bridge", n.getBridge().cStr()},
          {"options", texts(n.getOptions())}, {"conflist", n.getConflistPath().cStr()},
          {"default", n.getIsDefault()},      {"attachments", atts}};
}

int create(const global_options& g, const network_flags& f) {
  client c{g};
  auto req = networks(c).createRequest();
  req.setName(f.name);
  req.setSubnet(f.subnet);
  req.setGateway(f.gateway);
  auto opts = req.initOptions(f.options.size());
  for (uint i = 0; i < f.options.size(); ++i)
    opts.set(i, f.options[i]);
  auto resp = wait(c, req.send());
  auto n = resp.getInfo();
  if (g.json)
    print_json(network_json(n));
  else
    std::printf("created network %s subnet %s gateway %s bridge %s\n", n.getName().cStr(),
                n.getSubnet().cStr(), n.getGateway().cStr(), n.getBridge().cStr());
  return 0;
}

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, networks(c).listRequest().send());
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto n : resp.getNetworks())
      out.push_back(network_json(n));
    print_json(out);
    return 0;
  }
  std::printf("%-20s %-18s %-15s %-15s %s\n", "NAME", "SUBNET", "GATEWAY", "BRIDGE", "ATTACHED");
  for (auto n : resp.getNetworks())
    std::printf("%-20s %-18s %-15s %-15s %u\n",
                (std::string{n.getName().cStr()} + (n.getIsDefault() ? " *" : "")).c_str(),
                n.getSubnet().cStr(), n.getGateway().cStr(), n.getBridge().cStr(),
                n.getAttachments().size());
  return 0;
}

int inspect(const global_options& g, const std::string& name) {
  client c{g};
  auto req = networks(c).inspectRequest();
  req.setName(name);
  auto resp = wait(c, req.send());
  auto n = resp.getInfo();
  if (g.json) {
    print_json(network_json(n));
    return 0;
  }
  auto opts = texts(n.getOptions());
  print_table({{"name", std::string{n.getName().cStr()} + (n.getIsDefault() ? " (default)" : "")},
               {"subnet", n.getSubnet().cStr()},
               {"gateway", n.getGateway().cStr()},
               {"bridge", n.getBridge().cStr()},
               {"options", opts.empty() ? "-" : join(opts)},
               {"conflist", n.getConflistPath().cStr()},
               {"attachments", std::to_string(n.getAttachments().size())}});
  if (n.getAttachments().size() > 0)
    std::printf("\n%-28s %-18s %-17s %-16s %s\n", "OWNER", "IP", "MAC", "PORTS", "NETNS");
  for (auto a : n.getAttachments()) {
    std::vector<std::string> ports;
    for (auto p : a.getPorts())
      ports.push_back(port_of(p));
    auto ips = texts(a.getIps());
    std::printf("%-28s %-18s %-17s %-16s %s\n", a.getOwner().cStr(),
                ips.empty() ? "-" : join(ips, ",").c_str(), a.getMac().cStr(),
                ports.empty() ? "-" : join(ports, ",").c_str(), a.getNetnsPath().cStr());
  }
  return 0;
}

int remove(const global_options& g, const std::string& name) {
  client c{g};
  auto req = networks(c).removeRequest();
  req.setName(name);
  wait(c, req.send());
  if (g.json)
    print_json({{"removed", name}});
  else
    std::printf("removed network %s\n", name.c_str());
  return 0;
}

int check(const global_options& g, const std::string& owner) {
  client c{g};
  auto req = networks(c).checkRequest();
  req.setOwner(owner);
  auto resp = wait(c, req.send());
  auto a = resp.getAttachment();
  if (g.json) {
    print_json(attachment_json(a));
  } else {
    auto ips = texts(a.getIps());
    std::printf("%s ok on %s (%s)\n", owner.c_str(), a.getNetwork().cStr(),
                ips.empty() ? "-" : join(ips, ",").c_str());
  }
  return 0;
}

} // namespace cmd_network_impl

void add_network_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_network_impl;
  auto* net = app.add_subcommand("network", "CNI networks: a bridge, IP addresses, port mapping");
  net->require_subcommand(1);

  static network_flags cf;
  auto* cr = net->add_subcommand("create", "make a network");
  cr->add_option("name", cf.name, "network name")->required();
  cr->add_option("--subnet", cf.subnet, "IPv4 CIDR, e.g. 10.90.0.0/24 (default: a free one of the pool)");
  cr->add_option("--gateway", cf.gateway, "gateway address (default: the subnet's first)");
  cr->add_option("-o,--opt", cf.options,
                 "option key=value, repeat: mtu=N ipmasq=true|false firewall=true|false "
                 "dns=IP[,IP] dns_search=DOMAIN[,DOMAIN]");
  cr->callback([&] { run = [&] { return create(g, cf); }; });

  auto* ls = net->add_subcommand("ls", "list networks (* marks the default)");
  ls->callback([&] { run = [&] { return list(g); }; });

  static std::string inspect_name;
  auto* in = net->add_subcommand("inspect", "show a network with its attachments and addresses");
  in->add_option("name", inspect_name, "network name")->required();
  in->callback([&] { run = [&] { return inspect(g, inspect_name); }; });

  static std::string rm_name;
  auto* rm = net->add_subcommand("rm", "remove a network (refused while anything is attached)");
  rm->add_option("name", rm_name, "network name")->required();
  rm->callback([&] { run = [&] { return remove(g, rm_name); }; });

  static std::string check_owner;
  auto* ck = net->add_subcommand("check", "run CNI CHECK on a workload's attachment (e.g. cell/web)");
  ck->add_option("owner", check_owner, "owner as shown by inspect: cell/NAME, container/NAME, pod/NAME, vm/NAME")
    ->required();
  ck->callback([&] { run = [&] { return check(g, check_owner); }; });

  for (auto* sub : {cr, ls, in, rm, ck}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  }
}

} // namespace cyto::cli
