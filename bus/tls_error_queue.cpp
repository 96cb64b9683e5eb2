// Works around CAF 0.17's openssl module leaving OpenSSL's per-thread error queue dirty.
//
// When a TLS handshake fails (e.g. a peer with a certificate of another CA), CAF's
// session only drains the error queue when its logging is compiled in, which Debian's
// build is not. The stale error stays in the queue of the multiplexer thread, and the
// next SSL_read on any *other* connection that merely has no data yet (WANT_READ) is
// then reported by SSL_get_error as SSL_ERROR_SSL: CAF drops a healthy peer. OpenSSL
// requires an empty queue before each TLS I/O call, so we interpose the four calls CAF
// makes and clear the queue first. The executable's definitions take precedence over
// libssl's for libcaf_openssl (and for anybody else, to whom clearing is harmless).
// A failed handshake is logged here too (logger "tls"): CAF would not say why.

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "bus/logging.hpp"

namespace cyto::bus::detail {

/// Called by configure_federation so that the linker keeps this file.
void use_tls_error_queue_fix() noexcept {
}

template <class F>
F next_symbol(const char* name) {
  return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

/// Logs why a TLS handshake failed (CAF does not say), without consuming the error:
/// the caller's SSL_get_error still sees it.
void log_handshake_failure(SSL* ssl, int ret, const char* side) {
  if (ret > 0 || SSL_get_error(ssl, ret) != SSL_ERROR_SSL)
    return;
  char why[256] = "unknown error";
  if (auto e = ERR_peek_error())
    ERR_error_string_n(e, why, sizeof(why));
  std::string peer = "?";
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(SSL_get_fd(ssl), reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    char host[INET6_ADDRSTRLEN] = "";
    uint16_t port = 0;
    if (addr.ss_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&addr);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
      port = ntohs(in->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      auto* in = reinterpret_cast<sockaddr_in6*>(&addr);
      ::inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
      port = ntohs(in->sin6_port);
    }
    peer = std::string{host} + ":" + std::to_string(port);
  }
  cyto::log::get("tls")->warn("TLS handshake {} {} failed: {}", side, peer, why);
}

} // namespace cyto::bus::detail

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static auto real = cyto::bus::detail::next_symbol<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static auto real = cyto::bus::detail::next_symbol<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static auto real = cyto::bus::detail::next_symbol<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  auto ret = real(ssl);
  cyto::bus::detail::log_handshake_failure(ssl, ret, "from");
  return ret;
}

int SSL_connect(SSL* ssl) {
  static auto real = cyto::bus::detail::next_symbol<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  auto ret = real(ssl);
  cyto::bus::detail::log_handshake_failure(ssl, ret, "to");
  return ret;
}

} // extern "C"
