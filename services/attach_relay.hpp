#pragma once
// Containers.attach's transport: the gateway connects to a shim's attach socket (its path
// from the containers actor) and relays bytes, with capnp streaming's flow control on
// both sides. No domain logic: which container, and whether it may be attached, is the
// actor's answer.

#include <string>

#include <kj/async-unix.h>

#include "schema/containers.capnp.h"

namespace cyto::services {

/// Connects to the attach socket `path` (any length: through /proc/self/fd) and returns
/// the InputStream that writes frames to it; the socket's bytes go to `output`, then
/// output.done(). Dropping the InputStream closes the connection (a detach). Throws
/// cyto.unavailable when the socket does not answer.
schema::InputStream::Client attach_relay(kj::UnixEventPort& port, const std::string& path,
                                         schema::ByteSink::Client output);

} // namespace cyto::services
