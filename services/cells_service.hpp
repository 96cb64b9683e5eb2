#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/cells.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// CellService, backed by the cells actor.
kj::Own<schema::Cells::Server> new_cells_service(bridge& br, cells_actor cells);

} // namespace cyto::services
