#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/containers.capnp.h"
#include "services/bridge.hpp"
#include "services/images_service.hpp"
#include "services/observe_service.hpp"

namespace cyto::services {

/// ContainerService, backed by the containers actor. A run's output comes through `router`
/// and its pull progress through `progress`.
kj::Own<schema::Containers::Server> new_containers_service(bridge& br, stream_router& router,
                                                           progress_router& progress,
                                                           containers_actor actor);

/// PodService, backed by the containers actor.
kj::Own<schema::Pods::Server> new_pods_service(bridge& br, containers_actor actor);

} // namespace cyto::services
