// Integration tests of `cyto cp`: files and directories between the host and a busybox
// container's root file system, both ways, through a real cytod and the CLI. What lands is
// checked byte for byte, with modes, mtimes and symlinks, on the host (the container's
// bundle/rootfs) and inside the running container (cyto exec). Bad input must fail with a
// cyto.<code> error and change nothing, neither in the container nor here; symlinks and
// ".." in the container never lead out of its root file system. Needs root (exits 77).
#define BOOST_TEST_MODULE integration_cp
#include <boost/test/unit_test.hpp>

#include <set>

#include <sys/stat.h>
#include <utime.h>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"
#include "tests/tar_writer.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// One daemon for the suite (it imports the build's demo image on start), one running
/// container "cpr" and the local tree the tests copy.
struct suite {
  std::unique_ptr<daemon_fixture> d;
  temp_dir here;
  suite() {
    d = std::make_unique<daemon_fixture>(false);
    d->start({}, 30s);
  }
};

suite& env() {
  static suite s;
  return s;
}

std::string log_tail() {
  auto log = env().d->log();
  return log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
}

std::string describe_args(const std::vector<std::string>& args) {
  std::string what;
  for (auto& a : args)
    what += a + " ";
  return what;
}

process_result cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{cli_path, "--socket", env().d->socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, 60s);
}

std::string ok(const std::vector<std::string>& args) {
  auto r = cli(args);
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << describe_args(args) << "failed (" << r.code()
                                                << "): " << r.err << r.out << "\ndaemon log:\n"
                                                << log_tail());
  return r.out;
}

/// Runs the CLI expecting a failure whose message has "cyto.<code>:".
std::string fails(const std::vector<std::string>& args, const std::string& code) {
  auto r = cli(args);
  BOOST_CHECK_MESSAGE(r.code() != 0, "cyto " << describe_args(args) << "succeeded: " << r.out);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto." + code + ": "),
                      "cyto " << describe_args(args) << ": expected cyto." << code
                              << ", got: " << r.err);
  return r.err;
}

/// A shell line with the CLI as "$CYTO" (for pipes of tar streams).
process_result shell(const std::string& line) {
  auto cyto = std::string{cli_path} + " --socket " + env().d->socket_path();
  return run_process({"/bin/sh", "-c", "CYTO='" + cyto + "'; " + line}, 60s);
}

json inspect(const std::string& name) {
  return json::parse(ok({"inspect", "--json", name})).at(0);
}

std::string rootfs(const std::string& name) {
  return inspect(name)["bundle"].get<std::string>() + "/rootfs";
}

std::string exec_out(const std::string& name, const std::string& script) {
  return ok({"exec", name, "sh", "-c", script});
}

mode_t mode_of(const std::string& p) {
  struct stat sb{};
  BOOST_REQUIRE_MESSAGE(::lstat(p.c_str(), &sb) == 0, "lstat " << p << ": " << std::strerror(errno));
  return sb.st_mode;
}

time_t mtime_of(const std::string& p) {
  struct stat sb{};
  BOOST_REQUIRE_MESSAGE(::lstat(p.c_str(), &sb) == 0, "lstat " << p << ": " << std::strerror(errno));
  return sb.st_mtime;
}

std::string link_of(const std::string& p) {
  std::error_code ec;
  auto t = fs::read_symlink(p, ec);
  BOOST_CHECK_MESSAGE(!ec, p << " is not a symlink: " << ec.message());
  return t.string();
}

void set_mtime(const std::string& p, time_t t) {
  timespec ts[2] = {{t, 0}, {t, 0}};
  ::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

/// Every path below `dir` (relative), with its type, mode and content or link target.
std::set<std::string> tree(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec)))
    return out;
  for (auto it = fs::recursive_directory_iterator{dir, ec}; it != fs::recursive_directory_iterator{};
       it.increment(ec)) {
    auto p = it->path().string();
    auto rel = p.substr(dir.size());
    auto m = mode_of(p);
    std::string what = rel + " " + std::to_string(m);
    if (S_ISLNK(m))
      what += " -> " + link_of(p);
    else if (S_ISREG(m))
      what += " = " + read_text(p);
    out.insert(what);
  }
  return out;
}

/// The local tree: f.txt (0640) and d/ (0750) with sub/x (0751), a relative and an
/// absolute symlink, an empty dir; all with old, known mtimes.
struct local_tree {
  std::string root = env().here / "src";
  local_tree() {
    fs::create_directories(root + "/d/sub");
    fs::create_directories(root + "/d/empty");
    write_text(root + "/f.txt", "file bytes\nsecond line\n");
    std::string all;
    for (int i = 0; i < 256 * 64; ++i)
      all.push_back(static_cast<char>(i * 7 % 256));
    write_text(root + "/d/sub/bin.dat", all); // every byte value, 16 KiB
    write_text(root + "/d/sub/x", "#!/bin/sh\necho x\n");
    ::chmod((root + "/f.txt").c_str(), 0640);
    ::chmod((root + "/d/sub/x").c_str(), 0751);
    ::chmod((root + "/d").c_str(), 0750);
    std::error_code ec;
    fs::create_symlink("sub/x", root + "/d/rel", ec);
    fs::create_symlink("/etc/passwd", root + "/d/abs", ec);
    for (auto p : {"/f.txt", "/d/sub/x", "/d/sub/bin.dat", "/d/rel", "/d/abs", "/d/sub", "/d/empty", "/d"})
      set_mtime(root + p, 1000000000);
  }
};

local_tree& local() {
  static local_tree t;
  return t;
}

/// A running container made once for the suite.
const std::string& running() {
  static std::string name = [] {
    ok({"run", "-d", "--name", "cpr", "demo", "sleep", "600"});
    return std::string{"cpr"};
  }();
  return name;
}

void check_file(const std::string& p) {
  BOOST_CHECK_EQUAL(read_text(p), read_text(local().root + "/f.txt"));
  BOOST_CHECK_EQUAL(mode_of(p) & 07777, 0640u);
  BOOST_CHECK_EQUAL(mtime_of(p), 1000000000);
}

void check_dir(const std::string& p) {
  BOOST_CHECK(tree(p) == tree(local().root + "/d"));
  BOOST_CHECK_EQUAL(mode_of(p) & 07777, 0750u);
  BOOST_CHECK_EQUAL(mode_of(p + "/sub/x") & 07777, 0751u);
  BOOST_CHECK_EQUAL(link_of(p + "/rel"), "sub/x");
  BOOST_CHECK_EQUAL(link_of(p + "/abs"), "/etc/passwd");
  BOOST_CHECK_EQUAL(mtime_of(p), 1000000000);
  BOOST_CHECK_EQUAL(mtime_of(p + "/sub/x"), 1000000000);
  BOOST_CHECK_EQUAL(mtime_of(p + "/rel"), 1000000000);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_file_copied_in_is_visible_inside_the_running_container) {
  auto& c = running();
  ok({"cp", local().root + "/f.txt", c + ":/tmp/"});
  check_file(rootfs(c) + "/tmp/f.txt");
  BOOST_CHECK_EQUAL(exec_out(c, "cat /tmp/f.txt"), read_text(local().root + "/f.txt"));
  // A missing destination becomes the file (its parent exists).
  ok({"cp", local().root + "/f.txt", c + ":/renamed.txt"});
  check_file(rootfs(c) + "/renamed.txt");
  // An existing file is replaced.
  exec_out(c, "echo old > /over.txt");
  ok({"cp", local().root + "/f.txt", c + ":/over.txt"});
  BOOST_CHECK_EQUAL(exec_out(c, "cat /over.txt"), read_text(local().root + "/f.txt"));
}

BOOST_AUTO_TEST_CASE(a_dir_copied_in_keeps_modes_times_and_symlinks) {
  auto& c = running();
  auto rfs = rootfs(c);
  // Into an existing directory by its name; a missing one becomes the dir.
  ok({"cp", local().root + "/d", c + ":/tmp"});
  check_dir(rfs + "/tmp/d");
  ok({"cp", local().root + "/d", c + ":/newdir"});
  check_dir(rfs + "/newdir");
  BOOST_CHECK_EQUAL(exec_out(c, "/newdir/rel"), "x\n");
  BOOST_CHECK_EQUAL(exec_out(c, "readlink /newdir/abs"), "/etc/passwd\n");
  // SRC/. : the contents into an existing directory.
  exec_out(c, "mkdir /into");
  ok({"cp", local().root + "/d/.", c + ":/into"});
  BOOST_CHECK(tree(rfs + "/into") == tree(local().root + "/d"));
}

BOOST_AUTO_TEST_CASE(a_file_and_a_dir_copied_out_keep_bytes_modes_and_symlinks) {
  auto& c = running();
  ok({"cp", local().root + "/d", c + ":/out-src"});
  ok({"cp", local().root + "/f.txt", c + ":/out-f.txt"});
  auto dest = env().here / "out";
  fs::create_directories(dest);
  // A missing destination becomes the dir; an existing one receives it by name.
  ok({"cp", c + ":/out-src", dest + "/copy"});
  check_dir(dest + "/copy");
  ok({"cp", c + ":/out-src/sub", dest});
  BOOST_CHECK_EQUAL(read_text(dest + "/sub/x"), read_text(local().root + "/d/sub/x"));
  BOOST_CHECK_EQUAL(mode_of(dest + "/sub/x") & 07777, 0751u);
  // SRC/. : the contents into an existing directory.
  fs::create_directories(dest + "/contents");
  ok({"cp", c + ":/out-src/.", dest + "/contents"});
  BOOST_CHECK(tree(dest + "/contents") == tree(local().root + "/d"));
  ok({"cp", c + ":/out-f.txt", dest + "/g.txt"});
  check_file(dest + "/g.txt");
  // A symlink is copied as the symlink.
  ok({"cp", c + ":/out-src/abs", dest + "/abs-link"});
  BOOST_CHECK_EQUAL(link_of(dest + "/abs-link"), "/etc/passwd");
  // A file the container wrote itself.
  exec_out(c, "printf 'made inside' > /inside.txt; chmod 604 /inside.txt");
  ok({"cp", c + ":/inside.txt", dest + "/"});
  BOOST_CHECK_EQUAL(read_text(dest + "/inside.txt"), "made inside");
  BOOST_CHECK_EQUAL(mode_of(dest + "/inside.txt") & 07777, 0604u);
}

BOOST_AUTO_TEST_CASE(a_stopped_and_a_created_container_are_copied_to_and_from) {
  ok({"run", "--name", "cps", "demo", "true"});
  BOOST_CHECK_EQUAL(inspect("cps")["state"], "stopped");
  ok({"cp", local().root + "/f.txt", "cps:/f.txt"});
  auto dest = env().here / "stopped";
  fs::create_directories(dest);
  ok({"cp", "cps:/f.txt", dest + "/f.txt"});
  check_file(dest + "/f.txt");
  ok({"create", "--name", "cpc", "demo", "cat", "/f.txt"});
  ok({"cp", local().root + "/f.txt", "cpc:/f.txt"});
  ok({"cp", "cpc:/f.txt", dest + "/created.txt"});
  check_file(dest + "/created.txt");
  // The created container's program sees the file copied in before it started.
  ok({"start", "cpc"});
  ok({"wait", "cpc"});
  BOOST_CHECK_EQUAL(inspect("cpc")["exitCode"], 0);
  ok({"rm", "cps", "cpc"});
}

BOOST_AUTO_TEST_CASE(tar_streams_on_stdin_and_stdout) {
  auto& c = running();
  exec_out(c, "mkdir -p /streamed");
  auto r = shell("tar -C " + local().root + " -cf - d f.txt | $CYTO cp - " + c + ":/streamed");
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  check_dir(rootfs(c) + "/streamed/d");
  check_file(rootfs(c) + "/streamed/f.txt");
  auto dest = env().here / "untarred";
  fs::create_directories(dest);
  r = shell("$CYTO cp " + c + ":/streamed/d - | tar -C " + dest + " -xpf -");
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  check_dir(dest + "/d");
  r = shell("$CYTO cp " + c + ":/streamed/f.txt - | tar -tvf -");
  BOOST_REQUIRE_MESSAGE(r.code() == 0, r.err);
  BOOST_CHECK_MESSAGE(contains(r.out, "f.txt") && contains(r.out, "-rw-r-----"), r.out);
}

BOOST_AUTO_TEST_CASE(symlinks_and_dotdot_in_the_container_stay_inside_it) {
  auto& c = running();
  auto rfs = rootfs(c);
  exec_out(c, "ln -sf /etc /tmp/etc-link; ln -sf ../../../../../.. /tmp/up");
  std::error_code ec;
  fs::remove("/etc/cyto-cp-marker", ec);
  // Into a symlink to /etc: the container's /etc, never the host's.
  ok({"cp", local().root + "/f.txt", c + ":/tmp/etc-link/cyto-cp-marker"});
  BOOST_CHECK(fs::exists(rfs + "/etc/cyto-cp-marker"));
  BOOST_CHECK(!fs::exists("/etc/cyto-cp-marker"));
  ok({"cp", local().root + "/f.txt", c + ":/tmp/up/../../cyto-cp-top"});
  BOOST_CHECK(fs::exists(rfs + "/cyto-cp-top"));
  BOOST_CHECK(!fs::exists(fs::path(rfs).parent_path() / "cyto-cp-top"));
  // Out through ".." and the symlink: the container's files.
  auto dest = env().here / "escape";
  fs::create_directories(dest);
  ok({"cp", c + ":/../../../../etc/passwd", dest + "/passwd"});
  BOOST_CHECK_EQUAL(read_text(dest + "/passwd"), read_text(rfs + "/etc/passwd"));
  ok({"cp", c + ":/tmp/up/etc/passwd", dest + "/passwd2"});
  BOOST_CHECK_EQUAL(read_text(dest + "/passwd2"), read_text(rfs + "/etc/passwd"));
}

BOOST_AUTO_TEST_CASE(bad_input_fails_with_a_code_and_changes_nothing) {
  auto& c = running();
  auto rfs = rootfs(c);
  auto dest = env().here / "bad";
  fs::create_directories(dest);
  write_text(dest + "/plain", "keep");
  auto before_host = tree(dest);
  auto before = tree(rfs + "/tmp");

  fails({"cp", "nosuch:/etc/passwd", dest + "/x"}, "not_found");
  fails({"cp", local().root + "/f.txt", "nosuch:/tmp"}, "not_found");
  fails({"cp", c + ":/no/such/file", dest + "/x"}, "not_found");
  fails({"cp", local().root + "/no-such-file", c + ":/tmp"}, "not_found");
  fails({"cp", local().root + "/f.txt", c + ":/no/such/dir/f"}, "not_found");
  BOOST_CHECK(!fs::exists(rfs + "/no"));
  fails({"cp", c + ":/etc/passwd", dest + "/missing/dir/x"}, "not_found");
  fails({"cp", local().root + "/f.txt", c + ":/tmp/missing-dir/"}, "not_found");
  fails({"cp", "a:/x", "b:/y"}, "invalid_argument");
  fails({"cp", local().root + "/f.txt", dest + "/y"}, "invalid_argument");
  fails({"cp", "-", "-"}, "invalid_argument");
  // A directory onto a file, both ways.
  exec_out(c, "echo f > /tmp/a-file");
  before = tree(rfs + "/tmp");
  fails({"cp", local().root + "/d", c + ":/tmp/a-file"}, "invalid_argument");
  fails({"cp", c + ":/etc", dest + "/plain"}, "invalid_argument");
  BOOST_CHECK_EQUAL(read_text(rfs + "/tmp/a-file"), "f\n");

  // Hostile tars on stdin: a good entry first, then the bad one; nothing lands.
  struct hostile {
    std::string name, tar;
  };
  std::vector<hostile> tars = {
      {"dotdot", tar_entry("good", '0', "", "g") + tar_entry("../../escaped", '0', "", "x")},
      {"absolute", tar_entry("good", '0', "", "g") + tar_entry("/escaped", '0', "", "x")},
      {"through-symlink",
       tar_entry("good", '0', "", "g") + tar_entry("l", '2', "/") +
           tar_entry("l/escaped", '0', "", "x")},
      {"device", tar_entry("good", '0', "", "g") + tar_node("null", '3', 0666, 0, 0, 1, 3)},
      {"hardlink-out", tar_entry("good", '0', "", "g") + tar_entry("h", '1', "../../etc/passwd")},
      {"truncated", tar_entry("good", '0', "", "g") + tar_entry("big", '0', "", "y").substr(0, 512)},
  };
  for (auto& h : tars) {
    auto file = env().here / ("hostile-" + h.name + ".tar");
    write_text(file, h.tar + (h.name == "truncated" ? "" : tar_end()));
    auto r = shell("$CYTO cp - " + c + ":/tmp < " + file);
    BOOST_CHECK_MESSAGE(r.code() != 0, h.name << ": succeeded");
    BOOST_CHECK_MESSAGE(contains(r.err, "cyto.invalid_argument: "), h.name << ": " << r.err);
    BOOST_CHECK_MESSAGE(tree(rfs + "/tmp") == before, h.name << ": /tmp changed");
    BOOST_CHECK(!fs::exists(rfs + "/escaped"));
    BOOST_CHECK(!fs::exists(fs::path(rfs).parent_path() / "escaped"));
  }
  BOOST_CHECK(tree(rfs + "/tmp") == before);
  BOOST_CHECK(tree(dest) == before_host);
  BOOST_CHECK(!fs::exists(dest + "/x"));
}

BOOST_AUTO_TEST_CASE(paths_on_volume_mounts_and_read_only_containers_are_refused) {
  ok({"run", "-d", "--name", "cpv", "-v", "cpvol:/data", "demo", "sleep", "600"});
  fails({"cp", local().root + "/f.txt", "cpv:/data/"}, "failed_precondition");
  fails({"cp", "cpv:/data", env().here / "vol"}, "failed_precondition");
  BOOST_CHECK(!fs::exists(env().here / "vol"));
  ok({"rm", "-f", "cpv"});
  ok({"volume", "rm", "cpvol"});
  ok({"run", "-d", "--name", "cpro", "--read-only", "demo", "sleep", "600"});
  fails({"cp", local().root + "/f.txt", "cpro:/tmp"}, "failed_precondition");
  ok({"rm", "-f", "cpro"});
}

BOOST_AUTO_TEST_CASE(zz_cleanup) {
  ok({"rm", "-f", "cpr"});
  BOOST_CHECK(json::parse(ok({"ps", "-a", "--json"})).empty());
}
