@0xf2e3333d39d21a3b;
# NetworkService: CNI networks (a Linux bridge, host-local IPAM, port mapping) and the
# workloads attached to them.
$import "/capnp/c++.capnp".namespace("cyto::schema");

struct PortMapping {
  hostPort @0 :UInt16;
  containerPort @1 :UInt16;
  protocol @2 :Text;      # "tcp" (default when empty), "udp" or "sctp"
  hostIp @3 :Text;        # empty: every address of the host
}

struct Attachment {
  owner @0 :Text;         # "cell/<name>", "container/<name>", "pod/<name>", "vm/<name>"
  network @1 :Text;
  netnsPath @2 :Text;     # empty for a VM: its tap (ifname) is in the daemon's netns and
                          # mac is the guest's
  netnsOwned @3 :Bool;    # the daemon made the netns and removes it on detach
  ifname @4 :Text;
  ips @5 :List(Text);     # CIDR, e.g. "10.88.0.5/16"
  gateway @6 :Text;
  mac @7 :Text;
  dnsServers @8 :List(Text);
  dnsSearch @9 :List(Text);
  ports @10 :List(PortMapping);
}

struct NetworkInfo {
  name @0 :Text;
  subnet @1 :Text;        # IPv4 CIDR
  gateway @2 :Text;
  bridge @3 :Text;        # Linux bridge in the daemon's network namespace
  options @4 :List(Text); # "key=value"
  conflistPath @5 :Text;  # the CNI configuration the plugins get
  isDefault @6 :Bool;
  attachments @7 :List(Attachment);
}

interface Networks {
  # Makes a network. Empty subnet: a free one of the configured pool; empty gateway:
  # the subnet's first address. Options: mtu=N, ipmasq=true|false, firewall=true|false,
  # dns=IP[,IP], dns_search=DOMAIN[,DOMAIN].
  create @0 (name :Text, subnet :Text, gateway :Text, options :List(Text)) -> (info :NetworkInfo);
  # Removes a network; refused (cyto.failed_precondition) while anything is attached.
  remove @1 (name :Text) -> ();
  list @2 () -> (networks :List(NetworkInfo));
  # One network with its attachments and their addresses.
  inspect @3 (name :Text) -> (info :NetworkInfo);
  # Runs the plugins' CNI CHECK on one workload's attachment (owner as listed by inspect,
  # e.g. "cell/web"); fails with the plugin's message if the kernel no longer matches.
  check @4 (owner :Text) -> (attachment :Attachment);
}
