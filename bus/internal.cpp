#include "bus/internal.hpp"

#include <caf/actor_control_block.hpp>
#include <caf/atom.hpp>
#include <caf/type_nr.hpp>

#include "bus/logging.hpp"

namespace cyto::bus {

void warn_ignored_internal(const char* actor, const caf::type_erased_tuple& msg,
                           const caf::strong_actor_ptr& from) {
  std::string what;
  if (msg.empty())
    what = "()";
  else if (msg.matches(0, caf::type_nr<caf::atom_value>::value, nullptr))
    what = caf::to_string(msg.get_as<caf::atom_value>(0));
  else
    what = msg.stringify(0);
  auto who = from ? caf::to_string(from) : std::string{"an anonymous sender"};
  log::get(actor)->warn("{}: ignored internal message {} from {}", actor, what, who);
}

} // namespace cyto::bus
