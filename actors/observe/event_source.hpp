#pragma once
// The reader of the kernel's event ring buffer: one thread of its own (never a scheduler
// thread) that epolls the probe's fd, maps each event to cyto's terms (pid_resolver reads
// /proc as early as possible) and hands them on in batches. It never waits for the
// receiver: past `max_in_flight` events handed on but not yet consumed, it drops and
// counts, so a slow actor cannot back up into the ring buffer.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/observe/resolver.hpp"
#include "bus/observe.hpp"
#include "ebpf/probe.hpp"

namespace cyto::observe {

class event_source {
public:
  /// Runs on the source's thread with each batch, in order.
  using deliver_fn = std::function<void(std::vector<observed_event>&&)>;

  struct counters {
    uint64_t submitted = 0;    // written to the ring buffer (kernel)
    uint64_t ringbuf_lost = 0; // ring buffer full (kernel)
    uint64_t consumed = 0;     // read from the ring buffer
    uint64_t lost_actor = 0;   // dropped here: the receiver was behind
    uint64_t proc_reads = 0;   // pid_resolver cache misses
  };

  /// Starts the thread. `probe` is shared with whoever opened it (the config that
  /// carries it is copied); this source is its only reader.
  event_source(std::shared_ptr<ebpf::probe> probe, std::string cgroup_root, deliver_fn deliver,
               size_t max_in_flight = 1 << 16, size_t max_batch = 512);
  ~event_source();

  event_source(const event_source&) = delete;
  event_source& operator=(const event_source&) = delete;

  /// The receiver has handled `n` events (frees room for more).
  void consumed(size_t n) noexcept {
    in_flight_.fetch_sub(n, std::memory_order_relaxed);
  }

  counters stats() const;

private:
  void run();

  std::shared_ptr<ebpf::probe> probe_;
  pid_resolver resolver_;
  deliver_fn deliver_;
  size_t max_in_flight_;
  size_t max_batch_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> consumed_{0};
  std::atomic<uint64_t> lost_actor_{0};
  std::atomic<uint64_t> proc_reads_{0};
  int stop_fd_ = -1;
  std::thread thread_;
};

} // namespace cyto::observe
