#pragma once
// The Cap'n Proto gateway: listens on the unix socket, checks each peer, and hands an
// allowed peer the Node bootstrap capability (a refused one gets a Node whose every
// call fails with cyto.permission_denied). Optionally also on TCP with mutual TLS: a
// peer with a certificate of our CA gets the same Node behind the access policy for
// its SPIFFE ID.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

#include <caf/actor_system.hpp>
#include <capnp/capability.h>
#include <kj/async-io.h>

#include "bus/interfaces.hpp"
#include "services/access_policy.hpp"
#include "services/bridge.hpp"
#include "services/discovery_service.hpp"
#include "services/images_service.hpp"
#include "services/message_stream.hpp"
#include "services/observe_service.hpp"
#include "services/tls_stream.hpp"
#include "services/vm_links.hpp"

namespace cyto::services {

/// The mutual-TLS TCP listener, its files loaded.
struct tcp_gateway {
  std::string address; ///< "host:port"
  std::unique_ptr<tls_context> tls;
  access_policy policy;
};

/// Loads the certificate, key, CA and policy; throws std::runtime_error "<key>: <why>".
std::unique_ptr<tcp_gateway> load_tcp_gateway(const std::string& address, const tls_files& files,
                                              const std::string& policy_path);

struct gateway_config {
  std::string socket_path;
  /// Group owning the socket and allowed to call, besides root and cytod's own uid.
  std::optional<gid_t> group;
  /// The TCP listener; none when null.
  std::unique_ptr<tcp_gateway> tcp = nullptr;
  /// Where VMs keep their files (<state>/vms): VM <name>'s guest channel is QEMU's
  /// socket <vm_dir>/<name>/channel.sock.
  std::string vm_dir;
  /// Connections held at once; past it a new peer is closed right after accept (logged).
  size_t max_connections = 4096;
  /// How long a call may wait for an actor's answer, unless it is one that waits by
  /// nature (marked bridge::infinite); past it the client gets cyto.timeout.
  kj::Duration call_deadline = bridge::default_deadline;
  /// Bytes of incoming messages one connection may hold at once, and all together
  /// (see message_stream.hpp); a message over either ends its connection.
  size_t connection_message_bytes = size_t{8} << 20;
  size_t total_message_bytes = size_t{128} << 20;
  /// A listening unix stream socket to accept on instead of binding socket_path (socket
  /// activation: systemd's cytod.socket owns it, so close() leaves the path alone).
  /// The gateway takes ownership. -1: bind socket_path.
  int listen_fd = -1;
};

/// Outcome of probing a socket path before binding it.
enum class socket_probe { absent, stale, live };

/// Whether something answers on the unix socket at `path`.
socket_probe probe_socket(const std::string& path);

class gateway : private kj::TaskSet::ErrorHandler {
public:
  gateway(kj::AsyncIoContext& io, caf::actor_system& sys, registry_actor registry,
          gateway_config cfg);
  ~gateway() noexcept(false);

  /// Binds the socket (dir 0755, socket 0660) and starts accepting. Throws
  /// std::runtime_error with a one-line reason if it cannot.
  void listen();

  /// Stops accepting; open connections go on. Peers that connect from now on wait in
  /// the socket's backlog (for the next daemon, when the socket was inherited). Resolves
  /// once no accepted peer is left unserved (then connections() counts every one).
  kj::Promise<void> stop_accepting();

  /// Stops accepting, closes every connection and removes the socket (unless inherited).
  void close();

  /// Serves this node's Node on an already connected stream (the guest end of a VM's
  /// channel) until the session ends. The stream must outlive the returned promise.
  kj::Promise<void> serve(kj::AsyncIoStream& stream);

  /// Connections open now.
  size_t connections() const noexcept {
    return connections_;
  }

  /// Connections accepted since start (unix socket and TCP).
  uint64_t connections_accepted() const noexcept {
    return accepted_;
  }

  /// Calls the gateway forwarded to the bus, and their error answers (metrics).
  const bridge::counters& bus_totals() const noexcept {
    return bridge_.totals();
  }

private:
  class node_server;
  class denied_node;
  struct connection;

  void start_accepting(const std::string& what);
  kj::Promise<void> accept_loop();
  /// The accept loop again, unless draining.
  kj::Promise<void> next_accept();
  void listen_tcp();
  kj::Promise<void> tcp_accept_loop();
  void admit_tcp(kj::Own<kj::AsyncIoStream> stream);
  /// Logs an accept failure and waits before the next try (10 ms doubling up to 1 s).
  kj::Promise<void> accept_backoff(unsigned& failures_in_a_row, const kj::Exception& e);
  kj::Promise<void> serve_tls(kj::Own<kj::AsyncIoStream> stream, std::string peer);
  kj::Promise<void> serve(kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client boot,
                          std::string peer);
  message_limits limits() const;
  gateway_stats_fn stats_fn();
  bool allowed(uid_t uid, gid_t gid, pid_t pid) const;
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  gateway_config cfg_;
  registry_actor registry_;
  /// Memory of incoming messages, all connections (cfg_.total_message_bytes).
  std::shared_ptr<message_budget> budget_;
  bridge bridge_;
  stream_router router_;
  progress_router progress_;
  vm_links vm_links_;
  kj::Own<kj::ConnectionReceiver> listener_;
  ino_t socket_inode_ = 0;
  size_t connections_ = 0;
  uint64_t accepted_ = 0;
  /// stop_accepting() was called: the loops end after serving what they accepted.
  bool draining_ = false;
  size_t handshakes_ = 0;
  /// Accept failures in a row (EMFILE, ENFILE, ...): the back-off before the next try.
  unsigned accept_failures_ = 0;
  unsigned tcp_accept_failures_ = 0;
  std::unique_ptr<kj::TaskSet> tasks_;
  kj::Promise<void> accepting_ = nullptr;
  kj::Own<kj::ConnectionReceiver> tcp_listener_;
  kj::Promise<void> tcp_accepting_ = nullptr;
};

} // namespace cyto::services
