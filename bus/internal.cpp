#include "bus/internal.hpp"

#include <caf/actor_control_block.hpp>

#include "bus/logging.hpp"

namespace cyto::bus {

void warn_ignored_internal(const char* actor, const caf::type_erased_tuple& msg,
                           const caf::strong_actor_ptr& from) {
  auto what = msg.empty() ? std::string{"()"} : msg.stringify(0);
  auto who = from ? caf::to_string(from) : std::string{"an anonymous sender"};
  log::get(actor)->warn("{}: ignored internal message {} from {}", actor, what, who);
}

} // namespace cyto::bus
