#include "services/tls_stream.hpp"

#include <cstring>
#include <stdexcept>
#include <vector>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <kj/debug.h>

namespace cyto::services {

namespace {

/// OpenSSL's reasons queued on this thread, "; "-joined (and the queue cleared).
std::string ssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (!reason) {
      ERR_error_string_n(e, buf, sizeof(buf));
      reason = buf;
    }
    if (out.find(reason) != std::string::npos)
      continue;
    if (!out.empty())
      out += "; ";
    out += reason;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

[[noreturn]] void fail_file(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " " + path + ": " + ssl_errors());
}

/// The certificate's one spiffe:// URI SAN; empty when it has none or several.
std::string spiffe_id(X509* cert) {
  std::string id;
  int found = 0;
  auto* names =
    static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names)
    return id;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI)
      continue;
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string text{reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                     static_cast<size_t>(ASN1_STRING_length(uri))};
    if (text.rfind("spiffe://", 0) == 0 && text.find('\0') == std::string::npos) {
      id = std::move(text);
      ++found;
    }
  }
  GENERAL_NAMES_free(names);
  return found == 1 ? id : std::string{};
}

/// A kj DISCONNECTED exception (the RPC layer treats the connection as gone).
kj::Exception disconnected(const std::string& why) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__, kj::str(why.c_str()));
}

constexpr size_t read_chunk = 32 * 1024;
/// Writes up to this size are joined into one TLS record.
constexpr size_t coalesce_limit = 16 * 1024;

} // namespace

// -- the connection state --------------------------------------------------------

struct tls_stream::impl {
  impl(kj::Own<kj::AsyncIoStream> s, SSL* ssl_) : inner(kj::mv(s)), ssl(ssl_) {
    in_bio = BIO_new(BIO_s_mem());
    out_bio = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_bio, -1); // empty means "retry", not EOF
    SSL_set_bio(ssl, in_bio, out_bio);  // ssl owns both
  }
  ~impl() {
    SSL_free(ssl);
  }

  /// Hands what OpenSSL wrote to out_bio to the transport, after earlier writes. The
  /// result completes when these bytes are written; dropping it does not cancel them.
  kj::Promise<void> send_pending() {
    size_t n = BIO_ctrl_pending(out_bio);
    if (n > 0) {
      auto data = kj::heapArray<kj::byte>(n);
      BIO_read(out_bio, data.begin(), static_cast<int>(n));
      auto done = queue.addBranch()
                    .then([this, data = kj::mv(data)]() mutable {
                      auto ptr = data.asPtr();
                      return inner->write(ptr.begin(), ptr.size()).attach(kj::mv(data));
                    })
                    .fork();
      queue = kj::mv(done);
    }
    return queue.addBranch();
  }

  /// Reads what the transport has into in_bio; false at end of stream.
  kj::Promise<bool> fill() {
    return inner->tryRead(in_buf, 1, sizeof(in_buf)).then([this](size_t n) {
      if (n == 0)
        return false;
      BIO_write(in_bio, in_buf, static_cast<int>(n));
      return true;
    });
  }

  /// The reason of a failed SSL call, with the certificate check's verdict if it failed.
  std::string failure() {
    std::string why = ssl_errors();
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      why += std::string{" ("} + X509_verify_cert_error_string(verify) + ")";
    return why;
  }

  kj::Promise<void> handshake() {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
      return send_pending();
    int err = SSL_get_error(ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
      return send_pending().then([this] { return fill(); }).then([this](bool more) {
        if (!more)
          throw disconnected("TLS handshake: the peer closed the connection");
        return handshake();
      });
    }
    auto why = "TLS handshake failed: " + failure();
    // Send our alert (e.g. "unknown ca") so the peer learns why, then fail.
    return send_pending().then(
      [why]() -> kj::Promise<void> { throw disconnected(why); },
      [why](kj::Exception&&) -> kj::Promise<void> { throw disconnected(why); });
  }

  kj::Promise<size_t> read(kj::byte* buf, size_t min_bytes, size_t max_bytes, size_t done) {
    while (done < min_bytes) {
      ERR_clear_error();
      size_t n = 0;
      int rc = SSL_read_ex(ssl, buf + done, max_bytes - done, &n);
      if (rc == 1) {
        done += n;
        continue;
      }
      int err = SSL_get_error(ssl, rc);
      if (BIO_ctrl_pending(out_bio) > 0)
        (void)send_pending(); // e.g. a key update answer: goes out in order with writes
      if (err == SSL_ERROR_WANT_READ) {
        return fill().then([this, buf, min_bytes, max_bytes, done](bool more) {
          if (!more)
            return kj::Promise<size_t>(done);
          return read(buf, min_bytes, max_bytes, done);
        });
      }
      if (err == SSL_ERROR_ZERO_RETURN) // the peer's close_notify
        return done;
      throw disconnected("TLS: " + failure());
    }
    return done;
  }

  kj::Promise<void> write_all(const void* data, size_t size) {
    if (size == 0)
      return send_pending();
    ERR_clear_error();
    size_t written = 0;
    if (SSL_write_ex(ssl, data, size, &written) != 1 || written != size)
      return disconnected("TLS write: " + failure());
    return send_pending();
  }

  kj::Own<kj::AsyncIoStream> inner;
  SSL* ssl;
  BIO* in_bio;
  BIO* out_bio;
  kj::ForkedPromise<void> queue = kj::Promise<void>(kj::READY_NOW).fork();
  std::vector<kj::byte> scratch;
  std::string peer_id;
  kj::byte in_buf[read_chunk];
};

// -- tls_stream --------------------------------------------------------------------

tls_stream::tls_stream(kj::Own<impl> i) : impl_(kj::mv(i)) {
}

tls_stream::~tls_stream() noexcept(false) = default;

const std::string& tls_stream::peer_id() const {
  return impl_->peer_id;
}

kj::Promise<size_t> tls_stream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  return impl_->read(static_cast<kj::byte*>(buffer), min_bytes, max_bytes, 0);
}

kj::Promise<void> tls_stream::write(const void* buffer, size_t size) {
  return impl_->write_all(buffer, size);
}

kj::Promise<void> tls_stream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  size_t total = 0;
  for (auto& p : pieces)
    total += p.size();
  if (pieces.size() == 1 || total > coalesce_limit) {
    for (auto& p : pieces) {
      ERR_clear_error();
      size_t written = 0;
      if (p.size() > 0
          && (SSL_write_ex(impl_->ssl, p.begin(), p.size(), &written) != 1 || written != p.size()))
        return disconnected("TLS write: " + impl_->failure());
    }
    return impl_->send_pending();
  }
  // One record for a capnp message's segment table and segments.
  auto& buf = impl_->scratch;
  buf.clear();
  for (auto& p : pieces)
    buf.insert(buf.end(), p.begin(), p.end());
  return impl_->write_all(buf.data(), buf.size());
}

kj::Promise<void> tls_stream::whenWriteDisconnected() {
  return impl_->inner->whenWriteDisconnected();
}

void tls_stream::shutdownWrite() {
  ERR_clear_error();
  SSL_shutdown(impl_->ssl); // queues close_notify
  auto* i = impl_.get();
  // After the close_notify (and every earlier write) reaches the transport.
  auto sent = i->send_pending().then([i] { i->inner->shutdownWrite(); }, [](kj::Exception&&) {});
  i->queue = sent.fork();
}

void tls_stream::abortRead() {
  impl_->inner->abortRead();
}

void tls_stream::getsockopt(int level, int option, void* value, uint* length) {
  impl_->inner->getsockopt(level, option, value, length);
}

void tls_stream::setsockopt(int level, int option, const void* value, uint length) {
  impl_->inner->setsockopt(level, option, value, length);
}

void tls_stream::getsockname(struct sockaddr* addr, uint* length) {
  impl_->inner->getsockname(addr, length);
}

void tls_stream::getpeername(struct sockaddr* addr, uint* length) {
  impl_->inner->getpeername(addr, length);
}

// -- tls_context -------------------------------------------------------------------

tls_context::tls_context(side s, const tls_files& files) : side_(s) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(s == side::server ? TLS_server_method() : TLS_client_method());
  if (!ctx_)
    throw std::runtime_error("SSL_CTX_new: " + ssl_errors());
  auto fail = [this](const std::string& what, const std::string& path) {
    SSL_CTX_free(ctx_);
    ctx_ = nullptr;
    fail_file(what, path);
  };
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx_, files.cert.c_str()) != 1)
    fail("cannot load the certificate", files.cert);
  if (SSL_CTX_use_PrivateKey_file(ctx_, files.key.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("cannot load the private key", files.key);
  if (SSL_CTX_check_private_key(ctx_) != 1)
    fail("the private key does not match the certificate", files.key);
  // Only our CA: no system trust store.
  if (SSL_CTX_load_verify_locations(ctx_, files.ca.c_str(), nullptr) != 1)
    fail("cannot load the CA", files.ca);
  // The peer's certificate must be meant for its side (extended key usage).
  SSL_CTX_set_purpose(ctx_, s == side::server ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER);
  if (s == side::server) {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    if (auto* names = SSL_load_client_CA_file(files.ca.c_str()))
      SSL_CTX_set_client_CA_list(ctx_, names);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx_, 0);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
}

tls_context::~tls_context() {
  if (ctx_)
    SSL_CTX_free(ctx_);
}

kj::Promise<kj::Own<tls_stream>> tls_context::wrap(kj::Own<kj::AsyncIoStream> inner,
                                                   kj::Timer& timer, kj::Duration timeout) {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl)
    return disconnected("SSL_new: " + ssl_errors());
  if (side_ == side::server)
    SSL_set_accept_state(ssl);
  else
    SSL_set_connect_state(ssl);
  auto i = kj::heap<tls_stream::impl>(kj::mv(inner), ssl);
  auto& ref = *i;
  auto done = ref.handshake().then([i = kj::mv(i)]() mutable {
    X509* cert = SSL_get0_peer_certificate(i->ssl);
    if (!cert)
      throw disconnected("TLS: the peer presented no certificate");
    i->peer_id = spiffe_id(cert);
    return kj::heap<tls_stream>(kj::mv(i));
  });
  auto seconds = timeout / kj::SECONDS;
  return done.exclusiveJoin(timer.afterDelay(timeout).then([seconds]() -> kj::Own<tls_stream> {
    throw disconnected("TLS handshake timed out after " + std::to_string(seconds) + " s");
  }));
}

} // namespace cyto::services
