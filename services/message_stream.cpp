#include "services/message_stream.hpp"

#include <cstring>

#include <endian.h>

#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/debug.h>

#include "bus/errc.hpp"
#include "bus/logging.hpp"
#include "services/errors.hpp"

namespace cyto::services {

struct limited_message_stream::state {
  message_limits limits;
  std::string peer;
  /// Bytes of this connection's messages alive now (read, or being read).
  size_t held = 0;
  /// Whether the end of this connection has been logged already.
  bool reported = false;

  /// Takes `bytes` for one message, or throws the reason it may not.
  void reserve(size_t bytes) {
    if (bytes > limits.per_connection - std::min(held, limits.per_connection))
      fail(errc::resource_exhausted,
           "a message of " + std::to_string(bytes) + " bytes: over this connection's limit of "
             + std::to_string(limits.per_connection) + " bytes held at once ("
             + std::to_string(held) + " held)");
    if (limits.total && !limits.total->take(bytes))
      fail(errc::resource_exhausted,
           "a message of " + std::to_string(bytes) + " bytes: the gateway holds "
             + std::to_string(limits.total->in_use()) + " of its "
             + std::to_string(limits.total->limit()) + " bytes for incoming messages");
    held += bytes;
  }

  void release(size_t bytes) noexcept {
    held -= bytes;
    if (limits.total)
      limits.total->give_back(bytes);
  }
};

namespace {

using capnp::word;
using segment_list = kj::Array<kj::ArrayPtr<const word>>;

[[noreturn]] void violation(const std::string& what) {
  fail(errc::invalid_argument, what);
}

/// A message read by limited_message_stream: its words, counted against the limits
/// until the RPC system lets go of it.
class held_reader final : public capnp::MessageReader {
public:
  held_reader(std::shared_ptr<limited_message_stream::state> st, size_t bytes,
              kj::Array<word> space, segment_list segments, capnp::ReaderOptions options)
    : MessageReader(options),
      state_(std::move(st)),
      bytes_(bytes),
      space_(kj::mv(space)),
      segments_(kj::mv(segments)) {
  }
  ~held_reader() noexcept(false) {
    state_->release(bytes_);
  }
  kj::ArrayPtr<const word> getSegment(uint id) override {
    return id < segments_.size() ? segments_[id] : nullptr;
  }

private:
  std::shared_ptr<limited_message_stream::state> state_;
  size_t bytes_;
  kj::Array<word> space_;
  segment_list segments_;
};

uint32_t le32(const kj::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return le32toh(v);
}

/// The segment table being read: its first word, then the rest.
struct table_read {
  kj::byte first[8];
  kj::Array<kj::byte> rest;
  uint32_t count = 0;
};

} // namespace

limited_message_stream::limited_message_stream(kj::AsyncIoStream& stream, message_limits limits,
                                               std::string peer)
  : stream_(stream),
    inner_(stream),
    state_(std::make_shared<state>(state{std::move(limits), std::move(peer)})) {
}

limited_message_stream::~limited_message_stream() noexcept(false) = default;

size_t limited_message_stream::held() const noexcept {
  return state_->held;
}

kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> limited_message_stream::tryReadMessage(
  kj::ArrayPtr<kj::AutoCloseFd>, capnp::ReaderOptions options, kj::ArrayPtr<word>) {
  auto table = kj::heap<table_read>();
  auto& t = *table;
  auto& stream = stream_;
  return stream.tryRead(t.first, sizeof(t.first), sizeof(t.first))
    .then([&stream, &t](size_t n) -> kj::Promise<bool> {
      if (n == 0)
        return false; // a clean end between messages
      if (n < sizeof(t.first))
        violation("the connection ended inside a segment table (" + std::to_string(n)
                  + " of its first 8 bytes)");
      t.count = le32(t.first) + 1;
      if (t.count == 0 || t.count > max_segments)
        violation("the segment table announces " + std::to_string(uint64_t{le32(t.first)} + 1)
                  + " segments (at most " + std::to_string(max_segments) + ")");
      if (t.count == 1)
        return true;
      // The other sizes, padded to a whole word.
      t.rest = kj::heapArray<kj::byte>((t.count & ~1u) * 4);
      return stream.read(t.rest.begin(), t.rest.size()).then([] { return true; });
    })
    .then([this, &t, options](bool more) -> kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> {
      if (!more)
        return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
      auto sizes = kj::heapArray<uint32_t>(t.count);
      sizes[0] = le32(t.first + 4);
      uint64_t words = sizes[0];
      for (uint32_t i = 1; i < t.count; ++i) {
        sizes[i] = le32(t.rest.begin() + (i - 1) * 4);
        words += sizes[i];
      }
      if (words > options.traversalLimitInWords)
        violation("the segment table announces a message of " + std::to_string(words * 8)
                  + " bytes, more than any message may have ("
                  + std::to_string(options.traversalLimitInWords * 8) + ")");
      size_t bytes = words * sizeof(word);
      // Before a byte is allocated: refused here, the announcement costs nothing.
      state_->reserve(bytes);
      auto space = kj::heapArray<word>(words);
      auto segments = kj::heapArray<kj::ArrayPtr<const word>>(t.count);
      size_t at = 0;
      for (uint32_t i = 0; i < t.count; ++i) {
        segments[i] = kj::arrayPtr(space.begin() + at, sizes[i]);
        at += sizes[i];
      }
      // The reader owns the reservation from here: whatever happens, it gives it back.
      auto reader = kj::heap<held_reader>(state_, bytes, kj::mv(space), kj::mv(segments),
                                          options);
      auto* base = reinterpret_cast<kj::byte*>(
        const_cast<word*>(reader->getSegment(0).begin()));
      auto read = bytes == 0 ? kj::Promise<void>(kj::READY_NOW) : stream_.read(base, bytes);
      return read.then([reader = kj::mv(reader)]() mutable {
        return kj::Maybe<capnp::MessageReaderAndFds>(
          capnp::MessageReaderAndFds{kj::mv(reader), nullptr});
      });
    })
    .attach(kj::mv(table));
}

void limited_message_stream::watch_outgoing(
  kj::ArrayPtr<const kj::ArrayPtr<const word>> segments) {
  if (state_->reported || segments.size() == 0)
    return;
  // The RPC system says why it gives up on a connection in an Abort, its last message.
  kj::runCatchingExceptions([&] {
    capnp::SegmentArrayMessageReader reader(segments);
    auto msg = reader.getRoot<capnp::rpc::Message>();
    if (msg.which() != capnp::rpc::Message::ABORT)
      return;
    auto abort = msg.getAbort();
    if (abort.getType() == capnp::rpc::Exception::Type::DISCONNECTED)
      return; // the peer hung up (or we did): no violation
    state_->reported = true;
    std::string reason = abort.getReason();
    auto log = log::get("gateway");
    if (reason.rfind(render(errc::resource_exhausted, ""), 0) == 0)
      log->warn("closing the connection of {}: {}", state_->peer, reason);
    else
      log->debug("protocol violation from {}: {}", state_->peer, reason);
  });
}

kj::Promise<void> limited_message_stream::writeMessage(
  kj::ArrayPtr<const int> fds, kj::ArrayPtr<const kj::ArrayPtr<const word>> segments) {
  watch_outgoing(segments);
  return inner_.writeMessage(fds, segments);
}

kj::Promise<void> limited_message_stream::writeMessages(
  kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const word>>> messages) {
  for (auto& m : messages)
    watch_outgoing(m);
  return inner_.writeMessages(messages);
}

kj::Maybe<int> limited_message_stream::getSendBufferSize() {
  return inner_.getSendBufferSize();
}

kj::Promise<void> limited_message_stream::end() {
  return inner_.end();
}

} // namespace cyto::services
