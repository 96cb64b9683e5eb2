#pragma once
// Tap devices on a network's bridge, for VMs: the hypervisor opens the tap by name, the
// bridge (made here if no container made it yet) carries the network's gateway address.
// rtnetlink and /dev/net/tun in the daemon's own namespace; nothing forks.

#include <string>

#include <caf/error.hpp>

namespace cyto::network {

/// Makes the bridge `name` if it is missing, gives it `gateway`/`prefix` unless it has
/// that address and sets it up. The CNI bridge plugin later finds and uses it as it is.
caf::error ensure_bridge(const std::string& name, const std::string& gateway, int prefix);

/// Makes the persistent tap `tap` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, no owner: root's
/// QEMU opens it by name), puts it on `bridge` and sets it up. An existing tap of that
/// name is reused. Nothing is left on error.
caf::error create_tap(const std::string& tap, const std::string& bridge);

/// Whether an interface of that name exists in the daemon's namespace.
bool link_exists(const std::string& name);

/// The ifindex of the master (bridge) of `name`; 0 when it has none or does not exist.
int master_of(const std::string& name);

} // namespace cyto::network
