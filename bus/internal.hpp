#pragma once
// Internal messages: what an actor sends itself (timers, its own threads and workers).
// They are not in its public interface (bus/interfaces.hpp), only in a `<name>_private`
// extension next to the actor, so no holder of the public handle can send them by type.
// A handle can still be actor_cast to caf::actor or arrive over the network, so the
// handlers check at run time too: `internal(self, handler)` runs `handler` only for a
// message the actor sent itself (self->send / delayed_send to self, or a thread or worker
// that sends with caf::send_as(me, me, ...)) or one from a sender `trusted` accepts, and
// drops anything else with a warning.

#include <type_traits>
#include <utility>

#include <caf/actor_control_block.hpp>
#include <caf/detail/type_list.hpp>
#include <caf/detail/type_traits.hpp>
#include <caf/type_erased_tuple.hpp>

namespace cyto::bus {

/// Trusts no sender but the actor itself.
struct self_only {
  bool operator()(const caf::strong_actor_ptr&) const noexcept {
    return false;
  }
};

/// Logs "<actor>: ignored internal message <first element> from <sender>" (warn).
void warn_ignored_internal(const char* actor, const caf::type_erased_tuple& msg,
                           const caf::strong_actor_ptr& from);

/// Whether the message `self` handles now may run an internal handler (see above).
template <class Self, class Trusted>
bool accept_internal(Self* self, const Trusted& trusted) {
  const auto& from = self->current_sender();
  if (from && (from.get() == self->ctrl() || trusted(from)))
    return true;
  warn_ignored_internal(self->name(), self->current_mailbox_element()->content(), from);
  return false;
}

namespace detail {

template <class Self, class F, class Trusted, class... Ts>
auto guard_internal(Self* self, F f, Trusted trusted, caf::detail::type_list<Ts...>) {
  return [self, f = std::move(f), trusted = std::move(trusted)](Ts... xs) mutable {
    if (accept_internal(self, trusted))
      f(std::forward<Ts>(xs)...);
  };
}

} // namespace detail

/// `f` (an internal handler, answering nothing) guarded by accept_internal: a handler of
/// the same signature for the actor's behavior.
template <class Self, class F, class Trusted = self_only>
auto internal(Self* self, F f, Trusted trusted = {}) {
  using trait = caf::detail::get_callable_trait<F>;
  static_assert(std::is_void_v<typename trait::result_type>,
                "internal messages are one-way: the handler returns nothing");
  return detail::guard_internal(self, std::move(f), std::move(trusted),
                                typename trait::arg_types{});
}

} // namespace cyto::bus
