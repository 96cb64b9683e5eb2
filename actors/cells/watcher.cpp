#include "actors/cells/watcher.hpp"

#include <cerrno>
#include <csignal>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace cyto::cells {

exit_watcher::exit_watcher(callback on_exit)
  : on_exit_(std::move(on_exit)),
    epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
    stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = stop_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &ev);
  thread_ = std::thread{[this] { run(); }};
}

exit_watcher::~exit_watcher() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof(one));
  thread_.join();
  for (auto& [fd, token] : tokens_)
    ::close(fd);
  ::close(stop_fd_);
  ::close(epoll_fd_);
}

bool exit_watcher::watch(uint64_t token, int pidfd) {
  int fd = ::fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return false;
  {
    std::lock_guard guard{mtx_};
    tokens_[fd] = token;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    std::lock_guard guard{mtx_};
    tokens_.erase(fd);
    ::close(fd);
    return false;
  }
  return true;
}

void exit_watcher::run() {
  // Signals belong to the daemon's main loop, not to this thread.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  epoll_event events[32];
  for (;;) {
    int n = ::epoll_wait(epoll_fd_, events, 32, -1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == stop_fd_)
        return;
      exit_report report;
      siginfo_t info{};
      if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &info, WEXITED) == 0) {
        if (info.si_code == CLD_EXITED)
          report.code = info.si_status;
        else
          report.signal = info.si_status;
      } else {
        report.known = false; // not our child (re-adopted): it exited, how is unknown
      }
      uint64_t token;
      {
        std::lock_guard guard{mtx_};
        token = tokens_[fd];
        tokens_.erase(fd);
      }
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      ::close(fd);
      on_exit_(token, report);
    }
  }
}

} // namespace cyto::cells
