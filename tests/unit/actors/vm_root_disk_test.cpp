// Image root disks of VMs (actors/vms/root_disk): the guest command from an image
// config, the boot initramfs's arguments, the cache's file names, and a real mke2fs -d
// build (no root needed) that leaves nothing behind when it fails.
#define BOOST_TEST_MODULE vm_root_disk
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "actors/vms/root_disk.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::vms;
namespace fs = std::filesystem;

namespace {

struct scratch {
  fs::path dir;
  scratch() {
    char tmpl[] = "/tmp/cyto-root-disk-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator{dir})
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

const char* config = R"({"architecture":"amd64","os":"linux","config":{
  "Env":["PATH=/usr/bin:/bin","GREETING=hi there"],"Entrypoint":["/bin/tini","--"],
  "Cmd":["sh"],"WorkingDir":"/srv"}})";

} // namespace

BOOST_AUTO_TEST_CASE(guest_command_is_entrypoint_then_args_or_cmd) {
  auto r = guest_command(config, {});
  BOOST_REQUIRE(r);
  BOOST_TEST((r->command == std::vector<std::string>{"/bin/tini", "--", "sh"}));
  BOOST_TEST((r->env == std::vector<std::string>{"PATH=/usr/bin:/bin", "GREETING=hi there"}));
  BOOST_TEST(r->workdir == "/srv");
  r = guest_command(config, {"echo", "hi"});
  BOOST_REQUIRE(r);
  BOOST_TEST((r->command == std::vector<std::string>{"/bin/tini", "--", "echo", "hi"}));
}

BOOST_AUTO_TEST_CASE(guest_command_defaults_path_and_workdir_and_needs_a_command) {
  auto r = guest_command(R"({"config":{"Cmd":["true"]}})", {});
  BOOST_REQUIRE(r);
  BOOST_TEST(r->workdir == "/");
  BOOST_REQUIRE(r->env.size() == 1u);
  BOOST_TEST(r->env[0].rfind("PATH=", 0) == 0u);
  auto none = guest_command(R"({"config":{}})", {});
  BOOST_REQUIRE(!none);
  BOOST_TEST((code_of(none.error()) == errc::invalid_argument));
  BOOST_TEST(!guest_command("not json", {}));
}

BOOST_AUTO_TEST_CASE(boot_init_args_mark_the_command_without_a_second_double_dash) {
  vm_image_root root;
  root.workdir = "/srv";
  root.env = {"A=1", "B=two words"};
  root.command = {"sh", "-c", "exit 3"};
  auto a = boot_init_args(root);
  BOOST_TEST((a == std::vector<std::string>{"-w", "/srv", "-e", "A=1", "-e", "B=two words", "--cmd",
                                            "sh", "-c", "exit 3"}));
  BOOST_TEST(std::count(a.begin(), a.end(), "--") == 0);
}

BOOST_AUTO_TEST_CASE(disk_file_name_takes_sha256_digests_only) {
  std::string hex(64, 'a');
  BOOST_TEST(*disk_file_name("sha256:" + hex) == hex + ".ext4");
  BOOST_TEST(!disk_file_name("sha512:" + hex));
  BOOST_TEST(!disk_file_name("sha256:../../etc"));
  BOOST_TEST(!disk_file_name(hex));
}

BOOST_AUTO_TEST_CASE(missing_tool_is_unavailable_naming_the_package) {
  auto r = find_tool("/nonexistent/mke2fs", "e2fsprogs", "mke2fs");
  BOOST_REQUIRE(!r);
  BOOST_TEST((code_of(r.error()) == errc::unavailable));
  BOOST_TEST(render(r.error()).find("e2fsprogs") != std::string::npos);
  BOOST_TEST(!find_tool("no-such-tool-anywhere", "pkg", "tool"));
}

BOOST_AUTO_TEST_CASE(build_ext4_makes_a_labelled_disk_or_leaves_nothing) {
  auto mke2fs = find_tool("mke2fs", "e2fsprogs", "mke2fs");
  if (!mke2fs) {
    BOOST_TEST_MESSAGE("SKIP: mke2fs is missing (e2fsprogs)");
    return;
  }
  scratch s;
  fs::create_directories(s.dir / "root/etc");
  std::ofstream{s.dir / "root/etc/hello"} << "hello\n";
  auto disk = (s.dir / "disk.ext4").string();
  BOOST_REQUIRE_MESSAGE(!build_ext4(*mke2fs, (s.dir / "root").string(), disk), "build failed");
  BOOST_TEST((s.files() == std::vector<std::string>{"disk.ext4", "root"}));
  BOOST_TEST(fs::file_size(disk) >= (256ull << 20));
  // A tree that is not there: mke2fs fails, no temp file and no disk are left.
  auto bad = (s.dir / "bad.ext4").string();
  auto err = build_ext4(*mke2fs, (s.dir / "no-such-root").string(), bad);
  BOOST_TEST(static_cast<bool>(err));
  BOOST_TEST(render(err).find("mke2fs") != std::string::npos, render(err));
  BOOST_TEST((s.files() == std::vector<std::string>{"disk.ext4", "root"}));
}

BOOST_AUTO_TEST_CASE(clean_disk_dir_removes_what_a_crash_left) {
  scratch s;
  std::ofstream{s.dir / ("abc.ext4")} << "x";
  std::ofstream{s.dir / ("abc.ext4.tmp-1-2")} << "x";
  fs::create_directories(s.dir / (std::string{disk_mount_prefix} + "abc"));
  clean_disk_dir(s.dir.string());
  BOOST_TEST((s.files() == std::vector<std::string>{"abc.ext4"}));
}
