// load_bench: the gateway under many clients, and with many idle connections.
//
// Prints ONE JSON document on stdout (progress on stderr), against a real cytod in a
// private temp dir (socket, state dir, cgroup root of its own):
//   mixed   C concurrent clients (default 100), each its own connection, each making N
//           calls one after the other (default 1000): Discovery.discover, Cells.list,
//           Containers.list (ps), Cells.get of an existing cell (inspect) and Images.list
//           in turn. Clients are spread over T client threads (default 4), each with its
//           own kj loop. Errors (must be 0), latency p50/p99/max and calls/s.
//   idle    I connections (default 1000) that bootstrapped and made one call, then stay
//           open doing nothing, while one more client measures Discovery.discover
//           round trips (sequential), next to the same measured before they were opened;
//           cytod's RSS and thread count with them.
// It never fails because of a time; it exits 1 if cytod could not start or a call
// failed (the JSON then has "errors" > 0 or "error").
//
// Usage: load_bench [--clients C] [--calls N] [--threads T] [--idle I] [--quick]
//   --quick: 20 clients x 100 calls, 200 idle (a smoke run of a few seconds)

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "schema/cells.capnp.h"
#include "schema/containers.capnp.h"
#include "schema/discovery.capnp.h"
#include "schema/images.capnp.h"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
namespace schema = cyto::schema;

namespace {

nlohmann::json summary_us(std::vector<double> xs) {
  if (xs.empty())
    return {{"n", 0}};
  std::sort(xs.begin(), xs.end());
  auto at = [&](double q) {
    return xs[std::min(xs.size() - 1, static_cast<size_t>(q * static_cast<double>(xs.size())))];
  };
  return {{"n", xs.size()}, {"p50_us", at(0.5)}, {"p99_us", at(0.99)}, {"max_us", xs.back()}};
}

/// The number after `key` in /proc/<pid>/status ("VmRSS:" is in kB); -1 if absent.
int64_t status_field_of(pid_t pid, const std::string& key) {
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/status")))
    if (line.rfind(key, 0) == 0)
      return std::stoll(line.substr(key.size()));
  return -1;
}

int64_t status_rss_kib(pid_t pid) {
  return status_field_of(pid, "VmRSS:");
}

double us_since(steady::time_point t0) {
  return std::chrono::duration<double, std::micro>(steady::now() - t0).count();
}

/// One client: a connection and the services it calls.
struct client {
  std::unique_ptr<rpc_connection> conn;
  schema::Discovery::Client discovery = nullptr;
  schema::Cells::Client cells = nullptr;
  schema::Containers::Client containers = nullptr;
  schema::Images::Client images = nullptr;
};

/// The results of one client thread.
struct thread_result {
  std::vector<double> latencies_us;
  uint64_t errors = 0;
  std::string first_error;
};

/// Call number `i` of the mix.
kj::Promise<void> call(client& c, uint32_t i) {
  switch (i % 5) {
    case 0: return c.discovery.discoverRequest().send().ignoreResult();
    case 1: return c.cells.listRequest().send().ignoreResult();
    case 2: return c.containers.listRequest().send().ignoreResult();
    case 3: {
      auto req = c.cells.getRequest();
      req.setName("load");
      return req.send().ignoreResult();
    }
    default: return c.images.listRequest().send().ignoreResult();
  }
}

kj::Promise<void> run_client(client& c, uint32_t offset, uint32_t left, thread_result& r) {
  if (left == 0)
    return kj::READY_NOW;
  auto t0 = steady::now();
  return call(c, offset)
    .then([&r, t0] { r.latencies_us.push_back(us_since(t0)); },
          [&r](kj::Exception&& e) {
            if (r.errors++ == 0)
              r.first_error = e.getDescription().cStr();
          })
    .then([&c, offset, left, &r] { return run_client(c, offset + 1, left - 1, r); });
}

/// `clients` clients on this thread's own kj loop, `calls` calls each.
thread_result client_thread(const daemon_fixture& d, uint32_t clients, uint32_t calls,
                            std::atomic<int>& ready, std::atomic<bool>& go) {
  thread_result r;
  r.latencies_us.reserve(size_t{clients} * calls);
  auto io = kj::setupAsyncIo();
  std::vector<client> cs(clients);
  try {
    for (auto& c : cs) {
      c.conn = d.connect(io);
      c.discovery = c.conn->node().discoveryRequest().send().getService();
      c.cells = c.conn->node().cellsRequest().send().getService();
      c.containers = c.conn->node().containersRequest().send().getService();
      c.images = c.conn->node().imagesRequest().send().getService();
      // One call each, so that connecting is not measured.
      wait_for(io, c.discovery.discoverRequest().send());
    }
  } catch (const kj::Exception& e) {
    r.errors++;
    r.first_error = std::string{"connecting: "} + e.getDescription().cStr();
    ++ready;
    return r;
  }
  ++ready;
  while (!go)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kj::Vector<kj::Promise<void>> all;
  for (uint32_t i = 0; i < clients; ++i)
    all.add(run_client(cs[i], i, calls, r));
  wait_for(io, kj::joinPromises(all.releaseAsArray()), 300 * kj::SECONDS);
  return r;
}

/// `n` sequential discover round trips on one fresh connection.
std::vector<double> discover_latency(kj::AsyncIoContext& io, const daemon_fixture& d, int n,
                                     uint64_t& errors) {
  auto conn = d.connect(io);
  auto disc = wait_for(io, conn->node().discoveryRequest().send()).getService();
  wait_for(io, disc.discoverRequest().send());
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = steady::now();
    try {
      wait_for(io, disc.discoverRequest().send());
      us.push_back(us_since(t0));
    } catch (const kj::Exception&) {
      ++errors;
    }
  }
  return us;
}

uint32_t arg_u32(int& i, int argc, char** argv) {
  if (i + 1 >= argc)
    throw std::runtime_error(std::string{argv[i]} + " needs a number");
  return static_cast<uint32_t>(std::stoul(argv[++i]));
}

} // namespace

int main(int argc, char** argv) {
  uint32_t clients = 100, calls = 1000, threads = 4, idle = 1000;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--clients") clients = arg_u32(i, argc, argv);
      else if (a == "--calls") calls = arg_u32(i, argc, argv);
      else if (a == "--threads") threads = arg_u32(i, argc, argv);
      else if (a == "--idle") idle = arg_u32(i, argc, argv);
      else if (a == "--quick") clients = 20, calls = 100, idle = 200;
      else throw std::runtime_error("unknown argument " + a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "load_bench: %s\n", e.what());
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "load_bench: needs root (cytod makes cgroups)\n");
    return 77;
  }
  threads = std::max<uint32_t>(1, std::min(threads, clients));
  // Room for the idle connections (and cytod inherits it).
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);

  nlohmann::json out;
  out["bench"] = "load_bench";
  int rc = 0;
  try {
    daemon_fixture d;
    auto io = kj::setupAsyncIo();
    {
      auto conn = d.connect(io);
      auto cells = wait_for(io, conn->node().cellsRequest().send()).getService();
      auto req = cells.allocateRequest();
      req.initCell().setName("load");
      wait_for(io, req.send());
    }
    auto rss0 = status_rss_kib(d.pid());

    // -- phase 1: mixed calls from many clients ----------------------------------------
    std::fprintf(stderr, "[load_bench] %u clients x %u calls on %u threads\n", clients, calls,
                 threads);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<thread_result> results(threads);
    std::vector<std::thread> ts;
    for (uint32_t t = 0; t < threads; ++t) {
      uint32_t mine = clients / threads + (t < clients % threads ? 1 : 0);
      ts.emplace_back([&, t, mine] { results[t] = client_thread(d, mine, calls, ready, go); });
    }
    while (ready < static_cast<int>(threads))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    auto t0 = steady::now();
    go = true;
    for (auto& t : ts)
      t.join();
    double secs = std::chrono::duration<double>(steady::now() - t0).count();
    std::vector<double> lat;
    uint64_t errors = 0;
    std::string first_error;
    for (auto& r : results) {
      lat.insert(lat.end(), r.latencies_us.begin(), r.latencies_us.end());
      errors += r.errors;
      if (first_error.empty())
        first_error = r.first_error;
    }
    auto& m = out["mixed"];
    m["clients"] = clients;
    m["calls_per_client"] = calls;
    m["client_threads"] = threads;
    m["calls"] = lat.size() + errors;
    m["errors"] = errors;
    if (!first_error.empty())
      m["first_error"] = first_error;
    m["seconds"] = secs;
    m["calls_per_s"] = static_cast<double>(lat.size()) / secs;
    m["latency"] = summary_us(lat);
    m["cytod_rss_kib_before"] = rss0;
    m["cytod_rss_kib_after"] = status_rss_kib(d.pid());
    if (errors > 0)
      rc = 1;
    std::fprintf(stderr, "[load_bench] mixed: %.0f calls/s, %llu errors\n",
                 static_cast<double>(lat.size()) / secs, static_cast<unsigned long long>(errors));

    // -- phase 2: many idle connections ------------------------------------------------
    uint64_t idle_errors = 0;
    auto before = discover_latency(io, d, 1000, idle_errors);
    std::vector<std::unique_ptr<rpc_connection>> idlers;
    auto o0 = steady::now();
    for (uint32_t i = 0; i < idle; ++i) {
      idlers.push_back(d.connect(io));
      // Bootstrapped and one call made: a real client that then goes quiet.
      auto disc = idlers.back()->node().discoveryRequest().send().getService();
      wait_for(io, disc.discoverRequest().send());
    }
    double open_s = std::chrono::duration<double>(steady::now() - o0).count();
    auto with = discover_latency(io, d, 1000, idle_errors);
    auto& p = out["idle"];
    p["connections"] = idle;
    p["open_and_first_call_s"] = open_s;
    p["discover_without_idle"] = summary_us(before);
    p["discover_with_idle"] = summary_us(with);
    p["errors"] = idle_errors;
    p["cytod_rss_kib"] = status_rss_kib(d.pid());
    p["cytod_threads"] = status_field_of(d.pid(), "Threads:");
    idlers.clear();
    if (idle_errors > 0)
      rc = 1;
    d.stop();
  } catch (const std::exception& e) {
    out["error"] = e.what();
    rc = 1;
  } catch (const kj::Exception& e) {
    out["error"] = e.getDescription().cStr();
    rc = 1;
  }
  std::printf("%s\n", out.dump(2).c_str());
  return rc;
}
