#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/discovery.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// DiscoveryService, backed by the node actor.
kj::Own<schema::Discovery::Server> new_discovery_service(bridge& br, node_actor node);

} // namespace cyto::services
