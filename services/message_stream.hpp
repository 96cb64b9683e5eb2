#pragma once
// How the gateway reads Cap'n Proto messages: capnp's own reader allocates whatever a
// segment table announces (up to 64 MiB a message) before a byte of it has arrived, so a
// few peers announcing large messages and sending slowly hold a lot of memory. This
// MessageStream reads the segment table itself and checks the announced size against
// two limits before it allocates: what one connection may hold in messages (read or
// being read, until the RPC system lets go of them) and what all connections together
// may hold. A message over either limit, or a bad segment table, ends the connection.
//
// It also watches what goes out: the RPC system answers a protocol error (a malformed
// frame, a message it cannot make sense of, a limit above) with an Abort message before
// it disconnects, and that is where the gateway logs
//   "gateway: protocol violation from <peer>: <what>"
// (debug; over a limit: warn), once per connection.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <capnp/serialize-async.h>
#include <kj/async-io.h>

namespace cyto::services {

/// Memory held for incoming messages: what all connections hold together.
class message_budget {
public:
  explicit message_budget(size_t limit_bytes) : limit_(limit_bytes) {
  }
  size_t limit() const noexcept {
    return limit_;
  }
  size_t in_use() const noexcept {
    return in_use_;
  }
  /// Takes `n` bytes if they fit.
  bool take(size_t n) noexcept {
    if (n > limit_ - in_use_)
      return false;
    in_use_ += n;
    return true;
  }
  void give_back(size_t n) noexcept {
    in_use_ -= n;
  }

private:
  size_t limit_;
  size_t in_use_ = 0;
};

struct message_limits {
  /// Bytes of messages one connection may hold at once (one message is refused past it).
  size_t per_connection = 8u << 20;
  /// Shared by every connection using it; null: no total limit.
  std::shared_ptr<message_budget> total;
};

class limited_message_stream final : public capnp::MessageStream {
public:
  /// `peer` names the other end in logs ("pid=12 uid=0", "127.0.0.1:5000 spiffe://...").
  limited_message_stream(kj::AsyncIoStream& stream, message_limits limits, std::string peer);
  ~limited_message_stream() noexcept(false);

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
    kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options = capnp::ReaderOptions(),
    kj::ArrayPtr<capnp::word> scratchSpace = nullptr) override;
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int> fds,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments)
    override;
  kj::Promise<void> writeMessages(
    kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override;
  kj::Maybe<int> getSendBufferSize() override;
  kj::Promise<void> end() override;

  /// Bytes of messages this connection holds now.
  size_t held() const noexcept;

  /// The largest segment count a message may have (capnp's own reader's limit).
  static constexpr uint32_t max_segments = 512;

  struct state; // shared with the readers it hands out, which may outlive it

private:
  void watch_outgoing(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments);

  kj::AsyncIoStream& stream_;
  capnp::AsyncIoMessageStream inner_;
  std::shared_ptr<state> state_;
};

} // namespace cyto::services
