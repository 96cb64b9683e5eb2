#pragma once
// Messages of the vms domain: virtual machines, each one QEMU process run as the
// executable "qemu" of its own cell (vms/<name>) and driven over QMP.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cyto {

/// A disk of a VM (virtio-blk).
struct vm_drive {
  /// An existing file (or block device) readable (and writable unless read_only).
  std::string path;
  /// "raw" or "qcow2".
  std::string format = "raw";
  bool read_only = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, vm_drive& x) {
  return f(caf::meta::type_name("vm_drive"), x.path, x.format, x.read_only);
}

/// What allocate asks for.
struct vm_spec {
  /// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}.
  std::string name;
  /// 1..host cpus.
  uint32_t vcpus = 1;
  /// Guest RAM in bytes: 1 MiB steps, at least 16 MiB, below the host's RAM.
  uint64_t memory_bytes = 256ull << 20;
  /// Paths of a bzImage and (optional) initramfs; read by QEMU at start.
  std::string kernel;
  std::string initrd;
  /// Kernel command line; the console and timer options QEMU's machine needs are added.
  std::string cmdline;
  std::vector<vm_drive> drives;
  /// "kvm" or "tcg"; empty: what the host offers (hardware KVM, else TCG).
  std::string accel;
  /// "microvm" or "q35"; empty: microvm.
  std::string machine;
  /// "key=value".
  std::vector<std::string> labels;
  /// Arguments for the guest's init, put after " -- " on the kernel command line (the
  /// kernel hands them to /init as its argv). `cyto vm run -- CMD` puts CMD here.
  std::vector<std::string> init_args;
  /// A cyto network (`cyto network create`) the VM is on: at start it gets a tap on that
  /// network's bridge, an address from its IPAM and a virtio-net device; empty: none.
  std::string network;
  /// An image of the images store (name, short name or digest) to boot from: its root
  /// file system becomes the VM's root disk (/dev/vda, ext4, copy-on-write per VM) and
  /// init_args, when given, replace the image's Cmd. Kernel and initrd default to the
  /// vms actor's image boot kernel and initramfs.
  std::string image;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, vm_spec& x) {
  return f(caf::meta::type_name("vm_spec"), x.name, x.vcpus, x.memory_bytes, x.kernel, x.initrd,
           x.cmdline, x.drives, x.accel, x.machine, x.labels, x.init_args, x.network, x.image);
}

/// Lifecycle of a VM. Values match schema/vms.capnp's VmState.
/// created: allocated, QEMU not running; running, paused: QEMU runs (guest CPUs run or
/// are stopped); stopped: QEMU ended after a stop or kill; exited: QEMU ended by itself
/// (the guest powered off or crashed, or QEMU failed).
enum class vm_state : uint8_t { created = 0, running, paused, stopped, exited };

/// The root disk of a VM booted from an image.
struct vm_image_root {
  /// The image's name in the store, and its manifest digest (the disk cache's key).
  std::string image;
  std::string digest;
  /// The image's root file system as ext4, shared by every VM of that image and never
  /// written: <state>/vms/disks/<hex of digest>.ext4.
  std::string disk;
  /// This VM's copy-on-write qcow2 over `disk` (<vm dir>/root.qcow2): the guest's writes.
  std::string overlay;
  /// What the guest runs in the image's root: entrypoint + (init_args or the image's
  /// Cmd), the image's Env and WorkingDir.
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string workdir;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, vm_image_root& x) {
  return f(caf::meta::type_name("vm_image_root"), x.image, x.digest, x.disk, x.overlay, x.command,
           x.env, x.workdir);
}

/// A VM as list and inspect report it.
struct vm_info {
  vm_spec spec;
  vm_state state = vm_state::created;
  /// Host pid of QEMU (0 when not running).
  uint32_t pid = 0;
  /// How QEMU ended ("guest-shutdown", "host-qmp-quit", "killed by signal 9", ...).
  std::string exit_reason;
  /// QEMU's exit code (128+n for signal n) once it ended; -1 when unknown.
  int32_t exit_code = 0;
  /// The accelerator and machine QEMU got, and why that accelerator.
  std::string accel;
  std::string accel_reason;
  std::string machine;
  /// The VM's cell and the cell executable whose stdout is the serial console.
  std::string cell;
  std::string executable;
  /// The serial console's file (the executable's stdout capture).
  std::string console_path;
  /// virtio-serial port "org.cyto.channel.0" as a unix socket (QEMU listens).
  std::string channel_path;
  /// QMP unix socket (QEMU listens; the vms actor is its client).
  std::string qmp_path;
  /// <state>/vms/<name>/.
  std::string dir;
  int64_t created_unix_nanos = 0;
  int64_t started_unix_nanos = 0;
  int64_t finished_unix_nanos = 0;
  /// While QEMU runs on a network: the guest's addresses (CIDR), its gateway and the host
  /// tap QEMU uses; cleared when QEMU ends (the lease is released). The guest's MAC is
  /// stable (kept).
  std::vector<std::string> ips;
  std::string gateway;
  std::string tap;
  std::string mac;
  /// Set when the VM boots from an image (spec.image).
  vm_image_root image_root;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, vm_info& x) {
  return f(caf::meta::type_name("vm_info"), x.spec, x.state, x.pid, x.exit_reason, x.exit_code,
           x.accel, x.accel_reason, x.machine, x.cell, x.executable, x.console_path,
           x.channel_path, x.qmp_path, x.dir, x.created_unix_nanos, x.started_unix_nanos,
           x.finished_unix_nanos, x.ips, x.gateway, x.tap, x.mac, x.image_root);
}

/// What a QMP session reports to the vms actor: an asynchronous event ("SHUTDOWN",
/// "POWERDOWN", "STOP", "RESUME", ...) with its data as JSON text, or (event "") that
/// the connection closed.
struct qmp_event {
  std::string vm;
  std::string event;
  std::string data_json;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, qmp_event& x) {
  return f(caf::meta::type_name("qmp_event"), x.vm, x.event, x.data_json);
}

} // namespace cyto
