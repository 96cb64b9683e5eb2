#pragma once
// The kj <-> CAF bridge: how code on the gateway's kj event loop thread talks to actors.
//
// A caf::actor_companion serves as this thread's actor address. A request is enqueued
// straight into the target's mailbox with the companion as sender and an id of ours;
// the reply (and any message pushed to us, such as log batches) lands in the companion,
// whose enqueue handler, on a CAF thread, appends it to a locked queue and writes one
// eventfd only when the queue turns non-empty. The kj loop drains the whole queue per
// wake-up and completes the waiting kj promises on its own thread. So a call costs two
// thread hand-offs, no actor spawn, no blocking, and a burst of replies costs one wake.
// Outgoing requests are held until the end of the current kj turn and enqueued together,
// so a burst of pipelined calls makes the target actor runnable (a scheduler wake-up)
// once instead of once per call.
//
// Every request has a deadline (the bridge's default, 60 s unless configured) unless its
// call site asks with `bridge::infinite` (waits for an exit, pulls, stops with a timeout
// of their own): past it the caller gets "cyto.timeout: ..." and the entry is freed. A
// request whose promise is dropped (the client went away, capnp cancelled the call)
// forgets its entry at once; a late answer to it is dropped.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_companion.hpp>
#include <caf/actor_system.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/node_id.hpp>
#include <caf/response_type.hpp>
#include <kj/async-unix.h>
#include <kj/async.h>
#include <kj/io.h>
#include <kj/time.h>
#include <kj/timer.h>

#include "services/errors.hpp"

namespace cyto::services {

namespace detail {

template <class List>
struct single_response;

template <>
struct single_response<caf::detail::type_list<>> {
  using type = void;
};

template <class T>
struct single_response<caf::detail::type_list<T>> {
  using type = T;
};

} // namespace detail

/// The type an actor behind `Handle` answers to a request of `Ts...` (void for reacts_to).
template <class Handle, class... Ts>
using response_t = typename detail::single_response<
  caf::response_type_t<typename Handle::signatures, caf::detail::strip_and_convert_t<Ts>...>>::type;

class bridge {
public:
  /// The deadline of a request that names none.
  static constexpr kj::Duration default_deadline = 60 * kj::SECONDS;

  /// Marks a request that may legitimately wait without bound: `request(bridge::infinite, ...)`.
  struct infinite_t {
    explicit constexpr infinite_t() = default;
  };
  static constexpr infinite_t infinite{};

  /// Must be made on the kj loop thread it serves. `deadline`: of every request not
  /// marked infinite.
  bridge(caf::actor_system& sys, kj::UnixEventPort& port, kj::Duration deadline = default_deadline);
  ~bridge();

  bridge(const bridge&) = delete;
  bridge& operator=(const bridge&) = delete;

  /// The kj loop's event port, for services that watch a descriptor of their own (the
  /// attach relay).
  kj::UnixEventPort& event_port() noexcept {
    return port_;
  }

  /// Asks `dst` and returns a promise for its typed answer; an error answer rejects
  /// the promise with a "cyto.<code>: ..." exception, no answer within the deadline
  /// with "cyto.timeout: ...". Dropping the promise forgets the request.
  template <class Handle, class... Ts>
    requires(!std::is_same_v<std::decay_t<Handle>, infinite_t>)
  kj::Promise<response_t<Handle, Ts...>> request(const Handle& dst, Ts&&... xs) {
    return ask(deadline_, dst, std::forward<Ts>(xs)...);
  }

  /// The same without a deadline: for calls that wait for something outside cytod
  /// (a process to exit, a registry, a stop timeout of the caller's).
  template <class Handle, class... Ts>
  kj::Promise<response_t<Handle, Ts...>> request(infinite_t, const Handle& dst, Ts&&... xs) {
    return ask(nullptr, dst, std::forward<Ts>(xs)...);
  }

  /// Asks `dst` and runs `then(answer)` or `fail(error)` on the kj thread as soon as the
  /// answer is drained, before any later message from the bus is handled (unlike a
  /// promise continuation, which runs on a later turn). Returns a ticket for `cancel`.
  /// `fail` also runs with a cyto.timeout error past the deadline.
  template <class Handle, class Then, class Fail, class... Ts>
  uint64_t request_then(const Handle& dst, Then then, Fail fail, Ts&&... xs) {
    using R = response_t<Handle, Ts...>;
    return send(caf::actor_cast<caf::strong_actor_ptr>(dst),
                caf::make_message(std::forward<Ts>(xs)...),
                std::make_unique<callback_pending<R, Then, Fail>>(std::move(then), std::move(fail)),
                deadline_);
  }

  /// Forgets a pending request: its answer, if it comes, is dropped.
  void cancel(uint64_t ticket) noexcept;

  /// This bridge as an actor handle: actors may push messages to the gateway through it.
  caf::actor handle() const;

  /// Runs for each message that is not an answer (log batches, ...), on the kj thread.
  using message_handler = std::function<void(const caf::strong_actor_ptr& sender, caf::message&)>;
  void on_message(message_handler handler);

  /// From now on requests to actors of `node` (another node of the federation) fail at
  /// once with "cyto.unavailable: node <name> is down", and those waiting fail now: a
  /// dead connection answers nothing, so without this they would wait forever.
  void node_down(const caf::node_id& node, const std::string& name);

  /// Lets requests to `node` through again (it rejoined on the same connection).
  void node_up(const caf::node_id& node);

  /// Requests still waiting for an answer.
  size_t pending() const noexcept {
    return pending_.size();
  }

  /// Requests that ran out of time so far.
  uint64_t expired() const noexcept {
    return expired_;
  }

  /// The deadline of requests not marked infinite.
  kj::Duration deadline() const noexcept {
    return deadline_;
  }

  /// Requests sent since start, by verb (the atom a request starts with: "pull",
  /// "discover", ...; 0 for requests without one), and how many were answered with an
  /// error (by cyto::errc code, index = code; other categories under errc::internal).
  struct counters {
    uint64_t requests = 0;
    std::unordered_map<uint64_t, uint64_t> by_verb;
    uint64_t errors[static_cast<size_t>(errc_last) + 1] = {};
  };
  const counters& totals() const noexcept {
    return totals_;
  }

private:
  using deadline_map = std::multimap<kj::TimePoint, uint64_t>;

  struct pending_base {
    virtual ~pending_base() noexcept(false) = default;
    virtual void complete(caf::message& answer) = 0;
    /// The node of the actor asked.
    caf::node_id node;
    /// The request's first atom (its verb), for the timeout message.
    caf::atom_value verb = caf::atom("");
    /// Its entry in deadlines_, if it has a deadline.
    std::optional<deadline_map::iterator> deadline;
  };

  template <class Handle, class... Ts>
  kj::Promise<response_t<Handle, Ts...>> ask(kj::Maybe<kj::Duration> deadline, const Handle& dst,
                                             Ts&&... xs) {
    using R = response_t<Handle, Ts...>;
    auto paf = kj::newPromiseAndFulfiller<R>();
    auto id = send(caf::actor_cast<caf::strong_actor_ptr>(dst),
                   caf::make_message(std::forward<Ts>(xs)...),
                   std::make_unique<promise_pending<R>>(kj::mv(paf.fulfiller)), deadline);
    // Runs when the caller is done with the promise: answered (the entry is gone
    // already), expired, or cancelled (dropped by capnp when its client went away).
    return paf.promise.attach(kj::defer([alive = std::weak_ptr<bridge*>(alive_), id] {
      if (auto self = alive.lock())
        (*self)->forget(id);
    }));
  }

  void count_error(const caf::error& err) noexcept;

  template <class R>
  static void unpack(caf::message& answer, auto&& ok, auto&& fail) {
    if (answer.match_elements<caf::error>()) {
      fail(answer.get_mutable_as<caf::error>(0));
    } else if constexpr (std::is_void_v<R>) {
      ok();
    } else if (answer.match_elements<R>()) {
      ok(std::move(answer.get_mutable_as<R>(0)));
    } else {
      fail(cyto::make_error(errc::internal, "unexpected answer: " + caf::to_string(answer)));
    }
  }

  template <class R>
  struct promise_pending final : pending_base {
    explicit promise_pending(kj::Own<kj::PromiseFulfiller<R>> f) : fulfiller(kj::mv(f)) {
    }
    void complete(caf::message& answer) override {
      unpack<R>(
        answer, [this](auto&&... x) { fulfiller->fulfill(std::move(x)...); },
        [this](const caf::error& err) { fulfiller->reject(to_exception(err)); });
    }
    kj::Own<kj::PromiseFulfiller<R>> fulfiller;
  };

  template <class R, class Then, class Fail>
  struct callback_pending final : pending_base {
    callback_pending(Then t, Fail f) : then(std::move(t)), fail(std::move(f)) {
    }
    void complete(caf::message& answer) override {
      unpack<R>(answer, then, fail);
    }
    Then then;
    Fail fail;
  };

  uint64_t send(caf::strong_actor_ptr dst, caf::message msg, std::unique_ptr<pending_base> p,
                kj::Maybe<kj::Duration> deadline);
  /// Removes request `id` (and its deadline); null if it is not pending.
  std::unique_ptr<pending_base> take(uint64_t id) noexcept;
  void forget(uint64_t id) noexcept;
  /// Waits for the earliest deadline, fails what is due, and waits for the next.
  kj::Promise<void> deadline_loop();
  void expire_due();
  void flush_outgoing();
  kj::Promise<void> drain();
  void dispatch(caf::mailbox_element& element);

  caf::actor companion_handle_;
  caf::actor_companion* companion_;
  kj::AutoCloseFd event_fd_; // declared before observer_, which must go first
  kj::UnixEventPort::FdObserver observer_;
  message_handler on_message_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, std::unique_ptr<pending_base>> pending_;
  /// Lets a dropped request promise know whether the bridge still exists.
  std::shared_ptr<bridge*> alive_;
  kj::Timer& timer_;
  kj::UnixEventPort& port_;
  kj::Duration deadline_;
  /// Deadlines of pending requests, earliest first.
  deadline_map deadlines_;
  /// The deadline deadline_task_ waits for (none: it waits for nothing).
  std::optional<kj::TimePoint> armed_;
  bool expiring_ = false;
  uint64_t expired_ = 0;
  kj::Promise<void> deadline_task_ = nullptr;
  /// Nodes that are down, with their names (see node_down).
  std::map<caf::node_id, std::string> down_;
  counters totals_;

  std::mutex mtx_;
  std::vector<caf::mailbox_element_ptr> inbox_; // guarded by mtx_

  kj::Promise<void> drain_task_;

  /// Requests of this kj turn, enqueued together by flush_outgoing().
  std::vector<std::pair<caf::strong_actor_ptr, caf::mailbox_element_ptr>> outgoing_;
  kj::Promise<void> flush_task_ = nullptr;
};

} // namespace cyto::services
