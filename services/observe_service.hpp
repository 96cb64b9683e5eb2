#pragma once

#include <cstdint>
#include <unordered_map>

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/observe.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

class log_stream;

/// Routes log batches arriving through the bridge to the stream that asked for them.
/// One per gateway; lives on the kj thread.
class log_router {
public:
  explicit log_router(bridge& br);

  /// Handles one message pushed through the bridge; returns false if not a log batch.
  bool route(const caf::strong_actor_ptr& sender, caf::message& msg);

  void add(uint64_t subscription, log_stream* stream);
  void remove(uint64_t subscription);

  /// Live streams.
  size_t size() const noexcept {
    return streams_.size();
  }

private:
  bridge& bridge_;
  std::unordered_map<uint64_t, log_stream*> streams_;
};

/// ObserveService, backed by the observe actor.
kj::Own<schema::Observe::Server> new_observe_service(bridge& br, log_router& router,
                                                     observe_actor observe);

} // namespace cyto::services
