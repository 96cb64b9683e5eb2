#pragma once
// Per-identity authorization for the TCP gateway: a Cap'n Proto membrane around the
// Node capability a TLS peer receives. Every call that enters it (on Node, and on every
// service capability handed out through it, pipelined or not) is named "service.method"
// from the schema and checked against the access policy; the Server classes themselves
// stay unaware. Node's own methods (services, and the accessors that hand out a service)
// are open to every authenticated peer: a service they hand out checks each call.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <capnp/capability.h>

#include "services/access_policy.hpp"

namespace cyto::services {

/// "service.method" of a call on a service interface (e.g. "cells.free"); nullopt for
/// Node's methods and for interfaces a client implements (sinks).
std::optional<std::string> verb_of(uint64_t interface_id, uint16_t method_id);

/// Whether `service.method` exists ("*" as method: any method of a known service).
bool known_verb(std::string_view service, std::string_view method);

/// `node` as `identity` may use it: a call `policy` does not allow fails with
/// "cyto.permission_denied: <identity> may not <service.method>". `policy` must outlive
/// the returned capability (the gateway owns it and drops connections first).
capnp::Capability::Client authorize(capnp::Capability::Client node, std::string identity,
                                    const access_policy& policy);

} // namespace cyto::services
