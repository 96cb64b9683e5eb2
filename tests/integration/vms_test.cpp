// Integration tests of VMs: a real cytod boots Debian's cloud kernel with a busybox
// initramfs under QEMU (TCG here) through the cyto CLI; what it claims is checked on the
// serial console, in the VM's cell (cgroup files, QEMU's /proc/<pid>/cgroup) and in the
// state dir. Needs root, qemu-system-x86_64 and a cloud kernel (deploy/fetch-guest-kernel);
// skips (77) without them.
#define BOOST_TEST_MODULE integration_vms
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// Kernel, initramfs (tests/integration/make-guest-initrd: /init powers off on the ACPI
/// power button, prints CYTO-GUEST-UP, runs the command after " -- " and prints
/// CYTO-EXIT=<code>) and one daemon for the whole suite.
struct suite {
  temp_dir work;
  std::string kernel, initrd;
  std::unique_ptr<daemon_fixture> d;

  suite() {
    if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0)
      skip("qemu-system-x86_64 is missing (install qemu-system-x86)");
    auto k = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/fetch-guest-kernel", "--modules"},
                         120s);
    if (k.code() != 0)
      skip("no guest kernel: deploy/fetch-guest-kernel: " + k.err);
    auto paths = lines_of(k.out);
    kernel = paths.at(0);
    make_initrd(paths.at(1));
    d = std::make_unique<daemon_fixture>(false);
    d->start({}, 30s);
  }

  [[noreturn]] static void skip(const std::string& why) {
    std::printf("SKIP: %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(77);
  }

  void make_initrd(const std::string& modules) {
    initrd = work / "initrd.cpio.gz";
    auto r = run_process({std::string{CYTO_SOURCE_DIR} + "/tests/integration/make-guest-initrd",
                          initrd, modules},
                         60s);
    if (r.code() != 0)
      skip("cannot make the initramfs (cpio, gzip, busybox): " + r.err);
  }
};

suite& env() {
  static suite s;
  return s;
}

std::string tail(const std::string& text, size_t n = 3000) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

process_result cli(const std::vector<std::string>& args, std::chrono::milliseconds t = 60s,
                   const std::string& socket = {}) {
  std::vector<std::string> argv{cli_path, "--socket",
                                socket.empty() ? env().d->socket_path() : socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, t);
}

std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds t = 60s) {
  auto r = cli(args, t);
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << args.at(0) << " " << args.at(1) << " failed ("
                                               << r.code() << "): " << r.err << r.out
                                               << "\ndaemon log:\n"
                                               << tail(env().d->log()));
  return r.out;
}

/// Runs a command that must fail with `code` ("cyto.<code>:" on stderr).
std::string refused(const std::vector<std::string>& args, const std::string& code) {
  auto r = cli(args);
  BOOST_TEST_MESSAGE("refused: " << r.err);
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto." + code + ":"), "expected cyto." << code << ", got: " << r.err);
  return r.err;
}

std::vector<std::string> boot_args(const std::string& name) {
  return {"vm", "create", name, "--kernel", env().kernel, "--initrd", env().initrd, "--cmdline",
          "quiet panic=-1"};
}

json inspect(const std::string& name) {
  return json::parse(ok({"vm", "inspect", "--json", name}));
}

/// Waits until the VM's console holds `marker` (bounded).
void wait_console(const std::string& name, const std::string& marker,
                  std::chrono::milliseconds timeout = 90s) {
  auto deadline = steady::now() + timeout;
  std::string out;
  while (steady::now() < deadline) {
    out = cli({"vm", "console", name}).out;
    if (contains(out, marker))
      return;
    std::this_thread::sleep_for(200ms);
  }
  BOOST_FAIL("vm " << name << ": no '" << marker << "' on the console within " << timeout.count()
                   << " ms; console:\n"
                   << tail(out) << "\ndaemon log:\n"
                   << tail(env().d->log()));
}

/// The VM's cell directory in the memory hierarchy (v1) or the unified one (v2).
std::string memory_cell_dir(const std::string& vm) {
  auto root = env().d->cgroup_root();
  if (fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") ||
      fs::is_directory("/sys/fs/cgroup/memory/" + root))
    return "/sys/fs/cgroup/memory/" + root + "/vms/" + vm;
  return "/sys/fs/cgroup/" + root + "/vms/" + vm;
}

/// Nothing of VM `name` is left: no record, no cell, no directory.
void nothing_left(const std::string& name) {
  auto all = json::parse(ok({"vm", "ls", "--json"}));
  for (auto& v : all)
    BOOST_TEST(v["name"] != name, "vm " << name << " is still listed");
  BOOST_TEST(!fs::exists(memory_cell_dir(name)), "cell of " << name << " is still there");
  BOOST_TEST(!fs::exists(env().d->state_dir() + "/vms/" + name),
             "directory of " << name << " is still there");
}

/// The process runs (a zombie waiting for a reaper that is not cytod does not count).
bool alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0)
    return false;
  auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

/// Sends QEMU a QMP command ourselves (while cytod is down).
void raw_qmp(const std::string& socket, const std::string& command) {
  int fd = connect_unix(socket);
  auto say = [&](const std::string& line) {
    BOOST_REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  };
  auto hear = [&] {
    std::string line;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n')
      line += c;
    return line;
  };
  hear(); // greeting
  say(R"({"execute":"qmp_capabilities"})" "\n");
  hear();
  say(R"({"execute":")" + command + R"("})" "\n");
  hear();
  ::close(fd);
}

} // namespace

BOOST_AUTO_TEST_CASE(boot_shows_marker_qemu_in_its_cell_and_stop_powers_down) {
  auto drive = env().work / "disk.img";
  write_text(drive, std::string(1 << 20, '\0'));
  auto args = boot_args("boot");
  args.insert(args.end(), {"--drive", drive, "--label", "suite=vms"});
  ok(args);
  auto created = inspect("boot");
  BOOST_TEST(created["state"] == "created");
  BOOST_TEST(created["accel"] == "tcg"); // no hardware KVM on CI machines of this kind
  BOOST_TEST(created["channel"] == env().d->state_dir() + "/vms/boot/channel.sock");
  refused({"vm", "stop", "boot"}, "failed_precondition");
  ok({"vm", "start", "boot"});
  wait_console("boot", "CYTO-GUEST-UP");
  auto v = inspect("boot");
  BOOST_TEST(v["state"] == "running");
  pid_t pid = v["pid"];
  BOOST_REQUIRE(alive(pid));
  // QEMU is the cell's process and the cell's memory limit is the VM's plus overhead.
  auto cg = read_text("/proc/" + std::to_string(pid) + "/cgroup");
  BOOST_TEST(contains(cg, env().d->cgroup_root() + "/vms/boot"), cg);
  auto dir = memory_cell_dir("boot");
  auto limit_file = fs::exists(dir + "/memory.limit_in_bytes") ? dir + "/memory.limit_in_bytes"
                                                               : dir + "/memory.max";
  BOOST_TEST(std::stoull(read_text(limit_file)) == (256ull << 20) + (512ull << 20));
  BOOST_TEST(fs::exists(env().d->state_dir() + "/vms/boot/channel.sock"));
  // A running VM's writable drive is not given to another VM.
  auto other = boot_args("other");
  other.insert(other.end(), {"--drive", drive});
  refused(other, "failed_precondition");
  nothing_left("other");
  refused({"vm", "rm", "boot"}, "failed_precondition"); // running: needs --force
  // pause and resume through QMP
  BOOST_TEST(json::parse(ok({"vm", "pause", "--json", "boot"}))["state"] == "paused");
  BOOST_TEST(json::parse(ok({"vm", "resume", "--json", "boot"}))["state"] == "running");
  // stop: ACPI power button, the guest's acpid powers it off.
  auto stopped = json::parse(ok({"vm", "stop", "--json", "-t", "60s", "boot"}, 90s));
  BOOST_TEST(stopped["state"] == "stopped");
  BOOST_TEST(stopped["exitReason"] == "guest-shutdown");
  BOOST_TEST(!alive(pid));
  BOOST_TEST(contains(cli({"vm", "console", "boot"}).out, "CYTO-POWERDOWN"));
  refused({"vm", "stop", "boot"}, "failed_precondition");
  ok({"vm", "rm", "boot"});
  nothing_left("boot");
}

BOOST_AUTO_TEST_CASE(run_prints_the_console_and_returns_the_guest_exit_code) {
  auto r = cli({"vm", "run", "--rm", "--name", "runner", "--kernel", env().kernel, "--initrd",
                env().initrd, "--cmdline", "quiet", "--", "sh", "-c", "echo hello from the guest; exit 3"},
               120s);
  BOOST_TEST(r.code() == 3, "vm run: " << r.code() << " " << r.err << "\n" << tail(r.out));
  BOOST_TEST(contains(r.out, "hello from the guest"));
  BOOST_TEST(contains(r.out, "CYTO-EXIT=3"));
  nothing_left("runner");
}

BOOST_AUTO_TEST_CASE(vms_outlive_a_killed_daemon_and_are_readopted) {
  for (auto* n : {"keep", "offdown", "killed"}) {
    ok(boot_args(n));
    ok({"vm", "start", n});
  }
  for (auto* n : {"keep", "offdown", "killed"})
    wait_console(n, "CYTO-GUEST-UP", 120s);
  pid_t keep = inspect("keep")["pid"], off = inspect("offdown")["pid"],
        killed = inspect("killed")["pid"];
  auto offdown_qmp = inspect("offdown")["qmp"].get<std::string>();
  auto offdown_console = inspect("offdown")["console"].get<std::string>();
  env().d->stop(SIGKILL);
  BOOST_REQUIRE(alive(keep) && alive(off) && alive(killed));
  // While cytod is away: one guest powers off (QEMU waits in its shutdown state), one
  // QEMU is killed.
  raw_qmp(offdown_qmp, "system_powerdown");
  ::kill(killed, SIGKILL);
  auto deadline = steady::now() + 60s;
  while (alive(killed) && steady::now() < deadline)
    std::this_thread::sleep_for(20ms);
  // No daemon to ask: the console file itself.
  deadline = steady::now() + 60s;
  while (!contains(read_text(offdown_console), "reboot: Power down") && steady::now() < deadline)
    std::this_thread::sleep_for(100ms);
  BOOST_TEST(contains(read_text(offdown_console), "CYTO-POWERDOWN"));
  env().d->start({}, 30s);
  auto k = inspect("keep");
  BOOST_TEST(k["state"] == "running");
  BOOST_TEST(k["pid"] == keep);
  deadline = steady::now() + 30s;
  while (inspect("offdown")["state"] == "running" && steady::now() < deadline)
    std::this_thread::sleep_for(100ms);
  auto o = inspect("offdown");
  BOOST_TEST(o["state"] == "exited");
  BOOST_TEST(contains(o["exitReason"], "guest-shutdown (while cytod was down)"), o.dump());
  BOOST_TEST(!alive(off));
  auto x = inspect("killed");
  BOOST_TEST(x["state"] == "exited");
  BOOST_TEST(contains(x["exitReason"], "QEMU ended while cytod was down"), x.dump());
  // The re-adopted VM's console still streams live: follow it while it is stopped.
  child_process follower{{cli_path, "--socket", env().d->socket_path(), "vm", "console", "-f",
                          "keep"}};
  BOOST_TEST(follower.read_until([](const std::string& out) { return contains(out, "CYTO-GUEST-UP"); },
                                 15s));
  auto stopped = json::parse(ok({"vm", "stop", "--json", "-t", "60s", "keep"}, 90s));
  BOOST_TEST(stopped["state"] == "stopped");
  BOOST_TEST(stopped["exitReason"] == "guest-shutdown");
  BOOST_TEST(exit_code(follower.wait(30s)) == 0);
  BOOST_TEST(contains(follower.out(), "CYTO-POWERDOWN"));
  for (auto* n : {"keep", "offdown", "killed"}) {
    ok({"vm", "rm", n});
    nothing_left(n);
  }
}

BOOST_AUTO_TEST_CASE(bad_input_is_refused_and_leaves_nothing) {
  auto& e = env();
  auto with = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> a{"vm", "create", name};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  refused(with("b1", {"--kernel", e.work / "no-such-kernel"}), "not_found");
  refused(with("b1", {"--kernel", e.work.path()}), "invalid_argument"); // a directory
  refused(with("b1", {"--kernel", e.kernel, "--initrd", e.work / "no-initrd"}), "not_found");
  refused(with("b1", {"--kernel", e.kernel, "--drive", e.work / "no-disk.img"}), "not_found");
  refused(with("b1", {"--kernel", e.kernel, "--vcpus", "0"}), "invalid_argument");
  refused(with("b1", {"--kernel", e.kernel, "--vcpus", "4096"}), "invalid_argument");
  refused(with("b1", {"--kernel", e.kernel, "-m", "0"}), "invalid_argument");
  refused(with("b1", {"--kernel", e.kernel, "-m", "64T"}), "invalid_argument");
  refused(with("b1", {"--kernel", e.kernel, "--accel", "xen"}), "invalid_argument");
  refused(with("bad@name", {"--kernel", e.kernel}), "invalid_argument");
  nothing_left("b1");
  ok(with("b2", {"--kernel", e.kernel}));
  refused(with("b2", {"--kernel", e.kernel}), "already_exists");
  refused({"vm", "stop", "b2"}, "failed_precondition");
  refused({"vm", "kill", "b2"}, "failed_precondition");
  refused({"vm", "console", "b2"}, "failed_precondition");
  refused({"vm", "stop", "nope"}, "not_found");
  ok({"vm", "rm", "b2"});
  nothing_left("b2");
  // QEMU that dies at start: its stderr is in the error, and run leaves nothing.
  auto fake = e.work / "not-a-kernel";
  write_text(fake, "this is not a kernel\n");
  auto r = cli({"vm", "run", "--rm", "--name", "b3", "--kernel", fake, "--", "true"});
  BOOST_TEST(r.code() == 125);
  BOOST_TEST(contains(r.err, "cyto.invalid_argument: QEMU exited at start"), r.err);
  BOOST_TEST(contains(r.err, "invalid kernel header"), r.err); // QEMU's own words
  nothing_left("b3");
}

BOOST_AUTO_TEST_CASE(missing_qemu_is_unavailable_naming_the_package) {
  daemon_fixture d{false};
  d.start({"--qemu", "/nonexistent/qemu-system-x86_64"}, 30s);
  auto r = cli({"vm", "create", "q1", "--kernel", env().kernel}, 30s, d.socket_path());
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto.unavailable:"), r.err);
  BOOST_TEST(contains(r.err, "qemu-system-x86"), r.err);
  auto ls = run_process({cli_path, "--socket", d.socket_path(), "vm", "ls", "--json"});
  BOOST_TEST(json::parse(ls.out).empty());
}
