#pragma once

#include <vector>

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/network.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// NetworkService, backed by the network actor.
kj::Own<schema::Networks::Server> new_network_service(bridge& br, network_actor network);

/// Port mappings between capnp and the bus (cells and containers take them too).
std::vector<port_mapping> from_capnp(capnp::List<schema::PortMapping>::Reader ports);
void to_capnp(const std::vector<port_mapping>& ports,
              capnp::List<schema::PortMapping>::Builder out);

} // namespace cyto::services
