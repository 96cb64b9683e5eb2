#pragma once
// The QEMU command line of a VM: a pure function of its spec and where its sockets live.

#include <cstdint>
#include <string>
#include <vector>

#include "bus/vms.hpp"

namespace cyto::vms {

/// Name of the virtio-serial port every VM gets for the guest channel (the guest's
/// cytod serves its gateway on /dev/virtio-ports/<this>).
inline constexpr const char* channel_port_name = "org.cyto.channel.0";

/// What the command line needs besides the spec.
struct qemu_launch {
  /// The QEMU binary.
  std::string qemu = "qemu-system-x86_64";
  /// "kvm" or "tcg" (already chosen).
  std::string accel = "tcg";
  /// "microvm" or "q35" (already chosen).
  std::string machine = "microvm";
  /// TCG's translation cache in MiB (0: QEMU's default, 1 GiB).
  uint64_t tb_size_mib = 0;
  std::string qmp_path;
  std::string channel_path;
  /// Extra arguments to the guest's init, appended to the kernel command line after
  /// " -- " (each one double-quoted when it holds blanks).
  std::vector<std::string> init_args;
  /// The VM's network (all empty: none): the host tap QEMU opens by name, the guest's
  /// MAC, address (CIDR) and gateway. The address goes to the guest as the kernel's
  /// `ip=<addr>::<gw>:<netmask>::eth0:off` (the guest's init applies it once virtio_net
  /// is loaded).
  std::string tap;
  std::string mac;
  std::string guest_ip;
  std::string gateway;
};

/// The kernel command line QEMU is given: the console on ttyS0, the timer options
/// microvm needs under TCG, the spec's own, then " -- " and the init arguments.
std::string kernel_cmdline(const vm_spec& spec, const qemu_launch& how);

/// argv of QEMU (argv[0] = how.qemu). The serial console is QEMU's stdout; QMP and the
/// guest channel are unix sockets QEMU listens on; the guest powering off leaves QEMU
/// in the "shutdown" state (-no-shutdown) so even a restarted daemon learns how it
/// ended; a reboot is a shutdown.
std::vector<std::string> qemu_args(const vm_spec& spec, const qemu_launch& how);

} // namespace cyto::vms
