#pragma once
// Blocking waits on the files the `cyto-runtime shim` writes into a bundle dir
// (created.json, started.json, exit.json): inotify on the dir plus the shim's pidfd, so
// a shim that dies without writing ends the wait at once. Only for detached actors.

#include <chrono>
#include <string>

#include <sys/types.h>

#include <caf/expected.hpp>

namespace cyto::containers {

/// Waits until `path` exists (written atomically by rename) and returns its content.
/// Fails with unavailable when process `pid` (0: none) exits first, timeout when
/// `timeout` passes.
caf::expected<std::string> wait_for_file(const std::string& path, pid_t pid,
                                         std::chrono::milliseconds timeout);

/// The content of a file, or empty if it cannot be read.
std::string read_file(const std::string& path);

/// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); 0 if gone.
uint64_t process_start_time(pid_t pid);

} // namespace cyto::containers
