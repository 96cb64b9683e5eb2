#pragma once
// Mutual TLS over any kj::AsyncIoStream, with OpenSSL and memory BIOs, on the kj event
// loop (nothing blocks: OpenSSL only ever sees bytes already read, and what it wants to
// send is written by kj). kj-tls 0.9 shows only the peer's CN; this adapter hands out the
// peer certificate's SPIFFE URI SAN, which is what cyto authorizes on.
//
// Used by the gateway (server side) and the CLI (client side); depends on kj and libssl
// only.

#include <memory>
#include <string>

#include <kj/async-io.h>

struct ssl_ctx_st;

namespace cyto::services {

/// PEM files of one side of a mutual-TLS connection.
struct tls_files {
  std::string cert; ///< our certificate (chain)
  std::string key;  ///< its private key
  std::string ca;   ///< the only CA whose certificates the peer may present
};

/// A TLS stream after its handshake: the peer presented a certificate of our CA.
class tls_stream;

/// One SSL_CTX: TLS 1.2+, our certificate and key, peers verified against `ca` only
/// (a server requires a client certificate). Make one per listener or client.
class tls_context {
public:
  enum class side { server, client };

  /// Loads the files; throws std::runtime_error naming the file and OpenSSL's reason.
  tls_context(side s, const tls_files& files);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  /// Runs the handshake over `inner`; the promise fails (kj DISCONNECTED, with OpenSSL's
  /// reason: no certificate, unknown CA, expired...) if the peer is refused, and is
  /// broken by `timeout` if the handshake takes longer.
  kj::Promise<kj::Own<tls_stream>> wrap(kj::Own<kj::AsyncIoStream> inner, kj::Timer& timer,
                                        kj::Duration timeout);

private:
  side side_;
  ssl_ctx_st* ctx_ = nullptr;
};

class tls_stream final : public kj::AsyncIoStream {
public:
  struct impl;
  explicit tls_stream(kj::Own<impl> i);
  ~tls_stream() noexcept(false);

  /// The peer certificate's SPIFFE ID (its one spiffe:// URI SAN); empty if it has none.
  const std::string& peer_id() const;

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, uint* length) override;
  void setsockopt(int level, int option, const void* value, uint length) override;
  void getsockname(struct sockaddr* addr, uint* length) override;
  void getpeername(struct sockaddr* addr, uint* length) override;

private:
  kj::Own<impl> impl_;
};

} // namespace cyto::services
