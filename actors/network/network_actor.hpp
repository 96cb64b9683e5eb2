#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include "actors/store/state_db.hpp"
#include "bus/interfaces.hpp"

namespace cyto::network {

/// What the network actor is told at spawn.
struct network_config {
  /// state.db, network/ (conflists) and netns/ live here.
  std::string state_dir;
  /// Directories searched for CNI plugin binaries (CNI_PATH).
  std::vector<std::string> plugin_dirs{"/usr/lib/cni", "/opt/cni/bin"};
  /// Subnets for networks created without one are carved from here.
  std::string subnet_pool = "10.89.0.0/16";
  /// Prefix length of those subnets.
  uint32_t subnet_size = 24;
  /// The network used when an attach names none; made at start if missing.
  std::string default_network = "cyto";
  std::string default_subnet = "10.88.0.0/16";

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct network_state {
  static constexpr const char* name = "network";

  struct net_record {
    network_spec spec;
    nlohmann::json conflist;
  };

  struct attach_record {
    net_attachment info;
    /// The CNI result of ADD (prevResult of DEL and CHECK).
    nlohmann::json result;
  };

  network_config config;
  std::unique_ptr<store::state_db> db;
  std::map<std::string, net_record> networks;
  std::map<std::string, attach_record> attachments;
  /// Tap devices of VMs on a network's bridge (record kind "nettap"), by owner.
  std::map<std::string, attach_record> taps;
  std::shared_ptr<spdlog::logger> log;
};

/// The network actor. It blocks on CNI plugins, so spawn it detached (a thread of its
/// own). Without state.db it answers every call with the reason.
network_actor::behavior_type network(network_actor::stateful_pointer<network_state> self,
                                     network_config config);

} // namespace cyto::network
