#pragma once
// A bounded queue with credit: the shape of every subscription on the bus.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace cyto {

/// Holds events for one subscriber. The subscriber grants credit; `take` hands out
/// at most that many. Past `capacity` queued events the oldest is dropped and
/// counted, so a slow subscriber costs bounded memory and never blocks a publisher.
template <class T>
class outbox {
public:
  struct batch {
    std::vector<T> items;
    /// Events dropped just before `items`.
    uint64_t dropped = 0;
  };

  outbox(size_t capacity, size_t credit) : capacity_(std::max<size_t>(capacity, 1)),
                                           credit_(credit) {
  }

  /// Queues one event, dropping the oldest if full.
  void push(T x) {
    if (queue_.size() == capacity_) {
      queue_.pop_front();
      ++dropped_;
      ++total_dropped_;
    }
    queue_.push_back(std::move(x));
  }

  /// Counts `n` events lost before the next ones, upstream of this queue.
  void lost(uint64_t n) noexcept {
    dropped_ += n;
    total_dropped_ += n;
  }

  /// Grants credit for `n` more events.
  void grant(size_t n) noexcept {
    credit_ += n;
  }

  /// True if `take` would hand out anything: only with credit. A drop count waits for
  /// credit too and keeps adding up, so a stalled subscriber is sent nothing at all
  /// (no stream of drop markers) and hears the whole count once it reads again.
  bool ready() const noexcept {
    return credit_ > 0 && (!queue_.empty() || dropped_ > 0);
  }

  /// Hands out up to min(credit, max_items) events and the drop count since last time.
  batch take(size_t max_items = SIZE_MAX) {
    batch out;
    out.dropped = dropped_;
    dropped_ = 0;
    auto n = std::min({credit_, max_items, queue_.size()});
    out.items.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      out.items.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    credit_ -= n;
    return out;
  }

  size_t size() const noexcept {
    return queue_.size();
  }

  size_t credit() const noexcept {
    return credit_;
  }

  size_t capacity() const noexcept {
    return capacity_;
  }

  uint64_t total_dropped() const noexcept {
    return total_dropped_;
  }

private:
  size_t capacity_;
  size_t credit_;
  std::deque<T> queue_;
  uint64_t dropped_ = 0;
  uint64_t total_dropped_ = 0;
};

/// Grants subscription `id` of `subs` (a map of id -> something with an `outbox` member
/// `box`) credit for `n` events. Returns true if it has something to send now.
template <class Map>
bool grant_credit(Map& subs, uint64_t id, size_t n) {
  auto i = subs.find(id);
  if (i == subs.end())
    return false;
  i->second.box.grant(n);
  return i->second.box.ready();
}

} // namespace cyto
