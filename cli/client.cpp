#include "cli/client.hpp"

#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace cyto::cli {

namespace client_impl {

int connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path))
    throw cli_error("socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw cli_error(std::string{"socket: "} + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
    return fd;
  int err = errno;
  ::close(fd);
  std::string hint;
  switch (err) {
    case ENOENT: hint = " (is cytod running? `make run` starts it)"; break;
    case ECONNREFUSED: hint = " (stale socket: cytod is not running)"; break;
    case EACCES:
    case EPERM: hint = " (run as root or as a member of the socket's group)"; break;
    default: break;
  }
  throw cli_error("cannot connect to " + path + ": " + std::strerror(err) + hint);
}

/// Connecting and the TLS handshake together may take this long.
constexpr auto connect_timeout = 10 * kj::SECONDS;

} // namespace client_impl

std::string describe(const kj::Exception& e) {
  using namespace client_impl;
  std::string text = e.getDescription().cStr();
  if (auto pos = text.find("cyto."); pos != std::string::npos)
    return text.substr(pos);
  for (const char* noise : {"remote exception: ", "Disconnected: "})
    if (auto pos = text.find(noise); pos != std::string::npos)
      text = text.substr(pos + std::strlen(noise));
  if (e.getType() == kj::Exception::Type::DISCONNECTED)
    return "cyto.unavailable: connection to cytod lost: " + text;
  return "cyto.internal: " + text;
}

client::client(const global_options& g) : io_(kj::setupAsyncIo()), node_(nullptr) {
  using namespace client_impl;
  if (g.connect.empty()) {
    stream_ = io_.lowLevelProvider->wrapSocketFd(connect_unix(g.socket),
                                                 kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  } else {
    if (g.cert.empty() || g.key.empty() || g.ca.empty())
      throw cli_error("--connect needs --cert, --key and --ca (see `make pki`)");
    try {
      tls_ = std::make_unique<services::tls_context>(services::tls_context::side::client,
                                                     services::tls_files{g.cert, g.key, g.ca});
    } catch (const std::exception& e) {
      throw cli_error(e.what());
    }
    auto& timer = io_.provider->getTimer();
    try {
      auto tcp = timer
                   .timeoutAfter(connect_timeout,
                                 io_.provider->getNetwork()
                                   .parseAddress(g.connect.c_str())
                                   .then([](kj::Own<kj::NetworkAddress> a) {
                                     return a->connect().attach(kj::mv(a));
                                   }))
                   .wait(io_.waitScope);
      int one = 1;
      tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto tls = tls_->wrap(kj::mv(tcp), timer, connect_timeout).wait(io_.waitScope);
      if (tls->peer_id().find("/node/") == std::string::npos)
        throw cli_error("cannot connect to " + g.connect + ": its certificate is not a node's ("
                        + (tls->peer_id().empty() ? "no SPIFFE ID" : tls->peer_id()) + ")");
      stream_ = kj::mv(tls);
    } catch (const kj::Exception& e) {
      throw cli_error("cannot connect to " + g.connect + ": " + e.getDescription().cStr());
    }
  }
  rpc_ = kj::heap<capnp::TwoPartyClient>(*stream_);
  node_ = rpc_->bootstrap().castAs<schema::Node>();
  // Another node of the federation, reached through this one (pipelined: an unknown or
  // down node fails the first call).
  if (!g.node.empty()) {
    auto req = node_.nodeRequest();
    req.setName(g.node);
    node_ = req.send().getNode();
  }
  // The cytod inside a VM (of that node), pipelined likewise.
  if (!g.vm.empty()) {
    auto req = node_.vmRequest();
    req.setName(g.vm);
    node_ = req.send().getNode();
  }
}

} // namespace cyto::cli
