// cytod as a VM's init: a guest made by deploy/make-vm-image boots under QEMU (TCG) with
// the virtio-serial channel; the host's cytod reaches the guest's cytod through it
// (`cyto --vm NAME ...`, `cyto vm exec`), the channel survives a host cytod restart, and
// SIGTERM to PID 1 or the ACPI power button powers the guest off cleanly.
//
// QEMU is started by the test (tests/integration/vm_guest_fixture.hpp) with the channel
// arguments the vms actor gives every VM.
#define BOOST_TEST_MODULE vm_guest
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "tests/integration/vm_guest_fixture.hpp"

using namespace cyto::test;

namespace {

constexpr auto boot_timeout = 60s;

process_result run_cyto(const daemon_fixture& host, std::vector<std::string> args,
                    std::chrono::milliseconds timeout = 30s) {
  args.insert(args.begin(), {cli_path, "--socket", host.socket_path()});
  return run_process(args, timeout);
}

/// `cyto --vm NAME --json discover` until the guest's cytod answers; its JSON.
nlohmann::json discover_in_guest(const daemon_fixture& host, guest_vm& vm) {
  auto deadline = steady::now() + boot_timeout;
  process_result r;
  while (steady::now() < deadline) {
    r = run_cyto(host, {"--vm", vm.name(), "--json", "discover"});
    if (r.code() == 0)
      return nlohmann::json::parse(r.out);
    std::this_thread::sleep_for(500ms);
  }
  throw std::runtime_error("the guest's cytod did not answer within 60 s: " + r.err
                           + "\nconsole:\n" + vm.console());
}

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(root_required);

BOOST_AUTO_TEST_CASE(guest_cytod_serves_the_host_and_stops_on_sigterm) {
  skip_without_image();
  daemon_fixture host;
  guest_vm vm{host, "g1"};

  auto info = discover_in_guest(host, vm);
  BOOST_TEST(info["features"]["cgroupMode"] == "v2");
  BOOST_TEST(info["nodeName"] == "cyto-guest");
  BOOST_TEST(info["pid"] != 1); // the daemon is PID 1's child; PID 1 stays the reaper

  // A command in a cell of the guest: its output and exit code come back.
  auto r = run_cyto(host, {"vm", "exec", "g1", "--", "sh", "-c",
                       "echo out-$(cat /proc/1/comm); echo err >&2; exit 7"});
  BOOST_TEST(r.code() == 7, r.err);
  BOOST_TEST(contains(r.out, "out-init"), r.out); // PID 1 is /init, cytod itself
  BOOST_TEST(contains(r.err, "err"), r.err);
  // An orphan is reparented to PID 1, which reaps it: no zombie is left.
  r = run_cyto(host, {"vm", "exec", "g1", "--", "sh", "-c",
                      "(sleep 0.3 &); sleep 1.5; ps -o pid,ppid,stat,comm"});
  BOOST_TEST(r.code() == 0, r.err);
  BOOST_TEST(contains(r.out, "PID"), r.out);
  for (auto& line : lines_of(r.out)) {
    auto fields = split(line, ' ');
    BOOST_TEST((fields.size() < 3 || fields[2].find('Z') == std::string::npos), line);
  }
  // Every verb runs against the guest: the exec's cell was removed there, this one stays.
  BOOST_TEST(run_cyto(host, {"--vm", "g1", "cell", "allocate", "web", "--pids-max", "20"}).code() == 0);
  auto ls = run_cyto(host, {"--vm", "g1", "--json", "cell", "ls"});
  BOOST_TEST(ls.code() == 0, ls.err);
  BOOST_TEST(contains(ls.out, "\"web\""), ls.out);
  BOOST_TEST(!contains(ls.out, "vm-exec-"), ls.out);
  // ... and not on the host.
  BOOST_TEST(!contains(run_cyto(host, {"--json", "cell", "ls"}).out, "\"web\""));

  // A host cytod restart finds the guest mid-stream: the handshake resynchronises.
  BOOST_TEST(host.stop(SIGKILL) != 0);
  host.start();
  BOOST_TEST(discover_in_guest(host, vm)["features"]["cgroupMode"] == "v2");
  ls = run_cyto(host, {"--vm", "g1", "--json", "cell", "ls"});
  BOOST_TEST(contains(ls.out, "\"web\""), ls.out + ls.err);

  // SIGTERM to PID 1: the daemon stops, the guest powers off, QEMU exits 0.
  // (The reply may be lost: the guest can be going down before it is sent.)
  run_cyto(host, {"--vm", "g1", "cell", "start", "web", "--", "kill", "-TERM", "1"});
  BOOST_TEST(vm.wait_exit(30s) == 0);
  auto console = vm.console();
  BOOST_TEST(contains(console, "signal Terminated received"), console);
  BOOST_TEST(contains(console, "cytod exited with 0"), console);
  BOOST_TEST(contains(console, "powering off"), console);
  BOOST_TEST(!contains(console, "Kernel panic"), console);
}

BOOST_AUTO_TEST_CASE(acpi_power_button_shuts_the_guest_down) {
  skip_without_image();
  daemon_fixture host;
  guest_vm vm{host, "g2"};
  discover_in_guest(host, vm);
  vm.qmp("system_powerdown");
  BOOST_TEST(vm.wait_exit(30s) == 0);
  auto console = vm.console();
  BOOST_TEST(contains(console, "power button pressed"), console);
  BOOST_TEST(contains(console, "cytod exited with 0"), console);
  BOOST_TEST(contains(console, "powering off"), console);
  // The channel is gone with QEMU: the host says so.
  auto r = run_cyto(host, {"--vm", "g2", "discover"});
  BOOST_TEST(r.code() != 0);
  BOOST_TEST((contains(r.err, "cyto.unavailable") || contains(r.err, "cyto.not_found")), r.err);
}

BOOST_AUTO_TEST_CASE(unknown_or_malformed_vm_names_are_refused) {
  daemon_fixture host;
  auto r = run_cyto(host, {"--vm", "nosuchvm", "discover"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.not_found"), r.err);
  BOOST_TEST(contains(r.err, "nosuchvm"), r.err);
  r = run_cyto(host, {"--vm", "../etc", "cell", "ls"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.invalid_argument"), r.err);
  r = run_cyto(host, {"vm", "exec", "nosuchvm", "--", "true"});
  BOOST_TEST(r.code() == 125);
  BOOST_TEST(contains(r.err, "cyto.not_found"), r.err);
  // A socket where no cytod answers (no guest behind it) is unavailable, not a hang.
  auto dir = host.state_dir() + "/vms/mute";
  std::filesystem::create_directories(dir);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto addr = unix_address(dir + "/channel.sock");
  BOOST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  BOOST_REQUIRE(::listen(fd, 4) == 0);
  auto t0 = steady::now();
  r = run_cyto(host, {"--vm", "mute", "discover"});
  ::close(fd);
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.unavailable"), r.err);
  BOOST_TEST((steady::now() - t0 < 25s));
  // Nothing was left behind on the host.
  BOOST_TEST(!contains(run_cyto(host, {"--json", "cell", "ls"}).out, "vm-exec"));
}

BOOST_AUTO_TEST_CASE(a_vm_of_the_vms_actor_is_reached_by_name) {
  skip_without_image();
  daemon_fixture host;
  auto create = run_cyto(host, {"vm", "create", "g3", "--kernel", image().file("vmlinuz"),
                                "--initrd", image().file("initramfs.cpio"), "--memory", "384M",
                                "--cmdline", "panic=-1 quiet"});
  BOOST_REQUIRE_MESSAGE(create.code() == 0, create.err);
  // Created, not running: no cytod to reach yet.
  auto r = run_cyto(host, {"--vm", "g3", "discover"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "cyto.unavailable"), r.err);
  auto start = run_cyto(host, {"vm", "start", "g3"}, 60s);
  BOOST_REQUIRE_MESSAGE(start.code() == 0, start.err);
  auto deadline = steady::now() + boot_timeout;
  while (steady::now() < deadline && run_cyto(host, {"--vm", "g3", "discover"}).code() != 0)
    std::this_thread::sleep_for(500ms);
  auto ls = run_cyto(host, {"--vm", "g3", "--json", "cell", "ls"});
  BOOST_TEST(ls.code() == 0, ls.err);
  auto ex = run_cyto(host, {"vm", "exec", "g3", "--", "sh", "-c", "echo hi-from-g3; exit 3"});
  BOOST_TEST(ex.code() == 3, ex.err);
  BOOST_TEST(contains(ex.out, "hi-from-g3"), ex.out);
  // cyto vm stop: the ACPI power button, and the guest's cytod powers off by itself.
  auto stop = run_cyto(host, {"vm", "stop", "-t", "30s", "g3"}, 60s);
  BOOST_TEST(stop.code() == 0, stop.err);
  auto inspect = run_cyto(host, {"--json", "vm", "inspect", "g3"});
  BOOST_TEST(contains(inspect.out, "guest-shutdown"), inspect.out);
  BOOST_TEST(run_cyto(host, {"vm", "rm", "g3"}).code() == 0);
}
