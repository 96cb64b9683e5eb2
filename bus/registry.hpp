#pragma once

#include <map>
#include <string>
#include <vector>

#include "bus/interfaces.hpp"

namespace cyto::bus {

/// State of the registry actor: names of this node's services.
struct registry_state {
  static constexpr const char* name = "registry";
  std::map<std::string, caf::strong_actor_ptr> entries;
  /// Actors that terminated while registered, as human lines.
  std::vector<std::string> problems;
};

/// The registry: name -> handle, monitoring what it holds.
registry_actor::behavior_type registry(registry_actor::stateful_pointer<registry_state> self);

} // namespace cyto::bus
