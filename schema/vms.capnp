@0xb3e8c1f25d7a9e41;
# VmService: virtual machines. Each VM is one QEMU process, run as the executable "qemu"
# of the VM's cell (vms/<name>) so its cgroup limits, pid watching and re-adoption are
# the cells service's; cytod drives it over QMP. Its serial console is QEMU's stdout.
$import "/capnp/c++.capnp".namespace("cyto::schema");

using OutputSink = import "observe.capnp".OutputSink;

struct VmDrive {
  path @0 :Text;          # an existing file, absolute
  format @1 :Text;        # "raw" (default) or "qcow2"
  readOnly @2 :Bool;
}

struct VmSpec {
  name @0 :Text;          # [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
  vcpus @1 :UInt32;       # 1..host cpus
  memoryBytes @2 :UInt64; # whole MiB, 16 MiB..below host RAM
  kernel @3 :Text;        # bzImage path, absolute
  initrd @4 :Text;        # initramfs path, absolute (optional)
  cmdline @5 :Text;       # kernel command line (console=ttyS0 is added)
  drives @6 :List(VmDrive);
  accel @7 :Text;         # "kvm" or "tcg"; empty: hardware KVM if the host has it, else TCG
  machine @8 :Text;       # "microvm" (default) or "q35"
  labels @9 :List(Text);  # key=value
  initArgs @10 :List(Text);  # given to the guest's init after " -- " on the kernel command line
  network @11 :Text;      # a cyto network (NetworkService): at start a tap on its bridge, an
                          # address from its IPAM (kernel `ip=` for the guest), virtio-net
  image @12 :Text;        # boot from this image of the store: its root fs is the VM's
                          # root disk (ext4, copy-on-write per VM); initArgs replace its Cmd;
                          # kernel and initrd default to cytod's image boot kernel
}

struct VmImageRoot {
  image @0 :Text;         # the image's name in the store
  digest @1 :Text;        # its manifest digest: the key of the cached disk
  disk @2 :Text;          # the cached ext4 of the image's root fs, shared, never written
  overlay @3 :Text;       # this VM's qcow2 over disk: what the guest writes
  command @4 :List(Text); # what the guest runs: entrypoint + (initArgs or Cmd)
  env @5 :List(Text);
  workdir @6 :Text;
}

enum VmState {
  created @0;             # allocated; QEMU not running
  running @1;
  paused @2;              # QEMU runs, the guest's CPUs are stopped
  stopped @3;             # QEMU ended after stop or kill
  exited @4;              # QEMU ended by itself (guest powered off or crashed, QEMU failed)
}

struct VmInfo {
  spec @0 :VmSpec;
  state @1 :VmState;
  pid @2 :UInt32;         # QEMU's host pid (0 when not running)
  exitReason @3 :Text;    # "guest-shutdown", "host-qmp-quit", "QEMU killed by signal 9", ...
  exitCode @4 :Int32;     # QEMU's exit code (128+n for signal n), -1 unknown
  accel @5 :Text;
  accelReason @6 :Text;
  machine @7 :Text;
  cell @8 :Text;          # the VM's cell; QEMU is its executable `executable`
  executable @9 :Text;
  consolePath @10 :Text;  # serial console file (QEMU's stdout)
  channelPath @11 :Text;  # unix socket of the virtio-serial port org.cyto.channel.0
  qmpPath @12 :Text;
  dir @13 :Text;
  createdUnixNanos @14 :Int64;
  startedUnixNanos @15 :Int64;
  finishedUnixNanos @16 :Int64;
  ips @17 :List(Text);    # the guest's addresses (CIDR) while QEMU runs on a network
  gateway @18 :Text;
  tap @19 :Text;          # the host tap device on the network's bridge (while running)
  mac @20 :Text;          # the guest's MAC, stable per VM
  imageRoot @21 :VmImageRoot;  # set when the VM boots from an image
}

interface Vms {
  # Checks the spec (files, cpus, memory, drives in use) and makes the VM's record,
  # directory and cell. Nothing is left on error.
  allocate @0 (spec :VmSpec) -> (info :VmInfo);
  # Starts QEMU; returns once QMP answers and the guest runs. QEMU's stderr is in the
  # error when it fails.
  start @1 (name :Text) -> (info :VmInfo);
  # ACPI power button, then QMP quit after timeoutMs; returns once QEMU has ended.
  # cyto.failed_precondition when the VM does not run.
  stop @2 (name :Text, timeoutMs :UInt32) -> (info :VmInfo);
  # SIGKILL to QEMU; returns once it has ended.
  kill @3 (name :Text) -> (info :VmInfo);
  pause @4 (name :Text) -> (info :VmInfo);
  resume @5 (name :Text) -> (info :VmInfo);
  # Removes the VM (cell, directory, record); a running one only with force (killed).
  free @6 (name :Text, force :Bool) -> ();
  list @7 () -> (vms :List(VmInfo));
  inspect @8 (name :Text) -> (info :VmInfo);
  # The serial console: what it printed so far, then, with follow, new lines until QEMU
  # ends. Returns when the stream is done.
  console @9 (name :Text, follow :Bool, sink :OutputSink) -> ();
}
