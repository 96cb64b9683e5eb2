#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/response_promise.hpp>

#include "bus/interfaces.hpp"
#include "bus/outbox.hpp"

namespace cyto::bus {

/// Configuration of the topic actor.
struct topics_config {
  /// Largest queue a subscriber may ask for.
  uint32_t max_capacity = 65536;
  /// Most events in one batch.
  uint32_t max_batch = 256;
};

/// Answers a receipted publish once the last copy of its event is gone (each queued,
/// or sent and not yet consumed by an acknowledging subscriber, holds one reference).
struct topic_receipt {
  caf::response_promise promise;
  explicit topic_receipt(caf::response_promise p) : promise(std::move(p)) {
  }
  topic_receipt(const topic_receipt&) = delete;
  topic_receipt& operator=(const topic_receipt&) = delete;
  ~topic_receipt();
};

/// State of the topic actor.
struct topics_state {
  static constexpr const char* name = "topics";

  struct queued {
    caf::message event;
    /// Set for a receipted publish.
    std::shared_ptr<topic_receipt> receipt;
  };

  struct subscription {
    std::string topic;
    topic_subscriber_actor who;
    outbox<queued> box;
    /// Acknowledges: what was sent and not yet granted back holds its receipt.
    bool acks = false;
    /// One entry per event sent and not yet granted back (null: no receipt), oldest first.
    std::deque<std::shared_ptr<topic_receipt>> unconsumed;
  };

  topics_config config;
  uint64_t next_id = 1;
  std::unordered_map<uint64_t, subscription> subscriptions;
  /// topic -> subscription ids
  std::unordered_map<std::string, std::vector<uint64_t>> by_topic;
  bool flush_scheduled = false;
  topic_stats stats;
};

/// The topic actor as it is spawned: topic_actor (what everyone else holds) and the
/// message only it sends itself (see bus/internal.hpp).
using topics_private = topic_actor::extend<
  /// Delivers what queued since the last flush, in batches.
  caf::reacts_to<flush_atom>>;

/// The topic actor: publish/subscribe with bounded per-subscriber queues. Spawn it, then
/// hand out the topic_actor it converts to.
topics_private::behavior_type topics(topics_private::stateful_pointer<topics_state> self,
                                     topics_config config);

} // namespace cyto::bus
