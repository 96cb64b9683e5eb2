#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

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

/// State of the topic actor.
struct topics_state {
  static constexpr const char* name = "topics";

  struct subscription {
    std::string topic;
    topic_subscriber_actor who;
    outbox<caf::message> box;
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
