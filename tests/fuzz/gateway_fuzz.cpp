// The gateway fed raw bytes: one input is what a peer writes on a fresh connection.
//
// The real thing, in process: a CAF actor system with the bus registry (no services
// registered, so each service lookup answers cyto.unavailable through the bridge), the
// real cyto::services::gateway serving the connection through gateway::serve (the path
// the VM guest channel takes: limited_message_stream -> TwoPartyVatNetwork -> RpcSystem
// -> the Node bootstrap, node_server). The input is written into a kj in-memory pipe,
// its write end shut, and the loop turned until the gateway ends the session or 2 s
// pass (a peer that stops writing but stays would be closed by its own EOF here).
//
// Seeds (tests/fuzz/corpus/gateway): captured client sessions (bootstrap, Node.services,
// Node.discovery + Discovery.discover, pipelined calls) and frames with bad segment tables.

#include <cstddef>
#include <cstdint>
#include <memory>

#include <caf/all.hpp>
#include <kj/async-io.h>
#include <kj/debug.h>

#include "bus/logging.hpp"
#include "bus/registry.hpp"
#include "bus/types.hpp"
#include "services/gateway.hpp"

namespace {

struct world {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  cyto::registry_actor registry;
  std::unique_ptr<cyto::services::gateway> gw;

  world() {
    cyto::bus::add_types(cfg);
    // As cytod runs it: a shared queue wakes its worker at once (work stealing's idle
    // workers poll every 10 ms, which would be most of an input's time).
    cfg.set("scheduler.policy", caf::atom("sharing"));
    cfg.set("scheduler.max-threads", 1);
    sys = std::make_unique<caf::actor_system>(cfg);
    cyto::log::init({}, spdlog::level::off);
    registry = sys->spawn(cyto::bus::registry);
    cyto::services::gateway_config gc;
    gc.socket_path = "/nonexistent/cyto-fuzz.sock"; // never bound: serve() needs no socket
    gw = std::make_unique<cyto::services::gateway>(io, *sys, registry, std::move(gc));
  }
};

world& the_world() {
  static world* w = new world; // never destroyed: CAF threads outlive main's statics
  return *w;
}

} // namespace

// No leak checks: CAF's threads allocate and free on their own time, so an input often
// ends with more allocations than frees, and libFuzzer would then scan the whole heap
// for leaks after it (most of the run's time, growing with the heap). A per-session
// leak still shows: -rss_limit_mb in tests/fuzz/run.
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& w = the_world();
  auto pipe = kj::newTwoWayPipe();
  auto session = w.gw->serve(*pipe.ends[0]);
  auto& peer = *pipe.ends[1];
  auto input = kj::heapArray<kj::byte>(data, size);
  auto written = peer.write(input.begin(), input.size())
                   .then([&peer] { peer.shutdownWrite(); })
                   .eagerlyEvaluate([](kj::Exception&&) {});
  // Read (and drop) what the gateway answers, so that its writes never block.
  auto drain = kj::evalNow([&] {
                 return peer.readAllBytes().ignoreResult();
               }).eagerlyEvaluate([](kj::Exception&&) {});
  session.exclusiveJoin(w.io.provider->getTimer().afterDelay(2 * kj::SECONDS))
    .then([] {}, [](kj::Exception&&) {})
    .wait(w.io.waitScope);
  // The session (it refers to the pipe's ends) went with the joined promise above.
  return 0;
}
