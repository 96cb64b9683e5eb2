#include "actors/containers/attach.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

namespace cyto::containers {

namespace {

constexpr size_t header_size = 5;
/// A client that sends a frame larger than this is dropped (the gateway sends ≤ 64 KiB).
constexpr uint32_t max_frame = 1u << 20;

void close_fd(int& fd) {
  if (fd >= 0)
    ::close(fd);
  fd = -1;
}

/// Writes all of `data` to a (blocking) client socket; false once it has gone.
bool send_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    auto n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    auto n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

} // namespace

attach_server::~attach_server() {
  for (auto& c : clients_)
    close_fd(c.fd);
  close_fd(listen_fd_);
  close_fd(master_);
  close_fd(stdin_);
  if (!path_.empty())
    ::unlink(path_.c_str());
}

status attach_server::listen(const std::string& path) {
  auto slash = path.rfind('/');
  auto dir = slash == std::string::npos ? std::string{"."} : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return from_errno(errno, "open " + dir);
  auto via = "/proc/self/fd/" + std::to_string(dfd) + "/" +
             path.substr(slash == std::string::npos ? 0 : slash + 1);
  path_ = path;
  ::unlink(path_.c_str());
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, via.c_str(), via.size() + 1);
  mode_t old = ::umask(0177);
  bool ok = listen_fd_ >= 0 &&
            ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
            ::listen(listen_fd_, 8) == 0;
  int err = errno;
  ::umask(old);
  ::close(dfd);
  if (!ok) {
    close_fd(listen_fd_);
    return from_errno(err, "listen on " + path_);
  }
  return {};
}

status attach_server::wait_first_client(int ms) {
  pollfd p{listen_fd_, POLLIN, 0};
  int n;
  while ((n = ::poll(&p, 1, ms)) < 0 && errno == EINTR)
    ;
  if (n > 0)
    accept_one();
  auto path = path_;
  ::unlink(path_.c_str());
  path_.clear();
  if (clients_.empty())
    return {"unavailable", "nobody attached to " + path + " in time"};
  return {};
}

void attach_server::set_master(int fd) {
  master_ = fd;
  ::fcntl(master_, F_SETFL, ::fcntl(master_, F_GETFL) | O_NONBLOCK);
}

void attach_server::set_stdin(int fd) {
  stdin_ = fd;
  ::fcntl(stdin_, F_SETFL, ::fcntl(stdin_, F_GETFL) | O_NONBLOCK);
}

void attach_server::fill(std::vector<pollfd>& fds) const {
  int target = master_ >= 0 ? master_ : stdin_;
  fds.push_back({listen_fd_, POLLIN, 0});
  fds.push_back({master_hung_up_ ? -1 : master_, POLLIN, 0});
  fds.push_back({pending_.empty() ? -1 : target, POLLOUT, 0});
  for (auto& c : clients_)
    fds.push_back({pending_.empty() ? c.fd : -1, POLLIN, 0});
}

void attach_server::serve(const std::vector<pollfd>& fds, size_t first) {
  if (fds.size() < first + 3 + clients_.size())
    return;
  if (fds[first + 1].revents & (POLLIN | POLLHUP | POLLERR))
    relay_output();
  if (fds[first + 2].revents)
    flush_input();
  // Clients first (indices match clients_), then new ones.
  size_t n = clients_.size();
  std::vector<bool> gone(n, false);
  for (size_t i = 0; i < n; ++i)
    if (fds[first + 3 + i].revents)
      gone[i] = !read_client(clients_[i]);
  for (size_t i = n; i-- > 0;)
    if (gone[i]) {
      close_fd(clients_[i].fd);
      clients_.erase(clients_.begin() + static_cast<long>(i));
    }
  if (fds[first].revents & POLLIN)
    accept_one();
}

void attach_server::accept_one() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
      return;
    clients_.push_back({fd, {}});
  }
}

bool attach_server::read_client(client& c) {
  char buf[16384];
  auto n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0)
    return errno == EAGAIN || errno == EINTR;
  if (n == 0)
    return false; // detached (or the gateway's client went away): the container runs on
  c.in.append(buf, static_cast<size_t>(n));
  while (c.in.size() >= header_size) {
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i)
      len |= static_cast<uint32_t>(static_cast<unsigned char>(c.in[1 + i])) << (8 * i);
    if (len > max_frame)
      return false;
    if (c.in.size() < header_size + len)
      break;
    handle_frame(c.in[0], c.in.substr(header_size, len));
    c.in.erase(0, header_size + len);
  }
  return true;
}

void attach_server::handle_frame(char type, const std::string& payload) {
  switch (type) {
  case 'i':
    pending_ += payload;
    flush_input();
    break;
  case 'e':
    if (master_ < 0) {
      close_after_ = true; // once what is queued is in
      flush_input();
    }
    break;
  case 'w':
    if (master_ >= 0 && payload.size() >= 4) {
      auto u16 = [&](size_t at) {
        return static_cast<unsigned short>(static_cast<unsigned char>(payload[at]) |
                                           (static_cast<unsigned char>(payload[at + 1]) << 8));
      };
      winsize ws{};
      ws.ws_row = u16(0);
      ws.ws_col = u16(2);
      ::ioctl(master_, TIOCSWINSZ, &ws);
    }
    break;
  default:
    break;
  }
}

void attach_server::flush_input() {
  int target = master_ >= 0 ? master_ : stdin_;
  if (target < 0) {
    pending_.clear();
    return;
  }
  while (!pending_.empty()) {
    auto n = ::write(target, pending_.data(), pending_.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (n <= 0) { // the container closed its stdin
      pending_.clear();
      return;
    }
    pending_.erase(0, static_cast<size_t>(n));
  }
  if (close_after_)
    close_stdin();
}

void attach_server::close_stdin() {
  close_fd(stdin_);
}

void attach_server::relay_output() {
  if (master_ < 0)
    return;
  char buf[16384];
  for (;;) {
    auto n = ::read(master_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EIO)
      master_hung_up_ = true; // every slave fd is closed: nothing more comes
    if (n <= 0)
      return;
    write_all(1, buf, static_cast<size_t>(n));
    for (auto& c : clients_)
      if (c.fd >= 0 && !send_all(c.fd, buf, static_cast<size_t>(n)))
        ::shutdown(c.fd, SHUT_WR);
  }
}

void attach_server::finish() {
  relay_output();
  for (auto& c : clients_) {
    ::shutdown(c.fd, SHUT_RDWR);
    close_fd(c.fd);
  }
  clients_.clear();
  close_fd(listen_fd_);
  close_fd(master_);
  close_fd(stdin_);
  if (!path_.empty())
    ::unlink(path_.c_str());
  path_.clear();
}

void serve_until_exit(attach_server* attach, const detail::signal_fd& sigs, int pidfd,
                      std::initializer_list<int> forward) {
  if (!attach)
    return detail::forward_until_exit(sigs, pidfd, forward);
  for (;;) {
    std::vector<pollfd> p = {{pidfd, POLLIN, 0}, {sigs.fd(), POLLIN, 0}};
    attach->fill(p);
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    attach->serve(p, 2);
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
      return;
    if (p[1].revents & POLLIN)
      while (int sig = sigs.take())
        if (std::find(forward.begin(), forward.end(), sig) != forward.end())
          ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
  }
}

} // namespace cyto::containers
