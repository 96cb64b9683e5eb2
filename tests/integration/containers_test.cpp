// Integration tests of containers and pods: a real cytod runs busybox containers through
// the cyto CLI and Cap'n Proto; what it claims is checked inside the container (hostname,
// pid 1, /proc, capabilities, read-only rootfs, seccomp), in the cell's cgroup files and
// in the state dir. Needs root (exits 77 otherwise).
#define BOOST_TEST_MODULE integration_containers
#include <boost/test/unit_test.hpp>

#include <set>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "actors/containers/state_rows.hpp"

#include "schema/cells.capnp.h"
#include "schema/containers.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/registry_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;
namespace schema = cyto::schema;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// One daemon (importing the build's demo image on start, as it does by default, and
/// allowed to pull from a loopback registry that holds the same image) for the whole
/// suite: each test names its containers apart.
struct suite {
  registry_fixture registry;
  std::unique_ptr<daemon_fixture> d;

  suite() {
    registry.push(CYTO_DEMO_IMAGE_DIR, "latest", "test/busybox", "1");
    d = std::make_unique<daemon_fixture>(false);
    start();
  }

  void start() {
    d->start({"--insecure-registry", registry.host()}, 30s);
  }
};

suite& env() {
  static suite s;
  return s;
}

process_result cli(const std::vector<std::string>& args, std::chrono::milliseconds t = 30s) {
  std::vector<std::string> argv{cli_path, "--socket", env().d->socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    return run_process(argv, t);
  } catch (const std::exception& e) {
    std::string what;
    for (auto& a : args)
      what += a + " ";
    auto log = env().d->log();
    throw std::runtime_error("cyto " + what + ": " + e.what() + "\ndaemon log (tail):\n" +
                             log.substr(log.size() > 4000 ? log.size() - 4000 : 0));
  }
}

/// Runs the CLI and requires exit code 0.
std::string ok(const std::vector<std::string>& args) {
  auto r = cli(args);
  BOOST_REQUIRE_MESSAGE(
      r.code() == 0,
      "cyto " << args.front() << " failed (" << r.code() << "): " << r.err << r.out
              << "\ndaemon log:\n"
              << env().d->log().substr(std::max<size_t>(env().d->log().size(), 3000) - 3000));
  return r.out;
}

json inspect(const std::string& name) {
  auto r = cli({"inspect", "--json", name});
  if (r.code() != 0)
    return nullptr;
  return json::parse(r.out).at(0);
}

std::vector<std::string> bundle_dirs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{env().d->state_dir() + "/bundles", ec})
    out.push_back(e.path().filename());
  return out;
}

std::vector<std::string> runtime_dirs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{env().d->state_dir() + "/runtime", ec})
    out.push_back(e.path().filename());
  return out;
}

/// Cells under containers/ and pods/ (as `cyto cell ls --json` shows them).
std::set<std::string> workload_cells() {
  std::set<std::string> out;
  auto r = cli({"cell", "ls", "--json"});
  std::function<void(const json&)> walk = [&](const json& c) {
    std::string name = c.contains("name") ? c["name"].get<std::string>() : "";
    if (name.rfind("containers/", 0) == 0 || name.rfind("pods/", 0) == 0)
      out.insert(name);
    if (c.contains("children"))
      for (auto& k : c["children"])
        walk(k);
  };
  for (auto& line : lines_of(r.out)) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_array())
      for (auto& c : j)
        walk(c);
    else if (j.is_object())
      walk(j);
  }
  return out;
}

std::string cells_text() {
  std::string out;
  for (auto& c : workload_cells())
    out += c + " ";
  return out;
}

/// The host's overlay mounts under the daemon's state dir.
size_t state_mounts() {
  size_t n = 0;
  for (auto& line : lines_of(read_text("/proc/self/mountinfo")))
    if (contains(line, env().d->state_dir() + "/bundles/"))
      ++n;
  return n;
}

struct snapshot {
  std::vector<std::string> bundles, runtime;
  std::set<std::string> cells;
  size_t mounts = 0;
  std::string ps;
};

snapshot take() {
  auto ps = json::parse(ok({"ps", "-a", "--json"}));
  std::set<std::string> names;
  for (auto& c : ps)
    names.insert(c["name"].get<std::string>());
  std::string all;
  for (auto& n : names)
    all += n + " ";
  return {bundle_dirs(), runtime_dirs(), workload_cells(), state_mounts(), all};
}

void same(const snapshot& a, const snapshot& b, const std::string& what) {
  BOOST_CHECK_MESSAGE(a.bundles == b.bundles, what << ": bundle dirs changed");
  BOOST_CHECK_MESSAGE(a.runtime == b.runtime, what << ": runtime state dirs changed");
  BOOST_CHECK_MESSAGE(a.cells == b.cells, what << ": cells changed");
  BOOST_CHECK_MESSAGE(a.mounts == b.mounts, what << ": mounts changed");
  BOOST_CHECK_MESSAGE(a.ps == b.ps,
                      what << ": containers changed: '" << a.ps << "' -> '" << b.ps << "'");
}

/// Reads a file of a cell's cgroup (the v1 memory hierarchy or v2).
std::string cell_cgroup_file(const std::string& cell, const std::string& v1,
                             const std::string& v2) {
  auto root = env().d->cgroup_root();
  for (auto& m : host_cgroup_mounts()) {
    auto dir = m.path + "/" + root + "/" + cell;
    // Processes live in the leaf "_"; limits are on the cell's own directory.
    if (fs::exists(dir + "/" + (m.v2 ? v2 : v1)))
      return read_text(dir + "/" + (m.v2 ? v2 : v1));
  }
  return {};
}

bool pump_logs(const std::string& name, const std::string& want);

} // namespace

BOOST_AUTO_TEST_CASE(run_rm_echo_prints_and_leaves_nothing) {
  auto before = take();
  auto r = cli({"run", "--rm", "demo", "echo", "hello"});
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "hello\n");
  same(before, take(), "run --rm");
}

BOOST_AUTO_TEST_CASE(exit_codes_propagate) {
  auto r = cli({"run", "--rm", "demo", "sh", "-c", "echo out; echo err >&2; exit 42"});
  BOOST_CHECK_EQUAL(r.code(), 42);
  BOOST_CHECK_EQUAL(r.out, "out\n");
  BOOST_CHECK(contains(r.err, "err\n"));
  // Killed by a signal: 128 + n, like a shell.
  ok({"run", "-d", "--name", "k9", "demo", "sleep", "60"});
  ok({"kill", "k9"});
  BOOST_CHECK_EQUAL(ok({"wait", "k9"}), "137\n");
  BOOST_CHECK_EQUAL(inspect("k9")["exitSignal"], 9);
  ok({"rm", "k9"});
}

BOOST_AUTO_TEST_CASE(inside_the_container_hostname_pid1_proc_caps) {
  auto out = ok({"run", "--rm", "--hostname", "inbox", "demo", "sh", "-c",
                 "hostname; cat /etc/hostname; tr '\\0' ' ' < /proc/1/cmdline; echo;"
                 " ls /proc | grep -c '^[0-9]'; grep CapEff /proc/self/status"});
  auto l = lines_of(out);
  BOOST_REQUIRE_EQUAL(l.size(), 5u);
  BOOST_CHECK_EQUAL(l[0], "inbox");
  BOOST_CHECK_EQUAL(l[1], "inbox");
  // pid 1 is the user's process (sh), not an init of ours.
  BOOST_CHECK(l[2].rfind("sh -c hostname", 0) == 0);
  // Only the container's processes: sh, ls and grep (at most a few).
  BOOST_CHECK_LE(std::stoi(l[3]), 4);
  // podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
  // NET_BIND_SERVICE SYS_CHROOT SETFCAP.
  BOOST_CHECK_EQUAL(l[4], "CapEff:\t00000000800405fb");
  // --cap-add extends it (NET_ADMIN is bit 12).
  BOOST_CHECK_EQUAL(
      ok({"run", "--rm", "--cap-add", "NET_ADMIN", "demo", "grep", "CapEff", "/proc/self/status"}),
      "CapEff:\t00000000800415fb\n");
}

BOOST_AUTO_TEST_CASE(read_only_rootfs_refuses_writes_but_tmp_works) {
  auto r = cli({"run", "--rm", "--read-only", "demo", "sh", "-c", "touch /x"});
  BOOST_CHECK_NE(r.code(), 0);
  BOOST_CHECK_MESSAGE(contains(r.err, "Read-only file system"), r.err);
  BOOST_CHECK_EQUAL(
      ok({"run", "--rm", "--read-only", "demo", "sh", "-c", "touch /tmp/x && echo ok"}), "ok\n");
  // Without --read-only the rootfs is writable.
  BOOST_CHECK_EQUAL(ok({"run", "--rm", "demo", "sh", "-c", "touch /x && echo ok"}), "ok\n");
}

BOOST_AUTO_TEST_CASE(default_seccomp_profile_gives_eperm) {
  // Even with CAP_SYS_ADMIN, the default profile refuses mount(2) with EPERM.
  auto r =
      cli({"run", "--rm", "--cap-add", "SYS_ADMIN", "demo", "mount", "-t", "tmpfs", "x", "/tmp"});
  BOOST_CHECK_NE(r.code(), 0);
  BOOST_CHECK_MESSAGE(contains(r.err, "permission denied"), r.err);
}

BOOST_AUTO_TEST_CASE(detached_container_limits_exec_logs_stop) {
  auto id = ok({"run", "-d", "--name", "lim", "--memory", "64M", "-e", "GREETING=hi", "demo", "sh",
                "-c", "echo $GREETING from lim; exec sleep 60"});
  BOOST_CHECK_EQUAL(id.size(), 65u); // 64 hex digits and a newline
  auto info = inspect("lim");
  BOOST_REQUIRE(!info.is_null());
  BOOST_CHECK_EQUAL(info["state"], "running");
  BOOST_CHECK_EQUAL(info["cell"], "containers/lim");
  BOOST_CHECK_EQUAL(info["id"].get<std::string>() + "\n", id);
  // The memory limit is in the cell's cgroup.
  auto mem = cell_cgroup_file("containers/lim", "memory.limit_in_bytes", "memory.max");
  BOOST_CHECK_EQUAL(mem, std::to_string(64 << 20) + "\n");
  // The container's pid is in that cgroup and in the listing.
  auto ps = ok({"ps"});
  BOOST_CHECK(contains(ps, "lim"));
  // exec shares the pid namespace: pid 1 is the container's sleep.
  BOOST_CHECK_EQUAL(ok({"exec", "lim", "cat", "/proc/1/comm"}), "sleep\n");
  BOOST_CHECK_EQUAL(cli({"exec", "lim", "sh", "-c", "exit 5"}).code(), 5);
  auto missing = cli({"exec", "lim", "nosuchcmd"});
  BOOST_CHECK_EQUAL(missing.code(), 127);
  // logs by container name.
  BOOST_CHECK(pump_logs("lim", "hi from lim"));
  // Removing a running container needs force.
  auto rm = cli({"rm", "lim"});
  BOOST_CHECK_NE(rm.code(), 0);
  BOOST_CHECK_MESSAGE(contains(rm.err, "cyto.failed_precondition"), rm.err);
  BOOST_CHECK_EQUAL(inspect("lim")["state"], "running");
  // sleep as pid 1 ignores SIGTERM: stop kills it after the timeout.
  auto stopped = cli({"stop", "-t", "1", "--json", "lim"});
  BOOST_CHECK_EQUAL(stopped.code(), 0);
  BOOST_CHECK_EQUAL(json::parse(stopped.out)["exitCode"], 137);
  BOOST_CHECK_EQUAL(inspect("lim")["state"], "stopped");
  ok({"rm", "lim"});
  BOOST_CHECK(inspect("lim").is_null());
}

BOOST_AUTO_TEST_CASE(pod_containers_talk_over_localhost) {
  ok({"pod", "create", "p1"});
  // busybox nc shuts its sending half when its stdin ends; a client that sees that end
  // before it has read its own stdin quits without sending: the server's stdin stays open.
  ok({"run", "-d", "--pod", "p1", "--name", "srv", "demo", "sh", "-c",
      "sleep 30 | nc -l -p 8080"});
  // The server listens in the pod's network namespace; a second container reaches it.
  bool sent = false;
  for (int i = 0; i < 50 && !sent; ++i) {
    auto r = cli({"run", "--rm", "--pod", "p1", "demo", "sh", "-c",
                  "hostname; echo ping-over-lo | nc 127.0.0.1 8080"});
    sent = r.code() == 0;
    BOOST_TEST_MESSAGE("client attempt " << i << ": " << r.code() << " out [" << r.out
                                         << "] err [" << r.err << "]");
    if (sent)
      BOOST_CHECK_EQUAL(lines_of(r.out).at(0), "p1");
    else
      std::this_thread::sleep_for(100ms);
  }
  BOOST_CHECK(sent);
  BOOST_CHECK_MESSAGE(pump_logs("srv", "ping-over-lo"),
                      "srv's logs: [" << cli({"logs", "srv"}).out << "] state "
                                      << inspect("srv")["state"] << " exit "
                                      << inspect("srv")["exitCode"]);
  auto pods = json::parse(ok({"pod", "ls", "--json"}));
  BOOST_REQUIRE_EQUAL(pods.size(), 1u);
  BOOST_CHECK_EQUAL(pods[0]["name"], "p1");
  BOOST_CHECK_EQUAL(pods[0]["containers"], json::array({"srv"}));
  BOOST_CHECK_EQUAL(inspect("srv")["cell"], "pods/p1/srv");
  // Stopping the pod stops its containers.
  ok({"pod", "stop", "-t", "1", "p1"});
  BOOST_CHECK_EQUAL(inspect("srv")["state"], "stopped");
  ok({"pod", "rm", "p1"});
  BOOST_CHECK(inspect("srv").is_null());
  BOOST_CHECK(json::parse(ok({"pod", "ls", "--json"})).empty());
  BOOST_CHECK_MESSAGE(workload_cells().empty(), "cells left: " << cells_text());
}

BOOST_AUTO_TEST_CASE(pod_remove_refuses_running_containers_without_force) {
  ok({"pod", "create", "p2"});
  ok({"run", "-d", "--pod", "p2", "--name", "p2c", "demo", "sleep", "60"});
  auto r = cli({"pod", "rm", "p2"});
  BOOST_CHECK_NE(r.code(), 0);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto.failed_precondition"), r.err);
  BOOST_CHECK_EQUAL(inspect("p2c")["state"], "running");
  ok({"pod", "rm", "-f", "p2"});
  BOOST_CHECK(inspect("p2c").is_null());
  BOOST_CHECK_MESSAGE(workload_cells().empty(), "cells left: " << cells_text());
}

BOOST_AUTO_TEST_CASE(containers_survive_kill_9_of_the_daemon) {
  ok({"run", "-d", "--name", "keep", "demo", "sh", "-c",
      "echo started; trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done"});
  ok({"run", "-d", "--name", "short", "demo", "sh", "-c", "sleep 1; exit 7"});
  BOOST_CHECK(pump_logs("keep", "started"));
  auto pid = inspect("keep")["pid"].get<int>();
  env().d->stop(SIGKILL);
  BOOST_CHECK_EQUAL(::kill(pid, 0), 0); // still running without the daemon
  std::this_thread::sleep_for(1500ms);  // "short" ends while the daemon is down
  env().start();
  auto keep = inspect("keep");
  BOOST_CHECK_EQUAL(keep["state"], "running");
  BOOST_CHECK_EQUAL(keep["pid"], pid);
  auto s = inspect("short");
  BOOST_CHECK_EQUAL(s["state"], "stopped");
  BOOST_CHECK_EQUAL(s["exitCode"], 7);
  BOOST_CHECK(contains(ok({"ps"}), "keep"));
  BOOST_CHECK(pump_logs("keep", "started"));
  auto stopped = json::parse(ok({"stop", "--json", "keep"}));
  BOOST_CHECK_EQUAL(stopped["exitCode"], 3);
  BOOST_CHECK(pump_logs("keep", "bye"));
  ok({"rm", "keep", "short"});
}

BOOST_AUTO_TEST_CASE(run_pulls_a_missing_image_from_the_registry) {
  auto ref = env().registry.host() + "/test/busybox:1";
  auto r = cli({"run", "--rm", ref, "echo", "pulled"});
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "pulled\n");
  BOOST_CHECK(contains(r.err, "pulled " + ref));
  // Now it is in the store: no second pull.
  auto again = cli({"run", "--rm", ref, "true"});
  BOOST_CHECK_EQUAL(again.code(), 0);
  BOOST_CHECK(!contains(again.err, "pulled"));
}

BOOST_AUTO_TEST_CASE(capnp_create_start_wait_remove) {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto conn = env().d->connect(io);
  auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
  auto create = svc.createRequest();
  auto spec = create.initSpec();
  spec.setName("viacapnp");
  spec.setImage("demo");
  auto args = spec.initArgs(3);
  args.set(0, "sh");
  args.set(1, "-c");
  args.set(2, "exit 9");
  auto created = wait_for(io, create.send()).getInfo();
  BOOST_CHECK(created.getState() == schema::ContainerState::CREATED);
  BOOST_CHECK_GT(created.getPid(), 0u);
  // The created process waits for start.
  BOOST_CHECK_EQUAL(::kill(static_cast<pid_t>(created.getPid()), 0), 0);
  auto start = svc.startRequest();
  start.setName("viacapnp");
  start.setWait(true);
  auto done = wait_for(io, start.send()).getInfo();
  BOOST_CHECK(done.getState() == schema::ContainerState::STOPPED);
  BOOST_CHECK_EQUAL(done.getExitCode(), 9);
  auto w = svc.waitRequest();
  w.setName("viacapnp");
  BOOST_CHECK_EQUAL(wait_for(io, w.send()).getInfo().getExitCode(), 9);
  // A stopped container runs again (the lifecycle tests below say more).
  auto again = svc.startRequest();
  again.setName("viacapnp");
  again.setWait(true);
  auto second = wait_for(io, again.send()).getInfo();
  BOOST_CHECK_EQUAL(second.getExitCode(), 9);
  BOOST_CHECK_EQUAL(std::string{second.getId()}, std::string{created.getId()});
  auto rm = svc.removeRequest();
  rm.setName("viacapnp");
  wait_for(io, rm.send());
  // A created container that is never started can be stopped (its shim aborts it).
  auto c2 = svc.createRequest();
  c2.initSpec().setName("neverstarted");
  c2.getSpec().setImage("demo");
  wait_for(io, c2.send());
  auto rm2 = svc.removeRequest();
  rm2.setName("neverstarted");
  rm2.setForce(true);
  wait_for(io, rm2.send());
  BOOST_CHECK(inspect("neverstarted").is_null());
}

BOOST_AUTO_TEST_CASE(bad_inputs_give_clear_errors_and_leave_nothing) {
  ok({"run", "-d", "--name", "dup", "demo", "sleep", "60"});
  auto before = take();
  struct bad_case {
    std::vector<std::string> args;
    int code;
    std::string error;
  };
  std::vector<bad_case> cases = {
      {{"run", "--rm", env().registry.host() + "/nope/nothing:1"}, 125, "cyto.not_found"},
      {{"run", "--name", "dup", "demo", "true"}, 125, "cyto.already_exists"},
      {{"run", "--rm", "demo", "nosuchcmd"}, 127, "nosuchcmd"},
      {{"run", "--rm", "--cpus", "64", "demo", "true"}, 125, "cyto.invalid_argument"},
      {{"run", "--rm", "--pod", "nopod", "demo", "true"}, 125, "cyto.not_found"},
      {{"run", "--rm", "--name", "bad/name", "demo", "true"}, 125, "cyto.invalid_argument"},
      {{"run", "--rm", "--cap-add", "WIZARDRY", "demo", "true"}, 125, "cyto.invalid_argument"},
      {{"run", "--rm", "-e", "=x", "demo", "true"}, 125, "cyto.invalid_argument"},
      {{"run", "--rm", "--user", "nosuchuser", "demo", "true"}, 125, "cyto.invalid_argument"},
      {{"run", "--rm", "-p", "8080:80", "demo", "true"}, 125, "cyto.invalid_argument"},
  };
  for (auto& c : cases) {
    auto r = cli(c.args);
    std::string what;
    for (auto& a : c.args)
      what += a + " ";
    BOOST_CHECK_MESSAGE(r.code() == c.code, what << ": exit " << r.code() << " " << r.err);
    BOOST_CHECK_MESSAGE(contains(r.err, c.error), what << ": " << r.err);
    same(before, take(), what);
  }
  // No network actor here, or no such network: either way, a clear error and nothing left.
  auto net = cli({"run", "--rm", "--network", "nonet", "demo", "true"});
  BOOST_CHECK_EQUAL(net.code(), 125);
  BOOST_CHECK_MESSAGE(contains(net.err, "cyto.unavailable") || contains(net.err, "cyto.not_found"),
                      net.err);
  same(before, take(), "--network nonet");
  auto rm = cli({"rm", "dup"});
  BOOST_CHECK_NE(rm.code(), 0);
  BOOST_CHECK(contains(rm.err, "cyto.failed_precondition"));
  BOOST_CHECK_EQUAL(cli({"rm", "nosuch"}).code(), 125);
  ok({"rm", "-f", "dup"});
  BOOST_CHECK(inspect("dup").is_null());
  BOOST_CHECK(bundle_dirs().empty());
}

BOOST_AUTO_TEST_CASE(env_files_are_read_by_the_client_in_podman_format) {
  temp_dir dir;
  write_text(dir / "a.env", "# a comment\n\nGREETING=hello world\n  SPACED=yes\nFROM_CLIENT\n"
                            "UNSET_IN_CLIENT\nOVERRIDDEN=file\r\n");
  write_text(dir / "b.env", "SECOND=2\n");
  ::setenv("FROM_CLIENT", "client-value", 1);
  ::unsetenv("UNSET_IN_CLIENT");
  auto out = ok({"run", "--rm", "--env-file", dir / "a.env", "--env-file", dir / "b.env", "-e",
                 "OVERRIDDEN=flag", "demo", "env"});
  ::unsetenv("FROM_CLIENT");
  auto env_lines = lines_of(out);
  auto has = [&](const std::string& l) {
    return std::find(env_lines.begin(), env_lines.end(), l) != env_lines.end();
  };
  BOOST_TEST(has("GREETING=hello world"), out);
  BOOST_TEST(has("SPACED=yes"), out);
  BOOST_TEST(has("FROM_CLIENT=client-value"), out);
  BOOST_TEST(has("SECOND=2"), out);
  BOOST_TEST(has("OVERRIDDEN=flag"), out);
  BOOST_TEST(!has("OVERRIDDEN=file"), out);
  BOOST_TEST(!contains(out, "UNSET_IN_CLIENT"), out);
  // A missing file (or a directory) is podman's 125 with nothing created.
  auto before = take();
  for (auto& file : {dir / "missing.env", dir.path()}) {
    auto r = cli({"run", "-d", "--name", "envfail", "--env-file", file, "demo", "true"});
    BOOST_TEST(r.code() == 125, r.err);
    BOOST_TEST(contains(r.err, "cyto.invalid_argument: --env-file " + file + ": cannot read"),
               r.err);
    same(before, take(), "--env-file " + file);
    BOOST_TEST(inspect("envfail").is_null());
  }
}

namespace {

/// `cyto logs NAME` shows `want` (the output may take a moment to be written).
bool pump_logs(const std::string& name, const std::string& want) {
  for (int i = 0; i < 100; ++i) {
    auto r = cli({"logs", name});
    if (r.code() == 0 && contains(r.out + r.err, want))
      return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

} // namespace

namespace {

/// `cyto logs ARGS... NAME` once `want` is in the container's output.
std::string logs_once(const std::string& name, const std::string& want,
                      std::vector<std::string> args = {}) {
  BOOST_REQUIRE_MESSAGE(pump_logs(name, want), name << " never printed " << want);
  std::vector<std::string> argv{"logs"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(name);
  return ok(argv);
}

} // namespace

BOOST_AUTO_TEST_CASE(logs_tail_since_until_and_timestamps_are_served_by_the_daemon) {
  auto started = unix_now();
  ok({"run", "-d", "--name", "bursts", "demo", "sh", "-c",
      "for i in 1 2 3 4 5 6 7 8 9 10; do echo a$i; done; sleep 2; echo b1; echo b2; "
      "exec sleep 60"});
  // Between the bursts: a2 is printed, b1 not yet (it comes 2 s later).
  BOOST_REQUIRE(pump_logs("bursts", "a10"));
  auto between = unix_now();
  auto all = logs_once("bursts", "b2");
  BOOST_TEST(lines_of(all).size() == 12u, all);
  // --tail 3: the last three lines only.
  BOOST_TEST(ok({"logs", "--tail", "3", "bursts"}) == "a10\nb1\nb2\n");
  BOOST_TEST(ok({"logs", "--tail", "0", "bursts"}) == "");
  // --since a time between the bursts: the second one; --until it: the first.
  BOOST_TEST(ok({"logs", "--since", rfc3339(between), "bursts"}) == "b1\nb2\n");
  auto first = ok({"logs", "--until", rfc3339(between), "bursts"});
  BOOST_TEST(lines_of(first).size() == 10u, first);
  BOOST_TEST(!contains(first, "b1"), first);
  BOOST_TEST(ok({"logs", "--since", rfc3339(between), "--tail", "1", "bursts"}) == "b2\n");
  // A duration back: everything is younger than an hour.
  BOOST_TEST(ok({"logs", "--since", "1h", "bursts"}) == all);
  // -t: each line starts with an RFC 3339 time, in order, between the start and now.
  auto stamped = ok({"logs", "-t", "bursts"});
  auto lines = lines_of(stamped);
  BOOST_REQUIRE_EQUAL(lines.size(), 12u);
  int64_t prev = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto space = lines[i].find(' ');
    BOOST_REQUIRE_MESSAGE(space != std::string::npos, lines[i]);
    auto t = from_rfc3339(lines[i].substr(0, space));
    BOOST_TEST(t >= prev, lines[i]);
    BOOST_TEST(t >= started - 1'000'000'000, lines[i]);
    BOOST_TEST(t <= unix_now(), lines[i]);
    BOOST_TEST(lines[i].substr(space + 1) == lines_of(all)[i]);
    prev = t;
  }
  auto b1 = from_rfc3339(lines[10].substr(0, lines[10].find(' ')));
  auto a10 = from_rfc3339(lines[9].substr(0, lines[9].find(' ')));
  BOOST_TEST(b1 - a10 >= 1'500'000'000, stamped); // the sleep 2 between them
  // Bad times are refused by the client.
  auto r = cli({"logs", "--since", "yesterday", "bursts"});
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto.invalid_argument: --since"), r.err);
  ok({"rm", "-f", "bursts"});
}

BOOST_AUTO_TEST_CASE(stats_no_stream_json_shows_cpu_memory_limit_and_pids) {
  ok({"run", "-d", "--name", "busy", "-m", "64M", "demo", "sh", "-c", "while :; do :; done"});
  auto r = cli({"stats", "--no-stream", "--json", "busy"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  auto j = json::parse(r.out);
  BOOST_REQUIRE_MESSAGE(j.is_array() && j.size() == 1u, r.out);
  auto& s = j.at(0);
  BOOST_TEST(s.at("name") == "busy");
  BOOST_TEST(s.at("cpuPercent").get<double>() > 0.0, r.out); // a busy loop, over 1 s
  BOOST_TEST(s.at("memUsage").get<uint64_t>() > 0u, r.out);
  BOOST_TEST(s.at("memLimit").get<uint64_t>() == uint64_t{64} << 20, r.out);
  auto pids = cell_cgroup_file("containers/busy", "pids.current", "pids.current");
  BOOST_TEST(std::to_string(s.at("pids").get<uint64_t>()) + "\n" == pids, r.out);
  BOOST_TEST(s.at("pids").get<uint64_t>() >= 1u, r.out);
  // Its own network namespace (lo only here): counters there, nothing sent.
  BOOST_TEST(s.at("netTx").is_number(), r.out);
  // The table, and every running container without names.
  auto table = ok({"stats", "--no-stream"});
  BOOST_TEST(contains(table, "MEM USAGE / LIMIT"), table);
  BOOST_TEST(contains(table, "busy"), table);
  BOOST_TEST(contains(table, "64MiB"), table);
  // Unknown or stopped containers: podman's 125.
  auto missing = cli({"stats", "--no-stream", "nosuch"});
  BOOST_TEST(missing.code() == 125, missing.err);
  BOOST_TEST(contains(missing.err, "cyto.not_found"), missing.err);
  ok({"rm", "-f", "busy"});
}

// The containers actor used to remember its parent cell forever: once `containers` was
// freed, every create failed until cytod restarted.
BOOST_AUTO_TEST_CASE(run_works_after_the_parent_cell_was_freed) {
  ok({"run", "--rm", "demo", "true"});
  auto r = cli({"cell", "free", "containers"});
  BOOST_TEST_REQUIRE(r.code() == 0, "cell free containers: " << r.err);
  BOOST_TEST(!workload_cells().count("containers"));
  auto again = cli({"run", "--rm", "demo", "echo", "back"});
  BOOST_TEST(again.code() == 0, again.err);
  BOOST_TEST(again.out == "back\n");
}

// A cgroup under the daemon's root that state.db does not know used to be taken for the
// containers actor's own parent, and every run then failed with "parent cell containers
// does not exist". Now an empty stray is removed at start and one with processes is kept
// and named in the error of an allocate over it.
BOOST_AUTO_TEST_CASE(stray_cgroups_under_the_root_are_swept_or_named) {
  daemon_fixture d{false};
  std::vector<std::string> made;
  for (auto& m : host_cgroup_mounts()) {
    auto dir = m.path + "/" + d.cgroup_root() + "/containers";
    std::error_code ec;
    if (fs::create_directories(dir, ec))
      made.push_back(dir);
  }
  BOOST_TEST_REQUIRE(!made.empty(), "could not make a stray cgroup in any hierarchy");
  d.start({}, 30s);
  auto run = run_process({cli_path, "--socket", d.socket_path(), "run", "--rm", "demo", "echo",
                          "swept"},
                         30s);
  BOOST_TEST(run.code() == 0, run.err << "\nlog:\n" << d.log());
  BOOST_TEST(run.out == "swept\n");
  BOOST_TEST(contains(d.log(), "removed stray empty cgroup containers"), d.log());

  // A stray with a process in it: kept, and allocate over it names it.
  child_process sleeper{{"/bin/sleep", "30"}};
  size_t joined = 0;
  for (auto& m : host_cgroup_mounts()) {
    auto dir = m.path + "/" + d.cgroup_root() + "/busy";
    std::error_code ec;
    if (fs::create_directories(dir, ec) && fs::exists(dir + "/cgroup.procs")) {
      write_text(dir + "/cgroup.procs", std::to_string(sleeper.pid()));
      ++joined;
    }
  }
  BOOST_TEST_REQUIRE(joined > 0u);
  auto alloc = run_process({cli_path, "--socket", d.socket_path(), "cell", "allocate", "busy"});
  BOOST_TEST(alloc.code() != 0);
  BOOST_TEST(contains(alloc.err, "cyto.already_exists"), alloc.err);
  BOOST_TEST(contains(alloc.err, "does not own"), alloc.err);
  BOOST_TEST(contains(alloc.err, std::to_string(sleeper.pid())), alloc.err);
  // cyto health names it with its pids (healthy stays true: every actor answers).
  auto health = run_process({cli_path, "--socket", d.socket_path(), "health"});
  BOOST_TEST(health.code() == 0, health.out << health.err);
  BOOST_TEST(contains(health.out, "stray cgroup busy"), health.out);
  BOOST_TEST(contains(health.out, std::to_string(sleeper.pid())), health.out);
  ::kill(sleeper.pid(), SIGKILL);
}

namespace {

/// Runs SQL on `file` as another program would; `row` gets each result row.
void sql(const std::string& file, const std::string& text,
         std::function<void(sqlite3_stmt*)> row = {}) {
  sqlite3* db = nullptr;
  BOOST_REQUIRE_EQUAL(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  const char* rest = text.c_str();
  while (*rest) {
    BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db, rest, -1, &st, &rest) == SQLITE_OK,
                          text << ": " << sqlite3_errmsg(db));
    if (!st)
      break;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      if (row)
        row(st);
    BOOST_REQUIRE_MESSAGE(rc == SQLITE_DONE, text << ": " << sqlite3_errmsg(db));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
}

/// Turns the daemon's state.db into the previous format, as the cytod before schema
/// versions wrote it: no version column nor version tables (user_version 0), and
/// container rows in their v1 layout (no sysctls).
void downgrade_state_db(const std::string& file) {
  std::vector<std::pair<std::string, std::vector<char>>> rows;
  sql(file, "SELECT key, data FROM records WHERE kind = 'container'", [&](sqlite3_stmt* st) {
    auto* p = static_cast<const char*>(sqlite3_column_blob(st, 1));
    rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                      std::vector<char>(p, p + sqlite3_column_bytes(st, 1)));
  });
  BOOST_REQUIRE(!rows.empty());
  std::string update;
  for (auto& [key, blob] : rows) {
    cyto::containers::container_row row;
    BOOST_REQUIRE(cyto::store::from_blob(blob, row));
    cyto::containers::container_row_v1 old{row};
    std::string hex;
    for (unsigned char c : cyto::store::to_blob(old)) {
      char b[3];
      std::snprintf(b, sizeof b, "%02x", c);
      hex += b;
    }
    update += "UPDATE records SET data = x'" + hex + "' WHERE kind = 'container' AND key = '" + key
              + "';";
  }
  sql(file, update + "ALTER TABLE records DROP COLUMN version; DROP TABLE schema_versions;"
                     "DROP TABLE quarantine; PRAGMA user_version = 0;");
}

} // namespace

// Versioned state: the daemon of this build reads a state.db of the previous format,
// migrates its container rows once, re-adopts every workload, and keeps a row it cannot
// read in quarantine (listed by `cyto health`) instead of erasing it.
BOOST_AUTO_TEST_CASE(a_state_db_of_the_previous_format_is_read_with_every_workload_readopted) {
  ok({"run", "-d", "--name", "oldfmt", "demo", "sh", "-c",
      "echo up; trap 'exit 4' TERM; while true; do sleep 0.1; done"});
  BOOST_REQUIRE(pump_logs("oldfmt", "up"));
  ok({"cell", "allocate", "oldfmt-cell"});
  ok({"cell", "start", "oldfmt-cell", "--name", "sleeper", "--", "sleep", "600"});
  auto cpid = inspect("oldfmt")["pid"].get<int>();
  auto cell_pid = [] {
    auto c = json::parse(ok({"cell", "inspect", "oldfmt-cell"}));
    return c["executables"].at(0)["pid"].get<int>();
  };
  auto epid = cell_pid();
  auto file = env().d->state_dir() + "/state.db";
  env().d->stop(SIGKILL);
  downgrade_state_db(file);
  sql(file, "INSERT INTO records VALUES ('container', 'feedface', 'running', x'00ff01');");

  env().start();
  auto c = inspect("oldfmt");
  BOOST_CHECK_EQUAL(c["state"], "running");
  BOOST_CHECK_EQUAL(c["pid"], cpid);
  BOOST_CHECK(c["spec"]["sysctls"].empty());
  BOOST_CHECK_EQUAL(ok({"exec", "oldfmt", "echo", "inside"}), "inside\n");
  BOOST_CHECK_EQUAL(cell_pid(), epid);
  BOOST_CHECK_EQUAL(::kill(epid, 0), 0);

  // Upgraded in place: the layout, the migrated rows and the versions of their kinds.
  int layout = -1;
  sql(file, "PRAGMA user_version", [&](sqlite3_stmt* st) { layout = sqlite3_column_int(st, 0); });
  BOOST_CHECK_EQUAL(layout, 1);
  std::string versions;
  sql(file, "SELECT key, version FROM records WHERE kind = 'container' ORDER BY key",
      [&](sqlite3_stmt* st) {
        versions += std::string{reinterpret_cast<const char*>(sqlite3_column_text(st, 0))}
                    .substr(0, 8)
                    + "=" + std::to_string(sqlite3_column_int(st, 1)) + " ";
      });
  BOOST_CHECK_MESSAGE(!contains(versions, "=1 ") && !contains(versions, "=0 ")
                        && !contains(versions, "feedface"),
                      versions);
  int kind_version = -1;
  sql(file, "SELECT version FROM schema_versions WHERE kind = 'container'",
      [&](sqlite3_stmt* st) { kind_version = sqlite3_column_int(st, 0); });
  BOOST_CHECK_EQUAL(kind_version, static_cast<int>(cyto::containers::container_row_version));

  // The unreadable row: kept in quarantine with its bytes, named by health.
  std::string kept;
  sql(file, "SELECT hex(data), reason FROM quarantine WHERE key = 'feedface'",
      [&](sqlite3_stmt* st) {
        kept = std::string{reinterpret_cast<const char*>(sqlite3_column_text(st, 0))} + " "
               + reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
      });
  BOOST_CHECK_MESSAGE(kept.rfind("00FF01 ", 0) == 0, kept);
  auto health = json::parse(ok({"health", "--json"}));
  BOOST_CHECK(health["healthy"].get<bool>());
  std::string notices = health["notices"].dump();
  BOOST_CHECK_MESSAGE(contains(notices, "container feedface") && contains(notices, "quarantined"),
                      notices);
  BOOST_CHECK(contains(ok({"health"}), "notices:"));

  auto stopped = json::parse(ok({"stop", "--json", "oldfmt"}));
  BOOST_CHECK_EQUAL(stopped["exitCode"], 4);
  ok({"rm", "oldfmt"});
  ok({"cell", "free", "--force", "oldfmt-cell"});
  sql(file, "DELETE FROM quarantine WHERE key = 'feedface'");
}

// --sysctl sets namespaced sysctls in the container's own namespaces (over cyto's
// ping_group_range default) and refuses the rest before anything is made.
BOOST_AUTO_TEST_CASE(sysctl_overrides_namespaced_sysctls_and_refuses_the_rest) {
  auto r = cli({"run", "--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=99", "--sysctl",
                "kernel.shmmni=1234", "--sysctl", "net.ipv4.ping_group_range=0 0", "demo", "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shmmni",
                "/proc/sys/net/ipv4/ping_group_range"});
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "99\n1234\n0\t0\n");
  // The default without --sysctl: ICMP echo sockets for every group.
  BOOST_CHECK_EQUAL(ok({"run", "--rm", "demo", "cat", "/proc/sys/net/ipv4/ping_group_range"}),
                    "0\t2147483647\n");
  // The host's values are untouched.
  BOOST_CHECK(read_text("/proc/sys/kernel/shmmni") != "1234\n");

  auto before = take();
  for (std::vector<std::string> bad :
       {std::vector<std::string>{"--sysctl", "vm.swappiness=1"},
        {"--sysctl", "kernel.hostname=x"},
        {"--sysctl", "net.ipv4.ip_forward"},
        {"--sysctl", "=1"},
        {"--sysctl", "net/../../vm.swappiness=1"},
        {"--sysctl", "kernel.semx=1"}}) {
    std::vector<std::string> args{"run", "--rm", "--name", "badsysctl"};
    args.insert(args.end(), bad.begin(), bad.end());
    args.insert(args.end(), {"demo", "true"});
    auto b = cli(args);
    BOOST_CHECK_MESSAGE(b.code() != 0 && contains(b.err, "cyto.invalid_argument")
                          && contains(b.err, "sysctl"),
                        bad[1] << ": " << b.code() << " " << b.err);
  }
  same(before, take(), "refused sysctls");
  BOOST_CHECK_EQUAL(read_text("/proc/sys/vm/swappiness") == "1\n", false);
}

namespace {

/// The state.db row of container `name` (its key and blob).
std::pair<std::string, std::vector<char>> container_blob(const std::string& file,
                                                         const std::string& name) {
  std::pair<std::string, std::vector<char>> out;
  sql(file, "SELECT key, data FROM records WHERE kind = 'container'", [&](sqlite3_stmt* st) {
    auto* p = static_cast<const char*>(sqlite3_column_blob(st, 1));
    std::vector<char> blob(p, p + sqlite3_column_bytes(st, 1));
    cyto::containers::container_row row;
    if (cyto::store::from_blob(blob, row) && row.info.spec.name == name)
      out = {reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), std::move(blob)};
  });
  BOOST_REQUIRE_MESSAGE(!out.first.empty(), "no row of container " << name);
  return out;
}

void put_container_blob(const std::string& file, const std::string& key,
                        const std::vector<char>& blob) {
  std::string hex;
  for (unsigned char c : blob) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  sql(file, "UPDATE records SET data = x'" + hex + "' WHERE kind = 'container' AND key = '" + key
              + "'");
}

} // namespace

// Signals to a container's shim check the shim's recorded start time: after a restart
// that finds the shim's pid taken by another process, start refuses (the shim is gone)
// and that process is not sent the shim's start signal (SIGUSR1, which would kill it).
BOOST_AUTO_TEST_CASE(a_reused_shim_pid_is_never_signalled) {
  {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto conn = env().d->connect(io);
    auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
    auto create = svc.createRequest();
    create.initSpec().setName("reused");
    create.getSpec().setImage("demo");
    wait_for(io, create.send());
  }
  auto file = env().d->state_dir() + "/state.db";
  env().d->stop(SIGKILL);
  auto [key, original] = container_blob(file, "reused");
  cyto::containers::container_row row;
  BOOST_REQUIRE(cyto::store::from_blob(original, row));
  BOOST_REQUIRE_GT(row.shim_start_time, 0u);
  child_process other{{"/bin/sleep", "60"}}; // the pid "reused" by another program
  row.shim_pid = static_cast<uint32_t>(other.pid());
  put_container_blob(file, key, cyto::store::to_blob(row));
  env().start();
  {
    kj::AsyncIoContext io = kj::setupAsyncIo();
    auto conn = env().d->connect(io);
    auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
    auto start = svc.startRequest();
    start.setName("reused");
    try {
      wait_for(io, start.send());
      BOOST_ERROR("start signalled a pid that is no longer the shim's");
    } catch (const kj::Exception& e) {
      std::string what = e.getDescription().cStr();
      BOOST_CHECK_MESSAGE(contains(what, "cyto.unavailable") && contains(what, "gone"), what);
    }
  }
  std::this_thread::sleep_for(200ms);
  int st = 0;
  BOOST_CHECK_EQUAL(::waitpid(other.pid(), &st, WNOHANG), 0); // still running
  // Put the true shim back and remove the container.
  env().d->stop(SIGKILL);
  put_container_blob(file, key, original);
  env().start();
  ok({"rm", "--force", "reused"});
  BOOST_CHECK(inspect("reused").is_null());
}

// A container's root file system is the containers actor's: Images.unmount through the
// API is refused (the container keeps its root), removing the container unmounts it.
BOOST_AUTO_TEST_CASE(a_containers_rootfs_cannot_be_unmounted_through_the_api) {
  ok({"run", "-d", "--name", "ownedroot", "demo", "sleep", "60"});
  auto id = inspect("ownedroot")["id"].get<std::string>();
  auto r = cli({"image", "unmount", id});
  BOOST_CHECK(r.code() != 0);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto.permission_denied") && contains(r.err, "containers"),
                      r.err);
  BOOST_CHECK_EQUAL(ok({"exec", "ownedroot", "cat", "/etc/hostname"}), "ownedroot\n");
  ok({"rm", "--force", "ownedroot"});
  BOOST_CHECK(!contains(ok({"image", "mounts", "--json"}), id));
}

// -- lifecycle: create, start, restart, restart policies ---------------------------------

namespace {

/// Polls inspect until `done(info)` holds (or `t` passes); the last info either way.
json inspect_until(const std::string& name, const std::function<bool(const json&)>& done,
                   std::chrono::milliseconds t = 20s) {
  auto until = steady::now() + t;
  json info;
  while (steady::now() < until) {
    info = inspect(name);
    if (!info.is_null() && done(info))
      return info;
    std::this_thread::sleep_for(50ms);
  }
  return info;
}

/// How many lines of the container's log hold `word`.
size_t log_lines_with(const std::string& name, const std::string& word) {
  size_t n = 0;
  for (auto& line : lines_of(ok({"logs", name})))
    n += contains(line, word) ? 1 : 0;
  return n;
}

bool is_stopped(const json& i) {
  return i["state"] == "stopped";
}

} // namespace

BOOST_AUTO_TEST_CASE(create_then_start_runs_it_and_records_its_exit) {
  auto before = take();
  auto id = ok({"create", "--name", "lc-create", "demo", "sh", "-c", "echo created run; exit 4"});
  BOOST_CHECK_EQUAL(id.size(), 65u);
  auto info = inspect("lc-create");
  BOOST_REQUIRE(!info.is_null());
  BOOST_CHECK_EQUAL(info["state"], "created");
  BOOST_CHECK_EQUAL(info["id"].get<std::string>() + "\n", id);
  // The created process waits: nothing ran yet.
  BOOST_CHECK_EQUAL(::kill(info["pid"].get<int>(), 0), 0);
  BOOST_CHECK_EQUAL(log_lines_with("lc-create", "created run"), 0u);
  BOOST_CHECK_EQUAL(ok({"start", "lc-create"}), "lc-create\n");
  BOOST_CHECK_EQUAL(ok({"wait", "lc-create"}), "4\n");
  info = inspect("lc-create");
  BOOST_CHECK_EQUAL(info["state"], "stopped");
  BOOST_CHECK_EQUAL(info["exitCode"], 4);
  BOOST_CHECK(pump_logs("lc-create", "created run"));
  ok({"rm", "lc-create"});
  // start --attach of a created one: its output, its exit code.
  ok({"create", "--name", "lc-attach", "demo", "sh", "-c", "echo attached; exit 6"});
  auto a = cli({"start", "-a", "lc-attach"});
  BOOST_CHECK_EQUAL(a.code(), 6);
  BOOST_CHECK_EQUAL(a.out, "attached\n");
  ok({"rm", "lc-attach"});
  same(before, take(), "create, start, rm");
}

BOOST_AUTO_TEST_CASE(start_of_a_stopped_container_runs_it_again_in_the_same_rootfs) {
  // Each run says what the last one left in its rootfs, then leaves its own mark.
  auto script = "echo run $(cat /marker 2>/dev/null || echo none); echo kept > /marker; exit 5";
  ok({"run", "-d", "--name", "lc-again", "demo", "sh", "-c", script});
  BOOST_CHECK_EQUAL(ok({"wait", "lc-again"}), "5\n");
  auto first = inspect("lc-again");
  auto bundles = bundle_dirs();
  BOOST_CHECK_EQUAL(ok({"start", "lc-again"}), "lc-again\n");
  BOOST_CHECK_EQUAL(ok({"wait", "lc-again"}), "5\n");
  auto second = inspect("lc-again");
  BOOST_CHECK_EQUAL(second["id"], first["id"]);
  BOOST_CHECK_EQUAL(second["state"], "stopped");
  BOOST_CHECK_EQUAL(second["exitCode"], 5);
  BOOST_CHECK_EQUAL(second["restartCount"], 0); // a user's start is not the policy's
  BOOST_CHECK(bundle_dirs() == bundles);
  // The log keeps the first run's output and goes on with the second's.
  BOOST_CHECK(pump_logs("lc-again", "run kept"));
  auto log = ok({"logs", "lc-again"});
  BOOST_CHECK_MESSAGE(contains(log, "run none\nrun kept\n"), log);
  // start --attach shows the new run's output only and exits with its code.
  auto a = cli({"start", "--attach", "lc-again"});
  BOOST_CHECK_EQUAL(a.code(), 5);
  BOOST_CHECK_EQUAL(a.out, "run kept\n");
  BOOST_CHECK_EQUAL(log_lines_with("lc-again", "run kept"), 2u);
  ok({"rm", "lc-again"});
  BOOST_CHECK(!contains(ok({"image", "mounts", "--json"}), first["id"].get<std::string>()));
}

BOOST_AUTO_TEST_CASE(restart_of_a_running_container_gives_a_new_process) {
  ok({"run", "-d", "--name", "lc-restart", "demo", "sh", "-c",
      "echo up; trap 'exit 0' TERM; while true; do sleep 0.1; done"});
  BOOST_CHECK(pump_logs("lc-restart", "up"));
  auto first = inspect("lc-restart");
  BOOST_CHECK_EQUAL(ok({"restart", "-t", "5", "lc-restart"}), "lc-restart\n");
  auto second = inspect("lc-restart");
  BOOST_CHECK_EQUAL(second["state"], "running");
  BOOST_CHECK_EQUAL(second["id"], first["id"]);
  BOOST_CHECK_NE(second["pid"], first["pid"]);
  BOOST_CHECK_NE(::kill(first["pid"].get<int>(), 0), 0);
  BOOST_CHECK_EQUAL(::kill(second["pid"].get<int>(), 0), 0);
  // The first stop's -t timer does not kill the second run.
  std::this_thread::sleep_for(5500ms);
  BOOST_CHECK_EQUAL(inspect("lc-restart")["state"], "running");
  // restart of a stopped container starts it.
  ok({"stop", "lc-restart"});
  ok({"restart", "lc-restart"});
  BOOST_CHECK_EQUAL(inspect("lc-restart")["state"], "running");
  BOOST_CHECK_EQUAL(log_lines_with("lc-restart", "up") >= 2, true);
  ok({"rm", "-f", "lc-restart"});
}

BOOST_AUTO_TEST_CASE(restart_on_failure_stops_after_max_retries) {
  ok({"run", "-d", "--name", "lc-fail", "--restart", "on-failure:2", "demo", "sh", "-c",
      "echo attempt; exit 3"});
  auto info = inspect_until("lc-fail", [](const json& i) {
    return is_stopped(i) && i["restartCount"] == 2;
  });
  BOOST_CHECK_EQUAL(info["restartCount"], 2);
  // No third restart comes (the backoff would be 400 ms).
  std::this_thread::sleep_for(1500ms);
  info = inspect("lc-fail");
  BOOST_CHECK_EQUAL(info["state"], "stopped");
  BOOST_CHECK_EQUAL(info["restartCount"], 2);
  BOOST_CHECK_EQUAL(info["exitCode"], 3);
  BOOST_CHECK_EQUAL(info["restart"]["mode"], "on-failure");
  BOOST_CHECK_EQUAL(info["restart"]["maxRetries"], 2);
  BOOST_CHECK_EQUAL(log_lines_with("lc-fail", "attempt"), 3u); // three runs
  BOOST_CHECK(contains(ok({"ps", "-a"}), "2 restarts"));
  ok({"rm", "lc-fail"});
  // A zero exit is no failure: no restart.
  ok({"run", "-d", "--name", "lc-ok", "--restart", "on-failure", "demo", "true"});
  BOOST_CHECK_EQUAL(ok({"wait", "lc-ok"}), "0\n");
  std::this_thread::sleep_for(500ms);
  BOOST_CHECK_EQUAL(inspect("lc-ok")["restartCount"], 0);
  ok({"rm", "lc-ok"});
}

BOOST_AUTO_TEST_CASE(restart_always_until_a_user_stops_it) {
  ok({"run", "-d", "--name", "lc-always", "--restart", "always", "demo", "true"});
  auto info = inspect_until("lc-always", [](const json& i) { return i["restartCount"] >= 3; });
  BOOST_REQUIRE_GE(info["restartCount"].get<int>(), 3);
  auto stopped = json::parse(ok({"stop", "--json", "lc-always"}));
  BOOST_CHECK_EQUAL(stopped["state"], "stopped");
  auto count = inspect("lc-always")["restartCount"].get<int>();
  // Longer than any backoff that could have been pending (at most 1.6 s by now).
  std::this_thread::sleep_for(2500ms);
  info = inspect("lc-always");
  BOOST_CHECK_EQUAL(info["state"], "stopped");
  BOOST_CHECK_EQUAL(info["restartCount"].get<int>(), count);
  // A user's start counts afresh, and the policy takes over again.
  ok({"start", "lc-always"});
  info = inspect_until("lc-always", [](const json& i) {
    return i["restartCount"] >= 1 && i["restartCount"] < 5;
  });
  BOOST_CHECK_GE(info["restartCount"].get<int>(), 1);
  // rm -f while it keeps restarting: gone, and nothing restarts it.
  ok({"rm", "-f", "lc-always"});
  std::this_thread::sleep_for(1000ms);
  BOOST_CHECK(inspect("lc-always").is_null());
  for (auto& b : bundle_dirs())
    BOOST_CHECK_NE(b, info["id"].get<std::string>());
  BOOST_CHECK(!workload_cells().count("containers/lc-always"));
}

BOOST_AUTO_TEST_CASE(restart_policy_survives_kill_9_of_the_daemon) {
  ok({"run", "-d", "--name", "lc-crash", "--restart", "always", "demo", "sh", "-c",
      "echo up; sleep 2"});
  auto info = inspect_until("lc-crash", [](const json& i) { return i["state"] == "running"; });
  BOOST_REQUIRE_EQUAL(info["state"], "running");
  auto count = info["restartCount"].get<int>();
  env().d->stop(SIGKILL);
  std::this_thread::sleep_for(3000ms); // its process exits while the daemon is down
  BOOST_CHECK_NE(::kill(info["pid"].get<int>(), 0), 0);
  env().start();
  info = inspect_until("lc-crash", [count](const json& i) {
    return i["state"] == "running" && i["restartCount"].get<int>() > count;
  });
  BOOST_CHECK_EQUAL(info["state"], "running");
  BOOST_CHECK_GT(info["restartCount"].get<int>(), count);
  BOOST_CHECK_GE(log_lines_with("lc-crash", "up"), 2u);
  // A user's stop holds across a daemon restart too.
  ok({"stop", "-t", "1", "lc-crash"});
  env().d->stop(SIGKILL);
  env().start();
  std::this_thread::sleep_for(1000ms);
  BOOST_CHECK_EQUAL(inspect("lc-crash")["state"], "stopped");
  ok({"rm", "lc-crash"});
}

BOOST_AUTO_TEST_CASE(bad_lifecycle_inputs_give_clear_errors_and_leave_nothing) {
  auto before = take();
  std::vector<std::vector<std::string>> cases = {
      {"run", "-d", "--restart", "sometimes", "demo", "true"},
      {"create", "--restart", "on-failure:x", "demo", "true"},
      {"run", "--rm", "--restart", "always", "demo", "true"},
      {"create", "--rm", "--restart", "on-failure:3", "demo", "true"},
      {"run", "-d", "--restart", "always:2", "demo", "true"},
  };
  for (auto& args : cases) {
    auto r = cli(args);
    std::string what;
    for (auto& a : args)
      what += a + " ";
    BOOST_CHECK_MESSAGE(r.code() == 125, what << ": exit " << r.code());
    BOOST_CHECK_MESSAGE(contains(r.err, "cyto.invalid_argument") && contains(r.err, "restart"),
                        what << ": " << r.err);
    same(before, take(), what);
  }
  // The daemon checks for itself too (a client that skips the CLI's checks).
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto conn = env().d->connect(io);
  auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
  struct policy_case {
    const char* mode;
    uint32_t retries;
    bool rm;
  };
  for (auto& pc : {policy_case{"sometimes", 0, false}, policy_case{"always", 2, false},
                   policy_case{"always", 0, true}}) {
    auto create = svc.createRequest();
    auto spec = create.initSpec();
    spec.setName("lc-bad");
    spec.setImage("demo");
    spec.setAutoRemove(pc.rm);
    spec.initRestart().setMode(pc.mode);
    spec.getRestart().setMaxRetries(pc.retries);
    try {
      wait_for(io, create.send());
      BOOST_ERROR("create with restart policy " << pc.mode << " was accepted");
    } catch (const kj::Exception& e) {
      std::string what = e.getDescription().cStr();
      BOOST_CHECK_MESSAGE(contains(what, "cyto.invalid_argument"), what);
    }
    same(before, take(), std::string{"capnp create, restart "} + pc.mode);
  }
  for (auto verb : {"start", "restart"}) {
    auto r = cli({verb, "nosuch"});
    BOOST_CHECK_EQUAL(r.code(), 125);
    BOOST_CHECK_MESSAGE(contains(r.err, "cyto.not_found"), r.err);
  }
  auto a = cli({"start", "-a", "nosuch"});
  BOOST_CHECK_EQUAL(a.code(), 125);
  BOOST_CHECK_MESSAGE(contains(a.err, "cyto.not_found"), a.err);
  // A running container is not started twice.
  ok({"run", "-d", "--name", "lc-twice", "demo", "sleep", "60"});
  auto twice = cli({"start", "lc-twice"});
  BOOST_CHECK_EQUAL(twice.code(), 125);
  BOOST_CHECK_MESSAGE(contains(twice.err, "cyto.failed_precondition"), twice.err);
  ok({"rm", "-f", "lc-twice"});
  same(before, take(), "lifecycle bad inputs");
}

// -- the one-call run (Containers.run with pull, output and progress) ------------------

namespace {

/// An OutputSink that keeps what it gets, in order.
class collecting_sink final : public schema::OutputSink::Server {
public:
  explicit collecting_sink(std::vector<std::string>& lines) : lines_(lines) {}

  kj::Promise<void> lines(LinesContext context) override {
    for (auto l : context.getParams().getLines())
      lines_.push_back(std::string{l.getStream() == schema::OutputStream::STDERR ? "E " : "O "} +
                       l.getLine().cStr());
    return kj::READY_NOW;
  }

private:
  std::vector<std::string>& lines_;
};

/// The cell's log dir (where the cells actor keeps its executables' output files) and
/// its cgroup directories on the host.
bool leftovers_of(const std::string& name, std::string& what) {
  auto logs = env().d->state_dir() + "/logs/containers/" + name;
  if (fs::exists(logs))
    what += "logs dir " + logs + "; ";
  for (auto& m : host_cgroup_mounts()) {
    auto dir = m.path + "/" + env().d->cgroup_root() + "/containers/" + name;
    if (fs::exists(dir))
      what += "cgroup " + dir + "; ";
  }
  if (!inspect(name).is_null())
    what += "record; ";
  return !what.empty();
}

} // namespace

BOOST_AUTO_TEST_CASE(one_call_run_streams_all_output_in_order_and_returns_the_exit_code) {
  auto before = take();
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto conn = env().d->connect(io);
  auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
  std::vector<std::string> got;
  auto req = svc.runRequest();
  auto spec = req.initSpec();
  spec.setName("oc-order");
  spec.setImage("demo");
  spec.setAutoRemove(true);
  auto args = spec.initArgs(3);
  args.set(0, "sh");
  args.set(1, "-c");
  args.set(2, "i=1; while [ $i -le 3000 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; "
              "exit 7");
  req.setWait(true);
  req.setPull(schema::PullPolicy::MISSING);
  req.setOutput(kj::heap<collecting_sink>(got));
  auto resp = wait_for(io, req.send(), 60 * kj::SECONDS);
  auto info = resp.getInfo();
  BOOST_CHECK_EQUAL(info.getExitCode(), 7);
  BOOST_CHECK(info.getState() == schema::ContainerState::STOPPED);
  // Every line is there when the call answers, in order (stdout's, then the stderr line).
  std::vector<std::string> want;
  for (int i = 1; i <= 3000; ++i)
    want.push_back("O line" + std::to_string(i));
  std::vector<std::string> out;
  for (auto& l : got)
    if (l.rfind("O ", 0) == 0)
      out.push_back(l);
  BOOST_CHECK_EQUAL(out.size(), want.size());
  BOOST_CHECK(out == want);
  BOOST_CHECK(std::find(got.begin(), got.end(), "E oops") != got.end());
  // --rm: gone when the call answers, with its log dir and cgroups.
  std::string left;
  BOOST_CHECK_MESSAGE(!leftovers_of("oc-order", left), left);
  same(before, take(), "one-call run --rm");
}

BOOST_AUTO_TEST_CASE(one_call_run_through_the_cli_exit_code_output_and_rm) {
  auto before = take();
  auto r = cli({"run", "--rm", "--name", "oc-cli", "demo", "sh", "-c",
                "echo one; echo two; echo three >&2; exit 3"});
  BOOST_CHECK_EQUAL(r.code(), 3);
  BOOST_CHECK_EQUAL(r.out, "one\ntwo\n");
  BOOST_CHECK_MESSAGE(contains(r.err, "three\n"), r.err);
  std::string left;
  BOOST_CHECK_MESSAGE(!leftovers_of("oc-cli", left), left);
  same(before, take(), "cli one-call run --rm");
  // Detached: the id, and it runs.
  auto id = ok({"run", "-d", "--name", "oc-detached", "demo", "sleep", "60"});
  BOOST_CHECK_EQUAL(id.size(), 65u);
  BOOST_CHECK_EQUAL(inspect("oc-detached")["state"], "running");
  ok({"rm", "-f", "oc-detached"});
  same(before, take(), "run -d, rm -f");
}

BOOST_AUTO_TEST_CASE(one_call_run_pull_policies) {
  env().registry.push(CYTO_DEMO_IMAGE_DIR, "latest", "test/busybox", "onecall");
  auto ref = env().registry.host() + "/test/busybox:onecall";
  auto before = take();
  // never: refused with a clear not_found, nothing made, nothing pulled.
  auto never = cli({"run", "--rm", "--pull", "never", ref, "echo", "no"});
  BOOST_CHECK_EQUAL(never.code(), 125);
  BOOST_CHECK_MESSAGE(contains(never.err, "cyto.not_found") && contains(never.err, "never"),
                      never.err);
  BOOST_CHECK_EQUAL(never.out, "");
  BOOST_CHECK(cli({"image", "inspect", ref}).code() != 0);
  same(before, take(), "run --pull never of a missing image");
  // missing: pulled by the daemon within the run.
  auto r = cli({"run", "--rm", "--pull", "missing", ref, "echo", "pulled"}, 60s);
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "pulled\n");
  BOOST_CHECK_MESSAGE(contains(r.err, "pulled " + ref), r.err);
  BOOST_CHECK_EQUAL(cli({"image", "inspect", ref}).code(), 0);
  // In the store now: never and missing run it without a pull.
  auto again = cli({"run", "--rm", "--pull", "never", ref, "echo", "again"});
  BOOST_CHECK_EQUAL(again.code(), 0);
  BOOST_CHECK_EQUAL(again.out, "again\n");
  BOOST_CHECK(!contains(again.err, "pulled"));
  // always: pulled again (the same digest), then run.
  auto always = cli({"run", "--rm", "--pull", "always", ref, "echo", "always"}, 60s);
  BOOST_CHECK_MESSAGE(always.code() == 0, always.err);
  BOOST_CHECK_EQUAL(always.out, "always\n");
  BOOST_CHECK_MESSAGE(contains(always.err, "pulled"), always.err);
  auto bad = cli({"run", "--rm", "--pull", "sometimes", "demo", "true"});
  BOOST_CHECK_EQUAL(bad.code(), 125);
  BOOST_CHECK_MESSAGE(contains(bad.err, "cyto.invalid_argument") && contains(bad.err, "--pull"),
                      bad.err);
  ok({"image", "rm", ref});
  same(before, take(), "pull policies");
}

BOOST_AUTO_TEST_CASE(one_call_run_with_a_bad_spec_leaves_nothing) {
  auto before = take();
  // A command missing in the image: made, failed at start, removed again.
  auto missing = cli({"run", "--name", "oc-bad", "demo", "/no/such/program"});
  BOOST_CHECK_EQUAL(missing.code(), 127);
  BOOST_CHECK_MESSAGE(contains(missing.err, "cyto.not_found"), missing.err);
  std::string left;
  BOOST_CHECK_MESSAGE(!leftovers_of("oc-bad", left), left);
  same(before, take(), "run of a missing command");
  // Refused by the daemon before anything is made (a client that skips the CLI's checks).
  kj::AsyncIoContext io = kj::setupAsyncIo();
  auto conn = env().d->connect(io);
  auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
  std::vector<std::string> got;
  for (auto* name : {"bad name!", "oc-bad2"}) {
    auto req = svc.runRequest();
    auto spec = req.initSpec();
    spec.setName(name);
    spec.setImage(std::string{name} == "oc-bad2" ? "no-such-image-here" : "demo");
    req.setWait(true);
    req.setPull(schema::PullPolicy::NEVER);
    req.setOutput(kj::heap<collecting_sink>(got));
    try {
      wait_for(io, req.send());
      BOOST_ERROR("run " << name << " was accepted");
    } catch (const kj::Exception& e) {
      std::string what = e.getDescription().cStr();
      BOOST_CHECK_MESSAGE(contains(what, std::string{name} == "oc-bad2" ? "cyto.not_found"
                                                                        : "cyto.invalid_argument"),
                          what);
    }
    same(before, take(), std::string{"capnp run "} + name);
  }
  BOOST_CHECK(got.empty());
}

BOOST_AUTO_TEST_CASE(one_call_run_client_gone_mid_run_with_rm_removes_the_container) {
  auto before = take();
  child_process run{{cli_path, "--socket", env().d->socket_path(), "run", "--rm", "--name",
                     "oc-gone", "demo", "sh", "-c", "echo started; sleep 2; echo done"}};
  BOOST_REQUIRE(run.read_until([](const std::string& out) { return contains(out, "started"); },
                               20s));
  // The client dies: the container runs on to its end (as with today's foreground run),
  // then --rm removes everything.
  run.kill_and_wait(SIGKILL, 5s);
  // Still there (its first output may come before the record says running).
  auto state = inspect("oc-gone")["state"];
  BOOST_CHECK_MESSAGE(state == "running" || state == "created", state);
  std::string left;
  for (int i = 0; i < 100 && leftovers_of("oc-gone", (left = "")); ++i)
    std::this_thread::sleep_for(100ms);
  BOOST_CHECK_MESSAGE(!leftovers_of("oc-gone", (left = "")), left);
  same(before, take(), "client gone mid-run");
}

BOOST_AUTO_TEST_CASE(one_call_run_forwards_sigint_to_the_container) {
  auto before = take();
  child_process run{{cli_path, "--socket", env().d->socket_path(), "run", "--rm", "--name",
                     "oc-int", "demo", "sh", "-c",
                     "trap 'echo got INT; exit 5' INT; echo ready; "
                     "while true; do sleep 0.1; done"}};
  BOOST_REQUIRE(run.read_until([](const std::string& out) { return contains(out, "ready"); },
                               20s));
  std::this_thread::sleep_for(1s); // see the tty tests: busybox pid 1's trap is set by now
  ::kill(run.pid(), SIGINT);
  auto st = run.wait(20s);
  BOOST_CHECK_MESSAGE(exit_code(st) == 5, describe_status(st) << " " << run.err());
  BOOST_CHECK(contains(run.out(), "got INT"));
  std::string left;
  BOOST_CHECK_MESSAGE(!leftovers_of("oc-int", left), left);
  same(before, take(), "run stopped by SIGINT");
}
