#include "actors/network/network_actor.hpp"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/vfs.h>

#include <caf/all.hpp>

#include "actors/network/cni.hpp"
#include "actors/network/netns.hpp"
#include "actors/network/subnet.hpp"
#include "actors/network/tap.hpp"
#include "bus/errc.hpp"
#include "bus/logging.hpp"

namespace cyto::network {

namespace {

using self_ptr = network_actor::stateful_pointer<network_state>;

/// Whether `path` is a bound network namespace (nsfs), not a plain file left by a reboot.
bool is_netns(const std::string& path) {
  constexpr long nsfs_magic = 0x6e736673;
  struct statfs fs{};
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == nsfs_magic;
}
using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kind_network = "network";
constexpr const char* kind_attach = "netattach";
/// A VM's tap + IPAM lease: an attach_row of its own kind, so netattach rows keep their
/// meaning (a veth in a netns) and old records decode as they are.
constexpr const char* kind_tap = "nettap";
constexpr size_t max_name = 64;
constexpr size_t max_ifname = 15; // IFNAMSIZ - 1

/// What state.db keeps of an attachment.
struct attach_row {
  net_attachment info;
  std::string result;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, attach_row& x) {
  return f(caf::meta::type_name("attach_row"), x.info, x.result);
}

using store::to_blob;

caf::error check_name(const std::string& what, const std::string& name, size_t max) {
  if (name.empty() || name.size() > max)
    return make_error(errc::invalid_argument,
                      what + " '" + name + "' must be 1.." + std::to_string(max) + " characters");
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return make_error(errc::invalid_argument,
                        what + " '" + name + "' may hold only letters, digits, '.', '_' and '-'");
  if (name[0] == '.' || name[0] == '-')
    return make_error(errc::invalid_argument, what + " '" + name + "' must start with a letter or digit");
  return {};
}

/// A stable id for an owner, usable as CNI container id and as a file name:
/// readable part + hash (so "cell/a.b" and "cell.a/b" never collide).
std::string owner_id(const std::string& owner) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : owner)
    h = (h ^ c) * 1099511628211ull;
  std::string readable;
  for (char c : owner)
    readable += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '-';
  if (readable.size() > 80)
    readable.resize(80);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return readable + "-" + std::string{hex, 8};
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s)
    h = (h ^ c) * 1099511628211ull;
  return h;
}

/// A tap's name for an owner: "vtap-" + 8 hex digits (fits IFNAMSIZ).
std::string tap_name(const std::string& owner) {
  char name[16];
  std::snprintf(name, sizeof(name), "vtap-%08llx",
                static_cast<unsigned long long>(fnv1a(owner) & 0xffffffffull));
  return name;
}

/// The guest's MAC for an owner, stable across starts and restarts: QEMU's 52:54:00 prefix
/// (locally administered, unicast) and three bytes of the owner's hash.
std::string guest_mac(const std::string& owner) {
  auto h = fnv1a("mac:" + owner);
  char mac[18];
  std::snprintf(mac, sizeof(mac), "52:54:00:%02x:%02x:%02x", static_cast<unsigned>(h >> 16) & 0xff,
                static_cast<unsigned>(h >> 8) & 0xff, static_cast<unsigned>(h) & 0xff);
  return mac;
}

struct parsed_options {
  uint32_t mtu = 0;
  bool ipmasq = true;
  bool firewall = true;
  std::vector<std::string> dns;
  std::vector<std::string> dns_search;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos)
      end = s.size();
    if (end > start)
      out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

caf::expected<parsed_options> parse_options(const std::vector<std::string>& options) {
  parsed_options out;
  for (auto& o : options) {
    auto eq = o.find('=');
    if (eq == std::string::npos)
      return make_error(errc::invalid_argument, "option '" + o + "' is not key=value");
    auto k = o.substr(0, eq), v = o.substr(eq + 1);
    auto boolean = [&](bool& dst) -> caf::error {
      if (v == "true" || v == "1") dst = true;
      else if (v == "false" || v == "0") dst = false;
      else return make_error(errc::invalid_argument, "option " + k + ": '" + v + "' is not true or false");
      return {};
    };
    if (k == "mtu") {
      if (v.empty() || v.size() > 5 || v.find_first_not_of("0123456789") != std::string::npos
          || std::stoul(v) < 576 || std::stoul(v) > 65535)
        return make_error(errc::invalid_argument, "option mtu: '" + v + "' is not 576..65535");
      out.mtu = static_cast<uint32_t>(std::stoul(v));
    } else if (k == "ipmasq") {
      if (auto err = boolean(out.ipmasq)) return err;
    } else if (k == "firewall") {
      if (auto err = boolean(out.firewall)) return err;
    } else if (k == "dns") {
      for (auto& s : split_commas(v)) {
        if (!parse_ipv4(s))
          return make_error(errc::invalid_argument, "option dns: '" + s + "' is not an IPv4 address");
        out.dns.push_back(s);
      }
    } else if (k == "dns_search") {
      out.dns_search = split_commas(v);
    } else {
      return make_error(errc::invalid_argument,
                        "unknown option '" + k + "' (known: mtu, ipmasq, firewall, dns, dns_search)");
    }
  }
  return out;
}

/// The conflist the plugins get: bridge (host-local IPAM) + portmap (+ firewall).
/// Leases of host-local live under the state dir, not in the host's /var/lib/cni.
json make_conflist(const network_spec& spec, const parsed_options& opts,
                   const std::string& ipam_dir) {
  json bridge{{"type", "bridge"},       {"bridge", spec.bridge}, {"isGateway", true},
              {"ipMasq", opts.ipmasq},  {"hairpinMode", true},
              {"ipam",
               {{"type", "host-local"},
                {"ranges", json::array({json::array({{{"subnet", spec.subnet},
                                                      {"gateway", spec.gateway}}})})},
                {"routes", json::array({{{"dst", "0.0.0.0/0"}}})},
                {"dataDir", ipam_dir}}}};
  if (opts.mtu)
    bridge["mtu"] = opts.mtu;
  if (!opts.dns.empty() || !opts.dns_search.empty())
    bridge["dns"] = {{"nameservers", opts.dns}, {"search", opts.dns_search}};
  json plugins = json::array({bridge});
  plugins.push_back({{"type", "portmap"}, {"capabilities", {{"portMappings", true}}}, {"snat", true}});
  if (opts.firewall)
    plugins.push_back({{"type", "firewall"}, {"backend", "iptables"}});
  return {{"cniVersion", "1.0.0"}, {"name", spec.name}, {"plugins", plugins}};
}

std::string conflist_path(self_ptr self, const std::string& name) {
  return self->state.config.state_dir + "/network/" + name + ".conflist";
}

caf::error write_conflist(const std::string& path, const json& conflist) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc};
    out << conflist.dump(2) << "\n";
    if (!out)
      return make_error(errc::internal, "write " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(errc::internal, "rename " + tmp + ": " + std::strerror(err));
  }
  return {};
}

network_info info_of(self_ptr self, const network_state::net_record& n) {
  network_info out;
  out.spec = n.spec;
  out.conflist_path = conflist_path(self, n.spec.name);
  out.is_default = n.spec.name == self->state.config.default_network;
  for (auto* m : {&self->state.attachments, &self->state.taps})
    for (auto& [owner, a] : *m)
      if (a.info.network == n.spec.name)
        out.attachments.push_back(a.info);
  return out;
}

/// The daemon's namespace's IPv4 routes (but the default route and those of our own
/// bridges): a subnet picked from the pool must not shadow a network the host reaches.
std::vector<ipv4_net> host_routes(self_ptr self) {
  std::vector<ipv4_net> out;
  std::ifstream in{"/proc/net/route"};
  std::string line;
  std::getline(in, line); // header
  while (std::getline(in, line)) {
    std::istringstream ss{line};
    std::string iface, dst, gw, flags, refcnt, use, metric, mask;
    if (!(ss >> iface >> dst >> gw >> flags >> refcnt >> use >> metric >> mask))
      continue;
    bool ours = false;
    for (auto& [name, n] : self->state.networks)
      ours = ours || n.spec.bridge == iface;
    auto d = ntohl(static_cast<uint32_t>(std::stoul(dst, nullptr, 16)));
    auto m = ntohl(static_cast<uint32_t>(std::stoul(mask, nullptr, 16)));
    if (ours || m == 0)
      continue;
    out.push_back({d & m, static_cast<uint8_t>(__builtin_popcount(m))});
  }
  return out;
}

/// Checks and completes a spec (subnet from the pool, gateway, bridge); builds its conflist.
caf::expected<network_state::net_record> prepare(self_ptr self, network_spec spec) {
  auto& st = self->state;
  if (auto err = check_name("network name", spec.name, max_name))
    return err;
  if (st.networks.count(spec.name) > 0)
    return make_error(errc::already_exists, "network " + spec.name + " exists");
  auto opts = parse_options(spec.options);
  if (!opts)
    return opts.error();
  std::vector<std::pair<std::string, ipv4_net>> used;
  for (auto& [name, n] : st.networks)
    if (auto s = parse_subnet(n.spec.subnet))
      used.emplace_back(name, *s);
  ipv4_net net;
  if (spec.subnet.empty()) {
    auto pool = parse_subnet(st.config.subnet_pool);
    if (!pool)
      return pool.error();
    auto taken = host_routes(self);
    for (auto& u : used)
      taken.push_back(u.second);
    auto picked = pick_subnet(*pool, static_cast<uint8_t>(st.config.subnet_size), taken);
    if (!picked)
      return picked.error();
    net = *picked;
    spec.subnet = net.str();
  } else {
    auto s = parse_subnet(spec.subnet);
    if (!s)
      return s.error();
    net = *s;
    for (auto& [name, u] : used)
      if (net.overlaps(u))
        return make_error(errc::invalid_argument, "subnet " + spec.subnet + " overlaps network "
                                                    + name + " (" + u.str() + ")");
  }
  if (spec.gateway.empty()) {
    spec.gateway = ipv4_text(net.base + 1);
  } else {
    auto gw = parse_ipv4(spec.gateway);
    if (!gw)
      return make_error(errc::invalid_argument,
                        "gateway '" + spec.gateway + "' is not an IPv4 address");
    if (!net.contains(*gw) || *gw == net.base || *gw == net.last())
      return make_error(errc::invalid_argument, "gateway " + spec.gateway
                                                  + " is not a host address of " + spec.subnet);
  }
  if (spec.bridge.empty())
    spec.bridge = ("cyto-" + spec.name).substr(0, max_ifname);
  if (auto err = check_name("bridge name", spec.bridge, max_ifname))
    return err;
  for (auto& [name, n] : st.networks)
    if (n.spec.bridge == spec.bridge)
      return make_error(errc::already_exists,
                        "bridge " + spec.bridge + " is used by network " + name);
  network_state::net_record rec;
  rec.conflist = make_conflist(spec, *opts, st.config.state_dir + "/network/ipam");
  rec.spec = std::move(spec);
  return rec;
}

caf::expected<network_info> create(self_ptr self, network_spec spec) {
  auto& st = self->state;
  auto rec = prepare(self, std::move(spec));
  if (!rec)
    return rec.error();
  auto& name = rec->spec.name;
  auto path = conflist_path(self, name);
  if (auto err = write_conflist(path, rec->conflist))
    return err;
  if (auto err = st.db->put({kind_network, name, "ready", to_blob(rec->spec)})) {
    ::unlink(path.c_str());
    return err;
  }
  st.log->info("created network {} subnet {} gateway {} bridge {}", name, rec->spec.subnet,
               rec->spec.gateway, rec->spec.bridge);
  auto& stored = st.networks[name] = std::move(*rec);
  return info_of(self, stored);
}

caf::error check_ports(self_ptr self, const attach_request& req, std::vector<port_mapping>& ports) {
  for (auto& p : ports) {
    if (p.protocol.empty())
      p.protocol = "tcp";
    if (p.protocol != "tcp" && p.protocol != "udp" && p.protocol != "sctp")
      return make_error(errc::invalid_argument,
                        "port protocol '" + p.protocol + "' is not tcp, udp or sctp");
    if (p.host_port == 0 || p.container_port == 0)
      return make_error(errc::invalid_argument, "ports must be 1..65535");
    if (!p.host_ip.empty() && !parse_ipv4(p.host_ip))
      return make_error(errc::invalid_argument, "host IP '" + p.host_ip + "' is not IPv4");
  }
  auto clash = [](const port_mapping& a, const port_mapping& b) {
    return a.host_port == b.host_port && a.protocol == b.protocol
           && (a.host_ip.empty() || b.host_ip.empty() || a.host_ip == b.host_ip);
  };
  for (size_t i = 0; i < ports.size(); ++i)
    for (size_t j = i + 1; j < ports.size(); ++j)
      if (clash(ports[i], ports[j]))
        return make_error(errc::invalid_argument, "host port " + std::to_string(ports[i].host_port)
                                                    + "/" + ports[i].protocol + " is given twice");
  for (auto& [owner, a] : self->state.attachments)
    for (auto& q : a.info.ports)
      for (auto& p : ports)
        if (clash(p, q))
          return make_error(errc::already_exists, "host port " + std::to_string(p.host_port) + "/"
                                                    + p.protocol + " is already mapped to "
                                                    + owner);
  return {};
}

cni_target target_of(self_ptr self, const net_attachment& a) {
  return {owner_id(a.owner), a.netns_path, a.ifname, self->state.config.plugin_dirs, a.ports};
}

caf::expected<net_attachment> attach(self_ptr self, attach_request req) {
  auto& st = self->state;
  if (req.owner.empty())
    return make_error(errc::invalid_argument, "attach: no owner given");
  if (st.attachments.count(req.owner) > 0)
    return make_error(errc::already_exists, req.owner + " is already attached to network "
                                              + st.attachments.at(req.owner).info.network);
  if (req.network.empty())
    req.network = st.config.default_network;
  auto n = st.networks.find(req.network);
  if (n == st.networks.end())
    return make_error(errc::not_found, "network " + req.network + " does not exist");
  if (req.ifname.empty())
    req.ifname = "eth0";
  if (auto err = check_name("interface name", req.ifname, max_ifname))
    return err;
  if (auto err = check_ports(self, req, req.ports))
    return err;
  if (auto err = check_plugins(n->second.conflist, st.config.plugin_dirs))
    return err;
  net_attachment a;
  a.owner = req.owner;
  a.network = req.network;
  a.ifname = req.ifname;
  a.ports = req.ports;
  a.netns_owned = req.netns_path.empty();
  a.netns_path = a.netns_owned ? st.config.state_dir + "/netns/" + owner_id(req.owner)
                               : req.netns_path;
  if (!a.netns_owned && ::access(a.netns_path.c_str(), R_OK) != 0)
    return make_error(errc::not_found, "netns " + a.netns_path + ": " + std::strerror(errno));
  // Recorded first: a crash from here on is undone at the next start.
  attach_row row{a, {}};
  if (auto err = st.db->put({kind_attach, a.owner, "attaching", to_blob(row)}))
    return err;
  auto undo_record = [&] { st.db->erase(kind_attach, a.owner); };
  if (a.netns_owned) {
    if (auto err = create_netns(a.netns_path)) {
      undo_record();
      return err;
    }
  }
  auto result = cni_add(n->second.conflist, target_of(self, a));
  if (!result) {
    if (a.netns_owned)
      remove_netns(a.netns_path);
    undo_record();
    st.log->warn("attach {} to {} failed: {}", a.owner, a.network, render(result.error()));
    return result.error();
  }
  if (auto err = read_result(*result, a)) {
    cni_del(n->second.conflist, target_of(self, a), *result);
    if (a.netns_owned)
      remove_netns(a.netns_path);
    undo_record();
    st.log->warn("attach {} to {} failed: {}", a.owner, a.network, render(err));
    return err;
  }
  row = attach_row{a, result->dump()};
  auto blob = to_blob(row);
  if (auto err = st.db->set_state(kind_attach, a.owner, "attached", &blob))
    st.log->error("record attachment of {}: {}", a.owner, render(err));
  st.attachments[a.owner] = {a, *result};
  st.log->info("attached {} to {}: {} netns {}", a.owner, a.network,
               a.ips.empty() ? "-" : a.ips.front(), a.netns_path);
  return a;
}

/// CNI_NETNS of a tap's IPAM calls: host-local never enters it, but ADD must name one.
cni_target tap_target(self_ptr self, const net_attachment& a) {
  return {owner_id(a.owner), "/proc/self/ns/net", a.ifname, self->state.config.plugin_dirs, {}};
}

/// Puts a recorded tap back (after a reboot or a deleted link): the bridge, then the tap.
caf::error make_tap(self_ptr self, const net_attachment& a) {
  auto& st = self->state;
  auto n = st.networks.find(a.network);
  if (n == st.networks.end())
    return make_error(errc::not_found, "network " + a.network + " does not exist");
  auto net = parse_subnet(n->second.spec.subnet);
  if (!net)
    return net.error();
  if (auto err = ensure_bridge(n->second.spec.bridge, n->second.spec.gateway, net->prefix))
    return err;
  return create_tap(a.ifname, n->second.spec.bridge);
}

caf::expected<net_attachment> attach_tap(self_ptr self, tap_request req) {
  auto& st = self->state;
  if (req.owner.empty())
    return make_error(errc::invalid_argument, "attach: no owner given");
  for (auto* m : {&st.attachments, &st.taps})
    if (auto i = m->find(req.owner); i != m->end())
      return make_error(errc::already_exists,
                        req.owner + " is already attached to network " + i->second.info.network);
  if (req.network.empty())
    req.network = st.config.default_network;
  auto n = st.networks.find(req.network);
  if (n == st.networks.end())
    return make_error(errc::not_found, "network " + req.network + " does not exist");
  if (auto err = check_plugins(n->second.conflist, st.config.plugin_dirs))
    return err;
  net_attachment a;
  a.owner = req.owner;
  a.network = req.network;
  a.ifname = tap_name(req.owner);
  for (auto& [owner, t] : st.taps)
    if (t.info.ifname == a.ifname)
      return make_error(errc::already_exists, "tap " + a.ifname + " of " + a.owner +
                                                  " is taken by " + owner);
  if (link_exists(a.ifname))
    return make_error(errc::already_exists, "an interface " + a.ifname + " exists already");
  // Recorded first: a crash from here on is undone at the next start.
  attach_row row{a, {}};
  if (auto err = st.db->put({kind_tap, a.owner, "attaching", to_blob(row)}))
    return err;
  auto result = ipam_add(n->second.conflist, tap_target(self, a));
  if (!result) {
    st.db->erase(kind_tap, a.owner);
    st.log->warn("tap for {} on {}: IPAM failed: {}", a.owner, a.network, render(result.error()));
    return result.error();
  }
  if (auto err = read_result(*result, a)) {
    ipam_del(n->second.conflist, tap_target(self, a));
    st.db->erase(kind_tap, a.owner);
    st.log->warn("tap for {} on {}: {}", a.owner, a.network, render(err));
    return err;
  }
  a.mac = guest_mac(a.owner);
  if (auto err = make_tap(self, a)) {
    ipam_del(n->second.conflist, tap_target(self, a));
    delete_link(a.ifname);
    st.db->erase(kind_tap, a.owner);
    st.log->warn("tap for {} on {}: {}", a.owner, a.network, render(err));
    return err;
  }
  row = attach_row{a, result->dump()};
  auto blob = to_blob(row);
  if (auto err = st.db->set_state(kind_tap, a.owner, "attached", &blob))
    st.log->error("record tap of {}: {}", a.owner, render(err));
  st.taps[a.owner] = {a, *result};
  st.log->info("attached {} to {}: tap {} on {}, {} mac {}", a.owner, a.network, a.ifname,
               n->second.spec.bridge, a.ips.empty() ? "-" : a.ips.front(), a.mac);
  return a;
}

/// Releases the lease, deletes the tap, then the record.
caf::error undo_tap(self_ptr self, const net_attachment& a) {
  auto& st = self->state;
  auto n = st.networks.find(a.network);
  if (n != st.networks.end()) {
    if (auto err = ipam_del(n->second.conflist, tap_target(self, a)))
      return err;
  } else {
    st.log->warn("detach {}: network {} is gone; no IPAM release", a.owner, a.network);
  }
  if (auto err = delete_link(a.ifname))
    return err;
  return st.db->erase(kind_tap, a.owner);
}

/// DEL through the plugins, then the netns if ours, then the record.
caf::error undo_attachment(self_ptr self, const net_attachment& a, const json& result) {
  auto& st = self->state;
  auto n = st.networks.find(a.network);
  if (n != st.networks.end()) {
    if (auto err = cni_del(n->second.conflist, target_of(self, a), result))
      return err;
  } else {
    st.log->warn("detach {}: network {} is gone; no CNI DEL", a.owner, a.network);
  }
  if (a.netns_owned)
    if (auto err = remove_netns(a.netns_path))
      return err;
  return st.db->erase(kind_attach, a.owner);
}

caf::result<void> detach(self_ptr self, const std::string& owner) {
  auto& st = self->state;
  if (auto t = st.taps.find(owner); t != st.taps.end()) {
    if (auto err = undo_tap(self, t->second.info)) {
      st.log->error("detach {}: {}", owner, render(err));
      return err;
    }
    st.log->info("detached {} from {} (tap {})", owner, t->second.info.network,
                 t->second.info.ifname);
    st.taps.erase(t);
    return caf::unit;
  }
  auto i = st.attachments.find(owner);
  if (i == st.attachments.end())
    return caf::unit;
  if (auto err = undo_attachment(self, i->second.info, i->second.result)) {
    st.log->error("detach {}: {}", owner, render(err));
    return err;
  }
  st.log->info("detached {} from {}", owner, i->second.info.network);
  st.attachments.erase(i);
  return caf::unit;
}

caf::result<void> remove(self_ptr self, const std::string& name) {
  auto& st = self->state;
  auto n = st.networks.find(name);
  if (n == st.networks.end())
    return make_error(errc::not_found, "network " + name + " does not exist");
  if (name == st.config.default_network)
    return make_error(errc::failed_precondition, "network " + name + " is the default network");
  for (auto* m : {&st.attachments, &st.taps})
    for (auto& [owner, a] : *m)
      if (a.info.network == name)
        return make_error(errc::failed_precondition,
                          "network " + name + " is in use by " + owner + "; detach it first");
  // The bridge before the record: a crash in between leaves a listed network without its
  // bridge (the next attach makes it again), never a bridge of no network.
  if (auto err = delete_link(n->second.spec.bridge))
    st.log->warn("network {}: {}", name, render(err));
  if (auto err = st.db->erase(kind_network, name))
    return err;
  ::unlink(conflist_path(self, name).c_str());
  st.log->info("removed network {}", name);
  st.networks.erase(n);
  return caf::unit;
}

/// After a reboot the netns files are plain files again and the kernel objects are gone:
/// release the old lease (DEL without a namespace), then attach anew at the same path, so
/// the workload finds its namespace where its record says.
void readd(self_ptr self, net_attachment a, const json& old_result) {
  auto& st = self->state;
  st.log->warn("netns {} of {} is gone (reboot?); attaching it again", a.netns_path, a.owner);
  remove_netns(a.netns_path);
  auto n = st.networks.find(a.network);
  if (n != st.networks.end())
    cni_del(n->second.conflist, target_of(self, a), old_result);
  st.db->erase(kind_attach, a.owner);
  attach_request req;
  req.owner = a.owner;
  req.network = a.network;
  req.ports = a.ports;
  req.ifname = a.ifname;
  auto again = attach(self, req);
  if (!again)
    st.log->error("re-attach {}: {}", a.owner, render(again.error()));
}

/// What host-local leased to an attachment, as a CNI result (null if nothing): a crash in
/// the middle of ADD left no result, and the firewall plugin's DEL finds its rules only by
/// the addresses in prevResult.
json leased_result(self_ptr self, const net_attachment& a) {
  auto& st = self->state;
  auto n = st.networks.find(a.network);
  if (n == st.networks.end())
    return json{};
  auto& subnet = n->second.spec.subnet;
  auto prefix = subnet.substr(subnet.find('/') + 1);
  auto id = owner_id(a.owner);
  json ips = json::array();
  std::error_code ec;
  for (auto& e : fs::directory_iterator{st.config.state_dir + "/network/ipam/" + a.network, ec}) {
    std::ifstream in{e.path()};
    std::string holder; // "<container id>\r\n<ifname>" (or only the id)
    std::getline(in, holder);
    if (!holder.empty() && holder.back() == '\r')
      holder.pop_back();
    if (holder == id)
      ips.push_back({{"address", e.path().filename().string() + "/" + prefix}});
  }
  if (ips.empty())
    return json{};
  return {{"cniVersion", "1.0.0"}, {"ips", ips}};
}

/// Brings the records, the conflists and the kernel back in line after a (re)start.
void reconcile(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  if (auto nets = st.db->load_all<network_spec>(kind_network, dropped)) {
    for (auto& [r, spec] : *nets) {
      auto opts = parse_options(spec.options);
      if (!opts) {
        st.log->error("network {}: {}; dropped", spec.name, render(opts.error()));
        st.db->erase(kind_network, r.key);
        continue;
      }
      auto& rec = st.networks[spec.name];
      rec.conflist = make_conflist(spec, *opts, st.config.state_dir + "/network/ipam");
      rec.spec = std::move(spec);
      if (auto err = write_conflist(conflist_path(self, rec.spec.name), rec.conflist))
        st.log->error("{}", render(err));
    }
  }
  // Conflists of networks whose removal a crash cut short after the record went.
  std::error_code ec;
  for (auto& e : fs::directory_iterator{st.config.state_dir + "/network", ec})
    if (e.path().extension() == ".conflist" && !st.networks.count(e.path().stem().string()))
      fs::remove(e.path(), ec);
  if (st.networks.count(st.config.default_network) == 0) {
    network_spec spec;
    spec.name = st.config.default_network;
    spec.subnet = st.config.default_subnet;
    if (auto made = create(self, spec); !made)
      st.log->error("default network {}: {}", spec.name, render(made.error()));
  }
  if (auto atts = st.db->load_all<attach_row>(kind_attach, dropped)) {
    for (auto& [r, row] : *atts) {
      json result;
      if (!row.result.empty())
        result = json::parse(row.result, nullptr, false);
      if (r.state != "attached") {
        // A crash in the middle of ADD: undo whatever part of it happened.
        if (result.is_discarded() || result.is_null())
          result = leased_result(self, row.info);
        // Killed between creating our netns file and binding the namespace onto it (or
        // after a reboot): a plain file, which the plugins' DEL refuses ("unknown FS
        // magic"). Without it they release what they hold and skip the namespace.
        if (row.info.netns_owned && !is_netns(row.info.netns_path))
          remove_netns(row.info.netns_path);
        if (auto err = undo_attachment(self, row.info, result))
          st.log->error("clean up half-made attachment of {}: {}", row.info.owner, render(err));
        else
          st.log->warn("cleaned up half-made attachment of {}", row.info.owner);
        continue;
      }
      if (row.info.netns_owned && !is_netns(row.info.netns_path)) {
        readd(self, row.info, result.is_discarded() ? json{} : result);
        continue;
      }
      st.attachments[row.info.owner] = {row.info, result.is_discarded() ? json{} : result};
    }
  }
  if (auto taps = st.db->load_all<attach_row>(kind_tap, dropped)) {
    for (auto& [r, row] : *taps) {
      auto& a = row.info;
      if (r.state != "attached") {
        if (auto err = undo_tap(self, a))
          st.log->error("clean up half-made tap of {}: {}", a.owner, render(err));
        else
          st.log->warn("cleaned up half-made tap of {}", a.owner);
        continue;
      }
      auto n = st.networks.find(a.network);
      if (n != st.networks.end()
          && (!link_exists(a.ifname)
              || master_of(a.ifname) != static_cast<int>(::if_nametoindex(n->second.spec.bridge.c_str())))) {
        // After a reboot (or someone deleted it): the lease is on disk, the link is not.
        st.log->warn("tap {} of {} is gone or off its bridge; making it again", a.ifname, a.owner);
        if (auto err = make_tap(self, a))
          st.log->error("re-make tap {} of {}: {}", a.ifname, a.owner, render(err));
      }
      json result;
      if (!row.result.empty())
        result = json::parse(row.result, nullptr, false);
      st.taps[a.owner] = {a, result.is_discarded() ? json{} : result};
    }
  }
  for (auto& k : dropped)
    st.log->error("state.db: unreadable network record {}; quarantined (cyto health)", k);
}

} // namespace

std::string network_config::validate() const {
  if (state_dir.empty())
    return "no state dir";
  if (auto p = parse_subnet(subnet_pool); !p)
    return "network.subnet_pool: " + context_of(p.error());
  else if (subnet_size < p->prefix || subnet_size > 30)
    return "network.subnet_size: /" + std::to_string(subnet_size) + " does not fit in "
           + subnet_pool;
  if (auto d = parse_subnet(default_subnet); !d)
    return "network.default_subnet: " + context_of(d.error());
  if (default_network.empty())
    return "network.default_network: empty";
  return {};
}

network_actor::behavior_type network(self_ptr self, network_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("network");
  auto fail = [&](caf::error cause) -> network_actor::behavior_type {
    st.log->error("network unavailable: {}", render(cause));
    auto why = make_error(errc::unavailable, "network: " + context_of(cause));
    return {
      [why](create_atom, network_spec&) -> caf::result<network_info> { return why; },
      [why](delete_atom, std::string&) -> caf::result<void> { return why; },
      [why](list_atom) -> caf::result<std::vector<network_info>> { return why; },
      [why](get_atom, std::string&) -> caf::result<network_info> { return why; },
      [why](attach_atom, attach_request&) -> caf::result<net_attachment> { return why; },
      [why](attach_atom, tap_request&) -> caf::result<net_attachment> { return why; },
      [why](detach_atom, std::string&) -> caf::result<void> { return why; },
      [why](check_atom, std::string&) -> caf::result<net_attachment> { return why; },
    };
  };
  std::error_code ec;
  for (auto* sub : {"/network", "/netns"}) {
    fs::create_directories(st.config.state_dir + sub, ec);
    if (ec)
      return fail(make_error(errc::internal, "create " + st.config.state_dir + sub + ": "
                                               + ec.message()));
  }
  auto db = store::state_db::open(st.config.state_dir + "/state.db");
  if (!db)
    return fail(db.error());
  st.db = std::move(*db);
  reconcile(self);
  st.log->info("network ready: {} networks, {} attachments, plugins in {}", st.networks.size(),
               st.attachments.size(), st.config.plugin_dirs.empty() ? "-" : st.config.plugin_dirs.front());
  return {
    [self](create_atom, network_spec& spec) -> caf::result<network_info> {
      auto r = create(self, std::move(spec));
      if (!r)
        return std::move(r.error());
      return std::move(*r);
    },
    [self](delete_atom, std::string& name) -> caf::result<void> { return remove(self, name); },
    [self](list_atom) {
      std::vector<network_info> out;
      for (auto& [name, n] : self->state.networks)
        out.push_back(info_of(self, n));
      return out;
    },
    [self](get_atom, std::string& name) -> caf::result<network_info> {
      auto n = self->state.networks.find(name);
      if (n == self->state.networks.end())
        return make_error(errc::not_found, "network " + name + " does not exist");
      return info_of(self, n->second);
    },
    [self](attach_atom, attach_request& req) -> caf::result<net_attachment> {
      auto r = attach(self, std::move(req));
      if (!r)
        return std::move(r.error());
      return std::move(*r);
    },
    [self](attach_atom, tap_request& req) -> caf::result<net_attachment> {
      auto r = attach_tap(self, std::move(req));
      if (!r)
        return std::move(r.error());
      return std::move(*r);
    },
    [self](detach_atom, std::string& owner) -> caf::result<void> { return detach(self, owner); },
    [self](check_atom, std::string& owner) -> caf::result<net_attachment> {
      auto& st = self->state;
      if (auto t = st.taps.find(owner); t != st.taps.end()) {
        auto& a = t->second.info;
        auto n = st.networks.find(a.network);
        if (n == st.networks.end())
          return make_error(errc::not_found, "network " + a.network + " is gone");
        if (!link_exists(a.ifname))
          return make_error(errc::not_found, "tap " + a.ifname + " of " + owner + " is gone");
        if (master_of(a.ifname) != static_cast<int>(::if_nametoindex(n->second.spec.bridge.c_str())))
          return make_error(errc::failed_precondition, "tap " + a.ifname + " of " + owner +
                                                           " is not on bridge " +
                                                           n->second.spec.bridge);
        return a;
      }
      auto i = st.attachments.find(owner);
      if (i == st.attachments.end())
        return make_error(errc::not_found, owner + " is not attached to any network");
      auto n = st.networks.find(i->second.info.network);
      if (n == st.networks.end())
        return make_error(errc::not_found, "network " + i->second.info.network + " is gone");
      if (auto err = cni_check(n->second.conflist, target_of(self, i->second.info),
                               i->second.result))
        return err;
      return i->second.info;
    },
  };
}

} // namespace cyto::network
