@0x9b1e5d7c2a4f6e03;
# DiscoveryService: who is this node and what can this host do.
$import "/capnp/c++.capnp".namespace("cyto::schema");

enum CgroupMode {
  unknown @0;
  v1 @1;        # legacy: controllers mounted one per directory, no cgroup2
  hybrid @2;    # v1 controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified)
  v2 @3;        # unified hierarchy only
}

# What the host supports, detected once when cytod starts.
struct Features {
  cgroupMode @0 :CgroupMode;
  cgroupControllers @1 :List(Text);   # controllers cytod can use (v2: cgroup.controllers; v1: mounted)
  namespaces @2 :List(Text);          # kinds in /proc/self/ns: cgroup ipc mnt net pid time user uts
  ebpf @3 :Bool;                      # the eBPF event programs load (BTF, bpf(), tp_btf, ring buffer)
  btf @4 :Bool;
  kvm @5 :Bool;                       # /dev/kvm present and openable (maybe paravirtual)
  overlayfs @6 :Bool;                 # overlay listed in /proc/filesystems
  pidfd @7 :Bool;                     # pidfd_open works
  kernelRelease @8 :Text;
  ebpfDetail @9 :Text;                # why ebpf is false ("" when true)
  tracefs @10 :Bool;                  # tracefs mounted at /sys/kernel/tracing (cytod mounts it)
  vmAccel @11 :Text;                  # accelerator VMs get: "kvm" (hardware-backed only) or "tcg"
  vmAccelReason @12 :Text;            # why, e.g. "/dev/kvm is paravirtual (kvm_pvm) ..."
}

struct NodeInfo {
  healthy @0 :Bool;
  version @1 :Text;
  nodeName @2 :Text;
  uptimeNanos @3 :UInt64;
  features @4 :Features;
  pid @5 :UInt32;
}

struct Health {
  healthy @0 :Bool;
  # One line per actor that did not answer in time, empty when healthy.
  problems @1 :List(Text);
  # What to look at though every actor answers (healthy stays true): state records moved
  # to quarantine (kept, not erased) and stray cgroups under the daemon's root.
  notices @2 :List(Text);
  # The gateway that answered (set by the node the client is connected to).
  gateway @3 :GatewayStats;
}

# What the gateway holds now: connections, calls waiting for an actor's answer, memory
# of incoming messages, and calls that ran out of time since it started.
struct GatewayStats {
  connections @0 :UInt32;
  pendingCalls @1 :UInt32;      # bridge requests waiting for an answer
  messageBytes @2 :UInt64;      # bytes held for incoming messages, all connections
  messageLimit @3 :UInt64;      # ... and the most they may hold
  expiredCalls @4 :UInt64;      # calls answered cyto.timeout (the call deadline)
}

interface Discovery {
  discover @0 () -> (info :NodeInfo);
  health @1 () -> (health :Health);
}
