@0x83f9705a914916ef;
# A minimal interface for rpc_bench: the bare Cap'n Proto echo server it measures the
# gateway against (same transport, no actor bus). Not part of cyto's external surface.
$import "/capnp/c++.capnp".namespace("cyto::bench");

interface Echo {
  echo @0 (value :UInt64) -> (value :UInt64);
}
