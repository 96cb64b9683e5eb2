#include "services/discovery_service.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

schema::CgroupMode to_capnp(cgroup_mode m) {
  switch (m) {
    case cgroup_mode::v1: return schema::CgroupMode::V1;
    case cgroup_mode::hybrid: return schema::CgroupMode::HYBRID;
    case cgroup_mode::v2: return schema::CgroupMode::V2;
    default: return schema::CgroupMode::UNKNOWN;
  }
}

void fill_texts(capnp::List<capnp::Text>::Builder out, const std::vector<std::string>& in) {
  for (uint i = 0; i < in.size(); ++i)
    out.set(i, in[i]);
}

void fill(schema::NodeInfo::Builder out, const node_info& in) {
  out.setHealthy(in.healthy);
  out.setVersion(in.version);
  out.setNodeName(in.node_name);
  out.setUptimeNanos(in.uptime_nanos);
  out.setPid(in.pid);
  auto f = out.initFeatures();
  const auto& hf = in.features;
  f.setCgroupMode(to_capnp(hf.cgroups));
  fill_texts(f.initCgroupControllers(hf.cgroup_controllers.size()), hf.cgroup_controllers);
  fill_texts(f.initNamespaces(hf.namespaces.size()), hf.namespaces);
  f.setEbpf(hf.ebpf);
  f.setBtf(hf.btf);
  f.setTracefs(hf.tracefs);
  f.setEbpfDetail(hf.ebpf_detail);
  f.setKvm(hf.kvm);
  f.setVmAccel(hf.vm_accel);
  f.setVmAccelReason(hf.vm_accel_reason);
  f.setOverlayfs(hf.overlayfs);
  f.setPidfd(hf.pidfd);
  f.setKernelRelease(hf.kernel_release);
}

class discovery_service final : public cancellable<schema::Discovery::Server> {
public:
  discovery_service(bridge& br, node_actor node, gateway_stats_fn stats)
    : bridge_(br), node_(std::move(node)), stats_(std::move(stats)) {
  }

  kj::Promise<void> discover(DiscoverContext context) override {
    return bridge_.request(node_, discover_atom::value).then([context](node_info info) mutable {
      fill(context.getResults().initInfo(), info);
    });
  }

  kj::Promise<void> health(HealthContext context) override {
    context.releaseParams(); // none; so that Health.gateway counts no memory of its own
    return bridge_.request(node_, health_atom::value)
      .then([this, context](health_report r) mutable {
        auto h = context.getResults().initHealth();
        h.setHealthy(r.healthy);
        fill_texts(h.initProblems(r.problems.size()), r.problems);
        fill_texts(h.initNotices(r.notices.size()), r.notices);
        // Read now, on the turn that answers: this call is no longer pending.
        if (stats_)
          stats_(h.initGateway());
      });
  }

private:
  bridge& bridge_;
  node_actor node_;
  gateway_stats_fn stats_;
};

} // namespace

kj::Own<schema::Discovery::Server> new_discovery_service(bridge& br, node_actor node,
                                                         gateway_stats_fn stats) {
  return kj::heap<discovery_service>(br, std::move(node), std::move(stats));
}

} // namespace cyto::services
