#pragma once
// Named network namespaces: a file kept alive by a bind mount of the namespace, as
// `ip netns add` does, but under the daemon's state dir.

#include <string>

#include <caf/error.hpp>

namespace cyto::network {

/// Makes a new network namespace and binds it onto `path` (created, must not exist).
/// The namespace is made on a short-lived thread of its own (unshare(CLONE_NEWNET) there,
/// bind /proc/thread-self/ns/net): no thread of the daemon ever changes namespace and
/// nothing forks. Nothing is left behind on error.
caf::error create_netns(const std::string& path);

/// Unmounts and deletes a netns file made by create_netns; a no-op if it is gone.
caf::error remove_netns(const std::string& path);

/// Deletes the network interface `name` in the daemon's namespace (rtnetlink
/// RTM_DELLINK); a no-op if there is none.
caf::error delete_link(const std::string& name);

} // namespace cyto::network
