#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "bus/interfaces.hpp"

namespace cyto::node {

/// What the node actor is told at spawn.
struct node_config {
  std::string node_name;
  std::string version;
  host_features features;
  /// Asked by `health` which actors died.
  registry_actor registry;
  /// Asked by `health` for stray cgroups (may be null).
  cells_actor cells;
  /// SQLite files whose quarantined records `health` lists (state.db, images.db).
  std::vector<std::string> state_dbs;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct node_state {
  static constexpr const char* name = "node";
  node_config config;
  std::chrono::steady_clock::time_point started;
  std::shared_ptr<spdlog::logger> log;
};

/// The node actor: identity, uptime, host features, health.
node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self, node_config config);

} // namespace cyto::node
