#include "services/socket_activation.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

namespace cyto::services {

namespace {

std::string invalid(const std::string& why) {
  return "cyto.invalid_argument: " + why;
}

const char* kind_of(mode_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG:
    return "a regular file";
  case S_IFDIR:
    return "a directory";
  case S_IFCHR:
    return "a character device";
  case S_IFBLK:
    return "a block device";
  case S_IFIFO:
    return "a pipe";
  case S_IFLNK:
    return "a symbolic link";
  case S_IFSOCK:
    return "a socket";
  default:
    return "not a socket";
  }
}

/// Why `fd` is not a listening unix stream socket, or "" if it is one.
std::string check_listening_unix_stream(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    return "fd " + std::to_string(fd) + " is not open: " + std::strerror(errno);
  if (!S_ISSOCK(st.st_mode))
    return "fd " + std::to_string(fd) + " is " + kind_of(st.st_mode) +
           ", not a listening unix stream socket";
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof(int);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0)
    return "getsockopt SO_DOMAIN on fd " + std::to_string(fd) + ": " + std::strerror(errno);
  len = sizeof(int);
  ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
  len = sizeof(int);
  ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  if (domain != AF_UNIX)
    return "fd " + std::to_string(fd) + " is a socket of address family " + std::to_string(domain) +
           ", not AF_UNIX";
  if (type != SOCK_STREAM)
    return "fd " + std::to_string(fd) + " is a unix socket of type " +
           (type == SOCK_DGRAM       ? std::string{"SOCK_DGRAM"}
            : type == SOCK_SEQPACKET ? std::string{"SOCK_SEQPACKET"}
                                     : std::to_string(type)) +
           ", not SOCK_STREAM";
  if (!listening)
    return "fd " + std::to_string(fd) + " is a unix stream socket that is not listening";
  return {};
}

std::string path_of(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      len <= offsetof(sockaddr_un, sun_path) || addr.sun_path[0] == '\0')
    return {};
  return std::string{addr.sun_path, ::strnlen(addr.sun_path, sizeof(addr.sun_path))};
}

} // namespace

activation take_activation_socket() {
  activation out;
  const char* fds_env = std::getenv("LISTEN_FDS");
  const char* pid_env = std::getenv("LISTEN_PID");
  std::string fds = fds_env ? fds_env : "";
  std::string pid = pid_env ? pid_env : "";
  // Read once, then gone: the shims, QEMU and hooks cytod starts must not see them.
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDNAMES");
  if (!fds_env)
    return out;
  char* end = nullptr;
  errno = 0;
  long n = std::strtol(fds.c_str(), &end, 10);
  if (fds.empty() || *end != '\0' || errno != 0 || n < 0)
    return {-1, {}, invalid("LISTEN_FDS='" + fds + "' is not a number of descriptors")};
  if (n == 0)
    return out;
  if (!pid_env)
    return {-1,
            {},
            invalid("LISTEN_FDS is set but LISTEN_PID is not: the socket was not "
                    "passed the way systemd passes it (sd_listen_fds(3))")};
  errno = 0;
  long p = std::strtol(pid.c_str(), &end, 10);
  if (pid.empty() || *end != '\0' || errno != 0 || p <= 0)
    return {-1, {}, invalid("LISTEN_PID='" + pid + "' is not a process id")};
  if (p != ::getpid())
    return {-1,
            {},
            invalid("LISTEN_PID=" + pid + " names another process, not this cytod (pid " +
                    std::to_string(::getpid()) + "): the sockets were passed to it")};
  if (n != 1)
    return {-1,
            {},
            invalid("LISTEN_FDS=" + fds +
                    ": cytod takes exactly one socket (the "
                    "unix socket of cytod.socket)")};
  int fd = SD_LISTEN_FDS_START;
  if (auto why = check_listening_unix_stream(fd); !why.empty())
    return {-1, {}, invalid("LISTEN_FDS: " + why)};
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0)
    return {-1,
            {},
            invalid("LISTEN_FDS: set close-on-exec on fd 3: " + std::string{std::strerror(errno)})};
  out.fd = fd;
  out.path = path_of(fd);
  return out;
}

} // namespace cyto::services
