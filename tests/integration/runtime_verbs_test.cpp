// The helper verbs the containers actor runs (`cyto-runtime shim`, `exec`, `idle`),
// through the real binary on a busybox-static bundle (root): the files and signals of
// the shim protocol, what an exec'd process shares with the container, and that nothing
// is left behind.
#define BOOST_TEST_MODULE integration_runtime_verbs
#include <boost/test/unit_test.hpp>

#include "tests/integration/runtime_fixture.hpp"

using namespace cyto::test;

namespace {

BOOST_TEST_GLOBAL_FIXTURE(runtime_required);

/// Waits until `path` exists (the shim renames its files into place) and parses it.
json wait_json(const std::string& path, std::chrono::milliseconds timeout = 10s) {
  auto deadline = steady::now() + timeout;
  while (!fs::exists(path)) {
    if (steady::now() > deadline)
      throw std::runtime_error("no " + path + " after " + std::to_string(timeout.count()) + " ms");
    std::this_thread::sleep_for(5ms);
  }
  return json::parse(read_text(path));
}

std::string status_line(pid_t pid, const std::string& key) {
  for (auto& l : lines_of(read_text("/proc/" + std::to_string(pid) + "/status")))
    if (l.rfind(key + ":", 0) == 0)
      return l;
  return {};
}

/// Field 22 of /proc/PID/stat.
uint64_t start_time(pid_t pid) {
  auto text = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto f = split(text.substr(text.rfind(')') + 2), ' ');
  return std::stoull(f.at(19));
}

/// Waits until `pid` catches `sig` (its handler is installed).
bool catches(pid_t pid, int sig, std::chrono::milliseconds timeout = 5s) {
  auto deadline = steady::now() + timeout;
  while (steady::now() < deadline) {
    auto line = status_line(pid, "SigCgt");
    if (!line.empty() &&
        (std::stoull(line.substr(line.find('\t') + 1), nullptr, 16) >> (sig - 1)) & 1)
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

struct verbs_fixture : bundle_fixture {
  /// `cyto-runtime shim` of the current config; its output (and the container's) goes
  /// to a file, as the cell's output would.
  std::unique_ptr<child_process> shim(const std::string& id = "c1") {
    write_config();
    return std::make_unique<child_process>(std::vector<std::string>{runtime_path, "--root",
                                                                    state_root, "shim", "--bundle",
                                                                    bundle, id},
                                           tmp / (id + ".shim.log"));
  }

  std::string file(const std::string& name) const {
    return bundle + "/" + name;
  }

  /// A running container (create + start), its host pid.
  pid_t running(const std::string& id = "c1") {
    auto c = create(id, {"--pid-file", tmp / (id + ".pid")});
    BOOST_REQUIRE_MESSAGE(c.code() == 0, c.err);
    BOOST_REQUIRE_EQUAL(rt({"start", id}).code(), 0);
    return std::stoi(trim(read_text(tmp / (id + ".pid"))));
  }

  process_result exec(const std::vector<std::string>& a) const {
    std::vector<std::string> argv{"exec"};
    argv.insert(argv.end(), a.begin(), a.end());
    return rt(argv);
  }
};

/// Lines the container's ticking shell wrote to /tmp/ticks, read through its root.
size_t exec_ticks(pid_t pid) {
  return lines_of(read_text("/proc/" + std::to_string(pid) + "/root/tmp/ticks")).size();
}

bool pid_alive(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    if (::kill(pid, 0) != 0)
      return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

std::string read_link(const std::string& path) {
  std::error_code ec;
  return fs::read_symlink(path, ec).string();
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(runtime_verbs, verbs_fixture)

BOOST_AUTO_TEST_CASE(shim_creates_waits_for_usr1_and_reports_the_exit) {
  args({"sh", "-c", "echo started; exit 7"});
  // answers of an earlier run in the same bundle are not mistaken for this one's
  write_text(file("started.json"), "{\"pid\":1}");
  write_text(file("exit.json"), "{\"exit_code\":0}");
  auto s = shim();
  auto created = wait_json(file("created.json"));
  pid_t pid = created.at("pid").get<pid_t>();
  // The pid is the container's init, set up and waiting for start (not run yet).
  BOOST_CHECK_EQUAL(created.at("start_time").get<uint64_t>(), start_time(pid));
  auto proc = "/proc/" + std::to_string(pid);
  BOOST_CHECK(contains(read_text(proc + "/cmdline"), "shim")); // not exec'd yet
  BOOST_CHECK(fs::exists(proc + "/root/bin/busybox"));
  BOOST_CHECK(fs::read_symlink(proc + "/ns/pid") != fs::read_symlink("/proc/self/ns/pid"));
  BOOST_CHECK_EQUAL(json::parse(rt({"state", "c1"}).out)["status"], "created");
  std::this_thread::sleep_for(50ms);
  BOOST_CHECK(!fs::exists(file("started.json")));
  BOOST_CHECK(!fs::exists(file("exit.json")));
  BOOST_CHECK(!contains(read_text(tmp / "c1.shim.log"), "started"));

  ::kill(s->pid(), SIGUSR1);
  BOOST_CHECK_EQUAL(wait_json(file("started.json")).at("pid").get<pid_t>(), pid);
  auto exit = wait_json(file("exit.json"));
  BOOST_CHECK_EQUAL(exit.at("exit_code"), 7);
  BOOST_CHECK_EQUAL(exit.at("signal"), 0);
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto finished = std::chrono::nanoseconds{exit.at("finished_unix_nanos").get<int64_t>()};
  BOOST_CHECK(finished <= now && finished > now - 60s);
  BOOST_CHECK_EQUAL(exit_code(s->wait(10s)), 7);
  BOOST_CHECK_EQUAL(read_text(tmp / "c1.shim.log"), "started\n");
  BOOST_CHECK(!fs::exists(file("created.json.tmp")) && !fs::exists(file("exit.json.tmp")));
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(shim_with_a_missing_command_reports_127_and_leaves_nothing) {
  args({"no-such-command"});
  auto s = shim();
  BOOST_CHECK_EQUAL(exit_code(s->wait(10s)), 127);
  auto created = json::parse(read_text(file("created.json")));
  BOOST_CHECK_EQUAL(created.at("exit_code"), 127);
  auto error = created.at("error").get<std::string>();
  BOOST_CHECK_MESSAGE(error.rfind("cyto.not_found: ", 0) == 0 && contains(error, "no-such-command"),
                      error);
  BOOST_CHECK(contains(read_text(tmp / "c1.shim.log"), error));
  BOOST_CHECK(!created.contains("pid"));
  BOOST_CHECK(!fs::exists(file("started.json")) && !fs::exists(file("exit.json")));
  check_nothing_left();
  // not executable: 126
  fs::remove(file("created.json"));
  write_text(rootfs + "/bin/plain", "#!/bin/sh\n");
  args({"plain"});
  BOOST_CHECK_EQUAL(exit_code(shim()->wait(10s)), 126);
  BOOST_CHECK_EQUAL(json::parse(read_text(file("created.json"))).at("exit_code"), 126);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(shim_aborts_on_term_before_start) {
  args({"sh", "-c", "echo ran"});
  auto s = shim();
  pid_t pid = wait_json(file("created.json")).at("pid").get<pid_t>();
  ::kill(s->pid(), SIGTERM);
  BOOST_CHECK_EQUAL(exit_code(s->wait(10s)), 143);
  auto exit = json::parse(read_text(file("exit.json")));
  BOOST_CHECK_EQUAL(exit.at("exit_code"), 143);
  BOOST_CHECK_EQUAL(exit.at("signal"), 15);
  BOOST_CHECK_EQUAL(exit.at("aborted"), true);
  BOOST_CHECK(!fs::exists(file("started.json")));
  BOOST_CHECK_EQUAL(read_text(tmp / "c1.shim.log"), ""); // the program never ran
  BOOST_CHECK(::kill(pid, 0) != 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(shim_forwards_term_and_reports_a_kill_as_128_plus_n) {
  // TERM to the shim reaches the container (pid 1 in its namespace needs a handler).
  args({"sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"});
  auto s = shim();
  pid_t pid = wait_json(file("created.json")).at("pid").get<pid_t>();
  ::kill(s->pid(), SIGUSR1);
  wait_json(file("started.json"));
  BOOST_REQUIRE(catches(pid, SIGTERM));
  ::kill(s->pid(), SIGTERM);
  BOOST_CHECK_EQUAL(wait_json(file("exit.json")).at("exit_code"), 3);
  BOOST_CHECK_EQUAL(exit_code(s->wait(10s)), 3);
  check_nothing_left();

  for (auto* f : {"created.json", "started.json", "exit.json"})
    fs::remove(file(f));
  args({"sleep", "30"});
  s = shim();
  wait_json(file("created.json"));
  ::kill(s->pid(), SIGUSR1);
  wait_json(file("started.json"));
  BOOST_CHECK_EQUAL(rt({"kill", "c1", "KILL"}).code(), 0);
  auto exit = wait_json(file("exit.json"));
  BOOST_CHECK_EQUAL(exit.at("exit_code"), 137);
  BOOST_CHECK_EQUAL(exit.at("signal"), 9);
  BOOST_CHECK_EQUAL(exit_code(s->wait(10s)), 137);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_shares_the_containers_namespaces_and_cgroup) {
  args({"sleep", "30"});
  pid_t pid = running();
  auto host = [&](const char* ns) {
    return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/" + ns).string();
  };
  auto r = exec({"c1", "--", "sh", "-c",
                 "for n in pid mnt net ipc uts; do readlink /proc/self/ns/$n; done; "
                 "cat /proc/1/cmdline; echo; hostname; cat /proc/self/cgroup"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  auto out = lines_of(r.out);
  BOOST_REQUIRE_GE(out.size(), 7u);
  BOOST_CHECK_EQUAL(out[0], host("pid"));
  BOOST_CHECK_EQUAL(out[1], host("mnt"));
  BOOST_CHECK_EQUAL(out[2], host("net"));
  BOOST_CHECK_EQUAL(out[3], host("ipc"));
  BOOST_CHECK_EQUAL(out[4], host("uts"));
  BOOST_CHECK_EQUAL(out[5], std::string("sleep\0"
                                        "30\0",
                                        9)); // the container's pid 1
  BOOST_CHECK_EQUAL(out[6], "cyto-test");
  // same cgroups (no cgroup namespace in this config: host paths)
  std::string cg;
  for (size_t i = 7; i < out.size(); ++i)
    cg += out[i] + "\n";
  BOOST_CHECK_EQUAL(cg, read_text("/proc/" + std::to_string(pid) + "/cgroup"));
  // the exec'd process is gone afterwards; the container still runs
  BOOST_CHECK_EQUAL(json::parse(rt({"state", "c1"}).out)["status"], "running");
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_takes_the_containers_settings_with_overrides) {
  config["process"]["env"].push_back("FOO=bar");
  config["process"]["env"].push_back("KEEP=1");
  config["process"]["cwd"] = "/tmp";
  json caps = {"CAP_CHOWN", "CAP_KILL"};
  for (auto* set : {"bounding", "effective", "permitted", "inheritable", "ambient"})
    config["process"]["capabilities"][set] = caps;
  config["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 123}, {"hard", 456}}};
  args({"sleep", "30"});
  pid_t pid = running();
  auto r = exec({"c1", "--", "sh", "-c",
                 "echo $FOO $KEEP; pwd; id -u; ulimit -n; grep -E '^(CapEff|CapBnd|NoNewPrivs)' "
                 "/proc/self/status"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "bar 1\n/tmp\n0\n123\n" + status_line(pid, "CapEff") + "\n" +
                               status_line(pid, "CapBnd") + "\n" + status_line(pid, "NoNewPrivs") +
                               "\n");
  BOOST_CHECK_EQUAL(status_line(pid, "CapEff"), "CapEff:\t0000000000000021");
  r = exec({"-e", "FOO=over", "-e", "NEW=x", "--cwd", "/etc", "--user", "1000:1001", "c1", "--",
            "sh", "-c", "echo $FOO $KEEP $NEW; pwd; id"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "over 1 x\n/etc\nuid=1000 gid=1001\n");
  // the daemon's order: the id first, a repeated -e last before `--`
  r = exec({"c1", "--user", "1000", "-e", "FOO=over", "-e", "NEW=x", "--", "sh", "-c",
            "echo $FOO $NEW; id"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "over x\nuid=1000 gid=0\n"); // no passwd entry: gid 0
  // the exit status comes back, also for a signal
  BOOST_CHECK_EQUAL(exec({"c1", "--", "sh", "-c", "exit 5"}).code(), 5);
  BOOST_CHECK_EQUAL(exec({"c1", "--", "sh", "-c", "kill -9 $$"}).code(), 137);
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_into_a_user_namespace_container) {
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  config["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  config["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  args({"sleep", "30"});
  pid_t pid = running();
  auto r = exec({"c1", "--", "sh", "-c",
                 "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/pid; cat /proc/self/uid_map; "
                 "grep CapEff /proc/self/status; cat /proc/1/cmdline"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  auto out = lines_of(r.out);
  BOOST_REQUIRE_GE(out.size(), 6u);
  BOOST_CHECK_EQUAL(out[0], "0");
  BOOST_CHECK_EQUAL(out[1], fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/user").string());
  BOOST_CHECK_EQUAL(out[2], fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/pid").string());
  BOOST_CHECK_MESSAGE(contains(out[3], "200000"), out[3]);
  BOOST_CHECK_EQUAL(out[4], status_line(pid, "CapEff"));
  BOOST_CHECK(contains(out[5], "sleep"));
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_bad_input) {
  args({"sleep", "30"});
  auto c = create("c1");
  BOOST_REQUIRE_MESSAGE(c.code() == 0, c.err);
  // created, not running
  auto r = exec({"c1", "--", "true"});
  BOOST_CHECK_EQUAL(r.code(), 125);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto.failed_precondition: container c1 is created"), r.err);
  BOOST_REQUIRE_EQUAL(rt({"start", "c1"}).code(), 0);
  r = exec({"c1", "--", "no-such-command"});
  BOOST_CHECK_EQUAL(r.code(), 127);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto.not_found") && contains(r.err, "no-such-command"),
                      r.err);
  r = exec({"--user", "root", "c1", "--", "true"});
  BOOST_CHECK(r.code() == 125 && contains(r.err, "cyto.invalid_argument: --user"));
  r = exec({"--cwd", "relative", "c1", "--", "true"});
  BOOST_CHECK(r.code() == 125 && contains(r.err, "must be an absolute path"));
  r = exec({"c1", "--", "sh", "-c", "echo x > /tmp/mark"});
  BOOST_CHECK_EQUAL(r.code(), 0);
  // stopped
  BOOST_CHECK_EQUAL(rt({"kill", "c1", "KILL"}).code(), 0);
  for (int i = 0; i < 100 && json::parse(rt({"state", "c1"}).out)["status"] != "stopped"; ++i)
    std::this_thread::sleep_for(20ms);
  r = exec({"c1", "--", "true"});
  BOOST_CHECK_EQUAL(r.code(), 125);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto.failed_precondition: container c1 is stopped"), r.err);
  r = exec({"nope", "--", "true"});
  BOOST_CHECK(r.code() == 125 && contains(r.err, "cyto.not_found"));
  BOOST_CHECK_EQUAL(rt({"delete", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_runc_style_process_file_detach_and_pid_file) {
  // What podman's conmon and containerd's shim call: exec --process --detach --pid-file.
  args({"sleep", "30"});
  running();
  json proc = {{"args", {"sh", "-c", "echo $FROM_FILE > /tmp/from-file; sleep 30"}},
               {"env", {"PATH=/bin", "FROM_FILE=yes"}},
               {"cwd", "/"},
               {"user", {{"uid", 0}, {"gid", 0}}}};
  write_text(tmp / "process.json", proc.dump());
  // Its stdio is inherited (a file here: a pipe would stay open as long as it runs).
  child_process d{{runtime_path, "--root", state_root, "exec", "--process", tmp / "process.json",
                   "--detach", "--pid-file", tmp / "exec.pid", "c1"},
                  tmp / "exec.log"};
  BOOST_REQUIRE_MESSAGE(d.wait(30s) == 0, read_text(tmp / "exec.log"));
  auto pid = trim(read_text(tmp / "exec.pid"));
  BOOST_REQUIRE(!pid.empty());
  // Detached: it still runs after exec returned, in the container's pid namespace.
  BOOST_CHECK_EQUAL(::kill(std::stoi(pid), 0), 0);
  BOOST_CHECK(read_link("/proc/" + pid + "/ns/pid")
              == read_link("/proc/" + trim(read_text(tmp / "c1.pid")) + "/ns/pid"));
  for (int i = 0; i < 100 && exec({"c1", "--", "cat", "/tmp/from-file"}).out.empty(); ++i)
    std::this_thread::sleep_for(20ms);
  auto seen = exec({"c1", "--", "cat", "/tmp/from-file"});
  BOOST_CHECK_MESSAGE(trim(seen.out) == "yes", "out: " << seen.out << " err: " << seen.err);
  ::kill(std::stoi(pid), SIGKILL);
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_runc_style_bad_input) {
  args({"sleep", "30"});
  running();
  write_text(tmp / "bad.json", R"({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}})");
  auto r = exec({"--process", tmp / "bad.json", "c1"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "cyto.invalid_argument: process.args"),
                      r.err);
  r = exec({"--process", tmp / "missing.json", "c1"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "missing.json"), r.err);
  r = exec({"--tty", "c1", "--", "true"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "needs --console-socket"), r.err);
  r = exec({"--tty", "--console-socket", tmp / "no-such.sock", "c1", "--", "true"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "console socket"), r.err);
  r = exec({"--preserve-fds", "2", "c1", "--", "true"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "--preserve-fds"), r.err);
  r = exec({"c1"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "a command is needed"), r.err);
  r = exec({"--detach", "--pid-file", tmp / "no-dir/exec.pid", "c1", "--", "true"});
  BOOST_CHECK_MESSAGE(r.code() == 125 && contains(r.err, "--pid-file"), r.err);
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(pause_resume_ps_update_and_features) {
  // What podman pause/unpause/top/update and containerd's shim call.
  config["linux"]["resources"] = {{"memory", {{"limit", 64 << 20}}}, {"pids", {{"limit", 50}}}};
  args({"sh", "-c", "while :; do echo x >> /tmp/ticks; sleep 0.05; done"});
  pid_t pid = running();
  auto ps = rt({"ps", "--format", "json", "c1"});
  BOOST_REQUIRE_EQUAL(ps.code(), 0);
  auto pids = json::parse(ps.out);
  BOOST_CHECK_MESSAGE(std::find(pids.begin(), pids.end(), pid) != pids.end(), ps.out);
  BOOST_CHECK(contains(rt({"ps", "c1"}).out, std::to_string(pid)));

  BOOST_REQUIRE_EQUAL(rt({"pause", "c1"}).code(), 0);
  BOOST_CHECK_EQUAL(json::parse(rt({"state", "c1"}).out)["status"], "paused");
  // Frozen for real: the shell's ticks stop growing.
  auto ticks = [&] { return exec_ticks(pid); };
  auto before = ticks();
  std::this_thread::sleep_for(300ms);
  BOOST_CHECK_EQUAL(ticks(), before);
  auto again = rt({"pause", "c1"});
  BOOST_CHECK(again.code() != 0 && contains(again.err, "cyto.failed_precondition"));
  auto del = rt({"delete", "c1"});
  BOOST_CHECK(del.code() != 0 && contains(del.err, "is paused"));
  BOOST_REQUIRE_EQUAL(rt({"resume", "c1"}).code(), 0);
  BOOST_CHECK_EQUAL(json::parse(rt({"state", "c1"}).out)["status"], "running");
  std::this_thread::sleep_for(300ms);
  BOOST_CHECK_GT(ticks(), before);
  auto res = rt({"resume", "c1"});
  BOOST_CHECK(res.code() != 0 && contains(res.err, "not paused"));

  // update: flags and a resources file land in the cgroup; a refused one changes nothing.
  BOOST_REQUIRE_EQUAL(rt({"update", "--memory", std::to_string(96 << 20), "--pids-limit", "70",
                          "c1"}).code(), 0);
  auto mem = cgroup_dir("memory"), pidsd = cgroup_dir("pids");
  BOOST_CHECK_EQUAL(trim(read_text(mem + "/ctr/memory.limit_in_bytes")), "100663296");
  BOOST_CHECK_EQUAL(trim(read_text(pidsd + "/ctr/pids.max")), "70");
  write_text(tmp / "res.json", R"({"pids": {"limit": 80}})");
  BOOST_REQUIRE_EQUAL(rt({"update", "--resources", tmp / "res.json", "c1"}).code(), 0);
  BOOST_CHECK_EQUAL(trim(read_text(pidsd + "/ctr/pids.max")), "80");
  write_text(tmp / "bad.json", R"({"pids": {"limit": "many"}})");
  auto bad = rt({"update", "--resources", tmp / "bad.json", "c1"});
  BOOST_CHECK(bad.code() != 0 && contains(bad.err, "cyto.invalid_argument: linux.resources.pids.limit"));
  bad = rt({"update", "c1"});
  BOOST_CHECK(bad.code() != 0 && contains(bad.err, "nothing to change"));
  bad = rt({"update", "--cpu-shares", "1", "--cpu-quota", "10", "--cpu-period", "100", "c1"});
  BOOST_CHECK(bad.code() != 0 && contains(bad.err, "cyto.invalid_argument"));
  BOOST_CHECK_EQUAL(trim(read_text(pidsd + "/ctr/pids.max")), "80");

  auto f = rt({"features"});
  BOOST_REQUIRE_EQUAL(f.code(), 0);
  auto feats = json::parse(f.out);
  BOOST_CHECK_EQUAL(feats["ociVersionMax"], "1.3.0");
  auto& ns = feats["linux"]["namespaces"];
  BOOST_CHECK(std::find(ns.begin(), ns.end(), "user") != ns.end());

  // Paused, then deleted with --force: thawed and killed, nothing left.
  BOOST_REQUIRE_EQUAL(rt({"pause", "c1"}).code(), 0);
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  BOOST_CHECK(!pid_alive(pid));
  bad = rt({"pause", "nope"});
  BOOST_CHECK(bad.code() != 0 && contains(bad.err, "cyto.not_found"));
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(exec_forwards_signals) {
  args({"sleep", "30"});
  running();
  child_process e{{runtime_path, "--root", state_root, "exec", "c1", "--", "sh", "-c",
                   "trap 'echo got; exit 4' TERM; echo ready; while :; do sleep 0.05; done"}};
  BOOST_REQUIRE(e.read_until([](auto& o) { return contains(o, "ready"); }, 10s));
  ::kill(e.pid(), SIGTERM);
  BOOST_CHECK_EQUAL(exit_code(e.wait(10s)), 4);
  BOOST_CHECK_EQUAL(e.out(), "ready\ngot\n");
  BOOST_CHECK_EQUAL(rt({"delete", "--force", "c1"}).code(), 0);
  check_nothing_left();
}

BOOST_AUTO_TEST_CASE(idle_exits_0_on_term_and_int) {
  for (int sig : {SIGTERM, SIGINT}) {
    child_process p{{runtime_path, "idle"}};
    BOOST_REQUIRE(catches(p.pid(), sig));
    std::this_thread::sleep_for(20ms);
    BOOST_CHECK(!p.try_wait());
    ::kill(p.pid(), sig);
    BOOST_CHECK_EQUAL(describe_status(p.wait(10s)), describe_status(0));
  }
}

BOOST_AUTO_TEST_CASE(idle_as_pid_1_reaps_orphans_and_stops_on_term_from_inside) {
  // pid 1 of a namespace only gets signals it has handlers for from inside it
  child_process u{{"/usr/bin/unshare", "--pid", "--fork", "--kill-child", runtime_path, "idle"}};
  auto children = [](pid_t p) {
    return trim(read_text("/proc/" + std::to_string(p) + "/task/" + std::to_string(p) + "/children"));
  };
  std::string idle;
  for (int i = 0; i < 500 && idle.empty(); ++i, std::this_thread::sleep_for(10ms))
    idle = children(u.pid());
  BOOST_REQUIRE(!idle.empty());
  pid_t pid = std::stoi(idle);
  BOOST_REQUIRE(catches(pid, SIGTERM));
  auto inside = [&](const std::string& cmd) {
    return run_process({"/usr/bin/nsenter", "-t", idle, "-p", "--", busybox, "sh", "-c", cmd});
  };
  // an orphan (its parent exits at once) is re-parented to idle, which reaps it
  BOOST_CHECK_EQUAL(inside("busybox sleep 0.1 & exit 0").code(), 0);
  bool reaped = false;
  for (int i = 0; i < 500 && !reaped; ++i, std::this_thread::sleep_for(10ms))
    reaped = children(pid).empty();
  BOOST_CHECK_MESSAGE(reaped, "idle's children: " << children(pid));
  inside("busybox kill -TERM 1"); // (killed itself when its namespace's pid 1 is gone)
  BOOST_CHECK_EQUAL(describe_status(u.wait(10s)), describe_status(0));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_FIXTURE_TEST_SUITE(demo_image, bundle_fixture)

BOOST_AUTO_TEST_CASE(demo_image_unpacks_and_runs_echo_hello) {
  // umoci's own unpack of the layout (its runtime config too), run by cyto-runtime
  auto unpacked = tmp / "demo";
  auto u = run_process(
      {"/usr/bin/umoci", "unpack", "--image", CYTO_DEMO_IMAGE_DIR ":latest", unpacked}, 60s);
  BOOST_REQUIRE_MESSAGE(u.code() == 0, "umoci unpack: " << u.err);
  auto cfg = json::parse(read_text(unpacked + "/config.json"));
  BOOST_CHECK_EQUAL(cfg["process"]["args"], json::array({"sh"}));
  BOOST_CHECK_EQUAL(cfg["process"]["cwd"], "/");
  BOOST_CHECK(contains(cfg["process"]["env"].dump(),
                       "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  auto perms = fs::status(unpacked + "/rootfs/tmp").permissions();
  BOOST_CHECK((perms & fs::perms::sticky_bit) != fs::perms::none &&
              (perms & fs::perms::others_write) != fs::perms::none);
  BOOST_CHECK(contains(read_text(unpacked + "/rootfs/etc/passwd"), "nobody:x:65534:65534:"));
  BOOST_CHECK(contains(read_text(unpacked + "/rootfs/etc/group"), "root:x:0:"));
  BOOST_CHECK_EQUAL(fs::read_symlink(unpacked + "/rootfs/bin/ls").string(), "busybox");
  cfg["process"]["terminal"] = false;
  cfg["process"]["args"] = {"echo", "hello"};
  cfg["linux"]["cgroupsPath"] = "/" + cg_root + "/demo";
  write_text(unpacked + "/config.json", cfg.dump());
  auto r = rt({"run", "--bundle", unpacked, "demo1"});
  BOOST_CHECK_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_EQUAL(r.out, "hello\n");
  check_nothing_left("demo1");
}

BOOST_AUTO_TEST_SUITE_END()
