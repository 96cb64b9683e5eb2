#pragma once
// A real CAF actor system with cyto's types, and a scoped actor to talk to it.

#include <chrono>

#include <caf/all.hpp>

#include "bus/types.hpp"

namespace cyto::test {

struct actor_fixture {
  static caf::actor_system_config& config() {
    static caf::actor_system_config cfg = [] {
      caf::actor_system_config c;
      bus::add_types(c);
      return c;
    }();
    return cfg;
  }

  actor_fixture() : sys(config()), self(sys) {
  }

  caf::actor_system sys;
  caf::scoped_actor self;

  static constexpr auto patience = std::chrono::seconds(5);
};

} // namespace cyto::test
