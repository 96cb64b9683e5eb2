#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <spdlog/logger.h>

#include "actors/cells/cgroup.hpp"
#include "actors/store/state_db.hpp"
#include "actors/cells/watcher.hpp"
#include "bus/interfaces.hpp"

namespace cyto::cells {

using store::record;
using store::state_db;

/// The cells actor as it is spawned: cells_actor (what everyone else holds) and the
/// messages only it and its exit watcher thread send it (see bus/internal.hpp).
using cells_private = cells_actor::extend<
  /// The exit watcher saw the process behind `token` end.
  caf::reacts_to<exited_atom, uint64_t, exit_status>,
  /// The stop timeout of `token` ran out.
  caf::reacts_to<kill_atom, uint64_t>,
  /// The executable behind `token` wrote `data` (lines) to stream 1 (stdout) or 2,
  /// starting at `offset` in its output file, after `skipped` lines the reader skipped,
  /// read at `unix_nanos`.
  caf::reacts_to<output_atom, uint64_t, int32_t, std::string, uint64_t, uint64_t, int64_t>>;

/// What the cells actor is told at spawn.
struct cells_config {
  /// The daemon's cgroup subtree under each hierarchy ("cyto"; tests use "cyto-test-...").
  std::string cgroup_root = "cyto";
  /// How cgroups are mounted here (from host detection).
  cgroup_mode mode = cgroup_mode::unknown;
  /// state.db and logs/ live here.
  std::string state_dir;
  /// Where process.exited events are published.
  topic_actor topics;
  /// Attaches cells that name a network (none: such cells are refused as unavailable).
  network_actor network;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct cells_state {
  static constexpr const char* name = "cells";

  struct exe_record {
    executable_info info;
    int pidfd = -1;
    uint64_t token = 0;
    uint64_t start_time = 0;
    bool running = false;
    std::vector<caf::typed_response_promise<exit_status>> waiters;
    /// Output of this run published, and lines the reader skipped (it fell behind).
    uint64_t output_bytes = 0;
    uint64_t output_skipped = 0;
  };

  struct cell_record {
    cell_spec spec;
    std::map<std::string, exe_record> exes;
    /// Set once the network actor has attached the cell.
    net_attachment net;
  };

  ~cells_state();

  cells_config config;
  std::unique_ptr<cgroup_driver> cgroups;
  std::unique_ptr<state_db> db;
  std::unique_ptr<exit_watcher> watcher;
  /// Sorted by name, so a parent always comes before its children.
  std::map<std::string, cell_record> cells;
  std::unordered_map<uint64_t, std::pair<std::string, std::string>> by_token;
  /// Cells whose allocation waits for their network attachment.
  std::set<std::string> pending;
  uint64_t next_token = 1;
  std::vector<int> cpus;
  std::shared_ptr<spdlog::logger> log;
};

/// The cells actor. Fails to start (quits with the error) if its cgroup subtree or
/// state.db cannot be set up. Spawn it, then hand out the cells_actor it converts to.
cells_private::behavior_type cells(cells_private::stateful_pointer<cells_state> self,
                                   cells_config config);

} // namespace cyto::cells
