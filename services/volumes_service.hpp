#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/volumes.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// VolumeService, backed by the volumes actor.
kj::Own<schema::Volumes::Server> new_volumes_service(bridge& br, volumes_actor volumes);

} // namespace cyto::services
