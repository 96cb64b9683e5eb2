#pragma once
// cytod as a guest's init (PID 1): `cytod --init`, or automatic when it is PID 1.
//
// PID 1 mounts the API file systems, loads the kernel modules the image lists, then
// forks: the child returns and runs the daemon as usual (serving the host on the
// virtio-serial channel); PID 1 stays small and single-threaded. It reaps every orphan
// (the daemon's own children are waited for by the cells actor through pidfds, so PID 1
// must not be the daemon), and on SIGTERM, SIGPWR, the ACPI power button (an EV_KEY
// KEY_POWER from /dev/input/event*) or Ctrl-Alt-Del (SIGINT: reboot) it stops the
// daemon with SIGTERM, waits for it (its actors stop, the socket goes), terminates what
// is left, syncs and powers off (reboot(RB_POWER_OFF)). When the daemon exits on its
// own the machine powers off too.

#include <string>

namespace cyto::services {

struct init_options {
  /// Kernel modules to load, one path a line, in load order (make-vm-image writes it).
  std::string modules_file = "/etc/cyto/modules";
  /// Seconds the daemon gets between SIGTERM and SIGKILL at shutdown.
  int stop_timeout_s = 20;
};

/// Whether this process should act as init: asked for, or PID 1.
bool init_mode_wanted(bool flag);

/// Sets the guest up and forks. Returns in the daemon child (0), or a non-zero exit code
/// when init mode cannot run (not PID 1). PID 1 itself never returns.
int become_init(const init_options& opt);

} // namespace cyto::services
