#pragma once
// systemd socket activation (sd_listen_fds(3)): the listening socket cytod.socket (or a
// test, or `systemfd`) passed to cytod as fd 3 with LISTEN_FDS / LISTEN_PID set. While
// cytod restarts, clients' connections wait in that socket's backlog.

#include <optional>
#include <string>

namespace cyto::services {

/// What the environment says about an inherited socket.
struct activation {
  /// The listening unix stream socket (close-on-exec set), or -1 if none was passed.
  int fd = -1;
  /// Its path (getsockname), for logs; empty for an abstract or unnamed socket.
  std::string path;
  /// Set when something was passed but is unusable: "cyto.invalid_argument: <why>".
  std::optional<std::string> error;
};

/// Reads LISTEN_FDS / LISTEN_PID (and LISTEN_FDNAMES) and unsets them so that no child
/// inherits them. Accepts exactly one fd, for this very process (LISTEN_PID must be our
/// pid), that is a listening AF_UNIX SOCK_STREAM socket; anything else is an error, not
/// silently ignored: a daemon started by a unit that passes the wrong thing must say so.
activation take_activation_socket();

} // namespace cyto::services
