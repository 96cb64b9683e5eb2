#include "actors/vms/root_disk.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "bus/errc.hpp"

extern char** environ;

namespace cyto::vms {

namespace {

namespace fs = std::filesystem;

constexpr const char* tmp_infix = ".tmp-";

std::string describe_wait(int status) {
  if (WIFEXITED(status))
    return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

struct tree_size {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
};

/// Blocks and inodes of a tree (no symlinks followed), as ext4 will need them.
tree_size measure(const std::string& root) {
  tree_size out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it{root, fs::directory_options::skip_permission_denied, ec},
       end;
       !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0)
      continue;
    ++out.inodes;
    out.bytes += (static_cast<uint64_t>(st.st_size) + 4095) / 4096 * 4096;
  }
  return out;
}

} // namespace

caf::expected<std::string> find_tool(const std::string& tool, const std::string& package,
                                     const std::string& what) {
  auto usable = [](const std::string& p) { return ::access(p.c_str(), X_OK) == 0; };
  if (tool.find('/') != std::string::npos) {
    if (usable(tool))
      return tool;
    return make_error(errc::unavailable, what + " " + tool + " is missing or not executable (" +
                                             "install the Debian package " + package + ")");
  }
  const char* path = ::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  // Tools of the super-user (mke2fs) live in sbin, which a service's PATH may lack.
  dirs += ":/usr/local/sbin:/usr/sbin:/sbin";
  size_t start = 0;
  while (start <= dirs.size()) {
    auto end = dirs.find(':', start);
    auto dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty() && usable(dir + "/" + tool))
      return dir + "/" + tool;
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return make_error(errc::unavailable,
                    tool + " not found in PATH (install the Debian package " + package + ")");
}

caf::error run_tool(const std::vector<std::string>& argv, const std::string& what) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return make_error(errc::resource_exhausted, what + ": pipe: " + std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv.at(0).c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(p[1]);
  if (rc != 0) {
    ::close(p[0]);
    return make_error(errc::unavailable, what + ": run " + argv[0] + ": " + std::strerror(rc));
  }
  // Read to EOF before waiting: a chatty tool must not block on a full pipe.
  std::string output;
  char buf[4096];
  for (;;) {
    auto n = ::read(p[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    output.append(buf, static_cast<size_t>(n));
    if (output.size() > 16384)
      output.erase(0, output.size() - 8192);
  }
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return {};
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r'))
    output.pop_back();
  if (output.size() > 600)
    output = "..." + output.substr(output.size() - 600);
  return make_error(errc::internal, what + ": " + fs::path{argv[0]}.filename().string() +
                                        " failed (" + describe_wait(status) + ")" +
                                        (output.empty() ? std::string{} : ": " + output));
}

caf::expected<std::string> disk_file_name(const std::string& digest) {
  auto colon = digest.find(':');
  auto hex = colon == std::string::npos ? std::string{} : digest.substr(colon + 1);
  if (digest.compare(0, colon, "sha256") != 0 || hex.size() != 64 ||
      hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    return make_error(errc::invalid_argument, "image digest '" + digest + "' is not sha256:<hex>");
  return hex + ".ext4";
}

caf::error build_ext4(const std::string& mke2fs, const std::string& root, const std::string& disk) {
  static std::atomic<uint64_t> counter{0};
  auto size = measure(root);
  // Room to spare for the guest's own writes (the file is sparse: unused room costs
  // nothing on the host), and inodes for many small files.
  uint64_t bytes = std::max<uint64_t>(256ull << 20, size.bytes * 2 + (128ull << 20));
  bytes = (bytes + (1ull << 20) - 1) & ~((1ull << 20) - 1);
  uint64_t inodes = std::max<uint64_t>(16384, size.inodes * 2 + 4096);
  auto tmp = disk + tmp_infix + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(errc::unavailable, "create " + tmp + ": " + std::strerror(errno));
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    auto err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(errc::resource_exhausted, "size " + tmp + ": " + std::strerror(err));
  }
  ::close(fd);
  auto err = run_tool({mke2fs, "-q", "-F", "-t", "ext4", "-L", root_disk_label, "-N",
                       std::to_string(inodes), "-E", "root_owner=0:0", "-d", root, tmp},
                      "make the root disk " + disk + " from " + root);
  if (!err) {
    fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0)
      err = make_error(errc::unavailable, "sync " + tmp + ": " + std::strerror(errno));
    if (fd >= 0)
      ::close(fd);
  }
  if (!err && ::rename(tmp.c_str(), disk.c_str()) != 0)
    err = make_error(errc::unavailable,
                     "rename " + tmp + " to " + disk + ": " + std::strerror(errno));
  if (err)
    ::unlink(tmp.c_str());
  return err;
}

caf::error make_overlay(const std::string& qemu_img, const std::string& disk,
                        const std::string& overlay) {
  auto err = run_tool({qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", disk, overlay},
                      "make the root overlay " + overlay);
  if (err)
    ::unlink(overlay.c_str());
  return err;
}

caf::expected<vm_image_root> guest_command(const std::string& config_json,
                                           const std::vector<std::string>& args) {
  auto doc = nlohmann::json::parse(config_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return make_error(errc::invalid_argument, "the image config is not JSON");
  auto cfg = doc.value("config", nlohmann::json::object());
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    if (cfg.is_object() && cfg.contains(key) && cfg[key].is_array())
      for (auto& x : cfg[key])
        if (x.is_string())
          out.push_back(x.get<std::string>());
    return out;
  };
  vm_image_root out;
  out.command = strings("Entrypoint");
  auto rest = args.empty() ? strings("Cmd") : args;
  out.command.insert(out.command.end(), rest.begin(), rest.end());
  if (out.command.empty())
    return make_error(errc::invalid_argument,
                      "the image has no Entrypoint or Cmd: give the command after '--'");
  out.env = strings("Env");
  bool has_path = false;
  for (auto& e : out.env)
    has_path = has_path || e.rfind("PATH=", 0) == 0;
  if (!has_path)
    out.env.insert(out.env.begin(),
                   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  out.workdir = cfg.is_object() ? cfg.value("WorkingDir", std::string{}) : std::string{};
  if (out.workdir.empty() || out.workdir.front() != '/')
    out.workdir = "/" + out.workdir;
  return out;
}

std::vector<std::string> boot_init_args(const vm_image_root& root) {
  std::vector<std::string> out{"-w", root.workdir};
  for (auto& e : root.env) {
    out.push_back("-e");
    out.push_back(e);
  }
  out.push_back("--cmd");
  out.insert(out.end(), root.command.begin(), root.command.end());
  return out;
}

void clean_disk_dir(const std::string& dir) {
  std::error_code ec;
  for (auto& e : fs::directory_iterator{dir, ec}) {
    auto name = e.path().filename().string();
    if (name.find(tmp_infix) != std::string::npos && e.is_regular_file(ec))
      fs::remove(e.path(), ec);
    else if (name.rfind(disk_mount_prefix, 0) == 0 && e.is_directory(ec))
      ::rmdir(e.path().c_str()); // fails (and stays) while something is mounted there
  }
}

} // namespace cyto::vms
