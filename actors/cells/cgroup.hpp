#pragma once
// One interface over cgroup v2 (unified) and v1/hybrid hierarchies. v2 names are the
// model; the v1 backend maps them. The driver owns one subtree (`root`, e.g. "cyto")
// and never writes outside it.

#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "bus/cells.hpp"
#include "bus/messages.hpp"

namespace cyto::cells {

class cgroup_driver {
public:
  virtual ~cgroup_driver() = default;

  virtual cgroup_mode mode() const noexcept = 0;

  /// Creates the daemon's subtree (and on v2 enables controllers along the path).
  virtual caf::error init() = 0;

  /// Refuses limits this host cannot apply (e.g. memory.min with cgroup v1). Writes nothing.
  virtual caf::error supports(const cell_limits& limits) const = 0;

  /// Makes the cell's cgroup and its process leaf, writes `limits`. On error removes
  /// everything it made, so a failed create leaves nothing behind.
  virtual caf::error create(const std::string& cell, const cell_limits& limits) = 0;

  /// Writes `limits` on an existing cell (only the limits it sets; others stay).
  virtual caf::error update(const std::string& cell, const cell_limits& limits) = 0;

  /// Removes the cell's cgroup (its leaf first) in every hierarchy. The cell must
  /// have no processes and no child cells.
  virtual caf::error remove(const std::string& cell) = 0;

  /// Moves `pid` into the cell's process leaf in every hierarchy.
  virtual caf::error attach(const std::string& cell, pid_t pid) = 0;

  /// The cgroup.procs files of the cell's leaf, one per hierarchy: a process writing
  /// "0" into each of them moves itself into the cell.
  virtual std::vector<std::string> procs_files(const std::string& cell) const = 0;

  /// Pids in the cell's own leaf, or (recursive) in the cell and all cells under it.
  virtual std::vector<pid_t> pids(const std::string& cell, bool recursive = true) const = 0;

  /// Whether the cell's cgroup exists.
  virtual bool exists(const std::string& cell) const = 0;

  /// Every cgroup under the daemon's root (in any hierarchy) as a cell name ("a", "a/b"),
  /// process leaves left out, parents before their children.
  virtual std::vector<std::string> list() const = 0;

  /// Full path of a control file of the cell, in v2 naming ("memory.max"), as this
  /// backend stores it (v1: "/sys/fs/cgroup/memory/<root>/<cell>/memory.limit_in_bytes").
  virtual std::string file(const std::string& cell, const std::string& v2_name) const = 0;

  /// Usage counters of the cell and every cell under it. A counter whose file this host
  /// lacks reads 0; a missing cell is not_found.
  virtual caf::expected<cell_usage> usage(const std::string& cell) const = 0;

  /// Removes the whole subtree if it holds no processes (tests and cleanup).
  virtual caf::error destroy_root() = 0;
};

/// Where a cell's own processes live. Cells keep them in a leaf "_" so that child cells
/// may be added at any time; an OCI container's processes belong in its cgroupsPath
/// itself (runtime-spec), so the runtime's cells have none and get no children.
enum class process_leaf { own, none };

/// The v1/hybrid backend over the controller mounts under `mount` (usually /sys/fs/cgroup).
std::unique_ptr<cgroup_driver> make_cgroup_v1(std::string root, std::string mount = "/sys/fs/cgroup",
                                              process_leaf leaf = process_leaf::own);

/// The v2 backend over a cgroup2 mount.
std::unique_ptr<cgroup_driver> make_cgroup_v2(std::string root, std::string mount = "/sys/fs/cgroup",
                                              process_leaf leaf = process_leaf::own);

/// The right backend for this host: v2 on unified hosts, v1 on v1 and hybrid hosts.
std::unique_ptr<cgroup_driver> make_cgroup_driver(cgroup_mode mode, std::string root,
                                                  process_leaf leaf = process_leaf::own);

// -- cgroupfs helpers shared by the backends ---------------------------------------

/// Writes `value` to `path`; the error says what was written where and errno.
caf::error write_file(const std::string& path, const std::string& value);

/// Reads a whole (small) file; an error names the path and errno.
caf::expected<std::string> read_file(const std::string& path);

/// mkdir with an error naming the path; EEXIST is an error unless `exist_ok`.
caf::error make_dir(const std::string& path, bool exist_ok = false);

/// rmdir with an error naming the path; ENOENT is fine.
caf::error remove_dir(const std::string& path);

/// The first number in a file (memory.current, pids.current); 0 if absent or unreadable.
uint64_t read_number(const std::string& path);

/// The value of `key` in a flat-keyed file ("usage_usec 123" lines); 0 if absent.
uint64_t read_keyed(const std::string& path, std::string_view key);

/// CLOCK_MONOTONIC now, in nanoseconds (the time stamp of a usage reading).
int64_t monotonic_nanos();

/// Pids listed in a cgroup.procs file.
std::vector<pid_t> read_procs(const std::string& path);

/// The cgroups under `top` as cell names, leaves ("_") left out, added to `out`.
void list_cells_under(const std::filesystem::path& top, std::set<std::string>& out);

} // namespace cyto::cells
