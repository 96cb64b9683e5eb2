#include "services/vm_channel.hpp"

#include <array>
#include <cstring>

#include <sys/random.h>

#include <kj/debug.h>

namespace cyto::services {

namespace {


enum class tag : uint8_t { hello, ready, go, wait };

constexpr size_t frame_size = 16;
constexpr kj::byte tag_bytes[4][8] = {
  {0xff, 0xff, 'c', 'y', 'H', 'E', 'L', 'O'},
  {0xff, 0xff, 'c', 'y', 'R', 'E', 'D', 'Y'},
  {0xff, 0xff, 'c', 'y', 'G', 'O', 'G', 'O'},
  {0xff, 0xff, 'c', 'y', 'W', 'A', 'I', 'T'},
};

struct frame {
  tag kind;
  uint64_t nonce;
};

kj::Array<kj::byte> encode(tag kind, uint64_t nonce) {
  auto out = kj::heapArray<kj::byte>(frame_size);
  std::memcpy(out.begin(), tag_bytes[static_cast<int>(kind)], 8);
  for (int i = 0; i < 8; ++i)
    out[8 + i] = static_cast<kj::byte>(nonce >> (8 * i));
  return out;
}

/// Slides a 16-byte window over the stream and reports a frame when it fills one.
class scanner {
public:
  kj::Maybe<frame> push(kj::byte b) {
    if (filled_ == frame_size) {
      std::memmove(window_.data(), window_.data() + 1, frame_size - 1);
      --filled_;
    }
    window_[filled_++] = b;
    if (filled_ < frame_size)
      return nullptr;
    for (int t = 0; t < 4; ++t) {
      if (std::memcmp(window_.data(), tag_bytes[t], 8) != 0)
        continue;
      uint64_t nonce = 0;
      for (int i = 0; i < 8; ++i)
        nonce |= static_cast<uint64_t>(window_[8 + i]) << (8 * i);
      filled_ = 0; // a frame is consumed whole: no overlapping matches
      return frame{static_cast<tag>(t), nonce};
    }
    return nullptr;
  }

private:
  std::array<kj::byte, frame_size> window_{};
  size_t filled_ = 0;
};

/// What both ends share: the stream, a frame scanner and a queue that writes frames
/// one after the other (a frame is never cut by another).
struct handshake {
  handshake(channel_stream& s, kj::Timer& t) : stream(s), timer(t) {
  }

  /// The next frame, or nullptr at end of stream; bytes after it stay in the stream.
  kj::Promise<kj::Maybe<frame>> next_frame() {
    return stream.tryRead(buffer.data(), 1, buffer.size())
      .then([this](size_t n) -> kj::Promise<kj::Maybe<frame>> {
        if (n == 0)
          return kj::Maybe<frame>{nullptr};
        for (size_t i = 0; i < n; ++i) {
          KJ_IF_MAYBE (f, seen.push(buffer[i])) {
            stream.unread(kj::arrayPtr(buffer.data() + i + 1, n - i - 1));
            return kj::Maybe<frame>{*f};
          }
        }
        return next_frame();
      });
  }

  void send(tag kind, uint64_t nonce) {
    ++queued;
    writes = writes.then([this, bytes = encode(kind, nonce)]() mutable {
      auto p = stream.write(bytes.begin(), bytes.size());
      return p.attach(kj::mv(bytes)).catch_([](kj::Exception&&) {});
    }).then([this] { --queued; }).eagerlyEvaluate(nullptr); // runs now, not when awaited
  }

  channel_stream& stream;
  kj::Timer& timer;
  scanner seen;
  std::array<kj::byte, 4096> buffer{};
  kj::Promise<void> writes = kj::READY_NOW;
  size_t queued = 0;
  uint64_t nonce = 0;
  bool done = false;
};

struct guest_side : handshake {
  using handshake::handshake;

  kj::Promise<void> step() {
    return next_frame().then([this](kj::Maybe<frame> got) -> kj::Promise<void> {
      KJ_IF_MAYBE (f, got) {
        if (f->kind == tag::hello && (!greeted || f->nonce != nonce)) {
          greeted = true;
          nonce = f->nonce;
          send(tag::ready, nonce);
        } else if (f->kind == tag::go && greeted && f->nonce == nonce) {
          done = true;
          return kj::mv(writes);
        }
        return step();
      }
      // No host on the other end: its next HELLO starts over.
      greeted = false;
      return timer.afterDelay(100 * kj::MILLISECONDS).then([this] { return step(); });
    });
  }

  /// WAIT once a second while no host greeted us, one at a time (a port without a
  /// host takes no bytes).
  kj::Promise<void> waiting() {
    return timer.afterDelay(1 * kj::SECONDS).then([this] {
      if (!greeted && !done && queued == 0)
        send(tag::wait, 0);
      return waiting();
    });
  }

  bool greeted = false;
};

struct host_side : handshake {
  using handshake::handshake;

  kj::Promise<void> step() {
    return next_frame().then([this](kj::Maybe<frame> got) -> kj::Promise<void> {
      KJ_IF_MAYBE (f, got) {
        if (f->kind == tag::ready && f->nonce == nonce) {
          done = true;
          send(tag::go, nonce);
          return kj::mv(writes);
        }
        return step();
      }
      return KJ_EXCEPTION(DISCONNECTED, "the VM's channel closed (QEMU went away)");
    });
  }

  kj::Promise<void> hellos() {
    if (!done && queued == 0)
      send(tag::hello, nonce);
    return timer.afterDelay(250 * kj::MILLISECONDS).then([this] { return hellos(); });
  }
};

} // namespace

kj::Promise<size_t> channel_stream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  if (pending_.empty())
    return inner_->tryRead(buffer, min_bytes, max_bytes);
  size_t n = std::min(max_bytes, pending_.size());
  std::memcpy(buffer, pending_.begin(), n);
  kj::Vector<kj::byte> rest(pending_.size() - n);
  rest.addAll(pending_.begin() + n, pending_.end());
  pending_ = kj::mv(rest);
  if (n >= min_bytes)
    return n;
  return inner_->tryRead(static_cast<kj::byte*>(buffer) + n, min_bytes - n, max_bytes - n)
    .then([n](size_t more) { return n + more; });
}

void channel_stream::unread(kj::ArrayPtr<const kj::byte> bytes) {
  if (bytes.size() == 0)
    return;
  kj::Vector<kj::byte> joined(bytes.size() + pending_.size());
  joined.addAll(bytes);
  joined.addAll(pending_);
  pending_ = kj::mv(joined);
}

kj::Promise<void> channel_accept(channel_stream& stream, kj::Timer& timer) {
  auto side = kj::heap<guest_side>(stream, timer);
  auto p = side->step().exclusiveJoin(side->waiting());
  return p.attach(kj::mv(side));
}

kj::Promise<void> channel_connect(channel_stream& stream, kj::Timer& timer, kj::Duration timeout) {
  auto side = kj::heap<host_side>(stream, timer);
  while (side->nonce == 0)
    KJ_SYSCALL(::getrandom(&side->nonce, sizeof(side->nonce), 0));
  auto p = side->step().exclusiveJoin(side->hellos());
  return timer.timeoutAfter(timeout, kj::mv(p)).attach(kj::mv(side));
}

} // namespace cyto::services
