#pragma once
// Watches processes through pidfds on one thread of its own (epoll; no polling, no
// SIGCHLD reaper) and reports each exit once through a callback. Follows the output
// files of those processes and hands on what they append, with flow control: what is
// handed on must be acknowledged before more of that file is read.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cyto::cells {

/// How a process ended.
struct exit_report {
  /// False for processes we did not start (re-adopted after a restart): the kernel
  /// tells only that they exited, not how.
  bool known = true;
  int code = 0;   // exit code if it exited
  int signal = 0; // signal that killed it, else 0
};

/// Flow control of followed output files.
struct output_limits {
  /// Bytes of one file handed on and not yet acknowledged before reading it pauses: what
  /// the daemon holds of one stream at most on its way to the subscribers.
  size_t window = 256 << 10;
  /// Runs handed on and not yet acknowledged before reading pauses (a writer of short
  /// lines one at a time makes many small runs).
  size_t max_runs = 64;
  /// Most bytes handed on at once (a line longer than this comes in pieces).
  size_t chunk = 64 << 10;
  /// How far the reader may fall behind the end of the file (a writer faster than the
  /// subscribers take it) before it skips ahead to the last `window` bytes, counting the
  /// lines it skipped. Bounds how late the output and the exit after it are published.
  uint64_t max_lag = 8 << 20;
};

class exit_watcher {
public:
  /// `on_exit(token, report)` runs on the watcher's thread, after the last output of the
  /// process's files was handed on.
  using callback = std::function<void(uint64_t token, exit_report report)>;
  /// `on_output(token, stream, data, offset, skipped, unix_nanos)` runs on the watcher's
  /// thread for what was appended to a followed file (stream 1 = stdout, 2 = stderr):
  /// whole lines ending in '\n' (the last may lack it: a piece of a long line, or the
  /// file's last line at the exit), starting at `offset` in the file, after `skipped`
  /// lines that were skipped (see output_limits::max_lag), read at `unix_nanos`
  /// (CLOCK_REALTIME, the time recorded for the run in `<path>.times`). Each must be
  /// acknowledged with ack().
  using output_callback =
    std::function<void(uint64_t token, int stream, std::string data, uint64_t offset,
                       uint64_t skipped, int64_t unix_nanos)>;

  explicit exit_watcher(callback on_exit, output_callback on_output = {},
                        output_limits limits = {});
  ~exit_watcher();

  exit_watcher(const exit_watcher&) = delete;
  exit_watcher& operator=(const exit_watcher&) = delete;

  /// Watches the process behind `pidfd` (duplicated; the caller keeps its own fd).
  /// Returns false if the fd cannot be watched.
  bool watch(uint64_t token, int pidfd);

  /// Follows what is appended to `path` from its current end (inotify; the writer is the
  /// workload, so it never depends on the daemon being alive). Stops when the process
  /// behind `token` exits, once it has read up to where the file ended then.
  /// With `from_end`, only what is appended from now on (a re-adopted process's file,
  /// whose earlier lines were published by the daemon that started it).
  /// When lines are seen is kept beside the file, in `<path>.times` (see output_times):
  /// made anew for a new run, appended to with `from_end`.
  bool follow(uint64_t token, int stream, const std::string& path, bool from_end = false);

  /// One run that on_output handed on for (token, stream), of `bytes`, was consumed:
  /// reading goes on once less than the window is outstanding. Thread-safe, never blocks
  /// long.
  void ack(uint64_t token, int stream, size_t bytes);

private:
  struct followed {
    uint64_t token = 0;
    int stream = 0;
    int fd = -1;
    /// File offset of the first byte not handed on yet.
    uint64_t pos = 0;
    /// Bytes read from `pos` on that do not end a line yet.
    std::string partial;
    /// `<path>.times`, -1 if it could not be made.
    int times_fd = -1;
    /// Handed on, not acknowledged: bytes and runs.
    size_t unacked = 0;
    size_t unacked_runs = 0;
    /// Lines skipped since the last handed-on run.
    uint64_t skipped = 0;
    /// The process exited: read up to here, then the file is done.
    std::optional<uint64_t> end{};
  };

  void run();
  /// Reads and hands on what the window allows.
  void drain(followed& f);
  /// Skips ahead of a writer that is more than max_lag ahead (file end at `size`).
  void skip_ahead(followed& f, uint64_t size);
  void emit(followed& f, size_t n);
  /// Hands on the rest of an exited process's file and marks it done.
  void read_to_end(followed& f);
  /// Whether the window lets more of `f` be handed on.
  bool may_send(const followed& f) const;
  /// Whether `f` is read up to its end after its process exited.
  bool done(const followed& f) const;
  /// Reports the exits whose files are all done, after closing those.
  void finish_exits();
  void apply_acks();

  callback on_exit_;
  output_callback on_output_;
  output_limits limits_;
  int inotify_fd_ = -1;
  std::unordered_map<int, followed> files_; // inotify watch descriptor -> file
  std::mutex files_mtx_;
  /// Exited processes whose files are not read to their end yet.
  std::map<uint64_t, exit_report> exits_; // watcher thread only
  /// Acknowledgements not applied yet: (token, stream) -> (bytes, runs); wake_fd_ says
  /// there are.
  std::mutex acks_mtx_;
  std::map<std::pair<uint64_t, int>, std::pair<size_t, size_t>> acks_;
  int wake_fd_ = -1;
  std::vector<char> skip_buf_; // watcher thread only
  int epoll_fd_ = -1;
  int stop_fd_ = -1;
  std::mutex mtx_;
  std::unordered_map<int, uint64_t> tokens_; // watched fd -> token, guarded by mtx_
  std::thread thread_;
};

} // namespace cyto::cells
