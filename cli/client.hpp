#pragma once
// The CLI's connection to cytod: one unix socket, one Cap'n Proto two-party client.

#include <stdexcept>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "schema/node.capnp.h"

namespace cyto::cli {

/// Options every command takes.
struct global_options {
  std::string socket = "/run/cyto/cyto.sock";
  bool json = false;
  /// --vm NAME: talk to the cytod inside that VM, through the daemon on `socket`.
  std::string vm;
};

/// A failure the CLI reports as one line and a non-zero exit.
struct cli_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// "cyto.<code>: text" from a call's exception, without kj's "remote exception: " noise.
std::string describe(const kj::Exception& e);

class client {
public:
  /// Connects; throws cli_error saying why not (no socket, permission, refused).
  explicit client(const std::string& socket_path);
  /// Connects to g.socket; with g.vm, node() is the Node of the cytod inside that VM.
  explicit client(const global_options& g);

  kj::WaitScope& wait_scope() {
    return io_.waitScope;
  }

  schema::Node::Client node() {
    return node_;
  }

private:
  kj::AsyncIoContext io_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyClient> rpc_;
  schema::Node::Client node_;
};

/// Runs `promise` to completion; a kj exception becomes a cli_error with `describe`.
template <class T>
T wait(client& c, kj::Promise<T>&& promise) {
  try {
    return promise.wait(c.wait_scope());
  } catch (const kj::Exception& e) {
    throw cli_error(describe(e));
  }
}

} // namespace cyto::cli
