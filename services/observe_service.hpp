#pragma once

#include <cstdint>
#include <unordered_map>

#include <kj/memory.h>

#include "bus/interfaces.hpp"
#include "schema/observe.capnp.h"
#include "services/bridge.hpp"

namespace cyto::services {

/// One streaming call of ObserveService, fed with the batches of its subscription.
class observe_stream {
public:
  virtual ~observe_stream() noexcept(false) = default;
  /// A batch (log_batch, stats_batch, output_batch or event_batch) for this stream.
  virtual void on_message(caf::message& msg) = 0;
  /// The same with the batch's sender (a stream whose credit goes back to it, not to the
  /// observe actor: a container run's output relay).
  virtual void on_batch(const caf::strong_actor_ptr& sender, caf::message& msg) {
    (void)sender;
    on_message(msg);
  }
};

/// Sends an output batch's lines (and its dropped count) to `sink`.
kj::Promise<void> send_lines(schema::OutputSink::Client& sink, const output_batch& b);

/// Routes the observe actor's batches arriving through the bridge to the stream that
/// asked for them. One per gateway; lives on the kj thread.
class stream_router {
public:
  explicit stream_router(bridge& br);

  /// Handles one message pushed through the bridge; returns false if not a batch.
  bool route(const caf::strong_actor_ptr& sender, caf::message& msg);

  void add(uint64_t subscription, observe_stream* stream);
  void remove(uint64_t subscription);

  /// Live streams.
  size_t size() const noexcept {
    return streams_.size();
  }

private:
  bridge& bridge_;
  std::unordered_map<uint64_t, observe_stream*> streams_;
};

/// ObserveService, backed by the observe actor.
kj::Own<schema::Observe::Server> new_observe_service(bridge& br, stream_router& router,
                                                     observe_actor observe);

} // namespace cyto::services
