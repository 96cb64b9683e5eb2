#pragma once
// Starts a process directly inside a cell, the way posix_spawn does it: clone with
// CLONE_VM | CLONE_VFORK | CLONE_PIDFD on a stack of its own (no copy of the daemon's
// address space, which on a big multi-threaded daemon costs more than the exec), in
// fresh namespaces when the cell isolates. The child moves itself into the cell's
// cgroups before exec. Exec failures come back to the caller as errors instead of a
// silently dead child. Plain C++, no actors.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace cyto::cells {

struct spawn_request {
  /// argv[0] is looked up in PATH (from env, else a default) if it has no '/'.
  std::vector<std::string> argv;
  /// "KEY=VALUE" entries; the whole environment of the process.
  std::vector<std::string> env;
  /// Working directory; "/" when empty.
  std::string cwd;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  /// New pid (with its own /proc), uts, ipc and mount namespaces.
  bool isolate_process = false;
  /// New network namespace with only `lo` up.
  bool isolate_network = false;
  /// Join this network namespace (a netns file) instead of the daemon's.
  std::string netns_path;
  /// Hostname inside a new uts namespace.
  std::string hostname;
  /// cgroup.procs files the child writes "0" into before exec (one per hierarchy).
  std::vector<std::string> cgroup_procs;
  /// Where stdout and stderr go (files opened by the caller); -1 means /dev/null.
  int stdout_fd = -1;
  int stderr_fd = -1;
};

struct spawned {
  pid_t pid = 0;
  /// Owned by the caller: watch it for exit, signal through it.
  int pidfd = -1;
};

/// Resolves argv[0] against PATH as execvp would; an error if it is missing or not executable.
caf::expected<std::string> resolve_executable(const std::string& name,
                                              const std::vector<std::string>& env);

/// Starts the process; on any error nothing is left running.
caf::expected<spawned> spawn(const spawn_request& req);

/// The pid of `pid` inside its innermost pid namespace (NSpid's last field), or 0.
pid_t ns_pid_of(pid_t pid);

/// Process start time in clock ticks since boot (field 22 of /proc/PID/stat), or 0;
/// tells a recorded process from a later one that reused its pid.
uint64_t start_time_of(pid_t pid);

} // namespace cyto::cells
