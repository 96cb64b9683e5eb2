@0xd2a6f1c38b7e4f02;
# The bootstrap capability a client receives when it connects to cytod.
$import "/capnp/c++.capnp".namespace("cyto::schema");

using Discovery = import "discovery.capnp".Discovery;
using Observe = import "observe.capnp".Observe;
using Cells = import "cells.capnp".Cells;
using Images = import "images.capnp".Images;
using Networks = import "network.capnp".Networks;
using Containers = import "containers.capnp".Containers;
using Pods = import "containers.capnp".Pods;
using Vms = import "vms.capnp".Vms;
using Volumes = import "volumes.capnp".Volumes;

interface Node {
  # Lists the services this node offers now (e.g. ["discovery", "observe"]).
  services @0 () -> (names :List(Text));

  # Each accessor hands out one service capability. A service this daemon does not
  # run fails with "cyto.unavailable: ...".
  discovery @1 () -> (service :Discovery);
  observe @2 () -> (service :Observe);
  cells @3 () -> (service :Cells);
  images @4 () -> (service :Images);
  network @5 () -> (service :Networks);
  containers @6 () -> (service :Containers);
  pods @7 () -> (service :Pods);

  # The same services of another node of the federation, reached over the bus (its
  # actors, not a capnp proxy); pipeline calls on it. Unknown name: cyto.not_found; a
  # member that is down: cyto.unavailable. This node's own name gives this node.
  node @8 (name :Text) -> (node :Node);

  # Every node of the federation as this node sees it: this node first.
  nodes @9 () -> (nodes :List(NodeStatus));

  # Virtual machines: QEMU processes driven over QMP, each in its own cell.
  vms @10 () -> (service :Vms);

  # The Node of the cytod running as init inside VM `name`, reached over the VM's
  # virtio-serial channel (one connection per VM, held by this daemon). Fails with
  # cyto.not_found for no such running VM, cyto.unavailable when no cytod answers there.
  vm @11 (name :Text) -> (node :Node);

  # Named volumes that containers mount (-v NAME:/path).
  volumes @12 () -> (service :Volumes);
}

enum NodeState {
  up @0;
  down @1;
}

struct NodeStatus {
  name @0 :Text;
  # "host:port" of its federation listener (empty if it has none).
  address @1 :Text;
  state @2 :NodeState;
  # This node itself (the one answering).
  local @3 :Bool;
  # Wall-clock time (unix nanos) of its last answer to a ping; 0 = never.
  lastHeartbeatNanos @4 :Int64;
  # Round trip of the last ping.
  rttNanos @5 :Int64;
  # Why it is down, empty when up.
  detail @6 :Text;
}
