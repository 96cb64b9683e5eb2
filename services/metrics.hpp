#pragma once
// The Prometheus endpoint (metrics.listen in cytod.toml, off by default): GET /metrics
// answers the text exposition format (version 0.0.4) with each cell's usage (containers
// and VMs are the cells "containers/..." and "vms/...", labelled by kind), workload
// counts, and node-level counters: gateway calls and errors, the event pipeline (topics
// and observe), the node's uptime. It runs on the kj loop and asks the actors through a
// bridge of its own, once per scrape; it keeps no state and no domain logic.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <kj/async-io.h>

#include "bus/interfaces.hpp"
#include "services/bridge.hpp"

namespace cyto::services {

/// What one scrape read; every part may be missing (its actor did not answer).
struct metrics_snapshot {
  std::optional<node_info> node;
  std::optional<std::vector<cell_usage>> cells;
  std::optional<std::vector<container_info>> containers;
  std::optional<std::vector<vm_info>> vms;
  std::optional<std::vector<image_info>> images;
  std::optional<topic_stats> topics;
  std::optional<observe_stats> observe;
  /// The gateway's own counters.
  uint64_t connections_open = 0;
  uint64_t connections_accepted = 0;
  bridge::counters calls;
  /// Sources that failed, with the error text.
  std::map<std::string, std::string> failed;
};

/// The snapshot in the Prometheus text format: HELP and TYPE before each family,
/// `_total` counters, base units (seconds, bytes).
std::string render_metrics(const metrics_snapshot& s);

/// Escapes a label value (backslash, double quote, newline).
std::string escape_label(const std::string& v);

/// "container", "vm", "pod" or "cell": the kind of workload a cell holds, by its name.
std::string cell_kind(const std::string& cell);

/// The actors a scrape asks; a null handle is reported as a failed source.
struct metrics_sources {
  node_actor node;
  cells_actor cells;
  containers_actor containers;
  vms_actor vms;
  images_actor images;
  topic_actor topics;
  observe_actor observe;
  /// Fills the gateway's counters (on the kj thread).
  std::function<void(metrics_snapshot&)> gateway;
};

/// Opens "host:port" for listening (numeric host); throws std::runtime_error
/// "metrics.listen: cannot listen on <addr>: <why>".
int listen_metrics_socket(const std::string& address);

class metrics_server {
public:
  /// Serves GET /metrics on `fd` (from listen_metrics_socket; taken over).
  metrics_server(kj::AsyncIoContext& io, caf::actor_system& sys, int fd, metrics_sources sources);
  ~metrics_server();

  /// One scrape's data, asked in parallel.
  kj::Promise<metrics_snapshot> collect();

private:
  class service;
  kj::AsyncIoContext& io_;
  bridge bridge_;
  metrics_sources sources_;
  kj::Own<kj::ConnectionReceiver> listener_;
  std::unique_ptr<service> service_;
  kj::Promise<void> serving_ = nullptr;
};

} // namespace cyto::services
