#pragma once
// One function per CLI verb; each returns the process exit code.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

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
  /// Entries (--daemon, default 100) or lines (default all) of the history shown.
  std::optional<uint32_t> tail;
  /// Workload output only: --since/--until (durations, RFC 3339 or Unix times) and
  /// -t/--timestamps.
  std::string since, until;
  bool timestamps = false;
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
/// Streams an executable's stdout and stderr (from the start of its files, or only what
/// comes from now on, following) to ours until it has exited.
kj::Promise<void> follow_output(client& c, const std::string& cell, const std::string& exe,
                                bool from_start = true);

/// A sink that prints an executable's lines to our stdout/stderr (follow_output's, for a
/// one-call Containers.run).
schema::OutputSink::Client output_to_terminal();

/// Pulls `ref` with its progress on stderr (cyto run pulls a missing image with it).
void pull_for_run(client& c, const std::string& ref);

/// A sink that shows pull progress on stderr as pull_for_run does.
schema::PullSink::Client pull_progress_to_stderr();

/// Limits of a container's or pod's cell: --memory 256M, --cpus 0.5, --pids-limit N.
struct limit_flags {
  std::string memory, cpus;
  uint64_t pids = 0;
};

/// Fills a cell's limits from the flags; cli_error on a bad value.
void fill_limits(const limit_flags& f, schema::Cell::Builder cell);

/// "[HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"; cli_error when malformed.
void parse_port(const std::string& text, schema::PortMapping::Builder out);

/// -v/--volume and --tmpfs of a container (run, create), as given.
struct container_mount_flags {
  std::vector<std::string> volumes, tmpfs;
};

/// Adds -v/--volume and --tmpfs to `cmd`.
void add_mount_flags(CLI::App* cmd, container_mount_flags& f);

/// Puts the flags into the spec's mounts: -v's first, then --tmpfs's; cli_error (as
/// "cyto.invalid_argument: ...") when one is malformed.
void fill_mounts(const container_mount_flags& f, schema::ContainerSpec::Builder spec);

/// Adds `cyto volume create|ls|inspect|rm`.
void add_volume_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto run|create|start|ps|exec|stop|kill|rm|inspect|wait`.
void add_container_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto cp` (files between a container and here, as tar streams).
void add_cp_command(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto node ls`.
void add_node_commands(CLI::App& app, global_options& g, std::function<int()>& run);
/// Adds `cyto vm create|run|start|stop|kill|pause|resume|rm|ls|inspect|console`.
void add_vm_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto pod create|ls|stop|rm`.
void add_pod_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto stats [--no-stream] [NAME...]`.
void add_stats_command(CLI::App& app, global_options& g, std::function<int()>& run);

/// Adds `cyto vm exec` (to the `vm` command, made here if it does not exist yet).
void add_vm_guest_commands(CLI::App& app, global_options& g, std::function<int()>& run);

/// The cell and executable whose output is container `name`'s (for cyto logs NAME).
std::pair<std::string, std::string> container_output(client& c, const std::string& name);

} // namespace cyto::cli
