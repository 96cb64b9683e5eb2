#pragma once
// A busybox-static OCI bundle for tests that drive the real `cyto-runtime` (root): its
// own state root and cgroup root (cyto-test-*), and checks that nothing is left.

#include <random>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

namespace cyto::test {

using nlohmann::json;
namespace fs = std::filesystem;

inline constexpr const char* runtime_path = CYTO_RUNTIME_PATH;
inline constexpr const char* busybox = "/bin/busybox";

struct runtime_required {
  runtime_required() {
    require_root();
    if (::access(busybox, X_OK) != 0) {
      std::printf("SKIP: %s (busybox-static) is not installed\n", busybox);
      std::exit(77);
    }
  }
};

/// A bundle (rootfs = busybox + applet links), a state root and a cgroup root of its own.
struct bundle_fixture {
  temp_dir tmp;
  std::string bundle = tmp / "bundle";
  std::string rootfs = bundle + "/rootfs";
  std::string state_root = tmp / "state";
  std::string cg_root;
  json config;

  bundle_fixture() {
    std::random_device rd;
    cg_root = "cyto-test-rt" + std::to_string(rd() % 1000000);
    for (auto* d : {"bin", "proc", "dev", "sys", "tmp", "etc", "mnt"})
      fs::create_directories(rootfs + "/" + d);
    fs::copy_file(busybox, rootfs + "/bin/busybox");
    for (auto* a : {"sh", "true", "cat", "id", "hostname", "ls", "echo", "sleep", "touch", "mkdir",
                    "grep", "tty", "pwd", "mount", "wc", "head"})
      fs::create_symlink("busybox", rootfs + "/bin/" + a);
    config = base_config();
    // mkdtemp makes it 0700: a container whose root maps to another uid must traverse it.
    fs::permissions(tmp.path(),
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  }

  ~bundle_fixture() {
    // Whatever a failed test left: containers, then the cgroup root.
    std::error_code ec;
    for (auto& e : fs::directory_iterator{state_root, ec})
      run_process(
          {runtime_path, "--root", state_root, "delete", "--force", e.path().filename().string()});
    for (auto& m : host_cgroup_mounts()) {
      auto top = m.path + "/" + cg_root;
      if (!fs::exists(top, ec))
        continue;
      std::vector<fs::path> dirs;
      for (auto& d : fs::recursive_directory_iterator{top, ec})
        if (d.is_directory(ec))
          dirs.push_back(d.path());
      dirs.push_back(top);
      for (auto& d : dirs)
        for (auto& line : lines_of(read_text((d / "cgroup.procs").string())))
          ::kill(std::stoi(line), SIGKILL);
      std::sort(dirs.begin(), dirs.end(),
                [](auto& a, auto& b) { return a.string().size() > b.string().size(); });
      for (auto& d : dirs)
        ::rmdir(d.c_str());
    }
  }

  /// `cyto-runtime spec`'s default, made to run non-interactively under our cgroup root.
  json base_config() const {
    auto dir = tmp / "spec";
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto r = run_process({runtime_path, "spec", "--bundle", dir});
    BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto-runtime spec: " << r.err);
    auto c = json::parse(read_text(dir + "/config.json"));
    c["process"]["terminal"] = false;
    c["process"]["args"] = {"true"};
    c["process"]["env"] = {"PATH=/bin", "TERM=xterm"};
    c["root"]["readonly"] = false;
    c["hostname"] = "cyto-test";
    c["mounts"].push_back({{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"}});
    c["linux"]["cgroupsPath"] = "/" + cg_root + "/ctr";
    c["linux"]["maskedPaths"] = {"/proc/kcore", "/proc/timer_list", "/proc/fs"};
    c["linux"]["readonlyPaths"] = {"/proc/sys", "/proc/bus"};
    return c;
  }

  void args(const std::vector<std::string>& a) {
    config["process"]["args"] = a;
  }

  void write_config() const {
    write_text(bundle + "/config.json", config.dump(2));
  }

  process_result rt(std::vector<std::string> a) const {
    std::vector<std::string> argv{runtime_path, "--root", state_root};
    argv.insert(argv.end(), a.begin(), a.end());
    return run_process(argv, 30s);
  }

  /// `cyto-runtime create`: the container keeps the stdio it is given, so it goes to a
  /// file here (a pipe would stay open as long as the container lives).
  process_result create(const std::string& id, std::vector<std::string> extra = {}) const {
    write_config();
    std::vector<std::string> argv{runtime_path, "--root", state_root, "create", "--bundle", bundle};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(id);
    auto log = tmp / (id + ".log");
    child_process p{argv, log};
    int st = p.wait(30s);
    return {st, "", read_text(log)};
  }

  /// `cyto-runtime run` of the current config.
  process_result run(const std::string& id = "c1") const {
    write_config();
    return rt({"run", "--bundle", bundle, id});
  }

  /// Shell command inside the container; returns its stdout.
  std::string shell(const std::string& cmd, int expect = 0) {
    args({"sh", "-c", cmd});
    auto r = run();
    BOOST_CHECK_MESSAGE(r.code() == expect, "exit " << describe_status(r.status) << " (want "
                                                    << expect << "), stderr: " << r.err);
    return r.out;
  }

  std::string cgroup_dir(const char* controller) const {
    for (auto& m : host_cgroup_mounts())
      if (!m.v2 && std::find(m.options.begin(), m.options.end(), controller) != m.options.end())
        return m.path + "/" + cg_root;
    for (auto& m : host_cgroup_mounts())
      if (m.v2 && m.path == "/sys/fs/cgroup")
        return m.path + "/" + cg_root;
    return {};
  }

  /// Nothing left: no state dir, no cgroup, no process with its root in the rootfs.
  void check_nothing_left(const std::string& id = "c1") const {
    BOOST_CHECK_MESSAGE(!fs::exists(state_root + "/" + id), "state dir of " << id << " left");
    std::error_code ec;
    for (auto& m : host_cgroup_mounts())
      BOOST_CHECK_MESSAGE(!fs::exists(m.path + "/" + cg_root, ec),
                          "cgroup " << m.path << "/" << cg_root << " left");
    for (auto& p : fs::directory_iterator{"/proc", ec}) {
      auto name = p.path().filename().string();
      if (!std::isdigit(static_cast<unsigned char>(name[0])))
        continue;
      auto root = fs::read_symlink(p.path() / "root", ec);
      BOOST_CHECK_MESSAGE(ec || root.string().rfind(tmp.path(), 0) != 0,
                          "process " << name << " left with root " << root);
    }
    for (auto& line : lines_of(read_text("/proc/self/mountinfo")))
      BOOST_CHECK_MESSAGE(!contains(line, tmp.path()), "mount left: " << line);
  }

  /// A bad input: the command fails with `code` naming `what`, and leaves nothing.
  void expect_refused(const std::string& what, int code = 1,
                      const std::string& prefix = "cyto.invalid_argument") {
    auto r = run();
    BOOST_CHECK_MESSAGE(r.code() == code, "exit " << describe_status(r.status) << ", want " << code
                                                  << "; stderr: " << r.err);
    BOOST_CHECK_MESSAGE(contains(r.err, prefix) && contains(r.err, what),
                        "stderr should hold '" << prefix << "' and '" << what << "': " << r.err);
    check_nothing_left();
  }
};

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
    s.pop_back();
  return s;
}

} // namespace cyto::test
