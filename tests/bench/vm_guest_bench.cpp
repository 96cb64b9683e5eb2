// vm_guest_bench: cytod as a QEMU guest's init, reached through the host's cytod over the
// virtio-serial channel. Prints one JSON object: the image's size and build time, QEMU
// spawn to the guest's cytod answering through the channel, sequential call latency
// through the channel next to the same call on the host's own cytod, pipelined calls per
// second through the channel, the time a restarted host cytod needs to reach the guest
// again (handshake resync), and ACPI power button to QEMU's exit. Never asserts on time.
//
// usage: vm_guest_bench [CALLS]   (root; TCG unless the host has hardware KVM)
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "tests/integration/vm_guest_fixture.hpp"

using namespace cyto::test;

namespace {

using micros = std::chrono::duration<double, std::micro>;

double ms_since(steady::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady::now() - t0).count();
}

nlohmann::json percentiles(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) { return xs[static_cast<size_t>(q * static_cast<double>(xs.size() - 1))]; };
  return {{"p50", at(0.5)}, {"p99", at(0.99)}, {"min", xs.front()}, {"max", xs.back()}};
}

/// The guest's (or, with vm empty, the host's) Discovery service on a fresh connection.
struct discovery_client {
  discovery_client(kj::AsyncIoContext& io, const daemon_fixture& host, const std::string& vm)
    : conn(io, host.socket_path()), node(conn.node()) {
    if (!vm.empty()) {
      auto req = node.vmRequest();
      req.setName(vm);
      node = req.send().getNode();
    }
    disc = node.discoveryRequest().send().getService();
  }
  rpc_connection conn;
  cyto::schema::Node::Client node;
  cyto::schema::Discovery::Client disc = nullptr;
};

/// Retries a discover through the channel until it answers; ms it took.
double until_guest_answers(kj::AsyncIoContext& io, const daemon_fixture& host, guest_vm& vm) {
  auto t0 = steady::now();
  while (steady::now() - t0 < 90s) {
    try {
      discovery_client c{io, host, vm.name()};
      wait_for(io, c.disc.discoverRequest().send(), 15 * kj::SECONDS);
      return ms_since(t0);
    } catch (const kj::Exception&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  throw std::runtime_error("the guest never answered; console:\n" + vm.console());
}

nlohmann::json sequential(kj::AsyncIoContext& io, const daemon_fixture& host,
                          const std::string& vm, int calls) {
  discovery_client c{io, host, vm};
  wait_for(io, c.disc.discoverRequest().send()); // warm: connection, capabilities
  std::vector<double> us;
  for (int i = 0; i < calls; ++i) {
    auto t0 = steady::now();
    wait_for(io, c.disc.discoverRequest().send());
    us.push_back(micros(steady::now() - t0).count());
  }
  return percentiles(us);
}

double pipelined_per_s(kj::AsyncIoContext& io, const daemon_fixture& host, const std::string& vm,
                       int calls) {
  discovery_client c{io, host, vm};
  wait_for(io, c.disc.discoverRequest().send());
  auto t0 = steady::now();
  kj::Vector<kj::Promise<void>> all;
  for (int i = 0; i < calls; ++i)
    all.add(c.disc.discoverRequest().send().ignoreResult());
  wait_for(io, kj::joinPromises(all.releaseAsArray()), 60 * kj::SECONDS);
  return calls / std::chrono::duration<double>(steady::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
  require_root();
  int calls = argc > 1 ? std::max(10, std::atoi(argv[1])) : 300;
  auto t_image = steady::now();
  skip_without_image();
  double image_ms = ms_since(t_image);
  auto io = kj::setupAsyncIo();
  nlohmann::json out{{"bench", "vm_guest"},
                     {"calls", calls},
                     {"accel", "tcg"},
                     {"image_build_ms", image_ms},
                     {"initramfs_bytes", std::filesystem::file_size(image().file("initramfs.cpio"))}};
  daemon_fixture host;
  auto t_boot = steady::now();
  guest_vm vm{host, "bench"};
  until_guest_answers(io, host, vm);
  out["qemu_spawn_to_guest_answer_ms"] = ms_since(t_boot);
  out["discover_through_channel_us"] = sequential(io, host, vm.name(), calls);
  out["discover_on_host_us"] = sequential(io, host, "", calls);
  out["pipelined_through_channel_calls_per_s"] = pipelined_per_s(io, host, vm.name(), calls * 3);
  out["pipelined_on_host_calls_per_s"] = pipelined_per_s(io, host, "", calls * 3);

  host.stop(SIGKILL);
  host.start();
  out["host_restart_to_guest_answer_ms"] = until_guest_answers(io, host, vm);

  auto t_off = steady::now();
  vm.qmp("system_powerdown");
  int code = vm.wait_exit(60s);
  out["powerdown_to_qemu_exit_ms"] = ms_since(t_off);
  out["qemu_exit_code"] = code;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
