// Integration tests of VMs booted from an OCI image: a real cytod (which imports the
// build's demo image, deploy/make-demo-image) turns the image's root file system into
// an ext4 root disk cached per image digest, gives each VM a qcow2 overlay of it and
// boots Debian's cloud kernel with deploy/make-vm-boot's initramfs under QEMU (TCG
// here). Checked on the serial console, in the disk cache (inode, mtime, bytes) and in
// the state dir. Needs root, qemu-system-x86_64, mke2fs, qemu-img and a cloud kernel
// (deploy/fetch-guest-kernel); skips (77) without them.
#define BOOST_TEST_MODULE integration_vm_image
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// One daemon for the suite, its image boot files made by deploy/make-vm-boot where
/// cytod looks for them by default (STATE_DIR/vms/boot).
struct suite {
  std::unique_ptr<daemon_fixture> d;
  std::string boot;

  suite() {
    for (auto* tool : {"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img", "/usr/sbin/mke2fs"})
      if (::access(tool, X_OK) != 0)
        skip(std::string{tool} + " is missing (deploy/install-deps)");
    d = std::make_unique<daemon_fixture>(false);
    boot = d->state_dir() + "/vms/boot";
    auto r = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/make-vm-boot", boot}, 180s);
    if (r.code() == 77)
      skip("no guest kernel: " + r.err);
    if (r.code() != 0)
      throw std::runtime_error("deploy/make-vm-boot failed: " + r.err);
    d->start({}, 60s);
  }

  [[noreturn]] static void skip(const std::string& why) {
    std::printf("SKIP: %s\n", why.c_str());
    std::fflush(stdout);
    std::exit(77);
  }
};

suite& env() {
  static suite s;
  return s;
}

std::string tail(const std::string& text, size_t n = 3000) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

process_result cli(const daemon_fixture& d, const std::vector<std::string>& args,
                   std::chrono::milliseconds t = 120s) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, t);
}

std::string ok(const std::vector<std::string>& args, std::chrono::milliseconds t = 120s) {
  auto r = cli(*env().d, args, t);
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << args.at(0) << " " << args.at(1) << " failed ("
                                               << r.code() << "): " << r.err << r.out
                                               << "\ndaemon log:\n"
                                               << tail(env().d->log()));
  return r.out;
}

/// A command that must fail with cyto.<code>; returns its stderr.
std::string refused(const daemon_fixture& d, const std::vector<std::string>& args,
                    const std::string& code) {
  auto r = cli(d, args);
  BOOST_TEST_MESSAGE("refused: " << r.err);
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto." + code + ":"), "expected cyto." << code << ", got: " << r.err);
  return r.err;
}

json inspect(const std::string& name) {
  return json::parse(ok({"vm", "inspect", "--json", name}));
}

/// Waits until VM `name` has ended (its QEMU exited); returns its console.
std::string wait_ended(const std::string& name, std::chrono::milliseconds timeout = 90s) {
  auto deadline = steady::now() + timeout;
  while (steady::now() < deadline) {
    auto state = inspect(name)["state"];
    if (state == "exited" || state == "stopped")
      return cli(*env().d, {"vm", "console", name}).out;
    std::this_thread::sleep_for(200ms);
  }
  BOOST_FAIL("vm " << name << " did not end within " << timeout.count() << " ms; console:\n"
                   << tail(cli(*env().d, {"vm", "console", name}).out) << "\ndaemon log:\n"
                   << tail(env().d->log()));
  return {};
}

/// The files of the disk cache (the cached disks and anything a build left).
std::vector<std::string> disk_cache(const daemon_fixture& d) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{d.state_dir() + "/vms/disks", ec})
    out.push_back(e.path().filename().string());
  return out;
}

/// Nothing of VM `name` is left in `d`: no record, no cell, no directory (so no
/// overlay), no temp file or mount point of a disk build.
void nothing_left(const daemon_fixture& d, const std::string& name) {
  auto all = json::parse(cli(d, {"vm", "ls", "--json"}).out);
  for (auto& v : all)
    BOOST_TEST(v["name"] != name, "vm " << name << " is still listed");
  for (auto& h : host_cgroup_mounts())
    BOOST_TEST(!fs::exists(h.path + "/" + d.cgroup_root() + "/vms/" + name),
               "cell of " << name << " is still in " << h.path);
  BOOST_TEST(!fs::exists(d.state_dir() + "/vms/" + name), "directory of " << name << " is left");
  for (auto& f : disk_cache(d))
    BOOST_TEST((f.size() == 64 + 5 && f.compare(64, 5, ".ext4") == 0),
               "the disk cache holds " << f);
}

std::string sha256_of(const std::string& path) {
  auto r = run_process({"/usr/bin/sha256sum", path}, 60s);
  BOOST_REQUIRE(r.code() == 0);
  return r.out.substr(0, 64);
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  BOOST_REQUIRE_MESSAGE(::stat(path.c_str(), &st) == 0, path << ": " << std::strerror(errno));
  return st;
}

} // namespace

BOOST_AUTO_TEST_CASE(demo_image_boots_its_command_on_a_cached_disk_the_overlay_takes_writes) {
  auto& d = *env().d;
  // The guest leaves a file in its root: the first boot finds none, a restart finds it
  // (the VM's overlay kept it).
  ok({"vm", "create", "img1", "demo", "--", "sh", "-c",
      "test -f /guest-wrote && echo SEEN-BEFORE; echo from-the-guest > /guest-wrote; "
      "echo IMAGE-MARKER $(cat /etc/hostname 2>/dev/null) $(pwd); exit 5"});
  auto v = inspect("img1");
  BOOST_TEST(v["image"] == "demo");
  auto root = v["imageRoot"];
  BOOST_REQUIRE(root.is_object());
  std::string disk = root["disk"], overlay = root["overlay"];
  BOOST_TEST(contains(root["image"].get<std::string>(), "demo"));
  BOOST_TEST(disk ==
             d.state_dir() + "/vms/disks/" + root["digest"].get<std::string>().substr(7) + ".ext4");
  BOOST_TEST(overlay == d.state_dir() + "/vms/img1/root.qcow2");
  BOOST_TEST(v["kernel"] == env().boot + "/vmlinuz");
  BOOST_TEST(v["initrd"] == env().boot + "/initramfs.cpio");
  BOOST_TEST((root["command"] == json{"sh", "-c",
                                      "test -f /guest-wrote && echo SEEN-BEFORE; echo "
                                      "from-the-guest > /guest-wrote; echo IMAGE-MARKER "
                                      "$(cat /etc/hostname 2>/dev/null) $(pwd); exit 5"}));
  auto human = ok({"vm", "inspect", "img1"});
  BOOST_TEST(contains(human, "root disk"));
  BOOST_TEST(contains(human, disk));
  // The disk holds the image's files, an ext4 with the label the initramfs mounts.
  auto blk = run_process({"/usr/sbin/dumpe2fs", "-h", disk}, 30s);
  BOOST_TEST(contains(blk.out, "cyto-root"), blk.out);
  auto before = stat_of(disk);
  auto bytes_before = sha256_of(disk);

  ok({"vm", "start", "img1"});
  auto console = wait_ended("img1");
  BOOST_TEST(contains(console, "IMAGE-MARKER"), tail(console));
  BOOST_TEST(!contains(console, "SEEN-BEFORE"), tail(console));
  BOOST_TEST(contains(console, "CYTO-EXIT=5"), tail(console));
  BOOST_TEST(inspect("img1")["state"] == "exited");
  // The guest's write went to the overlay: the cached disk is the same file, same bytes.
  auto after = stat_of(disk);
  BOOST_TEST(after.st_ino == before.st_ino);
  BOOST_TEST(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  BOOST_TEST(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  BOOST_TEST(sha256_of(disk) == bytes_before);
  // The record keeps the image root across a restart of cytod.
  d.stop();
  d.start({}, 60s);
  BOOST_TEST(inspect("img1")["imageRoot"] == root);
  ok({"vm", "start", "img1"});
  console = wait_ended("img1");
  BOOST_TEST(contains(console, "SEEN-BEFORE"), tail(console));

  // A second VM of the image: the cached disk, not rebuilt; a fresh overlay of its own.
  // A drive of the spec comes after the root disk.
  auto extra = d.state_dir() + "/extra.img";
  write_text(extra, std::string(1 << 20, '\0'));
  auto r = cli(d, {"vm", "run", "--rm", "--name", "img2", "--drive", extra, "demo", "--", "sh",
                   "-c", "cat /guest-wrote 2>/dev/null || echo FRESH-ROOT; ls /dev/vdb; exit 7"});
  BOOST_TEST(r.code() == 7, "vm run: " << r.code() << " " << r.err << "\n" << tail(r.out));
  BOOST_TEST(contains(r.out, "FRESH-ROOT"), tail(r.out));
  BOOST_TEST(contains(r.out, "/dev/vdb"), tail(r.out));
  auto again = stat_of(disk);
  BOOST_TEST(again.st_ino == before.st_ino);
  BOOST_TEST(again.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  BOOST_TEST(sha256_of(disk) == bytes_before);
  size_t builds = 0;
  for (auto& line : lines_of(d.log()))
    builds += contains(line, "building the root disk of image") ? 1 : 0;
  BOOST_TEST(builds == 1u);
  nothing_left(d, "img2");

  ok({"vm", "rm", "img1"});
  nothing_left(d, "img1");
  BOOST_TEST(fs::exists(disk)); // the cache outlives its VMs
}

BOOST_AUTO_TEST_CASE(bad_image_input_is_refused_and_leaves_nothing) {
  auto& d = *env().d;
  refused(d, {"vm", "create", "b1", "no-such-image"}, "not_found");
  nothing_left(d, "b1");
  auto r = cli(d, {"vm", "run", "--rm", "--name", "b2", "no-such-image", "--", "true"});
  BOOST_TEST(r.code() == 125);
  BOOST_TEST(contains(r.err, "cyto.not_found:"), r.err);
  nothing_left(d, "b2");
  refused(d, {"vm", "create", "b3", "demo", "--drive", d.state_dir() + "/no-such-disk.img"},
          "not_found");
  nothing_left(d, "b3");
  // The kernel command line cannot carry double quotes.
  refused(d, {"vm", "create", "b4", "demo", "--", "sh", "-c", "echo \"hi\""}, "invalid_argument");
  nothing_left(d, "b4");
  // Nor a "--" of the command's own: the kernel would end init's arguments there.
  refused(d, {"vm", "create", "b6", "demo", "--", "sh", "-c", "true", "--", "x"},
          "invalid_argument");
  nothing_left(d, "b6");
  refused(d, {"vm", "create", "b5", "demo", "--vcpus", "0"}, "invalid_argument");
  nothing_left(d, "b5");
  // A kernel of one's own with an image: named with --image (the words are the command).
  ok({"vm", "create", "k2", "--kernel", env().boot + "/vmlinuz", "--image", "demo", "--", "true"});
  auto k2 = inspect("k2");
  BOOST_TEST(k2["image"] == "demo");
  BOOST_TEST(k2["initrd"] == env().boot + "/initramfs.cpio");
  BOOST_TEST((k2["imageRoot"]["command"] == json{"true"}));
  ok({"vm", "rm", "k2"});
  nothing_left(d, "k2");

  // A daemon without the tools and boot files: unavailable, naming what to install.
  daemon_fixture other{false};
  other.start({"--mke2fs", "/nonexistent/mke2fs", "--vm-image-kernel", env().boot + "/vmlinuz"},
              60s);
  auto err = refused(other, {"vm", "create", "k1", "demo"}, "unavailable");
  BOOST_TEST(contains(err, "deploy/make-vm-boot"), err);
  nothing_left(other, "k1");
  err = refused(other, {"vm", "create", "m1", "demo", "--initrd", env().boot + "/initramfs.cpio"},
                "unavailable");
  BOOST_TEST(contains(err, "e2fsprogs"), err);
  nothing_left(other, "m1");
  BOOST_TEST(disk_cache(other).empty());
  BOOST_TEST(json::parse(cli(other, {"vm", "ls", "--json"}).out).empty());
  other.stop();
  other.start({"--qemu-img", "/nonexistent/qemu-img", "--vm-image-kernel", env().boot + "/vmlinuz",
               "--vm-image-initrd", env().boot + "/initramfs.cpio"},
              60s);
  err = refused(other, {"vm", "create", "q1", "demo"}, "unavailable");
  BOOST_TEST(contains(err, "qemu-utils"), err);
  nothing_left(other, "q1");
  BOOST_TEST(disk_cache(other).empty());
}
