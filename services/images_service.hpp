#pragma once

#include <cstdint>
#include <unordered_map>

#include <kj/async.h>
#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/images.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// Routes pull progress arriving through the bridge to the client sink of that pull.
/// One per gateway; lives on the kj thread.
class progress_router {
public:
  /// Handles one message pushed through the bridge; returns false if not pull progress.
  bool route(caf::message& msg);
  /// Registers a sink; returns the watch id the images actor tags its progress with.
  uint64_t add(schema::PullSink::Client sink);
  /// Ends a pull's stream once its queued progress calls are done.
  kj::Promise<void> finish(uint64_t watch);
  /// Drops a pull's stream (the pull failed or was cancelled).
  void remove(uint64_t watch);

private:
  struct stream {
    schema::PullSink::Client sink;
    /// The previous progress call: calls on one stream are sent one after another.
    kj::Promise<void> last = kj::READY_NOW;
  };
  uint64_t next_ = 1;
  std::unordered_map<uint64_t, kj::Own<stream>> sinks_;
};

/// Who calls the gateway, for what the images actor records and allows.
struct gateway_caller {
  /// "api:uid:N" (unix socket) or "api:<SPIFFE ID>" (TLS): the owner of its mounts.
  std::string owner = "api:unknown";
  /// Root over the unix socket: may mount outside the state dir when it asks to.
  bool local_root = false;
};

/// ImageService, backed by the images actor.
kj::Own<schema::Images::Server> new_images_service(bridge& br, progress_router& router,
                                                   images_actor images, gateway_caller caller);

} // namespace cyto::services
