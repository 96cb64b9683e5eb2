#include "actors/containers/signals.hpp"

#include <algorithm>
#include <cerrno>

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace cyto::containers::detail {

signal_fd::signal_fd(std::initializer_list<int> sigs) {
  sigemptyset(&set_);
  for (int s : sigs)
    sigaddset(&set_, s);
  ::sigprocmask(SIG_BLOCK, &set_, &old_);
  fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
}

signal_fd::~signal_fd() {
  if (fd_ >= 0)
    ::close(fd_);
  ::sigprocmask(SIG_SETMASK, &old_, nullptr);
}

int signal_fd::take() const {
  signalfd_siginfo info{};
  if (::read(fd_, &info, sizeof(info)) != static_cast<ssize_t>(sizeof(info)))
    return 0;
  return static_cast<int>(info.ssi_signo);
}

void forward_until_exit(const signal_fd& sigs, int pidfd, std::initializer_list<int> forward) {
  for (;;) {
    pollfd p[2] = {{pidfd, POLLIN, 0}, {sigs.fd(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
      return;
    if (p[1].revents & POLLIN)
      while (int sig = sigs.take())
        if (std::find(forward.begin(), forward.end(), sig) != forward.end())
          ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
  }
}

void default_dispositions() {
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s)
    if (s != SIGKILL && s != SIGSTOP)
      ::sigaction(s, &sa, nullptr); // glibc's reserved real-time signals fail: harmless
}

int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

} // namespace cyto::containers::detail
