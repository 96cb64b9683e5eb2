#pragma once
// Messages of the observe domain beyond the daemon log: cgroup stats samples, workload
// output lines, kernel events (signals, exec, exit, OOM kills) and their filters.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "bus/cells.hpp"

namespace cyto {

// -- stats -------------------------------------------------------------------------

/// One cell's usage and what it means over the sampling interval.
struct cell_stats {
  cell_usage usage;
  /// CPU time used over the interval as a share of one CPU (200 = two CPUs busy).
  double cpu_percent = 0;
  /// The interval the percentage is over (0 for the first sample: no rate yet).
  uint64_t interval_usec = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_stats& x) {
  return f(caf::meta::type_name("cell_stats"), x.usage, x.cpu_percent, x.interval_usec);
}

/// What a stats subscriber receives every interval.
struct stats_batch {
  uint64_t subscription = 0;
  int64_t unix_nanos = 0;
  std::vector<cell_stats> cells;
  /// No more batches follow; `error` says why if it is not a normal end.
  bool end = false;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stats_batch& x) {
  return f(caf::meta::type_name("stats_batch"), x.subscription, x.unix_nanos, x.cells, x.end,
           x.error);
}

// -- output ------------------------------------------------------------------------

/// Which output streams of an executable to read (a bit mask).
enum output_streams : uint8_t { out_stdout = 1, out_stderr = 2, out_both = 3 };

/// One line an executable wrote.
struct output_line {
  /// 1 = stdout, 2 = stderr.
  int32_t stream = 1;
  std::string line;
  /// When the daemon saw it (its output reader's clock; 0: unknown).
  int64_t unix_nanos = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, output_line& x) {
  return f(caf::meta::type_name("output_line"), x.stream, x.line, x.unix_nanos);
}

/// Which lines of an output subscription are sent (podman's logs --since/--until/--tail).
struct output_filter {
  /// Lines seen at or after this time (0: from the start)...
  int64_t since_nanos = 0;
  /// ... and at or before this one (0: no end; following stops there).
  int64_t until_nanos = 0;
  /// Only the last `tail` lines of the history (-1: all of them).
  int64_t tail = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, output_filter& x) {
  return f(caf::meta::type_name("output_filter"), x.since_nanos, x.until_nanos, x.tail);
}

/// What the history reader of an output subscription found in the files.
struct output_history {
  std::vector<output_line> lines;
  /// Per stream (index 1 stdout, 2 stderr): the file offset the live stream takes over at.
  std::vector<uint64_t> end_offsets = {0, 0, 0};
  /// Lines left out because the file was longer than the history limit.
  uint64_t skipped = 0;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, output_history& x) {
  return f(caf::meta::type_name("output_history"), x.lines, x.end_offsets, x.skipped, x.error);
}

/// What an output subscriber receives.
struct output_batch {
  uint64_t subscription = 0;
  std::vector<output_line> lines;
  /// Lines dropped for this subscriber just before `lines`.
  uint64_t dropped = 0;
  bool end = false;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, output_batch& x) {
  return f(caf::meta::type_name("output_batch"), x.subscription, x.lines, x.dropped, x.end,
           x.error);
}

// -- kernel events -------------------------------------------------------------------

/// Kinds of kernel events. Values match ebpf::event_kind and schema/observe.capnp.
enum class event_kind : uint8_t { signal = 1, exec = 2, exit = 3, oom = 4 };

/// Bit of a kind in event_filter::kinds.
constexpr uint8_t kind_bit(event_kind k) {
  return static_cast<uint8_t>(1u << static_cast<uint8_t>(k));
}

/// Which events a subscriber wants.
struct event_filter {
  /// Empty: the whole host. Otherwise events of processes in this cell...
  std::string cell;
  /// ...and, if set, in the cells nested under it.
  bool nested = false;
  /// Only this executable of `cell` (its main process and what it starts).
  std::string executable;
  /// kind_bit()s of the wanted kinds; 0 = all.
  uint8_t kinds = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_filter& x) {
  return f(caf::meta::type_name("event_filter"), x.cell, x.nested, x.executable, x.kinds);
}

/// A kernel event mapped to cyto's terms.
struct observed_event {
  event_kind kind = event_kind::signal;
  /// CLOCK_MONOTONIC of the event in the kernel.
  int64_t monotonic_nanos = 0;
  /// The cell of the process the event is about ("" outside every cell).
  std::string cell;
  /// The cyto executable it belongs to, when known.
  std::string executable;
  /// The process: host thread id, host process id, pid in its own pid namespace
  /// (0 if it could not be read), parent's host pid (0 if unknown).
  uint32_t pid = 0;
  uint32_t tgid = 0;
  uint32_t ns_pid = 0;
  uint32_t ppid = 0;
  std::string comm;
  /// signal: number, delivery result (0 = delivered), sender.
  int32_t signo = 0;
  int32_t signal_result = 0;
  uint32_t sender_pid = 0;
  uint32_t sender_tgid = 0;
  std::string sender_comm;
  /// exit: the code, or the signal that ended it (then code is 0).
  int32_t exit_code = 0;
  int32_t exit_signal = 0;
  /// exec: the program.
  std::string filename;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, observed_event& x) {
  return f(caf::meta::type_name("observed_event"), x.kind, x.monotonic_nanos, x.cell, x.executable,
           x.pid, x.tgid, x.ns_pid, x.ppid, x.comm, x.signo, x.signal_result, x.sender_pid,
           x.sender_tgid, x.sender_comm, x.exit_code, x.exit_signal, x.filename);
}

/// What an event subscriber receives.
struct event_batch {
  uint64_t subscription = 0;
  std::vector<observed_event> events;
  /// Events lost for this subscriber (it fell behind) just before `events`.
  uint64_t lost = 0;
  bool end = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_batch& x) {
  return f(caf::meta::type_name("event_batch"), x.subscription, x.events, x.lost, x.end);
}

} // namespace cyto
