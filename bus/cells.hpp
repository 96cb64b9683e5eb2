#pragma once
// Messages of the cells domain: cell specs and limits, executables, exits.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

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
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cell_spec& x) {
  return f(caf::meta::type_name("cell_spec"), x.name, x.limits, x.isolate_process,
           x.isolate_network);
}

} // namespace cyto
