#include "actors/observe/event_source.hpp"

#include <cerrno>
#include <csignal>

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace cyto::observe {

event_source::event_source(std::shared_ptr<ebpf::probe> probe, std::string cgroup_root,
                           deliver_fn deliver, size_t max_in_flight, size_t max_batch)
    : probe_(std::move(probe)), resolver_(std::move(cgroup_root)), deliver_(std::move(deliver)),
      max_in_flight_(max_in_flight), max_batch_(max_batch),
      stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread{[this] { run(); }};
}

event_source::~event_source() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof(one));
  thread_.join();
  ::close(stop_fd_);
}

event_source::counters event_source::stats() const {
  counters c;
  auto p = probe_->counters();
  c.submitted = p.submitted;
  c.ringbuf_lost = p.ringbuf_lost;
  c.consumed = consumed_.load(std::memory_order_relaxed);
  c.lost_actor = lost_actor_.load(std::memory_order_relaxed);
  c.proc_reads = proc_reads_.load(std::memory_order_relaxed);
  return c;
}

void event_source::run() {
  // Signals belong to the daemon's main loop.
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = stop_fd_;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd_, &ev);
  ev.data.fd = probe_->fd();
  ::epoll_ctl(ep, EPOLL_CTL_ADD, probe_->fd(), &ev);
  std::vector<observed_event> batch;
  batch.reserve(max_batch_);
  auto flush = [&] {
    if (batch.empty())
      return;
    in_flight_.fetch_add(static_cast<int64_t>(batch.size()), std::memory_order_relaxed);
    deliver_(std::move(batch));
    batch = {};
    batch.reserve(max_batch_);
  };
  auto on_event = [&](const ebpf::event& e) {
    consumed_.fetch_add(1, std::memory_order_relaxed);
    // Resolve even when dropping: exits must still clear the cache and /proc is read
    // while the process still exists.
    auto oe = resolver_.resolve(e);
    if (in_flight_.load(std::memory_order_relaxed) + static_cast<int64_t>(batch.size()) >=
        static_cast<int64_t>(max_in_flight_)) {
      lost_actor_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    batch.push_back(std::move(oe));
    if (batch.size() >= max_batch_)
      flush();
  };
  epoll_event events[4];
  for (;;) {
    // With wakeup batching the ring may hold records that raised no wakeup: come back
    // within poll_again_ms() while events are flowing.
    int n = ::epoll_wait(ep, events, 4, probe_->poll_again_ms());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    bool stop = false;
    for (int i = 0; i < n; ++i)
      stop = stop || events[i].data.fd == stop_fd_;
    if (stop)
      break;
    // Drain what is there now, then hand the rest of the batch on before sleeping.
    while (probe_->poll(0, on_event) > 0) {
    }
    proc_reads_.store(resolver_.stats().misses, std::memory_order_relaxed);
    flush();
  }
  ::close(ep);
}

} // namespace cyto::observe
