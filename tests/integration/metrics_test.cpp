// The Prometheus endpoint (metrics.listen): scraped with curl like Prometheus would,
// every line read as the exposition format, the numbers compared with the kernel's.
#define BOOST_TEST_MODULE integration_metrics
#include <boost/test/unit_test.hpp>

#include <netinet/in.h>

#include "tests/integration/daemon_fixture.hpp"
#include "tests/integration/prometheus_text.hpp"
#include "tests/integration/registry_fixture.hpp" // free_port

using namespace cyto::test;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

process_result cli(const daemon_fixture& d, std::vector<std::string> args) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, 60s);
}

/// The cell's memory use as the kernel counts it (v1 memory controller or cgroup2).
std::optional<uint64_t> kernel_memory(const daemon_fixture& d, const std::string& cell) {
  for (auto& m : host_cgroup_mounts()) {
    auto dir = m.path + "/" + d.cgroup_root() + "/" + cell;
    bool v1_memory =
        !m.v2 && std::find(m.options.begin(), m.options.end(), "memory") != m.options.end();
    auto file = dir + (m.v2 ? "/memory.current" : "/memory.usage_in_bytes");
    if ((v1_memory || m.v2) && std::filesystem::exists(file)) {
      auto text = read_text(file);
      if (!text.empty())
        return std::stoull(text);
    }
  }
  return std::nullopt;
}

process_result scrape(int port, const std::string& path = "/metrics") {
  return run_process({"/usr/bin/curl", "-sS", "--max-time", "10", "-w", "\\n%{http_code}",
                      "http://127.0.0.1:" + std::to_string(port) + path});
}

/// Body and HTTP status of a scrape (curl -w appends the status on a line of its own).
std::pair<std::string, int> body_and_status(const process_result& r) {
  auto nl = r.out.rfind('\n');
  if (nl == std::string::npos)
    throw std::runtime_error("curl printed no status: " + r.out + r.err);
  return {r.out.substr(0, nl), std::stoi(r.out.substr(nl + 1))};
}

} // namespace

BOOST_AUTO_TEST_CASE(scrape_parses_and_cell_memory_matches_the_cgroup) {
  daemon_fixture d{false};
  int port = free_port();
  d.start({"--metrics-listen", "127.0.0.1:" + std::to_string(port)});
  BOOST_TEST(contains(d.log(), "metrics: serving GET /metrics on 127.0.0.1:"));

  // A cell whose program holds ~16 MB, and a container (a cell under containers/).
  BOOST_TEST_REQUIRE(cli(d, {"cell", "allocate", "metered"}).code() == 0);
  auto st = cli(d, {"cell", "start", "metered", "--name", "hog", "--shell",
                    // not the last command: the shell (holding x) waits for it
                    "x=$(head -c 16000000 /dev/zero | tr '\\0' a); sleep 300; echo $x"});
  BOOST_TEST_REQUIRE(st.code() == 0, st.err);
  auto run = cli(d, {"run", "-d", "--name", "box", "demo", "sleep", "300"});
  BOOST_TEST_REQUIRE(run.code() == 0, run.err);
  // Wait until the shell holds its string and sleeps (head and tr gone: two processes).
  auto deadline = steady::now() + 20s;
  auto procs = [&] {
    for (auto& m : host_cgroup_mounts()) {
      auto f = m.path + "/" + d.cgroup_root() + "/metered/pids.current";
      if (std::filesystem::exists(f))
        return std::stoi(read_text(f));
    }
    return -1;
  };
  while ((kernel_memory(d, "metered").value_or(0) < 16'000'000 || procs() != 2) &&
         steady::now() < deadline)
    std::this_thread::sleep_for(50ms);
  BOOST_TEST_REQUIRE(procs() == 2);
  BOOST_TEST_REQUIRE(kernel_memory(d, "metered").value_or(0) >= 16'000'000u);

  auto r = scrape(port);
  BOOST_TEST_REQUIRE(r.code() == 0, r.err);
  auto kernel = *kernel_memory(d, "metered");
  auto [body, status] = body_and_status(r);
  BOOST_TEST(status == 200);
  prom_text m;
  try {
    m = parse_prometheus_text(body);
  } catch (const std::exception& e) {
    BOOST_FAIL(std::string{"not the exposition format: "} + e.what() + "\n" + body);
  }
  auto mem = m.find("cyto_cell_memory_bytes", {{"cell", "metered"}, {"kind", "cell"}});
  BOOST_TEST_REQUIRE(mem.has_value(), body);
  double diff = std::abs(*mem - static_cast<double>(kernel));
  std::printf("{\"metric_memory\": %.0f, \"kernel_memory\": %llu, \"samples\": %zu}\n", *mem,
              static_cast<unsigned long long>(kernel), m.samples.size());
  BOOST_TEST(diff <= std::max(2.0 * 1024 * 1024, 0.1 * static_cast<double>(kernel)),
             "metric " << *mem << " vs kernel " << kernel);
  BOOST_TEST(m.find("cyto_cell_pids", {{"cell", "metered"}}).value_or(0) == 2.0);
  BOOST_TEST(m.find("cyto_cell_cpu_usage_seconds_total", {{"cell", "metered"}}).value_or(0) > 0.0);
  BOOST_TEST(m.types.at("cyto_cell_cpu_usage_seconds_total") == "counter");
  BOOST_TEST(m.types.at("cyto_cell_memory_bytes") == "gauge");
  // The container is a cell too, labelled as one.
  BOOST_TEST(m.find("cyto_cell_memory_bytes", {{"cell", "containers/box"}, {"kind", "container"}})
                 .has_value(),
             body);
  BOOST_TEST(m.find("cyto_containers", {{"state", "running"}}).value_or(0) == 1.0);
  // Node level: every source answered, calls were counted, the event pipeline is there.
  for (auto src : {"node", "cells", "containers", "vms", "images", "topics", "observe"})
    BOOST_TEST(m.find("cyto_metrics_source_up", {{"source", src}}).value_or(0) == 1.0, src);
  BOOST_TEST(m.find("cyto_gateway_calls_total", {{"verb", "allocate"}}).value_or(0) == 1.0, body);
  BOOST_TEST(m.find("cyto_gateway_calls_total", {{"verb", "run"}}).value_or(0) == 1.0, body);
  BOOST_TEST(m.find("cyto_image_pulls_total").value_or(-1) == 0.0, body);
  BOOST_TEST(m.find("cyto_gateway_connections_total").value_or(0) >= 3.0);
  BOOST_TEST(m.find("cyto_bus_events_published_total").value_or(0) > 0.0);
  BOOST_TEST(m.find("cyto_build_info").value_or(0) == 1.0);

  // Errors are counted by code: a call for a cell that does not exist.
  auto before = m.find("cyto_gateway_call_errors_total", {{"code", "not_found"}}).value_or(-1);
  BOOST_TEST(cli(d, {"cell", "inspect", "no-such-cell"}).code() != 0);
  auto again = parse_prometheus_text(body_and_status(scrape(port)).first);
  BOOST_TEST(again.find("cyto_gateway_call_errors_total", {{"code", "not_found"}}).value_or(-1) ==
             before + 1);

  // A pull is counted, failed or not (nothing listens on port 1).
  auto pull = cli(d, {"image", "pull", "127.0.0.1:1/nothing:latest"});
  BOOST_TEST(pull.code() != 0);
  auto third = parse_prometheus_text(body_and_status(scrape(port)).first);
  BOOST_TEST(third.find("cyto_image_pulls_total").value_or(-1) == 1.0);

  // Anything but /metrics is not found.
  BOOST_TEST(body_and_status(scrape(port, "/other")).second == 404);

  BOOST_TEST(cli(d, {"rm", "-f", "box"}).code() == 0);
  BOOST_TEST(cli(d, {"cell", "free", "metered", "--force"}).code() == 0);
  BOOST_TEST(exit_code(d.stop()) == 0);
}

BOOST_AUTO_TEST_CASE(metrics_port_in_use_stops_cytod_at_start) {
  int port = free_port();
  // Someone else holds the port.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  BOOST_TEST_REQUIRE(::listen(fd, 4) == 0);
  daemon_fixture d{false};
  auto r = run_process(d.argv({"--metrics-listen", "127.0.0.1:" + std::to_string(port)}), 30s);
  BOOST_TEST(r.code() == 2);
  BOOST_TEST(contains(r.err, "metrics.listen: cannot listen on 127.0.0.1:" + std::to_string(port) +
                                 ": Address already in use"),
             r.err);
  // It stopped before serving anything: no socket left behind.
  BOOST_TEST(!std::filesystem::exists(d.socket_path()));
  ::close(fd);
  // A malformed address is a config error, named by its key.
  r = run_process(d.argv({"--metrics-listen", "nonsense"}), 30s);
  BOOST_TEST(r.code() == 2);
  BOOST_TEST(contains(r.err, "metrics.listen: expected host:port"), r.err);
}
