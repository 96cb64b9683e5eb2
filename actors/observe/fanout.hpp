#pragma once
// Fans kernel events out to subscribers by filter. Plain C++ (no CAF): each subscriber
// has a bounded queue with credit (bus/outbox.hpp); a subscriber that falls behind loses
// its oldest events, counted, and never slows the publisher or anyone else.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "bus/observe.hpp"
#include "bus/outbox.hpp"

namespace cyto::observe {

/// Whether `e` passes `f`.
bool matches(const event_filter& f, const observed_event& e) noexcept;

/// Whether `cell` is `scope` or (if `nested`) a cell under it.
bool in_scope(const std::string& scope, bool nested, const std::string& cell) noexcept;

class event_fanout {
public:
  struct counters {
    uint64_t published = 0;
    uint64_t delivered = 0;
    uint64_t lost = 0;
  };

  /// Adds subscriber `id` with a queue of `capacity` events and `credit` initial demand.
  void add(uint64_t id, event_filter filter, size_t capacity, size_t credit);

  /// Removes a subscriber (a no-op for unknown ids). Returns whether it existed.
  bool remove(uint64_t id);

  bool contains(uint64_t id) const {
    return subs_.count(id) > 0;
  }

  /// Queues `e` for every subscriber whose filter it passes.
  void publish(const observed_event& e);

  /// Grants `id` credit for `n` events; true if it has something to send now.
  bool grant(uint64_t id, size_t n);

  /// Hands every subscriber that can take something its events, in batches of at most
  /// `max_batch`: send(id, events, lost_before_them).
  template <class Send>
  void drain(size_t max_batch, Send&& send) {
    for (auto& [id, s] : subs_) {
      while (s.box.ready()) {
        auto b = s.box.take(max_batch);
        counters_.delivered += b.items.size();
        send(id, std::move(b.items), b.dropped);
      }
    }
  }

  size_t size() const noexcept {
    return subs_.size();
  }

  const counters& stats() const noexcept {
    return counters_;
  }

private:
  struct subscriber {
    event_filter filter;
    outbox<observed_event> box;
  };

  std::unordered_map<uint64_t, subscriber> subs_;
  counters counters_;
};

} // namespace cyto::observe
