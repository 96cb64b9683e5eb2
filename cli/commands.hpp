#pragma once
// One function per CLI verb; each returns the process exit code.

#include <cstdint>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/client.hpp"

namespace cyto::cli {

int cmd_discover(const global_options& g);
int cmd_health(const global_options& g);
int cmd_version(const global_options& g);

struct logs_options {
  bool daemon = false;
  bool follow = false;
  std::string level = "info";
  uint32_t tail = 100;
  /// CELL/EXECUTABLE (workload logs).
  std::string target;
  bool stderr_only = false;
  bool both = false;
};

/// cytod's own log (--daemon) or an executable's output (CELL/EXECUTABLE).
int cmd_logs(const global_options& g, const logs_options& o);
int cmd_workload_logs(const global_options& g, const logs_options& o);

/// Adds `cyto top`, `cyto events` and `cyto observe-status`.
void add_observe_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto cell ...`; the chosen verb stores its action in `run`.
void add_cell_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto image ...`; the chosen verb stores its action in `run`.
void add_image_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto network ...`; the chosen verb stores its action in `run`.
void add_network_commands(CLI::App& app, global_options& g, std::function<int()>& run);

} // namespace cyto::cli
