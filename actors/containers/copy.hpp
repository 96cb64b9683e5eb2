#pragma once
// cyto cp: copies between a container's root file system and a tar stream (the gateway
// relays it to and from the client, which may be remote). One detached copy_stream_actor
// per copy, spooling the tar in an unlinked temporary file of the state dir:
//
//   out  start_atom resolves the path and writes the whole tar into the spool; get_atom
//        hands it out in chunks.
//   in   start_atom resolves the destination (docker cp's rules, see copyIn in
//        schema/containers.capnp); put_atom appends to the spool; done_atom checks every
//        entry (names, types, what each would replace) and only then writes them, so a
//        bad tar changes nothing.
//
// Every path in the container is opened with openat2 relative to the rootfs: the path
// given with RESOLVE_IN_ROOT (its symlinks resolve inside the container, ".." stops at
// its /), each entry below the destination with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
// (nothing is written through a symlink). Device nodes and sockets are not copied.

#include <string>
#include <vector>

#include "actors/containers/containers_actor.hpp"

namespace cyto::containers {

/// Where a copy happens.
struct copy_target {
  /// The container's name, for messages.
  std::string container;
  /// Host path of its root file system (bundle/rootfs, mounted while the container exists).
  std::string rootfs;
  /// Paths in the container whose files are not in the rootfs (its -v and --tmpfs mounts).
  std::vector<std::string> mounts;
  /// --read-only: copies into it are refused.
  bool read_only = false;
  /// Where the spool file is made (and unlinked at once).
  std::string spool_dir;
};

/// Spawns the copy of `path` out of (`source` empty) or into the container and starts
/// it; answers the copy_stream_actor once the path checked out, or the error.
caf::result<copy_stream_actor>
open_copy(containers_private::stateful_pointer<containers_state> self, copy_target target,
          std::string path, std::string source);

} // namespace cyto::containers
