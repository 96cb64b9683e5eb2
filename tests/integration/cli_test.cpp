// Integration tests of the cyto CLI: the real binary against a real cytod on a
// temporary socket. Needs root (exits 77 = skipped otherwise).
#define BOOST_TEST_MODULE integration_cli
#include <boost/test/unit_test.hpp>

#include <set>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// Runs `cyto --socket <daemon's socket> args...`.
process_result run_cyto(const daemon_fixture& d, std::vector<std::string> args,
                    std::chrono::milliseconds timeout = 15s) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

std::string show(const process_result& r) {
  return describe_status(r.status) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

json parse_json(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw std::runtime_error(std::string{"not JSON ("} + e.what() + "): " + text);
  }
}

/// The value of `key` in a `key  value` table row of the human output.
std::optional<std::string> row(const std::string& out, const std::string& key) {
  for (auto& line : lines_of(out))
    if (line.rfind(key + " ", 0) == 0) {
      auto v = line.substr(key.size());
      v.erase(0, v.find_first_not_of(' '));
      return v;
    }
  return std::nullopt;
}

bool discover_json_ok(const daemon_fixture& d) {
  auto r = run_cyto(d, {"discover", "--json"});
  return r.code() == 0 && parse_json(r.out).at("nodeName").get<std::string>() == d.node_name();
}

} // namespace

BOOST_AUTO_TEST_CASE(discover_json_parses_and_names_the_node) {
  daemon_fixture d;
  auto r = run_cyto(d, {"discover", "--json"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r));
  BOOST_TEST(r.err.empty(), show(r));
  BOOST_REQUIRE_MESSAGE(lines_of(r.out).size() == 1u, "one JSON object expected: " << show(r));
  auto j = parse_json(r.out);
  BOOST_TEST(j.at("nodeName").get<std::string>() == d.node_name());
  BOOST_TEST(!j.at("version").get<std::string>().empty());
  BOOST_TEST(j.at("healthy").get<bool>());
  BOOST_TEST(j.at("pid").get<int64_t>() == d.pid());
  BOOST_TEST(j.at("uptimeNanos").get<uint64_t>() > 0u);
  auto& f = j.at("features");
  static const std::set<std::string> modes{"v1", "hybrid", "v2", "unknown"};
  BOOST_TEST(modes.count(f.at("cgroupMode").get<std::string>()) == 1u, f.dump());
  BOOST_TEST(f.at("cgroupControllers").is_array());
  BOOST_TEST(f.at("namespaces").is_array());
  auto ns = f.at("namespaces").get<std::vector<std::string>>();
  BOOST_TEST((std::find(ns.begin(), ns.end(), "mnt") != ns.end()), f.dump());
  for (auto* key : {"ebpf", "btf", "kvm", "overlayfs", "pidfd"})
    BOOST_TEST(f.at(key).is_boolean(), key);
  auto accel = f.at("vmAccel").get<std::string>();
  BOOST_TEST((accel == "kvm" || accel == "tcg"), f.dump());
  BOOST_TEST(!f.at("vmAccelReason").get<std::string>().empty(), f.dump());
  BOOST_TEST(f.at("kernelRelease").is_string());

  // --json is accepted before the verb too.
  auto r2 = run_process({cli_path, "--json", "--socket", d.socket_path(), "discover"});
  BOOST_REQUIRE_MESSAGE(r2.code() == 0, show(r2));
  BOOST_TEST(parse_json(r2.out).at("nodeName").get<std::string>() == d.node_name());
}

BOOST_AUTO_TEST_CASE(discover_human_shows_the_node_name) {
  daemon_fixture d;
  auto r = run_cyto(d, {"discover"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r));
  BOOST_TEST(r.err.empty(), show(r));
  BOOST_TEST(row(r.out, "node").value_or("<none>") == d.node_name(), show(r));
  BOOST_TEST(row(r.out, "pid").value_or("<none>") == std::to_string(d.pid()), show(r));
  BOOST_TEST(row(r.out, "healthy").value_or("<none>") == "yes", show(r));
  BOOST_TEST(row(r.out, "cgroups").has_value(), show(r));
}

BOOST_AUTO_TEST_CASE(version_shows_cli_and_daemon_versions) {
  daemon_fixture d;
  auto dj = parse_json(run_cyto(d, {"discover", "--json"}).out);
  auto daemon_version = dj.at("version").get<std::string>();

  auto r = run_cyto(d, {"version"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r));
  BOOST_TEST(row(r.out, "cyto").value_or("<none>") == daemon_version, show(r));
  BOOST_TEST(row(r.out, "cytod").value_or("<none>") == daemon_version, show(r));

  auto rj = run_cyto(d, {"version", "--json"});
  BOOST_REQUIRE_MESSAGE(rj.code() == 0, show(rj));
  auto j = parse_json(rj.out);
  BOOST_TEST(j.at("cli").get<std::string>() == daemon_version);
  BOOST_TEST(j.at("daemon").get<std::string>() == daemon_version);

  // Without a daemon the CLI still tells its own version and says why the other is missing.
  temp_dir empty;
  auto rn = run_process({cli_path, "--socket", empty / "none.sock", "version"});
  BOOST_TEST(rn.code() == 0, show(rn));
  BOOST_TEST(row(rn.out, "cyto").value_or("<none>") == daemon_version, show(rn));
  BOOST_TEST(contains(row(rn.out, "cytod").value_or(""), "unreachable"), show(rn));
}

BOOST_AUTO_TEST_CASE(health_exits_0_when_healthy) {
  daemon_fixture d;
  auto r = run_cyto(d, {"health"});
  BOOST_TEST(r.code() == 0, show(r));
  BOOST_TEST(lines_of(r.out).at(0) == "healthy", show(r));
  auto rj = run_cyto(d, {"health", "--json"});
  BOOST_TEST(rj.code() == 0, show(rj));
  auto j = parse_json(rj.out);
  BOOST_TEST(j.at("healthy").get<bool>());
  BOOST_TEST(j.at("problems").empty());
}

BOOST_AUTO_TEST_CASE(logs_tail_json_prints_at_most_tail_lines) {
  daemon_fixture d;
  // More than five entries in the history: three refused peers on top of start-up.
  d.open_to_everyone();
  for (int i = 0; i < 3; ++i)
    d.connect_as_nobody();
  auto r = run_cyto(d, {"logs", "--daemon", "--tail", "5", "--json"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r));
  BOOST_TEST(r.err.empty(), show(r));
  auto lines = lines_of(r.out);
  BOOST_TEST(lines.size() == 5u, show(r));
  uint64_t last_seq = 0;
  for (auto& line : lines) {
    auto j = parse_json(line);
    BOOST_TEST(j.at("level").is_string(), line);
    BOOST_TEST(j.at("logger").is_string(), line);
    BOOST_TEST(j.at("message").is_string(), line);
    BOOST_TEST(j.at("time").is_string(), line);
    BOOST_TEST(j.at("unixNanos").is_number_integer(), line);
    auto seq = j.at("seq").get<uint64_t>();
    BOOST_TEST(seq > last_seq, line);
    last_seq = seq;
  }
  // The newest entries come last: the last refused peer is in there.
  BOOST_TEST(contains(r.out, "refused peer"), show(r));
}

BOOST_AUTO_TEST_CASE(logs_with_bogus_level_is_invalid_argument) {
  daemon_fixture d;
  auto r = run_cyto(d, {"logs", "--daemon", "--level", "bogus"});
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(lines_of(r.err).size() == 1u, show(r));
  BOOST_TEST(contains(r.err, "cyto.invalid_argument"), show(r));
  BOOST_TEST(r.out.empty(), show(r));
}

BOOST_AUTO_TEST_CASE(missing_socket_is_one_line_cannot_connect) {
  temp_dir empty;
  auto sock = empty / "absent.sock";
  for (auto args : std::vector<std::vector<std::string>>{
         {"discover"}, {"discover", "--json"}, {"health"}, {"logs", "--daemon"}}) {
    std::vector<std::string> argv{cli_path, "--socket", sock};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_process(argv);
    BOOST_TEST_CONTEXT("cyto " << args.at(0)) {
      BOOST_TEST(r.code() == 1, show(r));
      BOOST_TEST(lines_of(r.err).size() == 1u, show(r));
      BOOST_TEST(contains(r.err, "cannot connect"), show(r));
      BOOST_TEST(contains(r.err, sock), show(r));
      BOOST_TEST(r.err.rfind("cyto: ", 0) == 0, show(r));
      BOOST_TEST(r.out.empty(), show(r));
    }
  }
}

BOOST_AUTO_TEST_CASE(help_exits_0_and_lists_the_verbs) {
  auto r = run_process({cli_path, "--help"});
  BOOST_TEST(r.code() == 0, show(r));
  for (auto* verb : {"discover", "health", "version", "logs"})
    BOOST_TEST(contains(r.out, verb), verb << " missing from\n" << show(r));
}

BOOST_AUTO_TEST_CASE(logs_follow_json_shows_a_new_line) {
  daemon_fixture d;
  d.open_to_everyone();
  child_process cli{{cli_path, "--socket", d.socket_path(), "logs", "--daemon", "-f", "--json",
                     "--tail", "1"}};
  // The history line shows that the CLI is subscribed.
  BOOST_REQUIRE_MESSAGE(cli.read_until([](auto& out) { return contains(out, "\n"); }, 10s),
                        "no history line; stdout: " << cli.out() << " stderr: " << cli.err());
  auto child = d.connect_as_nobody();
  auto needle = "pid=" + std::to_string(child) + " ";
  bool seen = cli.read_until([&](auto& out) { return contains(out, needle); }, 10s);
  BOOST_TEST(seen, "stdout: " << cli.out() << " stderr: " << cli.err() << "\ndaemon log:\n"
                              << d.log());
  BOOST_TEST(!cli.try_wait(), "the CLI must keep following");
  for (auto& line : lines_of(cli.out())) {
    auto j = parse_json(line);
    BOOST_TEST(j.at("message").is_string(), line);
  }
  cli.kill_and_wait(SIGTERM, 10s); // throws (test fails) if it does not end in time
  BOOST_TEST(d.running());
  BOOST_TEST(discover_json_ok(d), "the daemon stopped answering after the follower was killed");
}
