#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <unordered_map>

#include <spdlog/logger.h>

#include "bus/interfaces.hpp"
#include "bus/outbox.hpp"

namespace cyto::observe {

/// What the observe actor is told at spawn.
struct observe_config {
  /// Recent log entries kept for `tail`.
  uint32_t log_history = 1000;
  /// Queue per log subscriber before it starts dropping.
  uint32_t queue_capacity = 1024;
  /// Entries a new subscriber may receive before it grants more.
  uint32_t initial_credit = 256;
  /// Most entries in one batch to a subscriber.
  uint32_t max_batch = 128;
  /// Where daemon log entries are published.
  topic_actor topics;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct observe_state {
  static constexpr const char* name = "observe";

  struct log_subscription {
    log_level level;
    bool follow;
    log_sink_actor sink;
    outbox<log_entry> box;
  };

  observe_config config;
  std::deque<log_entry> history;
  std::unordered_map<uint64_t, log_subscription> subscriptions;
  uint64_t next_id = 1;
  bool flush_scheduled = false;
  observe_stats stats;
  std::shared_ptr<spdlog::logger> log;
};

/// The observe actor: fans daemon log entries out to subscribers with flow control.
observe_actor::behavior_type observe(observe_actor::stateful_pointer<observe_state> self,
                                     observe_config config);

} // namespace cyto::observe
