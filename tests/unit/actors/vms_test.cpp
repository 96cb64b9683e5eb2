#define BOOST_TEST_MODULE vms
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include "actors/vms/qemu_args.hpp"
#include "actors/vms/qmp.hpp"
#include "actors/vms/vm_rows.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::vms;

namespace {

vm_spec spec() {
  vm_spec s;
  s.name = "web";
  s.vcpus = 2;
  s.memory_bytes = 512ull << 20;
  s.kernel = "/k/vmlinuz";
  s.initrd = "/k/initrd.gz";
  s.cmdline = "quiet";
  return s;
}

qemu_launch launch(const std::string& machine, const std::string& accel) {
  qemu_launch l;
  l.qemu = "/usr/bin/qemu-system-x86_64";
  l.machine = machine;
  l.accel = accel;
  l.qmp_path = "/s/vms/web/qmp.sock";
  l.channel_path = "/s/vms/web/channel.sock";
  return l;
}

/// The value after option `opt` (the first one).
std::string after(const std::vector<std::string>& a, const std::string& opt) {
  auto i = std::find(a.begin(), a.end(), opt);
  return i == a.end() || i + 1 == a.end() ? std::string{} : *(i + 1);
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

bool has(const std::vector<std::string>& a, const std::string& v) {
  return std::find(a.begin(), a.end(), v) != a.end();
}

void write_all(int fd, const std::string& s) {
  BOOST_REQUIRE_EQUAL(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
}

std::string read_line(int fd) {
  std::string out;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n')
    out += c;
  return out;
}

constexpr const char* greeting =
    R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}})"
    "\n";

} // namespace

BOOST_AUTO_TEST_CASE(microvm_under_tcg_gets_timer_options_and_mmio_devices) {
  auto s = spec();
  s.drives = {{"/d/root.img", "raw", false}, {"/d/data,1.qcow2", "qcow2", true}};
  auto l = launch("microvm", "tcg");
  l.tb_size_mib = 256;
  auto a = qemu_args(s, l);
  BOOST_TEST(a.front() == "/usr/bin/qemu-system-x86_64");
  BOOST_TEST(after(a, "-machine") == "microvm");
  BOOST_TEST(after(a, "-accel") == "tcg,tb-size=256");
  BOOST_TEST(after(a, "-cpu") == "max");
  BOOST_TEST(after(a, "-smp") == "2");
  BOOST_TEST(after(a, "-m") == "512M");
  BOOST_TEST(after(a, "-serial") == "stdio");
  BOOST_TEST(has(a, "-no-shutdown"));
  BOOST_TEST(has(a, "-no-reboot"));
  BOOST_TEST(after(a, "-kernel") == "/k/vmlinuz");
  BOOST_TEST(after(a, "-initrd") == "/k/initrd.gz");
  BOOST_TEST(after(a, "-append") ==
             "console=ttyS0 tsc_early_khz=2000000 no_timer_check quiet");
  BOOST_TEST(after(a, "-qmp") == "unix:/s/vms/web/qmp.sock,server=on,wait=off");
  BOOST_TEST(has(a, "virtio-serial-device,id=vser0"));
  BOOST_TEST(has(a, "socket,id=cytoch,path=/s/vms/web/channel.sock,server=on,wait=off"));
  BOOST_TEST(has(a, "virtserialport,chardev=cytoch,name=org.cyto.channel.0"));
  BOOST_TEST(has(a, "file=/d/root.img,format=raw,if=none,id=drive0"));
  // A comma in a path is doubled (QEMU's escape); read-only drives say so.
  BOOST_TEST(has(a, "file=/d/data,,1.qcow2,format=qcow2,if=none,id=drive1,readonly=on"));
  BOOST_TEST(has(a, "virtio-blk-device,drive=drive1"));
}

BOOST_AUTO_TEST_CASE(q35_under_kvm_gets_pci_devices_and_host_cpu) {
  auto s = spec();
  s.initrd.clear();
  s.drives = {{"/d/root.img", "raw", false}};
  auto a = qemu_args(s, launch("q35", "kvm"));
  BOOST_TEST(after(a, "-accel") == "kvm");
  BOOST_TEST(after(a, "-cpu") == "host");
  BOOST_TEST(!has(a, "-initrd"));
  BOOST_TEST(after(a, "-append") == "console=ttyS0 quiet");
  BOOST_TEST(has(a, "virtio-serial-pci,id=vser0"));
  BOOST_TEST(has(a, "virtio-blk-pci,drive=drive0"));
}

BOOST_AUTO_TEST_CASE(init_arguments_follow_a_double_dash_quoted_when_blank) {
  auto s = spec();
  auto l = launch("q35", "tcg");
  l.init_args = {"sh", "-c", "echo hi; exit 3"};
  BOOST_TEST(kernel_cmdline(s, l) == R"(console=ttyS0 quiet -- sh -c "echo hi; exit 3")");
}

BOOST_AUTO_TEST_CASE(a_vm_on_a_network_gets_its_tap_mac_and_address) {
  auto s = spec();
  auto l = launch("microvm", "tcg");
  l.tap = "vtap-0123abcd";
  l.mac = "52:54:00:12:34:56";
  l.guest_ip = "10.77.0.2/24";
  l.gateway = "10.77.0.1";
  auto a = qemu_args(s, l);
  BOOST_TEST(after(a, "-netdev") == "tap,id=net0,ifname=vtap-0123abcd,script=no,downscript=no");
  BOOST_TEST(has(a, "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"));
  // The kernel's nfsroot syntax, before the spec's own options (a user's ip= wins).
  BOOST_TEST(after(a, "-append") == "console=ttyS0 tsc_early_khz=2000000 no_timer_check "
                                    "ip=10.77.0.2::10.77.0.1:255.255.255.0::eth0:off quiet");
  l.machine = "q35";
  l.guest_ip = "10.1.0.9/17";
  a = qemu_args(s, l);
  BOOST_TEST(has(a, "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56"));
  BOOST_TEST(contains(after(a, "-append"), "ip=10.1.0.9::10.77.0.1:255.255.128.0::eth0:off"));
  // No network: no netdev, no ip=.
  a = qemu_args(s, launch("microvm", "tcg"));
  BOOST_TEST(!has(a, "-netdev"));
  BOOST_TEST(!contains(after(a, "-append"), "ip="));
}

BOOST_AUTO_TEST_CASE(parse_qmp_tells_replies_errors_events_and_greetings_apart) {
  auto g = parse_qmp(R"({"QMP": {"version": {}}})");
  BOOST_REQUIRE(static_cast<bool>(g));
  BOOST_TEST((g->type == qmp_message::kind::greeting));
  auto r = parse_qmp(R"({"return": {"status": "running"}, "id": 4})");
  BOOST_REQUIRE(static_cast<bool>(r));
  BOOST_TEST((r->type == qmp_message::kind::reply));
  BOOST_TEST(r->id == 4);
  BOOST_TEST(r->data["status"] == "running");
  auto e = parse_qmp(R"({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": 5})");
  BOOST_REQUIRE(static_cast<bool>(e));
  BOOST_TEST((e->type == qmp_message::kind::error));
  BOOST_TEST(e->name == "CommandNotFound");
  auto ev = parse_qmp(
      R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}})");
  BOOST_REQUIRE(static_cast<bool>(ev));
  BOOST_TEST((ev->type == qmp_message::kind::event));
  BOOST_TEST(ev->name == "SHUTDOWN");
  BOOST_TEST(ev->data["reason"] == "guest-shutdown");
  BOOST_TEST(!static_cast<bool>(parse_qmp("not json")));
  BOOST_TEST(!static_cast<bool>(parse_qmp(R"({"something": 1})")));
}

BOOST_AUTO_TEST_CASE(client_negotiates_and_gets_replies_with_events_interleaved) {
  int sv[2];
  BOOST_REQUIRE_EQUAL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::string caps, cmd;
  std::thread server{[&] {
    write_all(sv[1], greeting);
    caps = read_line(sv[1]);
    write_all(sv[1], R"({"return": {}, "id": 1})" "\n");
    cmd = read_line(sv[1]);
    // Events may come before the reply, in pieces.
    write_all(sv[1], R"({"event": "POWERDOWN", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}})"
                     "\n" R"({"return": {}, )");
    write_all(sv[1], R"("id": 2})" "\n" R"({"event": "SHUTDOWN", "data": {"reason": "guest-shutdown"}})" "\n");
    ::close(sv[1]);
  }};
  auto c = qmp_client::adopt(sv[0], std::chrono::seconds{5});
  BOOST_REQUIRE_MESSAGE(static_cast<bool>(c), (c ? std::string{} : render(c.error())));
  BOOST_TEST(c->version() == "7.2.22");
  std::vector<std::string> events;
  auto r = c->execute("system_powerdown", nullptr,
                      [&](qmp_message& m) { events.push_back(m.name); });
  BOOST_REQUIRE_MESSAGE(static_cast<bool>(r), (r ? std::string{} : render(r.error())));
  BOOST_TEST(events == std::vector<std::string>{"POWERDOWN"});
  auto next = c->read(std::chrono::seconds{5});
  BOOST_REQUIRE(static_cast<bool>(next));
  BOOST_TEST(next->name == "SHUTDOWN");
  auto end = c->read(std::chrono::seconds{5});
  BOOST_REQUIRE(!static_cast<bool>(end));
  BOOST_TEST((code_of(end.error()) == errc::unavailable));
  server.join();
  BOOST_TEST(caps == R"({"execute":"qmp_capabilities","id":1})");
  BOOST_TEST(cmd == R"({"execute":"system_powerdown","id":2})");
}

BOOST_AUTO_TEST_CASE(client_reports_qemu_errors_and_silence) {
  int sv[2];
  BOOST_REQUIRE_EQUAL(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  std::thread server{[&] {
    write_all(sv[1], greeting);
    read_line(sv[1]);
    write_all(sv[1], R"({"return": {}, "id": 1})" "\n");
    read_line(sv[1]);
    write_all(sv[1], R"({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": 2})" "\n");
    read_line(sv[1]); // then says nothing
  }};
  auto c = qmp_client::adopt(sv[0], std::chrono::seconds{5});
  BOOST_REQUIRE(static_cast<bool>(c));
  auto r = c->execute("nope");
  BOOST_REQUIRE(!static_cast<bool>(r));
  BOOST_TEST(render(r.error()).find("CommandNotFound") != std::string::npos);
  auto t = c->execute("query-status", nullptr, {}, std::chrono::milliseconds{100});
  BOOST_REQUIRE(!static_cast<bool>(t));
  BOOST_TEST((code_of(t.error()) == errc::timeout));
  ::close(sv[1]);
  server.join();
}

BOOST_AUTO_TEST_CASE(connect_gives_up_when_qemu_is_gone) {
  auto c = qmp_client::connect("/tmp/cyto-test-no-such-qmp.sock", std::chrono::seconds{5},
                               [] { return false; });
  BOOST_REQUIRE(!static_cast<bool>(c));
  BOOST_TEST((code_of(c.error()) == errc::unavailable));
  BOOST_TEST(render(c.error()).find("QEMU exited") != std::string::npos);
}

// A vm row of schema v1 (before networks and images) migrates to v2 with every old field
// kept and the new ones empty; a v2 blob is not mistaken for a v1 one.
BOOST_AUTO_TEST_CASE(vm_rows_of_schema_v1_migrate) {
  cyto::vm_info old;
  old.spec.name = "legacy";
  old.spec.vcpus = 2;
  old.spec.kernel = "/k";
  old.spec.init_args = {"echo", "hi"};
  old.state = cyto::vm_state::running;
  old.pid = 4242;
  old.qmp_path = "/s/qmp.sock";
  old.finished_unix_nanos = 7;
  cyto::vms::vm_row_v1 v1{old};
  auto blob = cyto::store::to_blob(v1);
  auto migrated = cyto::vms::vm_v1_to_v2(blob);
  BOOST_REQUIRE(migrated);
  cyto::vm_info now;
  BOOST_REQUIRE(cyto::store::from_blob(*migrated, now));
  BOOST_TEST(now.spec.name == "legacy");
  BOOST_TEST(now.spec.vcpus == 2u);
  BOOST_TEST(now.spec.init_args == (std::vector<std::string>{"echo", "hi"}));
  BOOST_TEST(now.pid == 4242u);
  BOOST_TEST(now.qmp_path == "/s/qmp.sock");
  BOOST_TEST(now.finished_unix_nanos == 7);
  BOOST_TEST(now.spec.network.empty());
  BOOST_TEST(now.image_root.disk.empty());
  cyto::vm_info wrong;
  BOOST_TEST(!cyto::store::from_blob(blob, wrong)); // a v1 blob does not decode as v2
  BOOST_TEST(!cyto::vms::vm_v1_to_v2(*migrated));    // nor a v2 one as v1
}
