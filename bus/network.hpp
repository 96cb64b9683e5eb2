#pragma once
// Messages of the network domain: CNI networks, and the attachments of workloads to them.
// The containers and cells actors ask the network actor to attach a workload; it owns
// the netns files, runs the CNI plugins and keeps the results.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cyto {

/// What create asks for. Empty subnet/gateway: picked from the configured pool.
struct network_spec {
  std::string name;
  /// IPv4 CIDR, e.g. "10.88.0.0/16".
  std::string subnet;
  /// Defaults to the subnet's first host address.
  std::string gateway;
  /// Linux bridge name; defaults to "cyto-<name>" cut to 15 characters.
  std::string bridge;
  /// Extra options as "key=value" (e.g. "mtu=1400", "ipmasq=true", "isolate=true").
  std::vector<std::string> options;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, network_spec& x) {
  return f(caf::meta::type_name("network_spec"), x.name, x.subnet, x.gateway, x.bridge,
           x.options);
}

/// hostPort:containerPort/protocol, through the CNI portmap plugin.
struct port_mapping {
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  /// "tcp" or "udp".
  std::string protocol = "tcp";
  /// Empty: every address.
  std::string host_ip;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, port_mapping& x) {
  return f(caf::meta::type_name("port_mapping"), x.host_port, x.container_port, x.protocol,
           x.host_ip);
}

/// What attach asks for: connect one workload to one network.
struct attach_request {
  /// Who is attached, unique: "container/<name>", "pod/<name>", "cell/<name>".
  std::string owner;
  /// Network name; empty: the default network.
  std::string network;
  std::vector<port_mapping> ports;
  /// An existing netns file to attach; empty: the network actor makes a named netns
  /// under <state>/netns/ and removes it on detach.
  std::string netns_path;
  /// Interface name inside the netns (default "eth0").
  std::string ifname;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attach_request& x) {
  return f(caf::meta::type_name("attach_request"), x.owner, x.network, x.ports, x.netns_path,
           x.ifname);
}

/// What a tap attach asks for: a tap device on the network's bridge and an address from
/// the network's IPAM, for a VM whose hypervisor (in the daemon's netns) opens the tap.
/// The answer's ifname is the tap, mac the guest's (stable per owner), netns_path empty.
struct tap_request {
  /// Who is attached, unique: "vm/<name>".
  std::string owner;
  /// Network name; empty: the default network.
  std::string network;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tap_request& x) {
  return f(caf::meta::type_name("tap_request"), x.owner, x.network);
}

/// A workload attached to a network: the CNI result, as recorded.
struct net_attachment {
  std::string owner;
  std::string network;
  std::string netns_path;
  /// True when the network actor made the netns (and deletes it on detach).
  bool netns_owned = false;
  std::string ifname;
  /// Addresses in CIDR form ("10.88.0.5/16").
  std::vector<std::string> ips;
  std::string gateway;
  std::string mac;
  std::vector<std::string> dns_servers;
  std::vector<std::string> dns_search;
  std::vector<port_mapping> ports;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, net_attachment& x) {
  return f(caf::meta::type_name("net_attachment"), x.owner, x.network, x.netns_path,
           x.netns_owned, x.ifname, x.ips, x.gateway, x.mac, x.dns_servers, x.dns_search,
           x.ports);
}

/// A network as list and get report it.
struct network_info {
  network_spec spec;
  /// The CNI conflist the plugins get.
  std::string conflist_path;
  bool is_default = false;
  std::vector<net_attachment> attachments;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, network_info& x) {
  return f(caf::meta::type_name("network_info"), x.spec, x.conflist_path, x.is_default,
           x.attachments);
}

} // namespace cyto
