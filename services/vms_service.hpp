#pragma once

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/vms.capnp.h"
#include "services/bridge.hpp"
#include "services/observe_service.hpp"

namespace cyto::services {

/// VmService, backed by the vms actor; `console` streams through the observe actor
/// (looked up in `registry`), as the output of the VM's QEMU executable.
kj::Own<schema::Vms::Server> new_vms_service(bridge& br, stream_router& router,
                                             registry_actor registry, vms_actor vms);

} // namespace cyto::services
