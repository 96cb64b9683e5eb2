#pragma once
// Messages of the cells domain: cell specs and limits, executables, exits.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "bus/network.hpp"

namespace cyto {

/// Bandwidth and iops caps on one block device ("major:minor"); 0 means no cap.
struct io_device_limit {
  std::string device;
  uint64_t rbps = 0;
  uint64_t wbps = 0;
  uint64_t riops = 0;
  uint64_t wiops = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, io_device_limit& x) {
  return f(caf::meta::type_name("io_device_limit"), x.device, x.rbps, x.wbps, x.riops, x.wiops);
}

/// Resource limits of a cell in cgroup v2 terms. 0 (or empty) means "not set".
struct cell_limits {
  /// Sentinel for cpu.max's "max" (no quota).
  static constexpr uint64_t unlimited = UINT64_MAX;

  uint64_t cpu_weight = 0;        // 1..10000 (v1: cpu.shares = weight * 1024 / 100)
  uint64_t cpu_max_quota_us = 0;  // cpu.max quota; `unlimited` for "max"
  uint64_t cpu_max_period_us = 0; // cpu.max period (default 100000)
  std::string cpuset_cpus;        // "0-1,3"
  std::string cpuset_mems;        // "0"
  uint64_t memory_min = 0;        // bytes
  uint64_t memory_low = 0;
  uint64_t memory_high = 0;
  uint64_t memory_max = 0;
  uint64_t pids_max = 0;
  uint64_t io_weight = 0;         // 1..10000
  std::vector<io_device_limit> io_max;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_limits& x) {
  return f(caf::meta::type_name("cell_limits"), x.cpu_weight, x.cpu_max_quota_us,
           x.cpu_max_period_us, x.cpuset_cpus, x.cpuset_mems, x.memory_min, x.memory_low,
           x.memory_high, x.memory_max, x.pids_max, x.io_weight, x.io_max);
}

/// What allocate asks for. Nested cells are named "parent/child".
struct cell_spec {
  std::string name;
  cell_limits limits;
  /// New pid, uts, ipc and mount namespaces for the cell's processes.
  bool isolate_process = false;
  /// A new network namespace with only `lo` up.
  bool isolate_network = false;
  /// Attach the cell to this CNI network (owner "cell/<name>"); its executables run in
  /// the attachment's netns. Empty: the daemon's own network namespace.
  std::string network;
  /// Host ports forwarded to the cell (needs `network`).
  std::vector<port_mapping> ports;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_spec& x) {
  return f(caf::meta::type_name("cell_spec"), x.name, x.limits, x.isolate_process,
           x.isolate_network, x.network, x.ports);
}

/// What start asks for: a program to run in a cell.
struct executable_spec {
  std::string cell;
  /// Unique among the cell's running executables; defaults to the program's base name.
  std::string name;
  std::vector<std::string> argv;
  /// A shell command run as `/bin/sh -c command` when argv is empty.
  std::string command;
  /// "KEY=VALUE"; a default PATH is added when none is given.
  std::vector<std::string> env;
  std::string cwd;
  /// -1: the daemon's own.
  int64_t uid = -1;
  int64_t gid = -1;
  std::string description;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, executable_spec& x) {
  return f(caf::meta::type_name("executable_spec"), x.cell, x.name, x.argv, x.command, x.env,
           x.cwd, x.uid, x.gid, x.description);
}

/// How a process ended (or that it still runs).
struct exit_status {
  bool exited = false;
  /// False when the process was re-adopted after a restart: how it ended is unknown.
  bool known = true;
  int32_t code = 0;
  int32_t signal = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exit_status& x) {
  return f(caf::meta::type_name("exit_status"), x.exited, x.known, x.code, x.signal);
}

/// A started executable.
struct executable_info {
  executable_spec spec;
  uint32_t pid = 0;    // on the host
  uint32_t ns_pid = 0; // inside the cell's pid namespace (== pid when not isolated)
  int64_t started_unix_nanos = 0;
  exit_status status;
  std::string stdout_path;
  std::string stderr_path;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, executable_info& x) {
  return f(caf::meta::type_name("executable_info"), x.spec, x.pid, x.ns_pid,
           x.started_unix_nanos, x.status, x.stdout_path, x.stderr_path);
}

/// A cell as list and get report it.
struct cell_info {
  cell_spec spec;
  std::vector<executable_info> executables;
  /// Every pid in the cell's cgroup (its own leaf only), executables' children included.
  std::vector<uint32_t> pids;
  /// Where its cgroup lives (the memory or first hierarchy on v1).
  std::string cgroup_path;
  /// Its attachment when `spec.network` is set (addresses, netns).
  net_attachment net;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_info& x) {
  return f(caf::meta::type_name("cell_info"), x.spec, x.executables, x.pids, x.cgroup_path,
           x.net);
}

/// Published on topic "process.exited".
struct process_exited {
  std::string cell;
  std::string executable;
  uint32_t pid = 0;
  exit_status status;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, process_exited& x) {
  return f(caf::meta::type_name("process_exited"), x.cell, x.executable, x.pid, x.status);
}

/// Published on topic "process.output": a run of what an executable wrote, as read from
/// its output file, or (stream 0) the end of its output: it exited and everything it
/// wrote was published before. Published with a receipt (topic_actor): the reader of the
/// file reads on only as these are consumed, so a fast writer costs the daemon bounded
/// memory (the file, written by the process itself, keeps everything).
struct process_output {
  std::string cell;
  std::string executable;
  /// 1 = stdout, 2 = stderr, 0 = end of output (no data).
  int32_t stream = 1;
  /// Whole lines, each ending in '\n', except that the last may lack it: a piece of a
  /// line longer than the reader takes at once, or the last line before the end.
  std::string data;
  /// Host pid of the run that wrote it: a new run starts fresh files.
  uint32_t pid = 0;
  /// Byte offset of `data` in its output file (lets readers of the file join the live
  /// stream without gaps or duplicates).
  uint64_t offset = 0;
  /// Lines just before `offset` that were not published: the reader fell too far behind
  /// the writer and skipped ahead (they are in the file).
  uint64_t skipped = 0;
  /// When the reader read `data` (CLOCK_REALTIME; the same as its record in the file's
  /// `.times`, see output_times.hpp).
  int64_t unix_nanos = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, process_output& x) {
  return f(caf::meta::type_name("process_output"), x.cell, x.executable, x.stream, x.data,
           x.pid, x.offset, x.skipped, x.unix_nanos);
}

/// Resource usage of a cell's cgroup (its child cells included), read from cgroup files
/// (v2 names; v1 equivalents on v1/hybrid hosts). Counters are cumulative.
struct cell_usage {
  std::string cell;
  /// cpu.stat usage_usec (v1: cpuacct.usage / 1000).
  uint64_t cpu_usage_usec = 0;
  /// memory.current (v1: memory.usage_in_bytes).
  uint64_t memory_current = 0;
  /// memory.peak (v1: memory.max_usage_in_bytes); 0 when the kernel does not keep it.
  uint64_t memory_peak = 0;
  /// pids.current.
  uint64_t pids_current = 0;
  /// io.stat rbytes/wbytes summed over devices (v1: blkio.throttle.io_service_bytes).
  uint64_t io_read_bytes = 0;
  uint64_t io_write_bytes = 0;
  /// memory.events oom_kill (v1: memory.oom_control oom_kill).
  uint64_t oom_kills = 0;
  /// CLOCK_MONOTONIC time of the reading, in nanoseconds.
  int64_t monotonic_nanos = 0;
  /// memory.max (v1: memory.limit_in_bytes); 0 when unlimited.
  uint64_t memory_limit = 0;
  /// Bytes received and sent on the interfaces (lo aside) of the cell's network
  /// namespace, when its processes have one of their own (net_available).
  uint64_t net_rx_bytes = 0;
  uint64_t net_tx_bytes = 0;
  bool net_available = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_usage& x) {
  return f(caf::meta::type_name("cell_usage"), x.cell, x.cpu_usage_usec, x.memory_current,
           x.memory_peak, x.pids_current, x.io_read_bytes, x.io_write_bytes, x.oom_kills,
           x.monotonic_nanos, x.memory_limit, x.net_rx_bytes, x.net_tx_bytes, x.net_available);
}

} // namespace cyto
