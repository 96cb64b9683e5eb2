#include "actors/cells/watcher.hpp"

#include <cerrno>
#include <csignal>
#include <ctime>

#include "bus/output_times.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace cyto::cells {

exit_watcher::exit_watcher(callback on_exit, line_callback on_line)
  : on_exit_(std::move(on_exit)),
    on_line_(std::move(on_line)),
    inotify_fd_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)),
    epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
    stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = stop_fd_;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_fd_, &ev);
  if (inotify_fd_ >= 0) {
    ev.data.fd = inotify_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, inotify_fd_, &ev);
  }
  thread_ = std::thread{[this] { run(); }};
}

exit_watcher::~exit_watcher() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof(one));
  thread_.join();
  for (auto& [fd, token] : tokens_)
    ::close(fd);
  for (auto& [wd, f] : files_) {
    ::close(f.fd);
    if (f.times_fd >= 0)
      ::close(f.times_fd);
  }
  if (inotify_fd_ >= 0)
    ::close(inotify_fd_);
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

bool exit_watcher::follow(uint64_t token, int stream, const std::string& path, bool from_end) {
  if (inotify_fd_ < 0 || !on_line_)
    return false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  int wd = ::inotify_add_watch(inotify_fd_, path.c_str(), IN_MODIFY);
  if (wd < 0) {
    ::close(fd);
    return false;
  }
  uint64_t start = 0;
  if (from_end) {
    auto end = ::lseek(fd, 0, SEEK_END);
    start = end > 0 ? static_cast<uint64_t>(end) : 0;
  }
  int times = ::open((path + ".times").c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (from_end ? 0 : O_TRUNC), 0640);
  std::lock_guard guard{files_mtx_};
  files_[wd] = followed{token, stream, fd, {}, start, times};
  return true;
}

void exit_watcher::drain(followed& f) {
  char buf[8192];
  ssize_t n;
  while ((n = ::read(f.fd, buf, sizeof(buf))) > 0) {
    f.partial.append(buf, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = f.partial.find('\n', start)) != std::string::npos) {
      on_line_(f.token, f.stream, f.partial.substr(start, nl - start), f.offset + start);
      start = nl + 1;
    }
    f.partial.erase(0, start);
    f.offset += start;
    if (start > 0 && f.times_fd >= 0) {
      // The lines that end before f.offset were seen now (one record per read).
      timespec ts{};
      ::clock_gettime(CLOCK_REALTIME, &ts);
      output_time_record r{f.offset, int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec};
      [[maybe_unused]] auto w = ::write(f.times_fd, &r, sizeof(r));
    }
    // A line longer than 64 KiB is passed on in pieces rather than held without bound.
    if (f.partial.size() > 65536) {
      auto at = f.offset;
      f.offset += f.partial.size();
      on_line_(f.token, f.stream, std::move(f.partial), at);
      f.partial.clear();
    }
  }
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
      if (fd == inotify_fd_) {
        alignas(inotify_event) char buf[4096];
        ssize_t len;
        std::lock_guard guard{files_mtx_};
        while ((len = ::read(inotify_fd_, buf, sizeof(buf))) > 0) {
          for (char* p = buf; p < buf + len;) {
            auto* ev = reinterpret_cast<inotify_event*>(p);
            if (auto f = files_.find(ev->wd); f != files_.end())
              drain(f->second);
            p += sizeof(inotify_event) + ev->len;
          }
        }
        continue;
      }
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
      {
        // Last lines first, then the exit: readers see the output before the end.
        std::lock_guard guard{files_mtx_};
        for (auto f = files_.begin(); f != files_.end();) {
          if (f->second.token != token) {
            ++f;
            continue;
          }
          drain(f->second);
          if (!f->second.partial.empty())
            on_line_(token, f->second.stream, std::move(f->second.partial), f->second.offset);
          ::inotify_rm_watch(inotify_fd_, f->first);
          ::close(f->second.fd);
          if (f->second.times_fd >= 0)
            ::close(f->second.times_fd);
          f = files_.erase(f);
        }
      }
      on_exit_(token, report);
    }
  }
}

} // namespace cyto::cells
