// The container's filesystem: propagation, the rootfs bind, config mounts, devices,
// pivot_root, then readonly root, sysctl, readonly and masked paths. Runs in the
// container's first process, in its own mount namespace: nothing here reaches the host's.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "actors/containers/container_init.hpp"

namespace cyto::containers::detail {

namespace {

status sys_error(const std::string& what) {
  return from_errno(errno, what);
}

std::vector<std::string> split_path(const std::string& p) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= p.size()) {
    auto j = p.find('/', i);
    if (j == std::string::npos)
      j = p.size();
    if (j > i)
      out.push_back(p.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

/// `unsafe` resolved inside `root`: symlinks are followed as if `root` were "/", so no
/// path (or link) in the rootfs can make a mount land outside it.
result<std::string> secure_join(const std::string& root, const std::string& unsafe) {
  std::deque<std::string> todo;
  for (auto& c : split_path(unsafe))
    todo.push_back(c);
  std::vector<std::string> done;
  int links = 0;
  while (!todo.empty()) {
    auto c = todo.front();
    todo.pop_front();
    if (c == ".")
      continue;
    if (c == "..") {
      if (!done.empty())
        done.pop_back();
      continue;
    }
    std::string cur = root;
    for (auto& d : done)
      cur += "/" + d;
    cur += "/" + c;
    struct stat st{};
    if (::lstat(cur.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
      done.push_back(c);
      continue;
    }
    if (++links > 40)
      return status{"invalid_argument", "too many symlinks resolving " + unsafe + " in the rootfs"};
    char buf[PATH_MAX];
    auto n = ::readlink(cur.c_str(), buf, sizeof(buf) - 1);
    if (n < 0)
      return sys_error("readlink " + cur);
    std::string target{buf, static_cast<size_t>(n)};
    if (!target.empty() && target[0] == '/')
      done.clear();
    auto parts = split_path(target);
    todo.insert(todo.begin(), parts.begin(), parts.end());
  }
  std::string out = root;
  for (auto& d : done)
    out += "/" + d;
  return out;
}

status mkdir_all(const std::string& path, mode_t mode = 0755) {
  std::string cur;
  for (auto& c : split_path(path)) {
    cur += "/" + c;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST)
      return sys_error("mkdir " + cur);
  }
  return {};
}

status make_file(const std::string& path) {
  auto slash = path.rfind('/');
  if (auto st = mkdir_all(path.substr(0, slash)))
    return st;
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0 && errno != EISDIR)
    return sys_error("create " + path);
  if (fd >= 0)
    ::close(fd);
  return {};
}

struct mount_flags {
  unsigned long flags = 0;
  unsigned long clear = 0;
  std::vector<unsigned long> propagation;
  std::string data;
  bool bind = false;
  bool rec = false;
};

mount_flags parse_options(const oci::mount& m) {
  static const struct {
    const char* name;
    bool clear;
    unsigned long flag;
  } table[] = {
    {"ro", false, MS_RDONLY},          {"rw", true, MS_RDONLY},
    {"suid", true, MS_NOSUID},         {"nosuid", false, MS_NOSUID},
    {"dev", true, MS_NODEV},           {"nodev", false, MS_NODEV},
    {"exec", true, MS_NOEXEC},         {"noexec", false, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},   {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK},      {"nomand", true, MS_MANDLOCK},
    {"atime", true, MS_NOATIME},       {"noatime", false, MS_NOATIME},
    {"diratime", true, MS_NODIRATIME}, {"nodiratime", false, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},  {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME}, {"nostrictatime", true, MS_STRICTATIME},
    {"silent", false, MS_SILENT},      {"loud", true, MS_SILENT},
  };
  static const std::pair<const char*, unsigned long> prop[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC}};
  mount_flags f;
  f.bind = m.type == "bind";
  for (auto& o : m.options) {
    if (o == "bind") {
      f.bind = true;
      continue;
    }
    if (o == "rbind") {
      f.bind = f.rec = true;
      continue;
    }
    bool known = false;
    for (auto& t : table)
      if (o == t.name) {
        if (t.clear)
          f.flags &= ~t.flag, f.clear |= t.flag;
        else
          f.flags |= t.flag;
        known = true;
      }
    for (auto& [n, p] : prop)
      if (o == n)
        f.propagation.push_back(p), known = true;
    if (!known && o != "defaults" && o != "tmpcopyup")
      f.data += (f.data.empty() ? "" : ",") + o;
  }
  return f;
}

/// Flags of an existing mount that a remount inside a user namespace must keep (the
/// kernel refuses to clear locked nosuid/nodev/noexec/atime flags).
unsigned long locked_flags(const std::string& path) {
  struct statvfs sv{};
  if (::statvfs(path.c_str(), &sv) != 0)
    return 0;
  unsigned long out = 0;
  if (sv.f_flag & ST_NOSUID) out |= MS_NOSUID;
  if (sv.f_flag & ST_NODEV) out |= MS_NODEV;
  if (sv.f_flag & ST_NOEXEC) out |= MS_NOEXEC;
  if (sv.f_flag & ST_NOATIME) out |= MS_NOATIME;
  if (sv.f_flag & ST_NODIRATIME) out |= MS_NODIRATIME;
  if (sv.f_flag & ST_RELATIME) out |= MS_RELATIME;
  return out;
}

/// Makes every mount at and below `path` read-only (mount_setattr, Linux 5.12). An older
/// kernel without it has only the top mount read-only: a submount (of a bind's source)
/// stays writable there, so such a mount fails rather than look read-only.
status readonly_below(const std::string& path) {
  struct {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
  } attr{};
  constexpr uint64_t mount_attr_rdonly = 0x1;
  constexpr unsigned at_recursive = 0x8000;
  attr.attr_set = mount_attr_rdonly;
#ifndef SYS_mount_setattr
  constexpr long SYS_mount_setattr = 442;
#endif
  if (::syscall(SYS_mount_setattr, AT_FDCWD, path.c_str(), at_recursive | AT_SYMLINK_NOFOLLOW,
                &attr, sizeof(attr))
      == 0)
    return {};
  if (errno != ENOSYS)
    return sys_error("make the mounts below " + path + " read-only");
  // Without mount_setattr: fine as long as nothing is mounted below.
  std::FILE* mi = std::fopen("/proc/self/mountinfo", "re");
  if (!mi)
    return sys_error("read /proc/self/mountinfo");
  char buf[4096];
  bool below = false;
  auto prefix = path + "/";
  while (std::fgets(buf, sizeof(buf), mi)) {
    // "id parent major:minor root mountpoint ..."
    std::string l = buf;
    size_t pos = 0;
    for (int field = 0; field < 4 && pos != std::string::npos; ++field)
      pos = l.find(' ', pos + 1);
    if (pos == std::string::npos)
      continue;
    auto end = l.find(' ', pos + 1);
    auto mp = l.substr(pos + 1, end - pos - 1);
    below = below || mp.rfind(prefix, 0) == 0;
  }
  std::fclose(mi);
  if (below) {
    errno = ENOSYS;
    return sys_error("make the mounts below " + path + " read-only (mount_setattr)");
  }
  return {};
}

status bind_readonly(const std::string& path, bool in_userns) {
  if (::mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return sys_error("bind " + path);
  unsigned long keep = in_userns ? locked_flags(path) : 0;
  if (::mount(nullptr, path.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) != 0)
    return sys_error("remount " + path + " read-only");
  return {};
}

status mount_cgroup(const init_context& ctx, const std::string& dest, const mount_flags& f) {
  struct statfs sf{};
  if (::statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC) {
    if (::mount("cgroup2", dest.c_str(), "cgroup2", f.flags, nullptr) != 0)
      return sys_error("mount cgroup2 on " + dest);
    return {};
  }
  // v1 or hybrid: a tmpfs with the container's own cgroup of each hierarchy bound in.
  auto base = f.flags & ~MS_RDONLY;
  if (::mount("tmpfs", dest.c_str(), "tmpfs", base, "mode=755") != 0)
    return sys_error("mount tmpfs on " + dest);
  for (auto& dir : ctx.cgroup_dirs) {
    // /sys/fs/cgroup/<hierarchy>/... -> <dest>/<hierarchy>
    auto rest = dir.substr(std::strlen("/sys/fs/cgroup/"));
    auto name = rest.substr(0, rest.find('/'));
    auto target = dest + "/" + name;
    if (::mkdir(target.c_str(), 0755) != 0 && errno != EEXIST)
      return sys_error("mkdir " + target);
    if (::mount(dir.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return sys_error("bind " + dir + " on " + target);
    if (f.flags & MS_RDONLY)
      ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | base, nullptr);
  }
  if ((f.flags & MS_RDONLY)
      && ::mount(nullptr, dest.c_str(), nullptr, MS_REMOUNT | f.flags, "mode=755") != 0)
    return sys_error("remount " + dest + " read-only");
  return {};
}

status do_mount(const init_context& ctx, const oci::mount& m, const std::string& rootfs,
                bool in_userns) {
  auto dest = secure_join(rootfs, m.destination);
  if (!dest)
    return dest.error();
  auto f = parse_options(m);
  auto where = "mounts " + m.destination;
  if (f.bind) {
    struct stat st{};
    if (::stat(m.source.c_str(), &st) != 0)
      return sys_error(where + ": source " + m.source);
    if (auto s = S_ISDIR(st.st_mode) ? mkdir_all(*dest) : make_file(*dest))
      return s;
    if (::mount(m.source.c_str(), dest->c_str(), nullptr, MS_BIND | (f.rec ? MS_REC : 0), nullptr)
        != 0)
      return sys_error(where + ": bind " + m.source);
    auto extra = f.flags & ~(MS_REMOUNT);
    if (extra != 0 || f.clear != 0) {
      // A bind remount sets exactly the flags it is given: the source's nosuid, nodev,
      // noexec and atime flags are kept unless an option clears them (never in a user
      // namespace, where the kernel locks them).
      unsigned long keep = locked_flags(*dest);
      if (!in_userns)
        keep &= ~f.clear;
      if (::mount(nullptr, dest->c_str(), nullptr, MS_BIND | MS_REMOUNT | extra | keep, nullptr)
          != 0)
        return sys_error(where + ": remount with options");
    }
    // A remount changes the top mount only: "ro" on an rbind makes the mounts below it
    // read-only too, or one of them would stay writable.
    if (f.rec && (f.flags & MS_RDONLY))
      if (auto s = readonly_below(*dest))
        return status{s.code(), where + ": " + s.text()};
  } else {
    if (auto s = mkdir_all(*dest))
      return s;
    if (m.type == "cgroup" || m.type == "cgroup2") {
      if (auto s = mount_cgroup(ctx, *dest, f))
        return status{s.code(), where + ": " + s.text()};
    } else if (::mount(m.source.c_str(), dest->c_str(), m.type.c_str(), f.flags,
                       f.data.empty() ? nullptr : f.data.c_str())
               != 0) {
      int err = errno;
      // sysfs belongs to a network namespace: without one of our own (in a user
      // namespace) the host's /sys is bound read-only instead, as runc does.
      if (m.type == "sysfs" && err == EPERM) {
        if (::mount("/sys", dest->c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
          return sys_error(where + ": bind /sys");
        ::mount(nullptr, dest->c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY
                                                   | locked_flags(*dest), nullptr);
      } else {
        errno = err;
        return sys_error(where + ": mount " + m.type + " (options " + f.data + ")");
      }
    }
  }
  for (auto p : f.propagation)
    if (::mount(nullptr, dest->c_str(), nullptr, p, nullptr) != 0)
      return sys_error(where + ": set propagation");
  return {};
}

struct default_dev {
  const char* path;
  unsigned major, minor;
};
constexpr default_dev default_devices[] = {{"/dev/null", 1, 3},    {"/dev/zero", 1, 5},
                                           {"/dev/full", 1, 7},    {"/dev/random", 1, 8},
                                           {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};

status make_device(const std::string& rootfs, const oci::device& d, bool in_userns) {
  auto dest = secure_join(rootfs, d.path);
  if (!dest)
    return dest.error();
  struct stat st{};
  if (::lstat(dest->c_str(), &st) == 0)
    ::unlink(dest->c_str());
  if (in_userns) {
    // mknod is refused in a user namespace: bind the host's node instead.
    if (auto s = make_file(*dest))
      return s;
    if (::mount(d.path.c_str(), dest->c_str(), nullptr, MS_BIND, nullptr) != 0)
      return sys_error("bind device " + d.path);
    return {};
  }
  auto slash = dest->rfind('/');
  if (auto s = mkdir_all(dest->substr(0, slash)))
    return s;
  mode_t type = d.type == 'b' ? S_IFBLK : d.type == 'p' ? S_IFIFO : S_IFCHR;
  mode_t mode = d.file_mode.value_or(0666) & 07777;
  if (::mknod(dest->c_str(), type | mode, makedev(d.major, d.minor)) != 0)
    return sys_error("mknod " + d.path);
  if (::chmod(dest->c_str(), mode) != 0)
    return sys_error("chmod " + d.path);
  if ((d.uid || d.gid) && ::chown(dest->c_str(), d.uid.value_or(0), d.gid.value_or(0)) != 0)
    return sys_error("chown " + d.path);
  return {};
}

status make_devices(const init_context& ctx, const std::string& rootfs, bool in_userns) {
  auto& devs = ctx.cfg->linux.devices;
  for (auto& dd : default_devices) {
    bool listed = false;
    for (auto& d : devs)
      listed = listed || d.path == dd.path;
    if (listed)
      continue;
    oci::device d{'c', dd.path, dd.major, dd.minor, 0666, std::nullopt, std::nullopt};
    if (auto s = make_device(rootfs, d, in_userns))
      return s;
  }
  for (auto& d : devs)
    if (auto s = make_device(rootfs, d, in_userns))
      return s;
  std::pair<const char*, const char*> links[] = {{"/proc/self/fd", "fd"},
                                                 {"/proc/self/fd/0", "stdin"},
                                                 {"/proc/self/fd/1", "stdout"},
                                                 {"/proc/self/fd/2", "stderr"},
                                                 {"pts/ptmx", "ptmx"}};
  auto dev = secure_join(rootfs, "/dev");
  if (!dev)
    return dev.error();
  for (auto& [target, name] : links) {
    auto p = *dev + "/" + name;
    if (std::string{name} == "ptmx")
      ::unlink(p.c_str()); // the devpts instance's own ptmx, never the host's
    if (::symlink(target, p.c_str()) != 0 && errno != EEXIST)
      return sys_error(std::string{"symlink /dev/"} + name);
  }
  return {};
}

/// shared and unbindable go on the new root last: earlier they would leak our mounts to
/// the host (shared) or forbid the binds of the set-up (unbindable).
unsigned long late_propagation(const std::string& prop) {
  return prop == "shared"        ? MS_SHARED
         : prop == "rshared"     ? MS_SHARED | MS_REC
         : prop == "unbindable"  ? MS_UNBINDABLE
         : prop == "runbindable" ? MS_UNBINDABLE | MS_REC
                                 : 0;
}

} // namespace

status setup_rootfs(const init_context& ctx, bool in_userns,
                    const std::function<status()>& before_pivot) {
  auto& cfg = *ctx.cfg;
  auto& prop = cfg.linux.rootfs_propagation;
  unsigned long after = late_propagation(prop);
  unsigned long root_prop = MS_SLAVE | MS_REC;
  if (after || prop == "private" || prop == "rprivate")
    root_prop = MS_PRIVATE | MS_REC;
  if (::mount(nullptr, "/", nullptr, root_prop, nullptr) != 0)
    return sys_error("set the propagation of /");
  const auto& rootfs = cfg.root_path;
  if (::mount(rootfs.c_str(), rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return sys_error("bind the rootfs " + rootfs);
  for (auto& m : cfg.mounts)
    if (auto s = do_mount(ctx, m, rootfs, in_userns))
      return s;
  if (auto s = make_devices(ctx, rootfs, in_userns))
    return s;
  if (before_pivot)
    if (auto s = before_pivot())
      return s;
  if (::chdir(rootfs.c_str()) != 0)
    return sys_error("chdir " + rootfs);
  // pivot_root(".", "."): the old root ends up on top of the new one and is detached.
  if (::syscall(SYS_pivot_root, ".", ".") != 0)
    return sys_error("pivot_root into " + rootfs);
  if (::umount2(".", MNT_DETACH) != 0)
    return sys_error("detach the old root");
  if (::chdir("/") != 0)
    return sys_error("chdir /");
  return {};
}

status finish_rootfs(const init_context& ctx) {
  auto& cfg = *ctx.cfg;
  bool in_userns = cfg.linux.find(CLONE_NEWUSER) != nullptr;
  for (auto& [k, v] : cfg.linux.sysctl) {
    std::string path = "/proc/sys/" + k;
    for (size_t i = 10; i < path.size(); ++i)
      if (path[i] == '.')
        path[i] = '/';
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return sys_error("linux.sysctl " + k + ": open " + path);
    auto n = ::write(fd, v.data(), v.size());
    int err = errno;
    ::close(fd);
    if (n < 0) {
      errno = err;
      return sys_error("linux.sysctl " + k + ": write \"" + v + "\"");
    }
  }
  for (auto& p : cfg.linux.readonly_paths) {
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0)
      continue; // a path this kernel does not have
    if (auto s = bind_readonly(p, in_userns))
      return s;
  }
  for (auto& p : cfg.linux.masked_paths) {
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0)
      continue;
    int rc = S_ISDIR(st.st_mode)
               ? ::mount("tmpfs", p.c_str(), "tmpfs", MS_RDONLY, nullptr)
               : ::mount("/dev/null", p.c_str(), nullptr, MS_BIND, nullptr);
    if (rc != 0)
      return sys_error("mask " + p);
  }
  if (cfg.root_readonly) {
    unsigned long keep = in_userns ? locked_flags("/") : 0;
    if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) != 0)
      return sys_error("remount the rootfs read-only");
  }
  auto& prop = cfg.linux.rootfs_propagation;
  if (auto after = late_propagation(prop); after && ::mount(nullptr, "/", nullptr, after, nullptr) != 0)
    return sys_error("linux.rootfsPropagation: make / " + prop);
  return {};
}

} // namespace cyto::containers::detail
