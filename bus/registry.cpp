#include "bus/registry.hpp"

#include <caf/all.hpp>

#include "bus/errc.hpp"

namespace cyto::bus {

registry_actor::behavior_type registry(registry_actor::stateful_pointer<registry_state> self) {
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& st = self->state;
    for (auto i = st.entries.begin(); i != st.entries.end();) {
      if (i->second && i->second->address() == msg.source) {
        // Another node's service goes with its node: the federation reports that.
        if (i->first.find('/') == std::string::npos)
          st.problems.push_back("actor " + i->first + " terminated: "
                                + (msg.reason ? render(msg.reason) : std::string{"normally"}));
        i = st.entries.erase(i);
      } else {
        ++i;
      }
    }
  });
  return {
    [self](put_atom, const std::string& name, caf::strong_actor_ptr& handle) -> caf::result<void> {
      if (name.empty() || !handle)
        return make_error(errc::invalid_argument, "registry: empty name or handle");
      auto& st = self->state;
      if (st.entries.count(name) > 0)
        return make_error(errc::already_exists, "registry: name " + name + " is taken");
      self->monitor(handle);
      st.entries.emplace(name, std::move(handle));
      return caf::unit;
    },
    [self](get_atom, const std::string& name) -> caf::result<caf::strong_actor_ptr> {
      auto i = self->state.entries.find(name);
      if (i == self->state.entries.end())
        return make_error(errc::not_found, "registry: no service named " + name);
      return i->second;
    },
    [self](delete_atom, const std::string& name) {
      auto i = self->state.entries.find(name);
      if (i == self->state.entries.end())
        return;
      self->demonitor(i->second->address());
      self->state.entries.erase(i);
    },
    [self](list_atom) {
      std::vector<std::string> names;
      names.reserve(self->state.entries.size());
      for (auto& [name, handle] : self->state.entries)
        names.push_back(name);
      return names;
    },
    [self](health_atom) { return self->state.problems; },
    [self](get_atom, list_atom) {
      std::vector<service_handle> out;
      for (auto& [name, handle] : self->state.entries)
        if (name.find('/') == std::string::npos)
          out.push_back({name, handle});
      return out;
    },
  };
}

} // namespace cyto::bus
