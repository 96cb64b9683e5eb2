#pragma once
// The CLI's connection to cytod: its unix socket, or its TCP gateway over mutual TLS
// (--connect), and one Cap'n Proto two-party client.

#include <memory>
#include <stdexcept>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "schema/node.capnp.h"
#include "services/tls_stream.hpp"

namespace cyto::cli {

/// Options every command takes.
struct global_options {
  std::string socket = "/run/cyto/cyto.sock";
  bool json = false;
  /// host:port of a TCP gateway (instead of the socket), with our certificate, key and
  /// the CA the node's certificate must come from.
  std::string connect;
  std::string cert;
  std::string key;
  std::string ca;
  /// Another node of the federation to run the verb against (through the one we talk to).
  std::string node;
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
  /// Connects to the socket, or with --connect to the TCP gateway (TLS handshake done);
  /// throws cli_error saying why not (no socket, permission, refused, certificate). With
  /// g.node, node() is that node of the federation (reached through Node.node); with g.vm,
  /// the Node of the cytod inside that VM (through Node.vm).
  explicit client(const global_options& g);

  kj::WaitScope& wait_scope() {
    return io_.waitScope;
  }

  schema::Node::Client node() {
    return node_;
  }

  /// The event loop's I/O (stdin, signals, timers of a terminal session).
  kj::AsyncIoContext& io() {
    return io_;
  }

private:
  kj::AsyncIoContext io_;
  std::unique_ptr<services::tls_context> tls_;
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
