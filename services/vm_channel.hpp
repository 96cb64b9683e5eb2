#pragma once
// The host <-> guest channel: one virtio-serial port ("org.cyto.channel.0"), seen by the
// guest as /dev/vportNpM and by the host as QEMU's unix socket. It is one byte stream
// with no connection boundaries: a host cytod that restarts, or a guest cytod that
// restarts, finds the other side in the middle of an old Cap'n Proto session. So each
// session starts with a small handshake that resynchronises the stream:
//
//   host -> guest   HELLO(n)  every 250 ms until READY(n) arrives   (n: random nonce)
//   guest -> host   READY(n)  for the newest HELLO seen
//   host -> guest   GO(n)     then the host's first capnp message
//   guest -> host   WAIT(0)   once a second while the guest waits for a HELLO
//
// A frame is 16 bytes: an 8-byte tag starting with 0xff 0xff, then the nonce (little
// endian). Each side drops every byte before the frame it waits for, so junk of an old
// session is skipped. Read as a capnp segment table a frame claims ~1.6e9 segments,
// so a frame arriving inside a capnp session (a host that reconnected, a guest that
// waits again) makes the peer's capnp reader fail at once; its side then ends the
// session and handshakes anew.

#include <cstdint>

#include <kj/async-io.h>
#include <kj/timer.h>
#include <kj/vector.h>

namespace cyto::services {

/// A channel end as a kj stream. Bytes read past a handshake frame are kept for the
/// next reader (the capnp session); shutdownWrite does nothing, since a port has no
/// half-close and the next session uses the same stream.
class channel_stream final : public kj::AsyncIoStream {
public:
  explicit channel_stream(kj::Own<kj::AsyncIoStream> inner) : inner_(kj::mv(inner)) {
  }

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner_->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner_->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override {
    return inner_->whenWriteDisconnected();
  }
  void shutdownWrite() override {
  }

  /// Puts bytes back in front of the stream.
  void unread(kj::ArrayPtr<const kj::byte> bytes);

private:
  kj::Own<kj::AsyncIoStream> inner_;
  kj::Vector<kj::byte> pending_;
};

/// Guest side: resolves once a host has said HELLO, got READY and said GO; the stream
/// then carries that host's capnp session. End of stream (no host connected) is waited
/// out, never an error. Never resolves while no host talks.
kj::Promise<void> channel_accept(channel_stream& stream, kj::Timer& timer);

/// Host side: resolves once the guest answered our HELLO and we said GO. Fails with a
/// DISCONNECTED exception at end of stream (QEMU went away), and with a plain one when
/// no READY came within `timeout` (no cytod in the guest yet).
kj::Promise<void> channel_connect(channel_stream& stream, kj::Timer& timer, kj::Duration timeout);

} // namespace cyto::services
