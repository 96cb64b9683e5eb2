// Integration tests of container mounts: named volumes (cyto volume ..., -v NAME:/path),
// bind mounts (-v /host:/path[:ro]) and tmpfs (--tmpfs). A real cytod runs busybox
// containers through the CLI; what it claims is checked on the host (the volume's
// directory, the bind source's files, /proc/<pid>/mounts of the container's process)
// and inside the container. Bad input must fail with a cyto.<code> error and leave no
// container, bundle, cell or volume behind. Needs root (exits 77 otherwise).
#define BOOST_TEST_MODULE integration_volumes
#include <boost/test/unit_test.hpp>

#include <set>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "actors/store/state_db.hpp"
#include "actors/volumes/volume_rows.hpp"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

/// One daemon for the suite (it imports the build's demo image on start).
struct suite {
  std::unique_ptr<daemon_fixture> d;
  suite() {
    d = std::make_unique<daemon_fixture>(false);
    start();
  }
  void start() {
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

process_result cli(const std::vector<std::string>& args, std::chrono::milliseconds t = 30s) {
  std::vector<std::string> argv{cli_path, "--socket", env().d->socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  try {
    return run_process(argv, t);
  } catch (const std::exception& e) {
    std::string what;
    for (auto& a : args)
      what += a + " ";
    throw std::runtime_error("cyto " + what + ": " + e.what() + "\ndaemon log (tail):\n"
                             + log_tail());
  }
}

std::string ok(const std::vector<std::string>& args) {
  auto r = cli(args);
  std::string what;
  for (auto& a : args)
    what += a + " ";
  BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << what << "failed (" << r.code() << "): " << r.err
                                                << r.out << "\ndaemon log:\n"
                                                << log_tail());
  return r.out;
}

/// Runs the CLI expecting a failure whose message starts with "cyto.<code>:".
std::string fails(const std::vector<std::string>& args, const std::string& code) {
  auto r = cli(args);
  std::string what;
  for (auto& a : args)
    what += a + " ";
  BOOST_CHECK_MESSAGE(r.code() != 0, "cyto " << what << "succeeded: " << r.out);
  BOOST_CHECK_MESSAGE(contains(r.err, "cyto." + code + ": "),
                      "cyto " << what << ": expected cyto." << code << ", got: " << r.err);
  return r.err;
}

json volume(const std::string& name) {
  auto r = cli({"volume", "inspect", "--json", name});
  if (r.code() != 0)
    return nullptr;
  return json::parse(r.out).at(0);
}

std::string volumes_dir() {
  return env().d->state_dir() + "/volumes";
}

std::set<std::string> dir_names(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{dir, ec})
    out.insert(e.path().filename());
  return out;
}

/// The containers' cgroups (cells) in every hierarchy, as "<hierarchy>/<cell>".
std::set<std::string> container_cells() {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec})
    for (auto& c : fs::directory_iterator{h.path() / env().d->cgroup_root() / "containers", ec})
      if (c.is_directory(ec))
        out.insert(h.path().filename().string() + "/" + c.path().filename().string());
  return out;
}

/// Rows of a kind in state.db (read-only, the daemon keeps writing).
int db_rows(const std::string& kind) {
  sqlite3* db = nullptr;
  auto path = env().d->state_dir() + "/state.db";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, 2000);
  sqlite3_stmt* st = nullptr;
  int n = -1;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM records WHERE kind = ?", -1, &st, nullptr)
      == SQLITE_OK) {
    sqlite3_bind_text(st, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/// What a failed create must not change.
struct snapshot {
  std::string ps;
  std::set<std::string> bundles, runtime, cells, volume_dirs, volumes;
  int container_rows = 0, volume_rows = 0;
};

snapshot take() {
  snapshot s;
  for (auto& c : json::parse(ok({"ps", "-a", "--json"})))
    s.ps += c["name"].get<std::string>() + " ";
  s.bundles = dir_names(env().d->state_dir() + "/bundles");
  s.runtime = dir_names(env().d->state_dir() + "/runtime");
  s.cells = container_cells();
  s.volume_dirs = dir_names(volumes_dir());
  for (auto& v : json::parse(ok({"volume", "ls", "--json"})))
    s.volumes.insert(v["name"].get<std::string>());
  s.container_rows = db_rows("container");
  s.volume_rows = db_rows("volume");
  return s;
}

void same(const snapshot& a, const snapshot& b, const std::string& what) {
  BOOST_CHECK_MESSAGE(a.ps == b.ps, what << ": containers changed: '" << a.ps << "' -> '" << b.ps
                                         << "'");
  BOOST_CHECK_MESSAGE(a.bundles == b.bundles, what << ": bundle dirs changed");
  BOOST_CHECK_MESSAGE(a.runtime == b.runtime, what << ": runtime state dirs changed");
  BOOST_CHECK_MESSAGE(a.cells == b.cells, what << ": cells changed");
  BOOST_CHECK_MESSAGE(a.volume_dirs == b.volume_dirs, what << ": volume dirs changed");
  BOOST_CHECK_MESSAGE(a.volumes == b.volumes, what << ": volumes changed");
  BOOST_CHECK_MESSAGE(a.container_rows == b.container_rows,
                      what << ": container records " << a.container_rows << " -> "
                           << b.container_rows);
  BOOST_CHECK_MESSAGE(a.volume_rows == b.volume_rows,
                      what << ": volume records " << a.volume_rows << " -> " << b.volume_rows);
}

/// The mount lines of `path` in /proc/<pid>/mounts (seen from the host).
std::vector<std::string> mounts_at(pid_t pid, const std::string& path) {
  std::vector<std::string> out;
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/mounts"))) {
    auto f = split(line, ' ');
    if (f.size() > 1 && f[1] == path)
      out.push_back(line);
  }
  return out;
}

int container_pid(const std::string& name) {
  auto r = ok({"inspect", "--json", name});
  return json::parse(r).at(0)["pid"].get<int>();
}

} // namespace

BOOST_AUTO_TEST_CASE(named_volume_outlives_its_container_and_lives_in_the_state_dir) {
  ok({"run", "--rm", "-v", "notes:/data", "demo", "sh", "-c", "echo kept > /data/f"});
  // Made by the -v (it did not exist), its data on the host where inspect says.
  auto v = volume("notes");
  BOOST_REQUIRE(!v.is_null());
  auto host = volumes_dir() + "/notes/_data";
  BOOST_CHECK_EQUAL(v["path"], host);
  BOOST_CHECK_EQUAL(read_text(host + "/f"), "kept\n");
  BOOST_CHECK(v["users"].empty()); // the --rm container is gone, and so is its claim
  BOOST_CHECK(!v["created"].get<std::string>().empty());
  // A second container reads what the first wrote.
  BOOST_CHECK_EQUAL(ok({"run", "--rm", "-v", "notes:/data", "demo", "cat", "/data/f"}), "kept\n");
  BOOST_CHECK(contains(ok({"volume", "ls"}), "notes"));
  BOOST_CHECK_EQUAL(ok({"volume", "rm", "notes"}), "notes\n");
  BOOST_CHECK(!fs::exists(volumes_dir() + "/notes"));
  BOOST_CHECK(volume("notes").is_null());
  fails({"volume", "inspect", "notes"}, "not_found");
  fails({"volume", "rm", "notes"}, "not_found");
  ok({"volume", "rm", "-f", "notes"}); // -f: a missing volume is no error
}

BOOST_AUTO_TEST_CASE(volume_create_generates_a_name_and_refuses_duplicates) {
  auto name = ok({"volume", "create"});
  BOOST_REQUIRE_EQUAL(name.size(), 65u); // 64 hex digits and a newline
  name.pop_back();
  BOOST_CHECK(fs::is_directory(volumes_dir() + "/" + name + "/_data"));
  auto made = json::parse(ok({"volume", "create", "--json", "named1"}));
  BOOST_CHECK_EQUAL(made["name"], "named1");
  BOOST_CHECK_EQUAL(made["path"], volumes_dir() + "/named1/_data");
  fails({"volume", "create", "named1"}, "already_exists");
  auto ls = json::parse(ok({"volume", "ls", "--json"}));
  std::set<std::string> names;
  for (auto& v : ls)
    names.insert(v["name"].get<std::string>());
  BOOST_CHECK(names.count(name) && names.count("named1"));
  ok({"volume", "rm", name, "named1"});
  BOOST_CHECK(!fs::exists(volumes_dir() + "/" + name));
  BOOST_CHECK(!fs::exists(volumes_dir() + "/named1"));
}

BOOST_AUTO_TEST_CASE(bind_mounts_show_host_files_ro_refuses_writes_rw_writes_through) {
  temp_dir host;
  write_text(host / "in.txt", "from host\n");
  BOOST_CHECK_EQUAL(ok({"run", "--rm", "-v", host.path() + ":/mnt", "demo", "cat", "/mnt/in.txt"}),
                    "from host\n");
  // :ro really is read-only, and the host file stays as it was.
  auto r = cli({"run", "--rm", "-v", host.path() + ":/mnt:ro", "demo", "sh", "-c",
                "echo changed > /mnt/in.txt"});
  BOOST_CHECK_NE(r.code(), 0);
  BOOST_CHECK_MESSAGE(contains(r.err, "Read-only file system"), r.err);
  BOOST_CHECK_EQUAL(read_text(host / "in.txt"), "from host\n");
  // rw writes through to the host; a missing target is made in the rootfs.
  ok({"run", "--rm", "-v", host.path() + ":/new/deep/dir", "demo", "sh", "-c",
      "echo written > /new/deep/dir/out.txt"});
  BOOST_CHECK_EQUAL(read_text(host / "out.txt"), "written\n");
  // A single file can be bound too.
  BOOST_CHECK_EQUAL(
      ok({"run", "--rm", "-v", host / "in.txt" + ":/etc/motd:ro", "demo", "cat", "/etc/motd"}),
      "from host\n");
}

BOOST_AUTO_TEST_CASE(ro_bind_is_read_only_below_too) {
  // A mount inside the bind's source (the test's own tmpfs) comes along with rbind; :ro
  // must cover it as well.
  temp_dir host;
  auto sub = host / "sub";
  fs::create_directories(sub);
  BOOST_REQUIRE_MESSAGE(::mount("tmpfs", sub.c_str(), "tmpfs", 0, "size=1m") == 0,
                        "mount tmpfs on " << sub << ": " << std::strerror(errno));
  write_text(sub + "/x", "below\n");
  auto r = cli({"run", "--rm", "-v", host.path() + ":/mnt:ro", "demo", "sh", "-c",
                "cat /mnt/sub/x; echo no > /mnt/sub/x"});
  ::umount2(sub.c_str(), MNT_DETACH);
  BOOST_CHECK_NE(r.code(), 0);
  BOOST_CHECK_EQUAL(r.out, "below\n");
  BOOST_CHECK_MESSAGE(contains(r.err, "Read-only file system"), r.err);
}

BOOST_AUTO_TEST_CASE(tmpfs_is_a_tmpfs_of_its_size_and_goes_with_the_container) {
  ok({"run", "-d", "--name", "tmpfs1", "--tmpfs", "/scratch:size=8m", "--tmpfs",
      "/private:mode=0700", "--tmpfs", "/frozen:ro", "demo", "sleep", "60"});
  auto pid = container_pid("tmpfs1");
  // Seen from the host, in the container's mount namespace.
  auto lines = mounts_at(pid, "/scratch");
  BOOST_REQUIRE_EQUAL(lines.size(), 1u);
  BOOST_CHECK_MESSAGE(lines[0].rfind("tmpfs /scratch tmpfs ", 0) == 0, lines[0]);
  BOOST_CHECK_MESSAGE(contains(lines[0], "size=8192k"), lines[0]);
  BOOST_CHECK_MESSAGE(contains(lines[0], "nosuid") && contains(lines[0], "nodev"), lines[0]);
  // And from inside.
  BOOST_CHECK(contains(ok({"exec", "tmpfs1", "grep", " /scratch ", "/proc/mounts"}), "size=8192k"));
  ok({"exec", "tmpfs1", "sh", "-c", "echo data > /scratch/f"});
  BOOST_CHECK_EQUAL(ok({"exec", "tmpfs1", "stat", "-c", "%a", "/private"}), "700\n");
  auto ro = cli({"exec", "tmpfs1", "touch", "/frozen/x"});
  BOOST_CHECK_NE(ro.code(), 0);
  BOOST_CHECK_MESSAGE(contains(ro.err, "Read-only file system"), ro.err);
  // Nothing of it is on the host's side.
  BOOST_CHECK(mounts_at(::getpid(), "/scratch").empty());
  ok({"stop", "-t", "1", "tmpfs1"});
  // Its only holder is gone: no process of the host sees a /scratch of 8 MiB any more.
  BOOST_CHECK(!fs::exists("/proc/" + std::to_string(pid)));
  size_t left = 0;
  std::error_code ec;
  for (auto& p : fs::directory_iterator{"/proc", ec}) {
    auto n = p.path().filename().string();
    if (n.find_first_not_of("0123456789") != std::string::npos)
      continue;
    for (auto& l : mounts_at(std::stoi(n), "/scratch"))
      left += contains(l, "size=8192k") ? 1 : 0;
  }
  BOOST_CHECK_EQUAL(left, 0u);
  auto info = json::parse(ok({"inspect", "--json", "tmpfs1"})).at(0);
  BOOST_REQUIRE_EQUAL(info["mounts"].size(), 3u);
  BOOST_CHECK_EQUAL(info["mounts"][0]["kind"], "tmpfs");
  BOOST_CHECK_EQUAL(info["mounts"][0]["target"], "/scratch");
  BOOST_CHECK_EQUAL(info["mounts"][0]["sizeBytes"], 8u << 20);
  ok({"rm", "tmpfs1"});
}

BOOST_AUTO_TEST_CASE(bad_mounts_fail_clearly_and_leave_nothing) {
  temp_dir host;
  auto before = take();
  auto check = [&](const std::vector<std::string>& args, const std::string& code,
                   const std::string& says) {
    std::vector<std::string> argv{"run", "--rm"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"demo", "true"});
    auto err = fails(argv, code);
    BOOST_CHECK_MESSAGE(contains(err, says), "expected '" << says << "' in: " << err);
    same(before, take(), args.back());
  };
  check({"-v", host / "nowhere" + ":/data"}, "not_found", "bind mount source");
  check({"-v", host.path() + ":data/rel"}, "invalid_argument", "must be an absolute path");
  check({"-v", host.path() + ":/data/../etc"}, "invalid_argument", "'..'");
  check({"-v", host.path() + ":/"}, "invalid_argument", "not a mount");
  check({"-v", host.path() + ":/proc/x"}, "invalid_argument", "/proc");
  check({"-v", host.path() + ":/d", "--tmpfs", "/d/"}, "invalid_argument", "two mounts on /d");
  check({"-v", "bad@name:/data"}, "invalid_argument", "volume name 'bad@name'");
  check({"-v", host.path() + ":/data:rx"}, "invalid_argument", "option 'rx'");
  check({"--tmpfs", "/scratch:size=lots"}, "invalid_argument", "size 'lots'");
  check({"--tmpfs", "/scratch:exec"}, "invalid_argument", "option 'exec'");
  check({"--tmpfs", "/scratch:mode=99x"}, "invalid_argument", "mode '99x'");
  // A volume the create made is removed again when a later step fails (a user the
  // image does not have): no volume "fresh" is left.
  check({"-v", "fresh:/data", "--user", "nosuchuser"}, "invalid_argument", "nosuchuser");
  auto err = fails({"volume", "create", "bad name"}, "invalid_argument");
  BOOST_CHECK(contains(err, "volume name 'bad name'"));
  fails({"volume", "create", ".hidden"}, "invalid_argument");
  same(before, take(), "volume create with bad names");
}

BOOST_AUTO_TEST_CASE(volume_in_use_is_not_removed) {
  ok({"run", "-d", "--name", "user1", "-v", "inuse:/data", "demo", "sleep", "60"});
  auto v = volume("inuse");
  BOOST_REQUIRE_EQUAL(v["users"].size(), 1u);
  BOOST_CHECK_EQUAL(v["users"][0]["name"], "user1");
  auto err = fails({"volume", "rm", "inuse"}, "failed_precondition");
  BOOST_CHECK_MESSAGE(contains(err, "user1"), err);
  // Stopped, it still uses it (until removed); -f does not change that.
  ok({"stop", "-t", "1", "user1"});
  fails({"volume", "rm", "inuse"}, "failed_precondition");
  fails({"volume", "rm", "-f", "inuse"}, "failed_precondition");
  BOOST_CHECK(fs::is_directory(volumes_dir() + "/inuse/_data"));
  ok({"rm", "user1"});
  BOOST_CHECK(volume("inuse")["users"].empty());
  ok({"volume", "rm", "inuse"});
  BOOST_CHECK(!fs::exists(volumes_dir() + "/inuse"));
}

BOOST_AUTO_TEST_CASE(claims_survive_kill_9_and_stale_ones_are_trimmed) {
  ok({"run", "-d", "--name", "keeper", "-v", "kept:/data", "demo", "sleep", "60"});
  ok({"volume", "create", "ghostly"});
  env().d->stop(SIGKILL);
  // While the daemon is down, a claim of a container that does not exist (what a crash
  // between a container's removal and its release leaves) goes into a volume's record.
  {
    auto db = cyto::store::state_db::open(env().d->state_dir() + "/state.db");
    BOOST_REQUIRE(db);
    auto rows = (*db)->all(cyto::volumes::kind_volume);
    BOOST_REQUIRE(rows);
    bool patched = false;
    for (auto& r : *rows) {
      if (r.key != "ghostly")
        continue;
      cyto::volumes::volume_row row;
      BOOST_REQUIRE(cyto::store::from_blob(r.data, row));
      row.info.users.push_back({std::string(64, 'e'), "ghost"});
      r.data = cyto::store::to_blob(row);
      BOOST_REQUIRE(!(*db)->put(r));
      patched = true;
    }
    BOOST_REQUIRE(patched);
  }
  env().start();
  // The real claim is still there: refused.
  auto err = fails({"volume", "rm", "kept"}, "failed_precondition");
  BOOST_CHECK_MESSAGE(contains(err, "keeper"), err);
  auto v = volume("kept");
  BOOST_REQUIRE_EQUAL(v["users"].size(), 1u);
  BOOST_CHECK_EQUAL(v["users"][0]["name"], "keeper");
  // The ghost's was trimmed at start.
  BOOST_CHECK(volume("ghostly")["users"].empty());
  ok({"volume", "rm", "ghostly"});
  ok({"rm", "-f", "keeper"});
  ok({"volume", "rm", "kept"});
  BOOST_CHECK(dir_names(volumes_dir()).empty());
}
