#pragma once
// Our own small QMP client (QEMU Machine Protocol: one JSON object per line on a unix
// socket). Plain blocking C++: the vms actor runs it on a detached actor's thread.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace cyto::vms {

/// One message QEMU sent.
struct qmp_message {
  enum class kind : uint8_t {
    /// {"QMP": {"version": ..., "capabilities": [...]}}
    greeting,
    /// {"return": ..., "id": N}
    reply,
    /// {"error": {"class": ..., "desc": ...}, "id": N}
    error,
    /// {"event": NAME, "data": {...}, "timestamp": {...}}
    event,
  };
  kind type = kind::reply;
  /// The id of the command a reply or error answers (-1: none given).
  int64_t id = -1;
  /// Event name, or error class.
  std::string name;
  /// The reply's return value, the event's data, or the error's description (string).
  nlohmann::json data;
};

/// Parses one line; invalid_argument for text that is no QMP message.
caf::expected<qmp_message> parse_qmp(std::string_view line);

/// The line (with '\n') that runs `execute` with `arguments` (null: none) under `id`.
std::string qmp_command(std::string_view execute, const nlohmann::json& arguments, uint64_t id);

/// A connected, negotiated QMP session. Owns the socket.
class qmp_client {
public:
  /// Connects to `path`, retrying while it does not exist yet (or refuses) and
  /// `alive()` says QEMU still runs, for up to `timeout`; reads the greeting and
  /// negotiates capabilities. unavailable when QEMU never answered.
  static caf::expected<qmp_client> connect(const std::string& path,
                                           std::chrono::milliseconds timeout,
                                           const std::function<bool()>& alive);

  /// Takes an already connected socket (tests: one end of a socketpair) and negotiates.
  static caf::expected<qmp_client> adopt(int fd, std::chrono::milliseconds timeout);

  qmp_client(qmp_client&& other) noexcept;
  qmp_client& operator=(qmp_client&& other) noexcept;
  qmp_client(const qmp_client&) = delete;
  qmp_client& operator=(const qmp_client&) = delete;
  ~qmp_client();

  /// Sends a command under a fresh id and returns that id.
  caf::expected<uint64_t> send(std::string_view execute,
                               const nlohmann::json& arguments = nullptr);

  /// Blocks for the next message (waits at most `timeout`; zero: forever).
  /// unavailable once the connection closed.
  caf::expected<qmp_message> read(std::chrono::milliseconds timeout = {});

  /// Sends a command and reads until its answer; events read meanwhile go to
  /// `on_event`. The reply's return value, or the error QEMU gave (invalid_argument).
  caf::expected<nlohmann::json> execute(std::string_view execute,
                                        const nlohmann::json& arguments = nullptr,
                                        const std::function<void(qmp_message&)>& on_event = {},
                                        std::chrono::milliseconds timeout = std::chrono::seconds{10});

  /// Unblocks a read on another thread (shutdown of the socket); the client stays valid.
  void shutdown() noexcept;

  /// QEMU's version from the greeting ("7.2.22").
  const std::string& version() const noexcept {
    return version_;
  }

private:
  explicit qmp_client(int fd) : fd_(fd) {
  }
  caf::error handshake(std::chrono::milliseconds timeout);

  int fd_ = -1;
  uint64_t next_id_ = 1;
  std::string buffer_;
  std::string version_;
};

} // namespace cyto::vms
