#pragma once
// The helper verbs the containers actor runs as executables of a container's cell
// (`cyto-runtime shim` and `idle`). The daemon and the shim talk only through JSON files
// in the bundle, written atomically, and signals: see docs in the README and the verbs'
// help. Plain C++, like the runtime.

#include <string>

#include "actors/containers/runtime.hpp"

namespace cyto::containers {

/// Creates container `id` from `bundle` and supervises it to its end:
///  - created.json: {"pid","start_time"}, or {"error","exit_code"} (127 not found, 126 not
///    executable, else 125) and nothing left behind;
///  - SIGUSR1 starts it (started.json {"pid"} or {"error"}), SIGTERM/SIGINT before that
///    aborts (force delete, exit.json {"exit_code":128+n,"signal":n,"aborted":true});
///  - while it runs TERM/INT/HUP/QUIT/USR2 are forwarded to it;
///  - exit.json {"exit_code","signal","finished_unix_nanos"}, then delete.
/// With `tty` (config.json's process.terminal) the pty master comes to the shim; with
/// `tty` or `interactive` the shim serves <bundle>/attach.sock (attach.hpp) for the
/// container's stdin (a pipe without a tty) and, with a tty, its output.
/// Returns the shim's exit code (the container's). The caller is single-threaded.
struct shim_options {
  bool tty = false;
  bool interactive = false;
};
int run_shim(runtime& rt, const std::string& id, const std::string& bundle,
             const shim_options& options = {});

/// A pod's placeholder process: sleeps until SIGTERM or SIGINT (handlers installed, so it
/// works as pid 1 of a pid namespace), reaping any children; returns 0.
int run_idle();

} // namespace cyto::containers
