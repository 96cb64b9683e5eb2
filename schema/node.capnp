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
  vms @8 () -> (service :Vms);

  # The Node of the cytod running as init inside VM `name`, reached over the VM's
  # virtio-serial channel (one connection per VM, held by this daemon). Fails with
  # cyto.not_found for no such running VM, cyto.unavailable when no cytod answers there.
  vm @9 (name :Text) -> (node :Node);
}
