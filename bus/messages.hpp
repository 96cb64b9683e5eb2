#pragma once
// Plain structs that travel on the bus. Each has inspect() so it can cross nodes;
// none of them knows about Cap'n Proto (the gateway converts).

#include <cstdint>
#include <string>
#include <vector>

#include <caf/message.hpp>
#include <caf/meta/type_name.hpp>

namespace cyto {

// -- topics ------------------------------------------------------------------

/// Well-known topic names.
namespace topic {
/// Daemon log entries (body: log_entry).
inline constexpr const char* daemon_log = "daemon.log";
/// Executables that ended (body: process_exited).
inline constexpr const char* process_exited = "process.exited";
/// Lines executables write to stdout and stderr (body: process_output).
inline constexpr const char* process_output = "process.output";
/// Bytes of each blob while images are pulled (body: image_progress).
inline constexpr const char* image_progress = "image.progress";
/// Executables that started or were re-adopted (body: executable_info).
inline constexpr const char* process_started = "process.started";
} // namespace topic

/// What a topic hands a subscriber: a batch of events, preceded by a count of
/// events dropped for this subscriber since its previous batch.
struct topic_batch {
  uint64_t subscription = 0;
  std::string topic;
  std::vector<caf::message> events;
  /// Events dropped because this subscriber fell behind, just before `events`.
  uint64_t dropped = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, topic_batch& x) {
  return f(caf::meta::type_name("topic_batch"), x.subscription, x.topic, x.events, x.dropped);
}

/// Counters of the topic actor.
struct topic_stats {
  uint64_t topics = 0;
  uint64_t subscribers = 0;
  uint64_t published = 0;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, topic_stats& x) {
  return f(caf::meta::type_name("topic_stats"), x.topics, x.subscribers, x.published,
           x.delivered, x.dropped);
}

// -- logs --------------------------------------------------------------------

/// Severity, ordered. Values match schema/observe.capnp's LogLevel.
enum class log_level : uint8_t { trace = 0, debug, info, warn, error, critical };

std::string to_string(log_level x);

/// One line of the daemon's own log.
struct log_entry {
  int64_t unix_nanos = 0;
  log_level level = log_level::info;
  std::string logger;
  std::string message;
  /// Daemon-wide sequence number; a gap means entries were dropped.
  uint64_t seq = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, log_entry& x) {
  return f(caf::meta::type_name("log_entry"), x.unix_nanos, x.level, x.logger, x.message, x.seq);
}

/// What a log subscriber receives.
struct log_batch {
  uint64_t subscription = 0;
  std::vector<log_entry> entries;
  /// Entries dropped for this subscriber just before `entries`.
  uint64_t dropped = 0;
  /// No more batches follow (history sent and not following).
  bool end = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, log_batch& x) {
  return f(caf::meta::type_name("log_batch"), x.subscription, x.entries, x.dropped, x.end);
}

/// Counters of the observe actor.
struct observe_stats {
  uint64_t log_subscribers = 0;
  uint64_t log_entries_seen = 0;
  uint64_t log_entries_dropped = 0;
  uint64_t stats_subscribers = 0;
  uint64_t output_subscribers = 0;
  uint64_t event_subscribers = 0;
  /// Kernel events: written to the ring buffer, lost there (buffer full), read from it,
  /// lost between the reader and the actor (actor behind), seen by the actor, handed to
  /// subscribers, lost in subscriber queues.
  uint64_t events_submitted = 0;
  uint64_t events_lost_ringbuf = 0;
  uint64_t events_consumed = 0;
  uint64_t events_lost_actor = 0;
  uint64_t events_seen = 0;
  uint64_t events_delivered = 0;
  uint64_t events_lost_subscribers = 0;
  /// Whether kernel events flow; if not, why.
  bool events_available = false;
  std::string events_unavailable;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, observe_stats& x) {
  return f(caf::meta::type_name("observe_stats"), x.log_subscribers, x.log_entries_seen,
           x.log_entries_dropped, x.stats_subscribers, x.output_subscribers,
           x.event_subscribers, x.events_submitted, x.events_lost_ringbuf, x.events_consumed,
           x.events_lost_actor, x.events_seen, x.events_delivered, x.events_lost_subscribers,
           x.events_available, x.events_unavailable);
}

// -- node / discovery ----------------------------------------------------------

/// How cgroups are mounted on this host. Values match schema/discovery.capnp.
enum class cgroup_mode : uint8_t { unknown = 0, v1, hybrid, v2 };

std::string to_string(cgroup_mode x);

/// What this host supports, detected once at start.
struct host_features {
  cgroup_mode cgroups = cgroup_mode::unknown;
  std::vector<std::string> cgroup_controllers;
  std::vector<std::string> namespaces;
  /// The eBPF event programs (ebpf/) load here; ebpf_detail says why not.
  bool ebpf = false;
  bool btf = false;
  bool tracefs = false;
  std::string ebpf_detail;
  /// /dev/kvm exists and opens read-write (it may be paravirtual: see vm_accel).
  bool kvm = false;
  /// The accelerator VMs get ("kvm" only when hardware-backed, else "tcg") and why.
  std::string vm_accel;
  std::string vm_accel_reason;
  bool overlayfs = false;
  bool pidfd = false;
  std::string kernel_release;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, host_features& x) {
  return f(caf::meta::type_name("host_features"), x.cgroups, x.cgroup_controllers, x.namespaces,
           x.ebpf, x.btf, x.tracefs, x.ebpf_detail, x.kvm, x.vm_accel, x.vm_accel_reason,
           x.overlayfs, x.pidfd, x.kernel_release);
}

/// The answer to discover.
struct node_info {
  bool healthy = false;
  std::string version;
  std::string node_name;
  uint64_t uptime_nanos = 0;
  host_features features;
  uint32_t pid = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.healthy, x.version, x.node_name, x.uptime_nanos,
           x.features, x.pid);
}

/// The answer to health.
struct health_report {
  bool healthy = false;
  std::vector<std::string> problems;
  /// What an operator should look at though every actor answers: state records moved to
  /// quarantine, stray cgroups kept under the daemon's root.
  std::vector<std::string> notices;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, health_report& x) {
  return f(caf::meta::type_name("health_report"), x.healthy, x.problems, x.notices);
}

} // namespace cyto
