#pragma once
// One descriptor over a unix socket (SCM_RIGHTS): the pty master goes from the
// container process to the console socket.

#include <cstring>

#include <sys/socket.h>

namespace cyto::containers::detail {

/// Builds a one-byte message with room for one descriptor.
struct fd_message {
  char byte = 'm';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  fd_message() {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
  }
};

inline bool send_fd(int sock, int fd) {
  fd_message m;
  auto* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  return ::sendmsg(sock, &m.msg, MSG_NOSIGNAL) >= 0;
}

/// The received descriptor (close-on-exec), or -1.
inline int receive_fd(int sock) {
  fd_message m;
  if (::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC) <= 0)
    return -1;
  auto* c = CMSG_FIRSTHDR(&m.msg);
  if (!c || c->cmsg_type != SCM_RIGHTS)
    return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

} // namespace cyto::containers::detail
