#pragma once

#include <functional>

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/discovery.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// Fills Health.gateway with the figures of the gateway serving the call.
using gateway_stats_fn = std::function<void(schema::GatewayStats::Builder)>;

/// DiscoveryService, backed by the node actor. `stats`: null for another node's.
kj::Own<schema::Discovery::Server> new_discovery_service(bridge& br, node_actor node,
                                                         gateway_stats_fn stats = nullptr);

} // namespace cyto::services
