#pragma once
// Watches processes through pidfds on one thread of its own (epoll; no polling, no
// SIGCHLD reaper) and reports each exit once through a callback.

#include <cstdint>
#include <functional>
#include <string>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace cyto::cells {

/// How a process ended.
struct exit_report {
  /// False for processes we did not start (re-adopted after a restart): the kernel
  /// tells only that they exited, not how.
  bool known = true;
  int code = 0;   // exit code if it exited
  int signal = 0; // signal that killed it, else 0
};

class exit_watcher {
public:
  /// `on_exit(token, report)` runs on the watcher's thread.
  using callback = std::function<void(uint64_t token, exit_report report)>;
  /// `on_line(token, stream, line)` runs on the watcher's thread for each complete line
  /// appended to a followed file (stream 1 = stdout, 2 = stderr); `offset` is where the
  /// line starts in the file.
  using line_callback =
    std::function<void(uint64_t token, int stream, std::string line, uint64_t offset)>;

  explicit exit_watcher(callback on_exit, line_callback on_line = {});
  ~exit_watcher();

  exit_watcher(const exit_watcher&) = delete;
  exit_watcher& operator=(const exit_watcher&) = delete;

  /// Watches the process behind `pidfd` (duplicated; the caller keeps its own fd).
  /// Returns false if the fd cannot be watched.
  bool watch(uint64_t token, int pidfd);

  /// Follows what is appended to `path` from its current end (inotify; the writer is the
  /// workload, so it never depends on the daemon being alive). Stops when the process
  /// behind `token` exits, after a last read.
  /// With `from_end`, only what is appended from now on (a re-adopted process's file,
  /// whose earlier lines were published by the daemon that started it).
  /// When lines are seen is kept beside the file, in `<path>.times` (see output_times):
  /// made anew for a new run, appended to with `from_end`.
  bool follow(uint64_t token, int stream, const std::string& path, bool from_end = false);

private:
  struct followed {
    uint64_t token;
    int stream;
    int fd;
    std::string partial;
    /// File offset of the first byte of `partial`.
    uint64_t offset = 0;
    /// `<path>.times`, -1 if it could not be made.
    int times_fd = -1;
  };

  void run();
  void drain(followed& f);

  callback on_exit_;
  line_callback on_line_;
  int inotify_fd_ = -1;
  std::unordered_map<int, followed> files_; // inotify watch descriptor -> file; watcher thread only
  std::mutex files_mtx_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  std::mutex mtx_;
  std::unordered_map<int, uint64_t> tokens_; // watched fd -> token, guarded by mtx_
  std::thread thread_;
};

} // namespace cyto::cells
