#pragma once
// Which accelerator QEMU gets on this host. Plain C++ (no CAF): the node actor reports the
// choice in discover, the vms actor and the test scripts' logic follow the same rule.

#include <string>

namespace cyto::vms {

/// The accelerator VMs get and why.
struct accel_choice {
  /// "kvm" or "tcg".
  std::string accel;
  /// One line for humans: which module backs /dev/kvm, or why there is none.
  std::string reason;
  /// The kvm vendor module loaded ("kvm_intel", "kvm_amd", "kvm_pvm"), "" when none.
  std::string kvm_module;
  /// /dev/kvm exists and opens read-write.
  bool kvm_device = false;
};

/// Picks KVM only when it is hardware-backed: /dev/kvm opens and `sys_module`
/// (normally /sys/module) holds kvm_intel or kvm_amd. A paravirtual /dev/kvm (kvm_pvm)
/// cannot boot a stock kernel ("KVM internal error ... emulation failure"), so TCG there.
accel_choice choose_accel(const std::string& sys_module = "/sys/module",
                          const std::string& dev_kvm = "/dev/kvm");

} // namespace cyto::vms
