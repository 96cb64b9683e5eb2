#pragma once
// The systemd watchdog (WatchdogSec= in cytod.service): WATCHDOG=1 only when the bus
// answers. Every half period a timer on the kj loop asks the node actor (discover)
// through a bridge and pings systemd on the answer; a wedged loop, scheduler or node
// actor sends no ping and systemd restarts the daemon (workloads live on and are
// re-adopted).

#include <cstdint>
#include <string>

#include <kj/async.h>
#include <kj/timer.h>

#include "bus/interfaces.hpp"
#include "services/bridge.hpp"

namespace cyto::services {

class watchdog {
public:
  /// Pings every `interval` (half of systemd's WATCHDOG_USEC) while the node answers
  /// within it. `bridge` and `timer` must outlive this.
  watchdog(bridge& br, kj::Timer& timer, node_actor node, kj::Duration interval);

  /// The watchdog interval systemd asked for (WATCHDOG_USEC for this pid), halved; zero
  /// when there is no watchdog.
  static kj::Duration interval_from_environment();

  /// Pings sent so far.
  uint64_t pings() const noexcept {
    return pings_;
  }

private:
  kj::Promise<void> loop();

  bridge& bridge_;
  kj::Timer& timer_;
  node_actor node_;
  kj::Duration interval_;
  uint64_t pings_ = 0;
  kj::Promise<void> task_ = nullptr;
};

} // namespace cyto::services
