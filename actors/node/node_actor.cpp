#include "actors/node/node_actor.hpp"

#include <caf/all.hpp>
#include <unistd.h>

#include "bus/errc.hpp"
#include "bus/logging.hpp"

namespace cyto::node {

std::string node_config::validate() const {
  if (node_name.empty())
    return "node name is empty";
  if (!registry)
    return "no registry";
  return {};
}

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self, node_config config) {
  self->state.config = std::move(config);
  self->state.started = std::chrono::steady_clock::now();
  self->state.log = log::get("node");
  self->state.log->info("node {} up: cgroups={} ebpf={} kvm={} overlayfs={}",
                        self->state.config.node_name,
                        to_string(self->state.config.features.cgroups),
                        self->state.config.features.ebpf, self->state.config.features.kvm,
                        self->state.config.features.overlayfs);
  return {
    [self](discover_atom) {
      auto& cfg = self->state.config;
      auto up = std::chrono::steady_clock::now() - self->state.started;
      return node_info{
        true,
        cfg.version,
        cfg.node_name,
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(up).count()),
        cfg.features,
        static_cast<uint32_t>(getpid()),
      };
    },
    [self](health_atom) -> caf::result<health_report> {
      auto rp = self->make_response_promise<health_report>();
      self->request(self->state.config.registry, std::chrono::seconds{1}, health_atom::value)
        .then(
          [rp](std::vector<std::string>& problems) mutable {
            rp.deliver(health_report{problems.empty(), std::move(problems)});
          },
          [rp](caf::error& err) mutable {
            rp.deliver(health_report{false, {"registry: " + render(err)}});
          });
      return rp;
    },
  };
}

} // namespace cyto::node
