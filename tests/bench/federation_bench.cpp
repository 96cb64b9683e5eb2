// federation_bench: what reaching another node through this one costs, and how fast a
// dead peer is noticed. Two cytod (a, b) in test network namespaces on a private bridge
// (tests/integration/federation_fixture.hpp) form a federation; a client on a's unix
// socket calls Discovery.discover:
//   local      a's own discovery
//   remote     b's discovery through a (Node.node("b"): a's gateway -> CAF over TLS -> b)
// Each: sequential round trips (p50/p99/mean over `calls`, local and remote interleaved
// in rounds) and pipelined calls/s (`window` calls in flight for `pipe_s`). Then the time
// until a's Node.nodes shows b down after SIGKILL and after SIGSTOP (each `repeats`
// times; b restarted or continued in between). Prints one JSON object; never asserts on
// time. Needs root (namespaces); exits 77 otherwise.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "schema/discovery.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/federation_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace schema = cyto::schema;

namespace {

constexpr int calls = 2000;
constexpr int rounds = 10;
constexpr unsigned window = 64;
constexpr double pipe_s = 1.0;
constexpr int repeats = 3;

double percentile(std::vector<double> xs, double p) {
  std::sort(xs.begin(), xs.end());
  return xs[std::min(xs.size() - 1, static_cast<size_t>(p * static_cast<double>(xs.size())))];
}

json latency(const std::vector<double>& us) {
  double sum = 0;
  for (auto x : us)
    sum += x;
  return {{"calls", us.size()},
          {"p50_us", percentile(us, 0.5)},
          {"p99_us", percentile(us, 0.99)},
          {"mean_us", sum / static_cast<double>(us.size())}};
}

/// Calls/s with `window` discover calls always in flight for `pipe_s` seconds.
double pipelined(kj::AsyncIoContext& io, schema::Discovery::Client& d) {
  uint64_t done = 0;
  bool stop = false;
  struct handler final : kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override {
      throw std::runtime_error(e.getDescription().cStr());
    }
  } h;
  kj::TaskSet tasks{h};
  std::function<kj::Promise<void>()> one = [&]() -> kj::Promise<void> {
    return d.discoverRequest().send().then([&](auto&&) -> kj::Promise<void> {
      ++done;
      if (stop)
        return kj::READY_NOW;
      return one();
    });
  };
  auto start = steady::now();
  for (unsigned i = 0; i < window; ++i)
    tasks.add(one());
  io.provider->getTimer().afterDelay(static_cast<int64_t>(pipe_s * 1000) * kj::MILLISECONDS)
    .wait(io.waitScope);
  auto counted = done;
  auto secs = std::chrono::duration<double>(steady::now() - start).count();
  stop = true;
  tasks.onEmpty().wait(io.waitScope);
  return static_cast<double>(counted) / secs;
}

/// Milliseconds until `viewer` lists `name` down after `hurt` ran.
double time_to_down(federation_world& w, member& viewer, const std::string& name,
                    const std::function<void()>& hurt) {
  hurt();
  return static_cast<double>(
    w.wait_until([&] { return viewer.state_of(name) == "down"; }, 10s, name + " is down")
      .count());
}

} // namespace

int main() {
  if (::geteuid() != 0) {
    std::printf("SKIP: federation_bench needs root (network namespaces)\n");
    return 77;
  }
  try {
    federation_world w{2};
    w.wait_formed();
    auto io = kj::setupAsyncIo();
    auto conn = w.a().d.connect(io);
    auto local = wait_for(io, conn->node().discoveryRequest().send()).getService();
    auto req = conn->node().nodeRequest();
    req.setName(w.b().name());
    auto remote = wait_for(io, req.send().getNode().discoveryRequest().send()).getService();
    // Warm up both paths (connections, CAF proxies, allocators).
    for (int i = 0; i < 200; ++i) {
      wait_for(io, local.discoverRequest().send());
      wait_for(io, remote.discoverRequest().send());
    }
    std::vector<double> lat_local, lat_remote;
    for (int r = 0; r < rounds; ++r)
      for (auto [d, out] : {std::pair{&local, &lat_local}, std::pair{&remote, &lat_remote}})
        for (int i = 0; i < calls / rounds; ++i) {
          auto t0 = steady::now();
          auto resp = wait_for(io, d->discoverRequest().send());
          out->push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
          (void)resp;
        }
    // The remote answer must really be b's.
    auto who = wait_for(io, remote.discoverRequest().send()).getInfo().getNodeName();
    if (who != w.b().name())
      throw std::runtime_error("remote discover answered by " + std::string{who.cStr()});
    double pipe_local = pipelined(io, local), pipe_remote = pipelined(io, remote);

    json out;
    out["bench"] = "federation_bench";
    out["nodes"] = 2;
    out["transport"] = "CAF 0.17 middleman + openssl (TLS), veth + bridge in test netns";
    out["local"] = latency(lat_local);
    out["remote"] = latency(lat_remote);
    out["local"]["pipelined_calls_per_s"] = pipe_local;
    out["remote"]["pipelined_calls_per_s"] = pipe_remote;
    out["pipeline_window"] = window;
    out["remote_vs_local_p50"] = out["remote"]["p50_us"].get<double>()
                                 / out["local"]["p50_us"].get<double>();
    out["remote_vs_local_pipelined"] = pipe_remote / pipe_local;
    out["goal_remote_p50_at_most_2x_local"] = out["remote_vs_local_p50"].get<double>() <= 2.0;
    conn.reset();

    std::vector<double> killed, stopped;
    auto b = w.b().name();
    for (int i = 0; i < repeats; ++i) {
      killed.push_back(time_to_down(w, w.a(), b, [&] { w.b().d.stop(SIGKILL); }));
      w.b().start();
      w.wait_formed();
      stopped.push_back(time_to_down(w, w.a(), b, [&] { ::kill(w.b().d.pid(), SIGSTOP); }));
      ::kill(w.b().d.pid(), SIGCONT);
      w.wait_formed();
    }
    out["down_after_sigkill_ms"] = killed;
    out["down_after_sigstop_ms"] = stopped;
    out["down_after_sigkill_ms_max"] = *std::max_element(killed.begin(), killed.end());
    out["down_after_sigstop_ms_max"] = *std::max_element(stopped.begin(), stopped.end());
    out["note"] = "time to down is polled with `cyto node ls` every 20 ms (adds up to ~30 ms)";
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "federation_bench: %s\n", e.what());
    return 1;
  }
}
