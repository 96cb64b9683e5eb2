#pragma once

#include <caf/actor_system_config.hpp>

namespace cyto::bus {

/// Announces every bus message type and the cyto error category to CAF.
/// Call once on the config before the actor system starts (daemon and tests alike).
void add_types(caf::actor_system_config& cfg);

} // namespace cyto::bus
