#include "actors/containers/file_wait.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bus/errc.hpp"

namespace cyto::containers {

namespace {

struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

} // namespace

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uint64_t process_start_time(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = text.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream in{text.substr(close + 2)};
  std::string field;
  // Fields after "comm": state is field 3, start time is field 22.
  for (int i = 3; i <= 22; ++i)
    if (!(in >> field))
      return 0;
  return std::stoull(field);
}

caf::expected<std::string> wait_for_file(const std::string& path, pid_t pid,
                                         std::chrono::milliseconds timeout) {
  auto dir = path.substr(0, path.rfind('/'));
  fd_guard in{::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)};
  if (in.fd < 0 || ::inotify_add_watch(in.fd, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
    return make_error(errc::internal, "watch " + dir + ": " + std::strerror(errno));
  fd_guard pidfd;
  if (pid > 0) {
    pidfd.fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd.fd < 0 && !exists(path))
      return make_error(errc::unavailable,
                        "process " + std::to_string(pid) + " ended before writing " + path);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (exists(path))
      return read_file(path);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return make_error(errc::timeout,
                        path + " did not appear within " + std::to_string(timeout.count()) + " ms");
    pollfd fds[2] = {{in.fd, POLLIN, 0}, {pidfd.fd, POLLIN, 0}};
    int n = ::poll(fds, pidfd.fd >= 0 ? 2 : 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR)
      return make_error(errc::internal, std::string{"poll: "} + std::strerror(errno));
    if (n > 0 && (fds[0].revents & POLLIN)) {
      char buf[4096];
      while (::read(in.fd, buf, sizeof(buf)) > 0) {
      }
    }
    if (n > 0 && pidfd.fd >= 0 && (fds[1].revents & POLLIN)) {
      if (exists(path))
        return read_file(path);
      return make_error(errc::unavailable,
                        "process " + std::to_string(pid) + " ended before writing " + path);
    }
  }
}

} // namespace cyto::containers
