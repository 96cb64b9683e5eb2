#include "cli/client.hpp"

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace cyto::cli {

namespace {

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

} // namespace

std::string describe(const kj::Exception& e) {
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

client::client(const std::string& socket_path)
  : io_(kj::setupAsyncIo()),
    stream_(io_.lowLevelProvider->wrapSocketFd(connect_unix(socket_path),
                                               kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
    rpc_(kj::heap<capnp::TwoPartyClient>(*stream_)),
    node_(rpc_->bootstrap().castAs<schema::Node>()) {
}

client::client(const global_options& g) : client(g.socket) {
  if (g.vm.empty())
    return;
  // Pipelined: the first real call carries the VM lookup's error (cyto.not_found ...).
  auto req = node_.vmRequest();
  req.setName(g.vm);
  node_ = req.send().getNode();
}

} // namespace cyto::cli
