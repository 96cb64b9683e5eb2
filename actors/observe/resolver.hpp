#pragma once
// Maps kernel events (ebpf::event, host pids) to cyto's terms: the cell of the process,
// its pid inside its own pid namespace (NSpid) and its parent. Reads /proc/<tgid>/cgroup
// and /proc/<tgid>/status once per process and caches the answer by tgid, so the exit
// event (which may come after /proc is gone) still finds it. A process gone from /proc
// before its first event is read (exited and reaped at once; a zombie's cgroups read as
// "/") is placed by the cgroup ids
// the kernel put in the event: directory inode numbers under the cells' subtree. Plain
// C++; not thread-safe (one reader thread owns it).

#include <cstdint>
#include <string>
#include <unordered_map>

#include "bus/observe.hpp"
#include "ebpf/probe.hpp"

namespace cyto::observe {

class pid_resolver {
public:
  /// `cgroup_root` is the daemon's subtree ("cyto"): a process whose cgroup path is
  /// /<cgroup_root>/<cell>[/_] belongs to <cell>. `proc` is where /proc is (tests).
  /// `cgroup_mount` is where the hierarchies are mounted: cells are looked up by id under
  /// <cgroup_mount>/pids/<cgroup_root> (v1, hybrid) and <cgroup_mount>/<cgroup_root> (v2).
  explicit pid_resolver(std::string cgroup_root, std::string proc = "/proc",
                        size_t max_entries = 65536, std::string cgroup_mount = "/sys/fs/cgroup");

  /// What is known of one process.
  struct process {
    std::string cell;
    uint32_t ns_pid = 0;
    uint32_t ppid = 0;
  };

  /// The event in cyto's terms. An exit (one per process) forgets the process afterwards.
  observed_event resolve(const ebpf::event& e);

  /// The process behind a host tgid: cached, else read from /proc (and cached).
  const process& lookup(uint32_t tgid);

  /// Parses a /proc/<pid>/cgroup text: the cell under `cgroup_root`, or "".
  static std::string cell_of(const std::string& cgroup_text, const std::string& cgroup_root);

  /// The cell whose cgroup directory has kernfs id `pids_id` in the pids hierarchy or
  /// `v2_id` on the unified one, or "" (not a cell's). Scans the subtree for an id not
  /// seen before; ids are never reused, so the answer is kept either way.
  std::string cell_by_cgroup_id(uint64_t pids_id, uint64_t v2_id);

  struct counters {
    uint64_t hits = 0;
    uint64_t misses = 0; // /proc reads
    uint64_t id_scans = 0; // walks of the cells' cgroup subtree
  };
  const counters& stats() const noexcept {
    return counters_;
  }
  size_t cached() const noexcept {
    return cache_.size();
  }

private:
  process read(uint32_t tgid) const;
  void scan_cgroup_ids();

  std::string root_;
  std::string proc_;
  size_t max_entries_;
  std::unordered_map<uint32_t, process> cache_;
  process miss_; // the last answer not worth caching
  std::string mount_;
  // kernfs id -> cell ("" once scanned and not found), per hierarchy.
  std::unordered_map<uint64_t, std::string> pids_ids_, v2_ids_;

  counters counters_;
};

} // namespace cyto::observe
