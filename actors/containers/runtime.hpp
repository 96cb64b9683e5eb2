#pragma once
// The OCI runtime: the lifecycle of runtime-spec containers (create, start, kill, delete,
// state) over a state directory per container, like runc's --root. Plain C++: linked by
// `cyto-runtime` and by the containers actor. The calling process must be
// single-threaded when it creates a container (the container process is forked from it
// and allocates before exec): the daemon runs it in a helper process.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "actors/containers/oci_spec.hpp"
#include "actors/containers/status.hpp"

namespace cyto::containers {

/// Where a container's processes go: the leaf cgroup.procs file of each hierarchy.
struct cgroup_placement {
  std::vector<std::string> procs_files;
};

/// Gives containers their cgroup. In the daemon the cells actor owns cgroups and hands out
/// a cell; `cyto-runtime` uses the cells cgroupfs driver on `linux.cgroupsPath`.
class cgroup_provider {
public:
  virtual ~cgroup_provider() = default;
  /// Makes the container's cgroup and applies `linux.resources`. Nothing is left on error.
  virtual result<cgroup_placement> place(const std::string& id, const oci::linux_config& linux) = 0;
  /// Removes what place() made; the container's processes are gone.
  virtual status release(const std::string& id, const std::string& cgroups_path) = 0;
  /// Processes in the container's cgroup.
  virtual std::vector<pid_t> pids(const std::string& id, const std::string& cgroups_path) = 0;
  /// Freezes (or thaws) every process of the container (pause/resume).
  virtual status freeze(const std::string& id, const std::string& cgroups_path, bool frozen) = 0;
  /// Whether the container's processes are frozen.
  virtual bool frozen(const std::string& id, const std::string& cgroups_path) = 0;
  /// Applies `resources` to the container's existing cgroup; refused ones change nothing.
  virtual status update(const std::string& id, const std::string& cgroups_path,
                        const oci::resources& resources) = 0;
};

struct runtime_options {
  /// State directories live in <root>/<id>.
  std::string root = "/run/cyto-runtime";
  /// Not owned; nullptr: containers get no cgroup of their own.
  cgroup_provider* cgroups = nullptr;
  /// Apply default_seccomp_profile() when the config has no linux.seccomp.
  bool default_seccomp = false;
};

struct create_options {
  std::string bundle = ".";
  /// Written with the container's pid (host namespace) once it is created.
  std::string pid_file;
  /// A unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is set.
  std::string console_socket;
  /// Instead of console_socket: a connected unix socket of the caller's that receives the
  /// pty master (the shim keeps the other end; no path, so no sun_path length limit).
  int console_fd = -1;
};

/// How a container's process ended.
struct exit_status {
  /// The exit code, or 128+n when killed by signal n.
  int code = 0;
  /// The signal that killed it, else 0.
  int signal = 0;
};

/// What `exec` runs in a running container. Unset fields come from the container's
/// config.json process.
struct exec_options {
  std::vector<std::string> args;
  /// K=V entries replacing or extending process.env.
  std::vector<std::string> env;
  std::string cwd;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  /// The whole process instead of config.json's (runc exec --process); the fields above
  /// still apply on top of it.
  std::optional<oci::process> process;
  /// A pty for the process (or process.terminal); its master goes to `console_socket`.
  bool tty = false;
  std::string console_socket;
  /// Serve the process's terminal (tty) or stdin (a pipe) on this unix socket (see
  /// attach.hpp; no console_socket then): the process starts once a client is attached
  /// (10 s at most).
  std::string attach_socket;
  /// Return once the process runs instead of waiting for it (its pid goes to pid_file).
  bool detach = false;
  std::string pid_file;
};

/// The runtime-spec state, plus the exit code when this runtime saw the exit.
struct container_state {
  std::string oci_version;
  std::string id;
  std::string status; // creating, created, running, paused, stopped
  pid_t pid = 0;
  std::string bundle;
  std::map<std::string, std::string> annotations;
  std::string created; // RFC 3339
  std::optional<int> exit_code;
  /// The runtime-spec state as JSON (runc's `state` output shape).
  std::string to_json(bool pretty = true) const;
};

class runtime {
public:
  explicit runtime(runtime_options options);

  /// Creates the container: its process is set up and waits for start. Returns its pid.
  result<pid_t> create(const std::string& id, const create_options& options);
  /// Lets the created container run its program; runs poststart hooks.
  status start(const std::string& id);
  /// create + start + wait + delete; returns the exit status (128+n when killed by signal n).
  /// Signals the runtime gets (INT, TERM, HUP, QUIT, USR1, USR2) go to the container.
  result<int> run(const std::string& id, const create_options& options);
  /// Waits for a container this process created (its parent) to exit and keeps the exit
  /// status (128+n for signal n) in its state; the containers actor's helper uses this.
  result<int> wait(const std::string& id);
  /// wait() with the signal kept apart from the code.
  result<exit_status> wait_exit(const std::string& id);
  /// Runs another process in the running container: joins its cgroup (when the caller
  /// is not in it) and namespaces, applies its process settings with `options`' overrides,
  /// forwards INT/TERM/HUP/QUIT/USR1/USR2 to it and returns its exit status. Errors before
  /// the program runs carry exit code 127 (not found), 126 (not executable) or 125.
  /// Returns the process's exit status, or 0 once it runs with `detach`.
  result<int> exec(const std::string& id, const exec_options& options);
  /// Sends `sig` to the container's process (all its cgroup's processes with `all`).
  status kill(const std::string& id, int sig, bool all = false);
  /// Deletes a stopped container (with force, kills it first); runs poststop hooks.
  status remove(const std::string& id, bool force = false);
  result<container_state> state(const std::string& id);
  /// Every container under the root.
  std::vector<container_state> list();
  /// Freezes a running container's processes (state "paused") or thaws a paused one.
  status pause(const std::string& id);
  status resume(const std::string& id);
  /// Processes in the container's cgroup (host pids).
  result<std::vector<pid_t>> processes(const std::string& id);
  /// New linux.resources for a created, running or paused container.
  status update(const std::string& id, const oci::resources& resources);

  /// Container ids: [A-Za-z0-9][A-Za-z0-9_.+-]{0,1023}.
  static status check_id(const std::string& id);

private:
  struct impl;
  /// The container's pid and, for run with a terminal, the pty master (else -1).
  struct created {
    pid_t pid = 0;
    int master = -1;
  };
  result<created> do_create(const std::string& id, const create_options& options, bool run_mode);
  status cleanup(const std::string& id, bool force);
  std::string dir(const std::string& id) const;
  runtime_options opts_;
};

/// Writes `text` to `path` through `path`.tmp and rename, so readers see all or nothing;
/// `durable` fsyncs the file first.
status write_file_atomic(const std::string& path, const std::string& text, bool durable = false);

/// Field 22 of /proc/PID/stat (clock ticks after boot), 0 when there is no such process.
uint64_t process_start_time(pid_t pid);

/// Parses a signal name or number ("KILL", "SIGKILL", "9").
std::optional<int> parse_signal(const std::string& text);

} // namespace cyto::containers
