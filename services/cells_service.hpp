#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/cells.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// A cell (name, limits, isolation) from its capnp form and back; the containers
/// service uses them for container and pod limits.
cell_spec cell_from_capnp(schema::Cell::Reader c);
void cell_to_capnp(const cell_spec& s, schema::Cell::Builder c);

/// CellService, backed by the cells actor.
kj::Own<schema::Cells::Server> new_cells_service(bridge& br, cells_actor cells);

} // namespace cyto::services
