// network_bench: what attaching workloads to a CNI network costs, through the whole path
// (Cells.allocate with a network -> cells actor -> network actor -> netns + CNI plugins).
//
// Prints ONE JSON document on stdout (progress on stderr):
//   attach_ms / detach_ms / attach_detach_ms   p50, p99, min, max over N rounds of
//            Cells.allocate(cell on the network) and Cells.free of it (N = 30; --quick 10)
//   fifty    50 cells attached to one bridge: total attach time, then each cell's
//            `busybox ping -c 1` of the gateway: how many reached it; then all freed
//            (leases left afterwards must be 0)
// cytod runs inside a network namespace this program makes (ip netns add cyto-t-...,
// deleted on exit) with a private socket, state dir and cgroup root: nothing touches
// the host's interfaces, routes or firewall. It never fails because of a time.
//
// Usage: network_bench [--quick]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "schema/cells.capnp.h"
#include "schema/network.capnp.h"
#include "tests/integration/daemon_fixture.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace cyto::test;
namespace schema = cyto::schema;

namespace {

double ms_since(steady::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady::now() - t0).count();
}

nlohmann::json summary(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) { return xs[std::min(xs.size() - 1, static_cast<size_t>(q * xs.size()))]; };
  return {{"n", xs.size()}, {"p50", at(0.5)}, {"p99", at(0.99)}, {"min", xs.front()},
          {"max", xs.back()}};
}

struct bench {
  daemon_fixture& d;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::unique_ptr<rpc_connection> conn = d.connect(io);
  schema::Cells::Client cells = wait_for(io, conn->node().cellsRequest().send()).getService();

  /// Allocates a cell on `network`; returns how many addresses it got.
  size_t allocate(const std::string& name, const std::string& network) {
    auto req = cells.allocateRequest();
    req.initCell().setName(name);
    req.getCell().setNetwork(network);
    return wait_for(io, req.send(), 30 * kj::SECONDS).getInfo().getIps().size();
  }
  void free(const std::string& name) {
    auto req = cells.freeRequest();
    req.setName(name);
    req.setForce(true);
    wait_for(io, req.send(), 30 * kj::SECONDS);
  }
  int run(const std::string& cell, std::vector<std::string> argv) {
    auto req = cells.startRequest();
    req.setCellName(cell);
    auto e = req.initExecutable();
    e.setName("probe");
    auto a = e.initArgv(argv.size());
    for (uint i = 0; i < argv.size(); ++i)
      a.set(i, argv[i]);
    wait_for(io, req.send());
    auto w = cells.waitRequest();
    w.setCellName(cell);
    w.setExecutableName("probe");
    return wait_for(io, w.send(), 30 * kj::SECONDS).getStatus().getCode();
  }
};

} // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (::geteuid() != 0) {
    std::fprintf(stderr, "network_bench: needs root (network namespaces, cgroups)\n");
    return 77;
  }
  nlohmann::json out;
  try {
    test_netns ns;
    daemon_fixture d{false};
    run_in(d, ns);
    d.start();
    bench b{d};
    {
      auto nets = wait_for(b.io, b.conn->node().networkRequest().send()).getService();
      auto req = nets.createRequest();
      req.setName("bench");
      req.setSubnet("10.90.0.0/24");
      wait_for(b.io, req.send());
    }
    int rounds = quick ? 10 : 30;
    std::vector<double> attach, detach, both;
    for (int i = 0; i < rounds; ++i) {
      auto t0 = steady::now();
      b.allocate("lat", "bench");
      auto t1 = steady::now();
      b.free("lat");
      attach.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      detach.push_back(ms_since(t1));
      both.push_back(ms_since(t0));
    }
    std::fprintf(stderr, "[network_bench] %d attach+detach rounds done\n", rounds);
    out["attach_ms"] = summary(attach);
    out["detach_ms"] = summary(detach);
    out["attach_detach_ms"] = summary(both);

    constexpr int fifty = 50;
    auto t0 = steady::now();
    std::string gateway;
    for (int i = 0; i < fifty; ++i) {
      gateway = "10.90.0.1";
      if (b.allocate("c" + std::to_string(i), "bench") == 0)
        throw std::runtime_error("cell c" + std::to_string(i) + " got no address");
    }
    double attach_all = ms_since(t0);
    int reached = 0;
    auto t1 = steady::now();
    for (int i = 0; i < fifty; ++i)
      reached += b.run("c" + std::to_string(i),
                       {"/usr/bin/busybox", "ping", "-c", "1", "-W", "2", gateway}) == 0;
    double ping_all = ms_since(t1);
    auto t2 = steady::now();
    for (int i = 0; i < fifty; ++i)
      b.free("c" + std::to_string(i));
    double free_all = ms_since(t2);
    size_t leases = 0;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator{d.state_dir() + "/network/ipam/bench", ec})
      leases += e.path().filename().string().find_first_not_of("0123456789.") == std::string::npos;
    out["fifty"] = {{"cells", fifty},
                    {"attach_total_ms", attach_all},
                    {"attach_per_cell_ms", attach_all / fifty},
                    {"reached_gateway", reached},
                    {"ping_total_ms", ping_all},
                    {"free_total_ms", free_all},
                    {"leases_left", leases}};
    out["ok"] = reached == fifty && leases == 0;
  } catch (const std::exception& e) {
    out["error"] = e.what();
    std::printf("%s\n", out.dump(2).c_str());
    return 1;
  } catch (const kj::Exception& e) {
    out["error"] = e.getDescription().cStr();
    std::printf("%s\n", out.dump(2).c_str());
    return 1;
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
