#pragma once
// Messages of the containers domain: OCI containers made from images (each one a cell
// with a root file system from the images actor) and pods (a parent cell whose pause
// process holds the network, ipc and uts namespaces its containers share).

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "bus/cells.hpp"
#include "bus/network.hpp"

namespace cyto {

/// What create asks for. Empty fields take the image's values (or podman's defaults).
/// A mount a container gets besides its image's root file system (-v, --tmpfs).
struct container_mount {
  /// "bind": a host path; "volume": a named volume of cyto; "tmpfs": a new tmpfs.
  std::string kind;
  /// The host path (bind), the volume's name (volume) or, for tmpfs, its mode in octal
  /// ("1777" when empty).
  std::string source;
  /// An absolute path in the container, without "..".
  std::string target;
  bool read_only = false;
  /// tmpfs only: its size in bytes (0: the kernel's default).
  uint64_t size_bytes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_mount& x) {
  return f(caf::meta::type_name("container_mount"), x.kind, x.source, x.target, x.read_only,
           x.size_bytes);
}

/// --restart: what the daemon does once a container's process has exited.
struct restart_policy {
  /// "no" (also empty), "on-failure", "always" or "unless-stopped" (like always: neither
  /// restarts a container a user stopped).
  std::string mode;
  /// on-failure: at most this many restarts since a user last started it (0: no limit).
  uint32_t max_retries = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, restart_policy& x) {
  return f(caf::meta::type_name("restart_policy"), x.mode, x.max_retries);
}

struct container_spec {
  /// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}; empty: generated from the id.
  std::string name;
  /// An image in the store (name, short name or digest prefix).
  std::string image;
  /// Replaces the image's Entrypoint when non-empty.
  std::vector<std::string> entrypoint;
  /// Replaces the image's Cmd when non-empty.
  std::vector<std::string> args;
  /// "KEY=VALUE", over the image's Env.
  std::vector<std::string> env;
  std::string workdir;
  /// "uid[:gid]" or a name from the image's /etc/passwd; empty: the image's User.
  std::string user;
  /// Empty: the name (or the pod's hostname in a pod).
  std::string hostname;
  /// The limits of the container's cell.
  cell_limits limits;
  /// Joins this pod's network, ipc and uts namespaces; its cell nests under the pod's.
  std::string pod;
  /// Attaches to this network through the network actor (empty: no network, only lo).
  std::string network;
  std::vector<port_mapping> ports;
  /// Removed (cell, rootfs, bundle, record) once it has exited and waiters were answered.
  bool auto_remove = false;
  bool read_only = false;
  /// Capabilities added to the default set ("NET_ADMIN" or "CAP_NET_ADMIN").
  std::vector<std::string> cap_add;
  /// "key=value" namespaced sysctls set in the container's namespaces, over cyto's
  /// defaults: net.* (its netns), kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* (its
  /// ipc namespace). Since state schema v2 of kind "container".
  std::vector<std::string> sysctls;
  /// Binds, named volumes and tmpfs mounts (since state schema v3 of kind "container").
  std::vector<container_mount> mounts;
  /// Since schema v3.
  restart_policy restart;
  /// A terminal for the container's process (-t) and its stdin kept open (-i); since v3.
  bool tty = false;
  bool interactive = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_spec& x) {
  return f(caf::meta::type_name("container_spec"), x.name, x.image, x.entrypoint, x.args, x.env,
           x.workdir, x.user, x.hostname, x.limits, x.pod, x.network, x.ports, x.auto_remove,
           x.read_only, x.cap_add, x.sysctls, x.mounts, x.restart, x.tty, x.interactive);
}

/// Lifecycle of a container. Values match schema/containers.capnp's ContainerState.
enum class container_state : uint8_t { created = 0, running, stopped };

/// A container as list and inspect report it.
struct container_info {
  container_spec spec;
  /// 64 hex digits; also the runtime's id, the rootfs id and the bundle dir's name.
  std::string id;
  container_state state = container_state::created;
  /// Host pid of the container's process (0 once stopped).
  uint32_t pid = 0;
  /// Exit code (128+n when killed by signal n) once stopped.
  int32_t exit_code = 0;
  int32_t exit_signal = 0;
  /// Why it stopped without running its program, if it did.
  std::string error;
  /// The cell it runs in, and the cell executable whose output is the container's.
  std::string cell;
  std::string executable;
  /// The image's name and manifest digest as resolved at create.
  std::string image_name;
  std::string image_digest;
  std::string bundle;
  /// The command that runs (entrypoint + cmd after the merge).
  std::vector<std::string> command;
  /// Addresses on its network (CIDR), from the attachment.
  std::vector<std::string> ips;
  int64_t created_unix_nanos = 0;
  int64_t started_unix_nanos = 0;
  int64_t finished_unix_nanos = 0;
  /// How often the restart policy has started it again since a user last started it (since
  /// schema v3).
  uint32_t restart_count = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_info& x) {
  return f(caf::meta::type_name("container_info"), x.spec, x.id, x.state, x.pid, x.exit_code,
           x.exit_signal, x.error, x.cell, x.executable, x.image_name, x.image_digest, x.bundle,
           x.command, x.ips, x.created_unix_nanos, x.started_unix_nanos, x.finished_unix_nanos,
           x.restart_count);
}

/// podman's --pull for run. Values match schema/containers.capnp's PullPolicy.
enum class pull_policy : uint8_t { missing = 0, always, never };

/// What a one-call run asks besides the spec (Containers.run).
struct run_options {
  /// Answer once it has stopped (with auto_remove: once it is removed); else once it runs.
  bool wait = false;
  /// A pull_policy.
  uint8_t pull = static_cast<uint8_t>(pull_policy::never);
  /// The caller's ids: output batches to its sink carry `output_watch` (0: no output
  /// wanted), pull progress `progress_watch` (0: none).
  uint64_t output_watch = 0;
  uint64_t progress_watch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, run_options& x) {
  return f(caf::meta::type_name("run_options"), x.wait, x.pull, x.output_watch,
           x.progress_watch);
}

/// What exec asks for: another process in a running container.
struct exec_spec {
  std::string container;
  std::vector<std::string> argv;
  /// "KEY=VALUE" over the container's env.
  std::vector<std::string> env;
  std::string cwd;
  /// "uid[:gid]"; empty: the container's.
  std::string user;
  /// A terminal for the process (-t) / its stdin kept open (-i): it waits for an attach.
  bool tty = false;
  bool interactive = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exec_spec& x) {
  return f(caf::meta::type_name("exec_spec"), x.container, x.argv, x.env, x.cwd, x.user, x.tty,
           x.interactive);
}

/// A started exec: the cell executable that runs it (its output and exit are the cell's).
struct exec_info {
  std::string cell;
  std::string executable;
  uint32_t pid = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exec_info& x) {
  return f(caf::meta::type_name("exec_info"), x.cell, x.executable, x.pid);
}

/// What pod create asks for.
struct pod_spec {
  /// Same rules as container names; also the pod's hostname.
  std::string name;
  /// Limits of the pod's cell (its containers' cells nest under it).
  cell_limits limits;
  /// Attaches the pod's network namespace to this network (empty: only lo).
  std::string network;
  std::vector<port_mapping> ports;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pod_spec& x) {
  return f(caf::meta::type_name("pod_spec"), x.name, x.limits, x.network, x.ports);
}

/// A pod as list reports it.
struct pod_info {
  pod_spec spec;
  std::string cell;
  /// Host pid of the pause process (0 once the pod is stopped).
  uint32_t pause_pid = 0;
  bool running = false;
  /// Names of its containers.
  std::vector<std::string> containers;
  std::vector<std::string> ips;
  int64_t created_unix_nanos = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pod_info& x) {
  return f(caf::meta::type_name("pod_info"), x.spec, x.cell, x.pause_pid, x.running, x.containers,
           x.ips, x.created_unix_nanos);
}

} // namespace cyto
