#pragma once
// Both ends of the host <-> guest channel at the gateway (see vm_channel.hpp):
// `guest_channel` serves this cytod's Node on the VM's virtio-serial port; `vm_links`
// holds the host's one capnp connection per VM to the cytod inside it.

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "schema/node.capnp.h"
#include "services/vm_channel.hpp"

namespace cyto::services {

/// /dev/vportNpM of the virtio-serial port named `name` (/sys/class/virtio-ports/*/name),
/// or "" when there is none.
std::string find_virtio_port(const std::string& name);

/// Guest side: waits for the port to appear, then serves one host session after another
/// on it, each after the channel handshake.
class guest_channel : private kj::TaskSet::ErrorHandler {
public:
  /// `serve` runs a capnp session on the stream and resolves when it ends.
  using serve_fn = std::function<kj::Promise<void>(kj::AsyncIoStream&)>;

  guest_channel(kj::AsyncIoContext& io, std::string port_name, serve_fn serve);

  /// Starts looking for the port; returns at once.
  void start();

private:
  kj::Promise<void> open_port(unsigned attempt);
  kj::Promise<void> sessions();
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  std::string port_name_;
  serve_fn serve_;
  kj::Own<channel_stream> stream_;
  kj::TaskSet tasks_{*this};
};

/// Host side: one capnp connection per VM, made on first use and dropped when it breaks
/// (QEMU gone, guest cytod restarted); the next call connects again.
class vm_links : private kj::TaskSet::ErrorHandler {
public:
  explicit vm_links(kj::AsyncIoContext& io, kj::Duration handshake_timeout = 10 * kj::SECONDS);
  ~vm_links() noexcept(false);

  /// The Node of the cytod in VM `vm`, whose channel is QEMU's socket `channel_path`.
  /// Fails with cyto.unavailable when nothing listens there or no cytod answers.
  kj::Promise<schema::Node::Client> node(const std::string& vm, const std::string& channel_path);

  /// VMs with a connection (made or being made).
  size_t size() const noexcept {
    return links_.size();
  }

private:
  struct link;
  kj::Promise<void> connect(link& l);
  void drop(const std::string& vm, const link* which);
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  kj::Duration timeout_;
  std::map<std::string, kj::Own<link>> links_;
  kj::TaskSet tasks_{*this};
};

} // namespace cyto::services
