#include "actors/cells/watcher.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>

#include "bus/output_times.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace cyto::cells {

exit_watcher::exit_watcher(callback on_exit, output_callback on_output, output_limits limits)
  : on_exit_(std::move(on_exit)),
    on_output_(std::move(on_output)),
    limits_(limits),
    inotify_fd_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)),
    wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
    epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
    stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  limits_.chunk = std::max<size_t>(limits_.chunk, 1);
  limits_.window = std::max(limits_.window, limits_.chunk);
  limits_.max_runs = std::max<size_t>(limits_.max_runs, 1);
  epoll_event ev{};
  ev.events = EPOLLIN;
  for (int fd : {stop_fd_, wake_fd_, inotify_fd_}) {
    if (fd < 0)
      continue;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
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
  ::close(wake_fd_);
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
  if (inotify_fd_ < 0 || !on_output_)
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
  followed f;
  f.token = token;
  f.stream = stream;
  f.fd = fd;
  f.pos = start;
  f.times_fd = times;
  files_[wd] = std::move(f);
  return true;
}

void exit_watcher::ack(uint64_t token, int stream, size_t bytes) {
  {
    std::lock_guard guard{acks_mtx_};
    auto& a = acks_[{token, stream}];
    a.first += bytes;
    ++a.second;
  }
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof(one));
}

void exit_watcher::emit(followed& f, size_t n) {
  std::string data;
  if (n == f.partial.size()) {
    data = std::move(f.partial);
    f.partial.clear();
  } else {
    data = f.partial.substr(0, n);
    f.partial.erase(0, n);
  }
  auto at = f.pos;
  auto skipped = f.skipped;
  f.pos += n;
  f.unacked += n;
  ++f.unacked_runs;
  f.skipped = 0;
  // When the run was read: one record in `.times` per run (the lines that end before
  // f.pos, and any skipped just before them), the same time its subscribers get.
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  auto now = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  if (f.times_fd >= 0) {
    output_time_record r{f.pos, now};
    [[maybe_unused]] auto w = ::write(f.times_fd, &r, sizeof(r));
  }
  on_output_(f.token, f.stream, std::move(data), at, skipped, now);
}

void exit_watcher::skip_ahead(followed& f, uint64_t size) {
  if (size < limits_.window || size - limits_.window <= f.pos)
    return;
  auto target = size - limits_.window;
  // Lines skipped: every '\n' up to the first one at or after target, where reading
  // starts again on a line boundary. `partial` holds none.
  skip_buf_.resize(1 << 20);
  uint64_t lines = 0;
  auto at = f.pos + f.partial.size();
  while (at < target) {
    auto n = ::pread(f.fd, skip_buf_.data(), std::min<uint64_t>(skip_buf_.size(), target - at),
                     static_cast<off_t>(at));
    if (n <= 0)
      return; // cannot read it: go on reading as usual
    lines += static_cast<uint64_t>(std::count(skip_buf_.data(), skip_buf_.data() + n, '\n'));
    at += static_cast<uint64_t>(n);
  }
  auto n = ::pread(f.fd, skip_buf_.data(), std::min<uint64_t>(limits_.chunk, size - at),
                   static_cast<off_t>(at));
  if (n > 0)
    if (auto* nl = static_cast<char*>(std::memchr(skip_buf_.data(), '\n', static_cast<size_t>(n)))) {
      ++lines;
      at += static_cast<uint64_t>(nl - skip_buf_.data()) + 1;
    }
  f.pos = at;
  f.partial.clear();
  f.skipped += lines;
}

void exit_watcher::read_to_end(followed& f) {
  // The process exited and its file is read up to where it ended then: the last line
  // without its '\n' goes too, and the file is done.
  if (!f.partial.empty())
    emit(f, f.partial.size());
  f.end = f.pos;
}

void exit_watcher::drain(followed& f) {
  while (may_send(f) && !done(f)) {
    struct stat st {};
    if (::fstat(f.fd, &st) != 0)
      return;
    auto size = static_cast<uint64_t>(st.st_size);
    if (f.end)
      size = std::min(size, *f.end);
    if (size > f.pos + limits_.max_lag)
      skip_ahead(f, size);
    auto at = f.pos + f.partial.size();
    if (at >= size) {
      if (f.end)
        read_to_end(f);
      return; // all there is for now: inotify says when there is more
    }
    auto old = f.partial.size();
    auto room = std::min<uint64_t>(limits_.chunk - old, size - at);
    f.partial.resize(old + room);
    auto n = ::pread(f.fd, f.partial.data() + old, room, static_cast<off_t>(at));
    f.partial.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    if (n <= 0) {
      if (f.end)
        read_to_end(f); // shrunk under us: it ends here
      return;
    }
    if (auto nl = f.partial.rfind('\n'); nl != std::string::npos)
      emit(f, nl + 1);
    else if (f.partial.size() >= limits_.chunk)
      emit(f, f.partial.size()); // a line longer than a chunk is handed on in pieces
  }
}

bool exit_watcher::may_send(const followed& f) const {
  return f.unacked < limits_.window && f.unacked_runs < limits_.max_runs;
}

bool exit_watcher::done(const followed& f) const {
  return f.end && f.pos >= *f.end && f.partial.empty();
}

void exit_watcher::apply_acks() {
  std::map<std::pair<uint64_t, int>, std::pair<size_t, size_t>> acks;
  {
    std::lock_guard guard{acks_mtx_};
    acks.swap(acks_);
  }
  for (auto& [wd, f] : files_) {
    auto a = acks.find({f.token, f.stream});
    if (a == acks.end())
      continue;
    f.unacked -= std::min(f.unacked, a->second.first);
    f.unacked_runs -= std::min(f.unacked_runs, a->second.second);
    drain(f);
  }
}

void exit_watcher::finish_exits() {
  for (auto x = exits_.begin(); x != exits_.end();) {
    bool all_done = true;
    for (auto f = files_.begin(); f != files_.end();) {
      if (f->second.token != x->first) {
        ++f;
        continue;
      }
      if (!done(f->second)) {
        all_done = false;
        ++f;
        continue;
      }
      ::inotify_rm_watch(inotify_fd_, f->first);
      ::close(f->second.fd);
      if (f->second.times_fd >= 0)
        ::close(f->second.times_fd);
      f = files_.erase(f);
    }
    if (!all_done) {
      ++x;
      continue;
    }
    // Last output first, then the exit: readers see the output before the end.
    on_exit_(x->first, x->second);
    x = exits_.erase(x);
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
      if (fd == wake_fd_) {
        uint64_t count;
        [[maybe_unused]] auto r = ::read(wake_fd_, &count, sizeof(count));
        std::lock_guard guard{files_mtx_};
        apply_acks();
        finish_exits();
        continue;
      }
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
        finish_exits();
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
      // Its files are read up to where they end now (what others left running there
      // append later is not its output), as fast as the window allows; the exit is
      // reported once they are.
      std::lock_guard guard{files_mtx_};
      for (auto& [wd, f] : files_) {
        if (f.token != token)
          continue;
        struct stat st {};
        f.end = ::fstat(f.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size)
                                        : f.pos + f.partial.size();
        drain(f);
      }
      exits_[token] = report;
      finish_exits();
    }
  }
}

} // namespace cyto::cells
