#pragma once

#include <map>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "actors/store/state_db.hpp"
#include "bus/interfaces.hpp"

namespace cyto::volumes {

/// What the volumes actor is told at spawn.
struct volumes_config {
  /// state.db and volumes/<name>/_data live here.
  std::string state_dir;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct volumes_state {
  static constexpr const char* name = "volumes";

  volumes_config config;
  std::unique_ptr<store::state_db> db;
  /// Every volume by name, its users (claims) included.
  std::map<std::string, volume_info> volumes;
  std::shared_ptr<spdlog::logger> log;
};

/// The volumes actor. Removing a volume deletes its data on the disk: spawn it detached
/// (a thread of its own). Without state.db it answers every call with the reason.
volumes_actor::behavior_type volumes(volumes_actor::stateful_pointer<volumes_state> self,
                                     volumes_config config);

/// Whether `name` may name a volume: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}. invalid_argument
/// with the rule otherwise.
caf::error check_volume_name(const std::string& name);

} // namespace cyto::volumes
