#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <spdlog/logger.h>

#include "actors/observe/event_source.hpp"
#include "actors/observe/fanout.hpp"
#include "bus/interfaces.hpp"
#include "bus/outbox.hpp"
#include "ebpf/probe.hpp"

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
  /// Queue per event subscriber (events are small and come in bursts).
  uint32_t event_queue_capacity = 65536;
  uint32_t event_initial_credit = 8192;
  uint32_t event_max_batch = 1024;
  /// Where daemon log entries, process output and starts are published.
  topic_actor topics;
  /// Answers stats and cell lookups (absent: stats and cell filters are unavailable).
  cells_actor cells;
  /// The kernel event probe, if it could be opened (shared: the config is copied at
  /// spawn; the actor's event source is its only user).
  std::shared_ptr<ebpf::probe> probe;
  /// Why there is no probe.
  std::string probe_error = "this build has no eBPF probe";
  /// The cells' cgroup subtree name, to map processes to cells.
  std::string cgroup_root = "cyto";

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

  struct stats_subscription {
    std::string cell;
    uint64_t interval_ms;
    stats_sink_actor sink;
    /// The previous reading of each cell, for rates.
    std::unordered_map<std::string, cell_usage> previous;
    outbox<stats_batch> box;
    bool waiting = false; // a reading is on its way
  };

  struct output_subscription {
    std::string cell;
    std::string executable;
    uint8_t which;
    bool follow;
    output_sink_actor sink;
    outbox<output_line> box;
    output_filter filter;
    /// The history is being read; live lines wait in `pending`.
    bool loading = true;
    std::vector<process_output> pending;
    /// Bytes in `pending`; past a bound the oldest go, remembered as (stream, offset, lines)
    /// to count as dropped unless the history covers them.
    size_t pending_bytes = 0;
    std::vector<std::tuple<int32_t, uint64_t, uint64_t>> pending_lost;
    /// The run whose files were read, and per stream where its live lines continue.
    uint32_t pid = 0;
    uint64_t next_offset[3] = {0, 0, 0};
    /// Nothing more will be added: end once the queue is drained.
    bool closing = false;
  };

  struct event_subscription {
    event_sink_actor sink;
  };

  ~observe_state();

  observe_config config;
  /// A trim_atom is on its way (one per burst of ended subscriptions).
  bool trim_pending = false;
  std::deque<log_entry> history;
  std::unordered_map<uint64_t, log_subscription> subscriptions;
  std::unordered_map<uint64_t, stats_subscription> stats_subs;
  std::unordered_map<uint64_t, output_subscription> output_subs;
  std::unordered_map<uint64_t, event_subscription> event_subs;
  event_fanout fanout;
  /// Host pid of each running executable's main process -> (cell, executable).
  std::unordered_map<uint32_t, std::pair<std::string, std::string>> executables;
  /// Processes an executable started (seen exec'ing) -> the executable's main pid.
  std::unordered_map<uint32_t, uint32_t> descendants;
  std::unique_ptr<event_source> source;
  uint64_t next_id = 1;
  bool flush_scheduled = false;
  observe_stats stats;
  std::shared_ptr<spdlog::logger> log;
};

/// The observe actor as it is spawned: observe_actor (what everyone else holds) and the
/// messages only it, its history readers and its event source thread send it, as itself
/// (see bus/internal.hpp).
using observe_private = observe_actor::extend<
  /// A batch of kernel events from the event source.
  caf::reacts_to<events_atom, std::vector<observed_event>>,
  /// Time for the next sample of a stats subscription.
  caf::reacts_to<tick_atom, uint64_t>,
  /// The history reader of an output subscription is done.
  caf::reacts_to<history_atom, uint64_t, output_history>,
  /// Delivers queued entries to subscribers with credit.
  caf::reacts_to<flush_atom>,
  /// A while after subscriptions ended, hands freed heap back to the kernel.
  caf::reacts_to<trim_atom>>;

/// The observe actor: fans daemon logs, cell stats, executables' output and kernel
/// events out to subscribers with flow control. Spawn it, then hand out the
/// observe_actor it converts to.
observe_private::behavior_type observe(observe_private::stateful_pointer<observe_state> self,
                                       observe_config config);

} // namespace cyto::observe
