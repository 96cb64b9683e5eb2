#pragma once
// Signals of the runtime's long-lived front ends (shim, exec): they are blocked and read
// from a signalfd, next to a pidfd of the process they supervise, so nothing races with
// the process's exit and no handler runs between clone and exec.

#include <initializer_list>

#include <csignal>
#include <sys/types.h>

namespace cyto::containers::detail {

/// Blocks a set of signals for the calling thread and reads them from a signalfd
/// (close-on-exec). The old mask comes back on destruction.
class signal_fd {
public:
  explicit signal_fd(std::initializer_list<int> sigs);
  ~signal_fd();
  signal_fd(const signal_fd&) = delete;
  signal_fd& operator=(const signal_fd&) = delete;

  bool ok() const noexcept {
    return fd_ >= 0;
  }
  int fd() const noexcept {
    return fd_;
  }
  /// A pending signal's number, 0 when none.
  int take() const;

private:
  sigset_t set_{}, old_{};
  int fd_ = -1;
};

/// Until the process behind `pidfd` has exited: signals in `forward` that arrive on
/// `sigs` are sent to it, others are dropped.
void forward_until_exit(const signal_fd& sigs, int pidfd, std::initializer_list<int> forward);

/// Resets every catchable signal to its default disposition: one ignored by whoever
/// started us would stay ignored across exec, in the container.
void default_dispositions();

/// pidfd_open(2); -1 on error.
int open_pidfd(pid_t pid);

} // namespace cyto::containers::detail
