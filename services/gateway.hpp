#pragma once
// The Cap'n Proto gateway: listens on the unix socket, checks each peer, and hands an
// allowed peer the Node bootstrap capability (a refused one gets a Node whose every
// call fails with cyto.permission_denied).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <sys/types.h>

#include <caf/actor_system.hpp>
#include <kj/async-io.h>

#include "bus/interfaces.hpp"
#include "services/bridge.hpp"
#include "services/images_service.hpp"
#include "services/observe_service.hpp"
#include "services/vm_links.hpp"

namespace cyto::services {

struct gateway_config {
  std::string socket_path;
  /// Group owning the socket and allowed to call, besides root and cytod's own uid.
  std::optional<gid_t> group;
  /// Where VMs keep their files (<state>/vms): VM <name>'s guest channel is QEMU's
  /// socket <vm_dir>/<name>/channel.sock.
  std::string vm_dir;
  /// Connections held at once; past it a new peer is closed right after accept (logged).
  size_t max_connections = 4096;
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

  /// Stops accepting, closes every connection and removes the socket.
  void close();

  /// Serves this node's Node on an already connected stream (the guest end of a VM's
  /// channel) until the session ends. The stream must outlive the returned promise.
  kj::Promise<void> serve(kj::AsyncIoStream& stream);

  /// Connections open now.
  size_t connections() const noexcept {
    return connections_;
  }

private:
  class node_server;
  class denied_node;
  struct connection;

  kj::Promise<void> accept_loop();
  bool allowed(uid_t uid, gid_t gid, pid_t pid) const;
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  gateway_config cfg_;
  registry_actor registry_;
  bridge bridge_;
  stream_router router_;
  progress_router progress_;
  vm_links vm_links_;
  kj::Own<kj::ConnectionReceiver> listener_;
  ino_t socket_inode_ = 0;
  size_t connections_ = 0;
  /// Accept failures in a row (EMFILE, ENFILE, ...): the back-off before the next try.
  unsigned accept_failures_ = 0;
  std::unique_ptr<kj::TaskSet> tasks_;
  kj::Promise<void> accepting_ = nullptr;
};

} // namespace cyto::services
