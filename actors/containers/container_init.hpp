#pragma once
// The container's first process between clone and exec (internal to the runtime): it
// joins and sets up namespaces, mounts the rootfs and pivots into it, drops privileges
// and execs process.args. It talks to the runtime over a SOCK_SEQPACKET pair.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/containers/oci_seccomp.hpp"
#include "actors/containers/oci_spec.hpp"

namespace cyto::containers::detail {

/// One message on the sync socket.
struct sync_msg {
  enum kind_t : int32_t {
    go = 1,        // runtime -> init: cgroups joined, id maps written; `pid` is the host pid
    mounted = 2,   // init -> runtime: mounts done, run prestart/createRuntime hooks now
    resume = 3,    // runtime -> init: hooks done
    created = 4,   // init -> runtime: waiting for start on the exec fifo
    error = 5,     // init -> runtime: setup failed; `text` says why, `exit_code` for run
  };
  int32_t kind = 0;
  int32_t pid = 0;
  int32_t exit_code = 0;
  char code[32] = {};
  char text[1024] = {};
};

struct init_context {
  const oci::config* cfg = nullptr;
  const seccomp_filter* seccomp = nullptr;
  std::string id;
  std::string bundle;
  int sync_fd = -1;
  /// O_PATH descriptor of the exec fifo (create), -1 for run.
  int fifo_fd = -1;
  /// Connected console socket for process.terminal, else -1.
  int console_fd = -1;
  /// Whether the runtime runs prestart/createRuntime hooks (init waits for `resume`).
  bool runtime_hooks = false;
  /// Leaf cgroup directories of the container, for a `cgroup` mount.
  std::vector<std::string> cgroup_dirs;
};

[[noreturn]] void container_init(init_context& ctx);

/// Sets up mounts, devices and pivot_root (oci_mounts.cpp). `before_pivot` runs between
/// the mounts and pivot_root (hooks).
status setup_rootfs(const init_context& ctx, bool in_userns, const std::function<status()>& before_pivot);

/// After pivot_root: readonly root, sysctl, readonly and masked paths.
status finish_rootfs(const init_context& ctx);

// The process settings, shared by the container's first process and `exec`.

/// process.rlimits.
status apply_rlimits(const oci::process& p);
/// execvp's lookup of args[0] with the process's PATH in the current root: not found is
/// exit code 127, found but not executable 126.
result<std::string> find_program(const oci::process& p);
/// A new pty (of the /dev/ptmx this process sees): its master goes over `console_fd`
/// (SCM_RIGHTS), the slave's path and descriptor come back; sized by process.consoleSize.
status open_pty(int console_fd, const oci::process& p, std::string& name, int& slave);
/// setsid, `slave` as the controlling terminal and stdin/stdout/stderr.
status make_controlling(int slave);
/// open_pty then make_controlling (exec -t); closes `console_fd`.
status attach_new_pty(int console_fd, const oci::process& p);
/// Bounding set, user and groups, then the other capability sets.
status drop_privileges(const oci::process& p);
/// What may fail before the program runs: no_new_privs, seccomp (without no_new_privs:
/// it needs CAP_SYS_ADMIN), privileges, umask. create does it before reporting `created`.
status prepare_process(const oci::process& proc, const seccomp_filter* seccomp);
/// The last steps: seccomp (with no_new_privs), an empty signal mask, execve(program).
/// Returns only on failure (exit code 127/126 when exec itself failed).
status finish_exec(const oci::process& proc, const seccomp_filter* seccomp,
                   const std::string& program);
/// prepare_process, then finish_exec.
status exec_process(const oci::process& proc, const seccomp_filter* seccomp,
                    const std::string& program);

} // namespace cyto::containers::detail
