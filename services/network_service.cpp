#include "services/network_service.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

void fill_texts(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& in) {
  for (uint i = 0; i < in.size(); ++i)
    out.set(i, in[i]);
}

void to_capnp(const net_attachment& a, schema::Attachment::Builder out) {
  out.setOwner(a.owner);
  out.setNetwork(a.network);
  out.setNetnsPath(a.netns_path);
  out.setNetnsOwned(a.netns_owned);
  out.setIfname(a.ifname);
  fill_texts(out.initIps(a.ips.size()), a.ips);
  out.setGateway(a.gateway);
  out.setMac(a.mac);
  fill_texts(out.initDnsServers(a.dns_servers.size()), a.dns_servers);
  fill_texts(out.initDnsSearch(a.dns_search.size()), a.dns_search);
  services::to_capnp(a.ports, out.initPorts(a.ports.size()));
}

void to_capnp(const network_info& n, schema::NetworkInfo::Builder out) {
  out.setName(n.spec.name);
  out.setSubnet(n.spec.subnet);
  out.setGateway(n.spec.gateway);
  out.setBridge(n.spec.bridge);
  fill_texts(out.initOptions(n.spec.options.size()), n.spec.options);
  out.setConflistPath(n.conflist_path);
  out.setIsDefault(n.is_default);
  auto atts = out.initAttachments(n.attachments.size());
  for (uint i = 0; i < n.attachments.size(); ++i)
    to_capnp(n.attachments[i], atts[i]);
}

class network_service final : public cancellable<schema::Networks::Server> {
public:
  network_service(bridge& br, network_actor network) : bridge_(br), network_(std::move(network)) {
  }

  kj::Promise<void> create(CreateContext context) override {
    auto p = context.getParams();
    network_spec spec;
    spec.name = p.getName();
    spec.subnet = p.getSubnet();
    spec.gateway = p.getGateway();
    for (auto o : p.getOptions())
      spec.options.emplace_back(o.cStr());
    return bridge_.request(network_, create_atom::value, std::move(spec))
      .then([context](network_info info) mutable {
        to_capnp(info, context.getResults().initInfo());
      });
  }

  kj::Promise<void> remove(RemoveContext context) override {
    return bridge_.request(network_, delete_atom::value,
                           std::string{context.getParams().getName()});
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(network_, list_atom::value)
      .then([context](std::vector<network_info> all) mutable {
        auto out = context.getResults().initNetworks(all.size());
        for (uint i = 0; i < all.size(); ++i)
          to_capnp(all[i], out[i]);
      });
  }

  kj::Promise<void> inspect(InspectContext context) override {
    return bridge_.request(network_, get_atom::value, std::string{context.getParams().getName()})
      .then([context](network_info info) mutable {
        to_capnp(info, context.getResults().initInfo());
      });
  }

  kj::Promise<void> check(CheckContext context) override {
    return bridge_.request(network_, check_atom::value, std::string{context.getParams().getOwner()})
      .then([context](net_attachment a) mutable {
        to_capnp(a, context.getResults().initAttachment());
      });
  }

private:
  bridge& bridge_;
  network_actor network_;
};

} // namespace

std::vector<port_mapping> from_capnp(capnp::List<schema::PortMapping>::Reader ports) {
  std::vector<port_mapping> out;
  for (auto p : ports)
    out.push_back({p.getHostPort(), p.getContainerPort(), p.getProtocol(), p.getHostIp()});
  return out;
}

void to_capnp(const std::vector<port_mapping>& ports,
              capnp::List<schema::PortMapping>::Builder out) {
  for (uint i = 0; i < ports.size(); ++i) {
    out[i].setHostPort(ports[i].host_port);
    out[i].setContainerPort(ports[i].container_port);
    out[i].setProtocol(ports[i].protocol);
    out[i].setHostIp(ports[i].host_ip);
  }
}

kj::Own<schema::Networks::Server> new_network_service(bridge& br, network_actor network) {
  return kj::heap<network_service>(br, std::move(network));
}

} // namespace cyto::services
