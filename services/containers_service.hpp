#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/containers.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// ContainerService, backed by the containers actor.
kj::Own<schema::Containers::Server> new_containers_service(bridge& br, containers_actor actor);

/// PodService, backed by the containers actor.
kj::Own<schema::Pods::Server> new_pods_service(bridge& br, containers_actor actor);

} // namespace cyto::services
