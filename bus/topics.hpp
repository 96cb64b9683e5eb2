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

/// The topic actor: publish/subscribe with bounded per-subscriber queues.
topic_actor::behavior_type topics(topic_actor::stateful_pointer<topics_state> self,
                                  topics_config config);

} // namespace cyto::bus
