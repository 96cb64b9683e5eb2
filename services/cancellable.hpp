#pragma once
// Cap'n Proto 0.9 lets a call run on after its client cancelled it or went away unless
// the server allows cancellation: then the call's promise is dropped, which for us
// means its bridge request is forgotten at once (no pending entry left behind, a late
// answer dropped) and a stream's subscription ends. Every service derives from
// cancellable<schema::X::Server>, which allows it for every call.

#include <cstdint>

#include <capnp/any.h>
#include <capnp/capability.h>

namespace cyto::services {

template <class Server>
class cancellable : public Server {
public:
  capnp::Capability::Server::DispatchCallResult dispatchCall(
    uint64_t interface_id, uint16_t method_id,
    capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer> context) override {
    context.allowCancellation();
    return Server::dispatchCall(interface_id, method_id, context);
  }
};

} // namespace cyto::services
