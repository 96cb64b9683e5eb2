#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "actors/store/state_db.hpp"
#include "bus/interfaces.hpp"

namespace cyto::vms {

/// The vms actor as it is spawned: vms_actor (what everyone else holds) and the
/// messages only it and its QMP sessions send it (see bus/internal.hpp).
using vms_private = vms_actor::extend<
  /// A QMP session reports an event (or, event "", that it closed).
  caf::reacts_to<qmp_event>,
  /// QEMU of run `run` of VM `name` ended.
  caf::reacts_to<exited_atom, std::string, uint64_t, exit_status>,
  /// The stop timeout of run `run` of VM `name` ran out.
  caf::reacts_to<tick_atom, std::string, uint64_t>>;

/// What the vms actor is told at spawn.
struct vms_config {
  /// state.db and vms/<name>/ live here.
  std::string state_dir;
  /// The QEMU binary: a path, or a name looked up in PATH when a VM is allocated.
  std::string qemu = "qemu-system-x86_64";
  /// Added to a VM's memory for its cell's memory.max: QEMU's own memory (and, under TCG,
  /// its translation cache, capped at half of this).
  uint64_t memory_overhead = 512ull << 20;
  /// How long a start waits for QEMU's QMP socket to answer.
  uint32_t qmp_timeout_ms = 10000;
  cells_actor cells;
  /// Taps and leases of VMs on a network; without it a VM with a network is refused.
  network_actor network;
  /// Image VMs: the root file systems come from here (may be unset: no image VMs).
  images_actor images;
  /// Kernel and initramfs image VMs boot when their spec names none (deploy/make-vm-boot
  /// writes both); empty: <state_dir>/vms/boot/vmlinuz and initramfs.cpio.
  std::string image_kernel;
  std::string image_initrd;
  /// Tools for image root disks: paths, or names looked up in PATH.
  std::string mke2fs = "mke2fs";
  std::string qemu_img = "qemu-img";

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct vms_state {
  static constexpr const char* name = "vms";

  struct vm {
    vm_info info;
    /// Counts starts, so exits and timers of an earlier run are ignored.
    uint64_t run = 0;
    /// The QMP session of the current run (invalid when not connected).
    qmp_session_actor qmp;
    /// A stop or kill was asked: the end is "stopped", not "exited".
    bool stopping = false;
    /// A start is in flight (answered by `starting`).
    bool starting_now = false;
    /// The reason of QEMU's SHUTDOWN event ("guest-shutdown", "host-qmp-quit", ...).
    std::string shutdown_reason;
    std::vector<caf::typed_response_promise<vm_info>> starting;
    /// Answered when QEMU has ended.
    std::vector<caf::typed_response_promise<vm_info>> waiters;
  };

  /// Ends the QMP sessions (QEMU keeps running: killing cytod never kills VMs).
  ~vms_state();

  vms_config config;
  std::unique_ptr<store::state_db> db;
  std::map<std::string, vm> vms;
  /// Image root disks being built, by digest: who waits for the disk's path.
  std::map<std::string, std::vector<std::function<void(caf::expected<std::string>)>>> disk_builds;
  /// The parent cell "vms" is known to exist.
  bool parent_made = false;
  /// What the host offers (hardware KVM or TCG) and why.
  std::string host_accel;
  std::string host_accel_reason;
  std::shared_ptr<spdlog::logger> log;
};

/// The vms actor. Spawn it, then hand out the vms_actor it converts to.
vms_private::behavior_type vms(vms_private::stateful_pointer<vms_state> self, vms_config config);

} // namespace cyto::vms
