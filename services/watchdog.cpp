#include "services/watchdog.hpp"

#include <systemd/sd-daemon.h>

#include "bus/logging.hpp"

namespace cyto::services {

watchdog::watchdog(bridge& br, kj::Timer& timer, node_actor node, kj::Duration interval)
    : bridge_(br), timer_(timer), node_(std::move(node)), interval_(interval) {
  task_ = loop().eagerlyEvaluate([](kj::Exception&& e) {
    log::get("cytod")->error("watchdog loop ended: {}", e.getDescription().cStr());
  });
}

kj::Duration watchdog::interval_from_environment() {
  uint64_t usec = 0;
  if (::sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
    return 0 * kj::SECONDS;
  return usec / 2 * kj::MICROSECONDS;
}

kj::Promise<void> watchdog::loop() {
  // An answer that takes longer than the interval is a missed ping, not a pile-up.
  auto asked = timer_.timeoutAfter(interval_, bridge_.request(node_, discover_atom::value))
                   .then(
                       [this](node_info) {
                         ::sd_notify(0, "WATCHDOG=1");
                         ++pings_;
                       },
                       [](kj::Exception&& e) {
                         log::get("cytod")->warn("watchdog: the node actor did not answer: {}",
                                                 e.getDescription().cStr());
                       });
  return asked.then([this] { return timer_.afterDelay(interval_); }).then([this] {
    return loop();
  });
}

} // namespace cyto::services
