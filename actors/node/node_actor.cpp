#include "actors/node/node_actor.hpp"

#include <ctime>
#include <memory>

#include <caf/all.hpp>
#include <unistd.h>

#include "actors/store/state_db.hpp"

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

namespace {

/// One line per quarantined record of each file, e.g. "state.db: container 3f2a (schema
/// v1) quarantined at 2026-12-03T12:00:00Z: does not decode as schema v2".
std::vector<std::string> quarantine_notices(const std::vector<std::string>& files) {
  std::vector<std::string> out;
  for (auto& path : files) {
    if (::access(path.c_str(), F_OK) != 0)
      continue;
    auto name = path.substr(path.rfind('/') + 1);
    auto db = store::state_db::open(path);
    if (!db) {
      out.push_back(name + ": cannot read its quarantine: " + render(db.error()));
      continue;
    }
    auto rows = (*db)->quarantined();
    if (!rows) {
      out.push_back(name + ": cannot read its quarantine: " + render(rows.error()));
      continue;
    }
    for (auto& q : *rows) {
      std::time_t t = static_cast<std::time_t>(q.unix_nanos / 1000000000);
      char when[32];
      std::strftime(when, sizeof when, "%FT%TZ", std::gmtime(&t));
      out.push_back(name + ": " + q.kind + " " + q.key + " (schema v" + std::to_string(q.version)
                    + ", state " + q.state + ") quarantined at " + when + ": " + q.reason);
    }
  }
  return out;
}

} // namespace

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
      auto report = std::make_shared<health_report>();
      report->notices = quarantine_notices(self->state.config.state_dbs);
      // Registry first, then the cells actor's strays: each answers or is named.
      auto strays = [self, rp, report]() mutable {
        if (!self->state.config.cells) {
          rp.deliver(*report);
          return;
        }
        self->request(self->state.config.cells, std::chrono::seconds{1}, health_atom::value)
          .then(
            [rp, report](std::vector<std::string>& lines) mutable {
              for (auto& l : lines)
                report->notices.push_back(std::move(l));
              rp.deliver(*report);
            },
            [rp, report](caf::error& err) mutable {
              report->notices.push_back("cells: stray cgroups unknown: " + render(err));
              rp.deliver(*report);
            });
      };
      self->request(self->state.config.registry, std::chrono::seconds{1}, health_atom::value)
        .then(
          [report, strays](std::vector<std::string>& problems) mutable {
            report->healthy = problems.empty();
            report->problems = std::move(problems);
            strays();
          },
          [report, strays](caf::error& err) mutable {
            report->healthy = false;
            report->problems = {"registry: " + render(err)};
            strays();
          });
      return rp;
    },
  };
}

} // namespace cyto::node
