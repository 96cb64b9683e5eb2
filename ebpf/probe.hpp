// The contract between ebpf/ (kernel programs + loader) and actors/observe/.
// The loader owns one BPF ring buffer fed by tracepoints on signal generation,
// exec, exit and OOM kills; the observe actor polls it and maps events to
// cells. Nothing here includes libbpf or CAF, so both sides build alone.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cyto::ebpf {

enum class event_kind : std::uint8_t { signal = 1, exec = 2, exit = 3, oom = 4 };

// One decoded kernel event. Pids are host (init pid namespace) ids; the
// observe side adds the pid inside the workload's namespace (NSpid).
struct event {
  event_kind kind{};
  std::uint64_t timestamp_ns = 0;  // bpf_ktime_get_ns(): CLOCK_MONOTONIC
  // The process the event is about: the signal's target, the exec'd or
  // exiting task, the OOM victim.
  std::uint32_t pid = 0;   // thread id
  std::uint32_t tgid = 0;  // process id
  std::uint64_t cgroup_id = 0;  // cgroup v2 id of that task (0 when unknown)
  std::uint64_t pids_cgroup_id = 0;  // its cgroup's id in the pids hierarchy (v1)
  char comm[16]{};
  // signal: signo, result of delivery (0 = delivered), the sender.
  std::int32_t signo = 0;
  std::int32_t signal_result = 0;
  std::uint32_t sender_pid = 0;
  std::uint32_t sender_tgid = 0;
  char sender_comm[16]{};
  // exit: the wait(2)-style status (exit code << 8 | terminating signal).
  std::int32_t exit_status = 0;
  // exec: the file name passed to execve (truncated).
  char filename[128]{};
  // pid and tgid inside the subject's own pid namespace (NSpid's last field;
  // equal to pid/tgid for a task in the host's namespace).
  std::uint32_t ns_pid = 0;
  std::uint32_t ns_tgid = 0;
};

// Per-stage loss and delivery counters.
struct probe_counters {
  std::uint64_t submitted = 0;      // events written to the ring buffer
  std::uint64_t ringbuf_lost = 0;   // reserve failures in the kernel (buffer full)
  std::uint64_t consumed = 0;       // events handed to poll()'s callback
};

// Kernel-side cost of one program, from the kernel's BPF statistics: both
// stay 0 unless the sysctl kernel.bpf_stats_enabled is 1.
struct program_stats {
  std::string name;
  std::uint64_t run_time_ns = 0;  // total time spent in the program
  std::uint64_t run_cnt = 0;      // times it ran
};

// How to open the probe (every field has a working default).
struct probe_options {
  // Ring buffer size in bytes: a power of two, at least one page. A signal,
  // exit or OOM record takes 96 bytes in the ring, an exec record 224.
  std::uint32_t ringbuf_bytes = 8u << 20;
  // 0: the kernel may wake fd() for every record (whenever the consumer has
  // caught up), so fd() is readable whenever events wait. N > 0: at most one
  // wakeup per N µs, which cuts the kernel's cost per event several-fold at
  // high rates; records between wakeups are found by poll() with a timeout,
  // or by calling poll(0) again within poll_again_ms() of the last one.
  std::uint32_t wakeup_interval_us = 0;
};

class probe {
 public:
  // Opens, loads and attaches every program. Returns nullptr and fills `why`
  // when BPF, BTF or tracefs is unavailable; the daemon then runs without it.
  static std::unique_ptr<probe> open(std::string& why);
  static std::unique_ptr<probe> open(std::string& why, const probe_options& options);
  // Whether open() can work here: loads the programs without attaching them
  // (tens of ms) and mounts tracefs like open() does. False with `why` set
  // otherwise. For `cyto discover`.
  static bool supported(std::string& why);
  virtual ~probe() = default;

  // An fd that turns readable when events are waiting (epoll-able).
  virtual int fd() const = 0;
  // Consumes waiting events, waiting up to timeout_ms (0: don't wait).
  // Returns the number consumed, or a negative errno.
  virtual int poll(int timeout_ms, const std::function<void(const event&)>& fn) = 0;
  virtual probe_counters counters() const = 0;
  // How long a caller that waits on fd() itself may wait before calling
  // poll(0) again: -1 when fd() alone suffices (always, unless
  // wakeup_interval_us is set and events were consumed in the last two
  // intervals). poll() with a timeout handles this itself.
  virtual int poll_again_ms() const { return -1; }
  // One entry per program (empty by default, e.g. for a test double).
  virtual std::vector<program_stats> stats() const { return {}; }
};

}  // namespace cyto::ebpf
