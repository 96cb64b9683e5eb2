#include "actors/containers/copy.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <utility>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <caf/all.hpp>

#include "bus/errc.hpp"

namespace cyto::containers {

namespace {

/// Owns a descriptor.
class unique_fd {
public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~unique_fd() {
    reset();
  }
  int get() const noexcept {
    return fd_;
  }
  explicit operator bool() const noexcept {
    return fd_ >= 0;
  }
  void reset() noexcept {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

private:
  int fd_ = -1;
};

struct archive_read_closer {
  void operator()(archive* a) const noexcept {
    archive_read_free(a);
  }
};
struct archive_write_closer {
  void operator()(archive* a) const noexcept {
    archive_write_free(a);
  }
};
struct entry_closer {
  void operator()(archive_entry* e) const noexcept {
    archive_entry_free(e);
  }
};

std::string errno_text() {
  return std::strerror(errno);
}

caf::error sys_error(const std::string& what) {
  auto e = errno;
  return make_error(e == ENOSPC || e == EDQUOT ? errc::resource_exhausted : errc::internal,
                    "cp: " + what + ": " + std::strerror(e));
}

int openat2_fd(int dir, const std::string& path, uint64_t flags, uint64_t resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(
      ::syscall(SYS_openat2, dir, path.empty() ? "." : path.c_str(), &how, sizeof(how)));
}

/// `path` (absolute in the container) opened inside the rootfs `root`.
int open_in_root(int root, const std::string& path, uint64_t flags) {
  return openat2_fd(root, path, flags, RESOLVE_IN_ROOT);
}

/// `rel` below the directory `base`, through no symlink.
int open_beneath(int base, const std::string& rel, uint64_t flags) {
  return openat2_fd(base, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
}

/// The components of `path` without "", "." (".." kept: the caller decides).
std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find('/', i);
    if (j == std::string::npos)
      j = path.size();
    auto c = path.substr(i, j - i);
    if (!c.empty() && c != ".")
      out.push_back(c);
    i = j + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& cs, size_t from = 0, size_t to = SIZE_MAX) {
  std::string out;
  for (size_t i = from; i < std::min(to, cs.size()); ++i)
    out += (out.empty() ? "" : "/") + cs[i];
  return out;
}

/// A tar member's name as components; false (with why) for absolute names and "..".
bool clean_member(const char* raw, std::vector<std::string>& out, std::string& why) {
  std::string name = raw ? raw : "";
  out = components(name);
  if (!name.empty() && name.front() == '/' && !out.empty()) {
    why = "absolute names are not allowed";
    return false;
  }
  if (std::find(out.begin(), out.end(), "..") != out.end()) {
    why = "'..' is not allowed in names";
    return false;
  }
  return true;
}

struct session_state {
  static constexpr const char* name = "container-copy";
  copy_target target;
  std::string path;
  /// Empty: a copy out of the container.
  std::string source;
  unique_fd root;
  unique_fd spool;
  /// In: the directory entries go below (absolute in the container), and how the tar's
  /// top-level name is renamed ("" with strip: dropped, SRC/. into an existing dir).
  std::string base;
  std::string new_top;
  bool strip = false;
  bool finished = false;
};

using session_ptr = copy_stream_actor::stateful_pointer<session_state>;

caf::error make_spool(session_state& st) {
  auto tmpl = st.target.spool_dir + "/.cp-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  int fd = ::mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0)
    return sys_error("make a spool file in " + st.target.spool_dir);
  ::unlink(buf.data());
  st.spool = unique_fd{fd};
  return {};
}

caf::error open_root(session_state& st) {
  st.root = unique_fd{::open(st.target.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (!st.root)
    return make_error(errc::failed_precondition,
                      "cp: the root file system of container " + st.target.container +
                          " is not there (" + st.target.rootfs + ": " + errno_text() + ")");
  return {};
}

/// Where `fd` (opened inside the rootfs) is, as an absolute path in the container.
std::string path_in_container(const session_state& st, int fd) {
  char buf[PATH_MAX];
  auto link = "/proc/self/fd/" + std::to_string(fd);
  auto n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n < 0)
    return {};
  std::string host{buf, static_cast<size_t>(n)};
  char* real = ::realpath(st.target.rootfs.c_str(), nullptr);
  std::string root = real ? real : st.target.rootfs;
  std::free(real);
  if (host == root)
    return "/";
  if (host.compare(0, root.size() + 1, root + "/") == 0)
    return host.substr(root.size());
  return {};
}

/// cyto.failed_precondition when the container path `p` is on one of its mounts.
caf::error check_mounts(const session_state& st, const std::string& p) {
  for (auto& m : st.target.mounts) {
    auto t = "/" + join(components(m));
    if (p == t || p.compare(0, t.size() + 1, t + "/") == 0 || t == "/")
      return make_error(errc::failed_precondition,
                        "cp: " + p + " is on the container's mount at " + t +
                            " (-v/--tmpfs): its files are not in the container's root file "
                            "system; copy through the mount's source (or cyto exec)");
  }
  return {};
}

/// The container path as given, absolute.
std::string absolute(const std::string& path) {
  return path.empty() || path.front() != '/' ? "/" + path : path;
}

// -- out --------------------------------------------------------------------------------

class tar_out {
public:
  explicit tar_out(session_state& st) : st_(st), a_(archive_write_new()) {}

  caf::error open() {
    archive_write_set_format_pax_restricted(a_.get());
    archive_write_set_bytes_in_last_block(a_.get(), 1);
    if (archive_write_open_fd(a_.get(), st_.spool.get()) != ARCHIVE_OK)
      return fail("open the tar");
    return {};
  }

  /// Adds the object behind the O_PATH descriptor `fd` as `name`, and what is below it.
  caf::error add(int fd, const std::string& name) {
    struct stat sb{};
    if (::fstatat(fd, "", &sb, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("stat " + name);
    if (S_ISSOCK(sb.st_mode) || S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode))
      return {}; // not copied (see the header)
    std::unique_ptr<archive_entry, entry_closer> e{archive_entry_new()};
    archive_entry_set_pathname(e.get(), name.c_str());
    archive_entry_copy_stat(e.get(), &sb);
    if (!S_ISREG(sb.st_mode))
      archive_entry_set_size(e.get(), 0);
    if (S_ISLNK(sb.st_mode)) {
      std::array<char, PATH_MAX> target{};
      auto n = ::readlinkat(fd, "", target.data(), target.size() - 1);
      if (n < 0)
        return sys_error("read the symlink " + name);
      archive_entry_set_symlink(e.get(), std::string(target.data(), n).c_str());
    }
    unique_fd data;
    if (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode)) {
      auto self = "/proc/self/fd/" + std::to_string(fd);
      data = unique_fd{::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY |
                                                (S_ISDIR(sb.st_mode) ? O_DIRECTORY : 0))};
      if (!data)
        return sys_error("open " + name);
    }
    if (archive_write_header(a_.get(), e.get()) != ARCHIVE_OK)
      return fail("write the header of " + name);
    if (S_ISREG(sb.st_mode)) {
      std::vector<char> buf(1 << 17);
      off_t left = sb.st_size;
      while (left > 0) {
        auto n = ::read(data.get(), buf.data(), std::min<off_t>(left, buf.size()));
        if (n < 0 && errno == EINTR)
          continue;
        if (n < 0)
          return sys_error("read " + name);
        if (n == 0)
          break; // shrank meanwhile: libarchive pads the entry
        if (archive_write_data(a_.get(), buf.data(), static_cast<size_t>(n)) < 0)
          return fail("write " + name);
        left -= n;
      }
    }
    if (S_ISDIR(sb.st_mode))
      return add_children(data, name);
    return {};
  }

  caf::error close() {
    if (archive_write_close(a_.get()) != ARCHIVE_OK)
      return fail("finish the tar");
    return {};
  }

private:
  caf::error add_children(unique_fd& dir, const std::string& name) {
    int dup = ::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0);
    DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!d) {
      if (dup >= 0)
        ::close(dup);
      return sys_error("list " + name);
    }
    std::vector<std::string> names;
    while (auto* ent = ::readdir(d))
      if (std::strcmp(ent->d_name, ".") != 0 && std::strcmp(ent->d_name, "..") != 0)
        names.emplace_back(ent->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (auto& n : names) {
      unique_fd child{::openat(dir.get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)};
      if (!child)
        return sys_error("open " + name + "/" + n);
      auto child_name = name == "." ? n : name + "/" + n;
      if (auto err = add(child.get(), child_name))
        return err;
    }
    return {};
  }

  caf::error fail(const std::string& what) {
    const char* text = archive_error_string(a_.get());
    return make_error(errc::internal, "cp: " + what + ": " + (text ? text : "libarchive failed"));
  }

  session_state& st_;
  std::unique_ptr<archive, archive_write_closer> a_;
};

caf::error start_out(session_state& st) {
  auto path = absolute(st.path);
  // A trailing "/" or "/." follows a last symlink and must name a directory.
  bool as_dir = path.size() > 1 && (path.back() == '/' || path.ends_with("/."));
  auto cs = components(path);
  if (auto err = check_mounts(st, "/" + join(cs)))
    return err;
  int fd = open_in_root(st.root.get(), path, O_PATH | (as_dir ? 0 : O_NOFOLLOW));
  if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
    return make_error(errc::not_found,
                      "cp: container " + st.target.container + " has no " + path);
  if (fd < 0)
    return sys_error("open " + path + " in container " + st.target.container);
  unique_fd obj{fd};
  struct stat sb{};
  if (::fstatat(obj.get(), "", &sb, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
    return sys_error("stat " + path);
  if (as_dir && !S_ISDIR(sb.st_mode))
    return make_error(errc::invalid_argument, "cp: " + path + " is not a directory");
  // Where it really is: a symlink on the way may have led onto a mount.
  auto real = S_ISLNK(sb.st_mode) ? "/" + join(cs, 0, cs.size() - 1) : path_in_container(st, fd);
  if (auto err = check_mounts(st, real.empty() ? path : real))
    return err;
  std::string top = cs.empty() ? "." : cs.back();
  if (top == "..")
    top = ".";
  tar_out out{st};
  if (auto err = out.open())
    return err;
  if (auto err = out.add(obj.get(), top))
    return err;
  if (auto err = out.close())
    return err;
  if (::lseek(st.spool.get(), 0, SEEK_SET) != 0)
    return sys_error("rewind the spool");
  return {};
}

// -- in ---------------------------------------------------------------------------------

caf::error start_in(session_state& st) {
  auto& s = st.source;
  if (s != "file" && s != "directory" && s != "contents" && s != "archive")
    return make_error(errc::invalid_argument,
                      "cp: source '" + s + "' is none of file, directory, contents, archive");
  if (st.target.read_only)
    return make_error(errc::failed_precondition,
                      "cp: container " + st.target.container +
                          " has a read-only root file system (--read-only)");
  auto path = absolute(st.path);
  bool slash = path.size() > 1 && path.back() == '/';
  auto cs = components(path);
  if (auto err = check_mounts(st, "/" + join(cs)))
    return err;
  unique_fd dest{open_in_root(st.root.get(), path, O_PATH)};
  struct stat sb{};
  bool exists = dest && ::fstat(dest.get(), &sb) == 0;
  if (!exists && errno != ENOENT && errno != ENOTDIR)
    return sys_error("open " + path + " in container " + st.target.container);
  if (exists && S_ISDIR(sb.st_mode)) {
    st.base = path_in_container(st, dest.get());
    st.strip = s == "contents" || s == "archive";
  } else if (s == "archive") {
    return make_error(exists ? errc::invalid_argument : errc::not_found,
                      "cp: " + path + (exists ? " is not a directory" : " does not exist") +
                          " in container " + st.target.container +
                          " (a tar from stdin goes into an existing directory)");
  } else if (exists) {
    if (s != "file")
      return make_error(errc::invalid_argument,
                        "cp: cannot copy a directory onto the file " + path);
    if (slash)
      return make_error(errc::invalid_argument, "cp: " + path + " is not a directory");
  } else if (slash && s == "file") {
    return make_error(errc::not_found, "cp: the directory " + path + " does not exist in container " +
                                           st.target.container);
  }
  if (st.base.empty()) {
    // It becomes `path`: its parent must be a directory already.
    if (cs.empty())
      return make_error(errc::invalid_argument, "cp: cannot replace /");
    auto parent = "/" + join(cs, 0, cs.size() - 1);
    unique_fd p{open_in_root(st.root.get(), parent, O_PATH | O_DIRECTORY)};
    if (!p)
      return make_error(errc::not_found, "cp: the parent directory " + parent +
                                             " of " + path + " does not exist in container " +
                                             st.target.container);
    st.base = path_in_container(st, p.get());
    st.new_top = cs.back();
  }
  if (st.base.empty())
    return make_error(errc::internal, "cp: cannot tell where " + path + " is");
  return check_mounts(st, st.base == "/" ? "/" + st.new_top : st.base + "/" + st.new_top);
}

/// One entry of the tar, where it goes below the base directory.
struct planned {
  std::string rel;
  mode_t type = 0;
  /// Hard links: the target, mapped the same way.
  std::string link;
};

class tar_in {
public:
  explicit tar_in(session_state& st) : st_(st) {}

  /// Reads the spool through; `each` runs for each entry kept (not the one stripped).
  template <class F>
  caf::error read(F&& each) {
    if (::lseek(st_.spool.get(), 0, SEEK_SET) != 0)
      return sys_error("rewind the spool");
    std::unique_ptr<archive, archive_read_closer> a{archive_read_new()};
    archive_read_support_format_tar(a.get());
    archive_read_support_format_gnutar(a.get());
    archive_read_support_filter_all(a.get());
    if (archive_read_open_fd(a.get(), st_.spool.get(), 1 << 16) != ARCHIVE_OK)
      return bad_tar(a.get(), "no tar");
    archive_entry* e = nullptr;
    int r;
    bool first = true;
    while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK) {
      std::vector<std::string> cs;
      std::string why;
      const char* raw = archive_entry_pathname(e);
      std::string name = raw ? raw : "";
      if (!clean_member(raw, cs, why))
        return escaped(name, why);
      planned p;
      p.type = archive_entry_filetype(e);
      if (st_.source != "archive") {
        if (first) {
          if (cs.size() != 1)
            return make_error(errc::invalid_argument,
                              "cp: the tar's first entry '" + name + "' is not one name");
          top_ = cs.front();
          bool dir = p.type == AE_IFDIR;
          if (dir != (st_.source != "file"))
            return make_error(errc::invalid_argument,
                              "cp: the tar holds a " + std::string{dir ? "directory" : "file"} +
                                  " but was announced as " + st_.source);
        } else if (cs.empty() || cs.front() != top_) {
          return escaped(name, "every entry must be below '" + top_ + "'");
        }
        first = false;
        map(cs);
      }
      if (cs.empty())
        continue; // the base directory itself
      p.rel = join(cs);
      if (const char* hl = archive_entry_hardlink(e)) {
        std::vector<std::string> ls;
        if (!clean_member(hl, ls, why))
          return escaped(name, "its link target " + std::string{hl} + ": " + why);
        if (st_.source != "archive") {
          if (ls.empty() || ls.front() != top_)
            return escaped(name, "its link target must be below '" + top_ + "'");
          map(ls);
        }
        if (ls.empty())
          return escaped(name, "a hard link to a directory");
        p.link = join(ls);
      } else if (p.type != AE_IFREG && p.type != AE_IFDIR && p.type != AE_IFLNK &&
                 p.type != AE_IFIFO) {
        return make_error(errc::invalid_argument,
                          "cp: tar entry '" + name + "' is a " +
                              (p.type == AE_IFCHR || p.type == AE_IFBLK ? "device node"
                                                                         : "socket") +
                              ": refused");
      }
      if (auto err = each(p, a.get(), e))
        return err;
    }
    if (r != ARCHIVE_EOF)
      return bad_tar(a.get(), "truncated or corrupt");
    if (first && st_.source != "archive")
      return make_error(errc::invalid_argument, "cp: the tar is empty");
    return {};
  }

  /// Every entry checked, against the tar and what is in the container, before any write.
  caf::error check(int base) {
    std::set<std::string> links, files; // symlinks and other non-directories the tar makes
    return read([&](const planned& p, archive*, archive_entry*) -> caf::error {
      auto cs = components(p.rel);
      for (size_t i = 1; i < cs.size(); ++i) {
        auto up = join(cs, 0, i);
        if (links.count(up))
          return escaped(p.rel, "it would be written through the symlink " + up);
        if (files.count(up))
          return escaped(p.rel, "it would be written below the file " + up);
      }
      if (p.type == AE_IFLNK)
        links.insert(p.rel);
      else if (p.type != AE_IFDIR || !p.link.empty())
        files.insert(p.rel);
      if (auto err = check_mounts(st_, (st_.base == "/" ? "" : st_.base) + "/" + p.rel))
        return err;
      unique_fd have{open_beneath(base, p.rel, O_PATH | O_NOFOLLOW)};
      if (!have && errno == ELOOP)
        return escaped(p.rel, "it would be written through a symlink in the container");
      if (!have && errno == ENOTDIR)
        return make_error(errc::invalid_argument,
                          "cp: " + where(p.rel) + ": a parent is not a directory");
      if (!have && errno == EXDEV)
        return escaped(p.rel, "it leaves the destination");
      if (!have && errno != ENOENT)
        return sys_error("look at " + where(p.rel));
      if (!have)
        return {};
      struct stat sb{};
      if (::fstat(have.get(), &sb) != 0)
        return sys_error("stat " + where(p.rel));
      bool is_dir = S_ISDIR(sb.st_mode);
      if (p.type == AE_IFDIR && !p.link.size() && !is_dir)
        return make_error(errc::invalid_argument,
                          "cp: cannot copy a directory onto the file " + where(p.rel));
      if ((p.type != AE_IFDIR || !p.link.empty()) && is_dir)
        return make_error(errc::invalid_argument,
                          "cp: cannot replace the directory " + where(p.rel) +
                              " with a non-directory");
      return {};
    });
  }

  /// Writes the entries (after check()).
  caf::error write(int base) {
    std::vector<std::pair<std::string, archive_entry*>> dirs;
    auto free_dirs = [&] {
      for (auto& [n, e] : dirs)
        archive_entry_free(e);
    };
    auto err = read([&](const planned& p, archive* a, archive_entry* e) -> caf::error {
      auto cs = components(p.rel);
      auto leaf = cs.back();
      unique_fd parent;
      if (auto err = make_parents(base, cs, parent))
        return err;
      if (p.type == AE_IFDIR && p.link.empty()) {
        if (::mkdirat(parent.get(), leaf.c_str(), 0700) != 0 && errno != EEXIST)
          return sys_error("make the directory " + where(p.rel));
        dirs.emplace_back(p.rel, archive_entry_clone(e));
        return {};
      }
      if (::unlinkat(parent.get(), leaf.c_str(), 0) != 0 && errno != ENOENT)
        return sys_error("replace " + where(p.rel));
      if (!p.link.empty()) {
        unique_fd target{open_beneath(base, p.link, O_PATH | O_NOFOLLOW)};
        if (!target || ::linkat(target.get(), "", parent.get(), leaf.c_str(), AT_EMPTY_PATH) != 0)
          return sys_error("link " + where(p.rel) + " to " + where(p.link));
        return {};
      }
      if (p.type == AE_IFLNK) {
        const char* t = archive_entry_symlink(e);
        if (::symlinkat(t ? t : "", parent.get(), leaf.c_str()) != 0)
          return sys_error("make the symlink " + where(p.rel));
        auto ts = times_of(e);
        ::utimensat(parent.get(), leaf.c_str(), ts.data(), AT_SYMLINK_NOFOLLOW);
        return {};
      }
      if (p.type == AE_IFIFO) {
        if (::mkfifoat(parent.get(), leaf.c_str(), 0600) != 0)
          return sys_error("make the fifo " + where(p.rel));
        unique_fd f{openat2_fd(parent.get(), leaf, O_PATH | O_NOFOLLOW, RESOLVE_BENEATH)};
        return meta(f.get(), e, p.rel, true);
      }
      unique_fd f{::openat(parent.get(), leaf.c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
      if (!f)
        return sys_error("create " + where(p.rel));
      const void* buf;
      size_t size;
      la_int64_t offset;
      int r;
      while ((r = archive_read_data_block(a, &buf, &size, &offset)) == ARCHIVE_OK)
        if (::pwrite(f.get(), buf, size, offset) != static_cast<ssize_t>(size))
          return sys_error("write " + where(p.rel));
      if (r != ARCHIVE_EOF)
        return bad_tar(a, "the data of " + p.rel);
      if (::ftruncate(f.get(), archive_entry_size(e)) != 0)
        return sys_error("write " + where(p.rel));
      return meta(f.get(), e, p.rel, false);
    });
    // Directories last, deepest first: writing into them changed their times.
    for (auto i = dirs.rbegin(); !err && i != dirs.rend(); ++i) {
      unique_fd d{open_beneath(base, i->first, O_RDONLY | O_DIRECTORY)};
      if (!d)
        err = sys_error("open " + where(i->first));
      else
        err = meta(d.get(), i->second, i->first, false);
    }
    free_dirs();
    return err;
  }

private:
  /// Renames the tar's top-level name (first component) as start_in decided.
  void map(std::vector<std::string>& cs) const {
    if (st_.strip)
      cs.erase(cs.begin());
    else if (!st_.new_top.empty())
      cs.front() = st_.new_top;
  }

  /// Opens (making missing ones, 0755) the parent directories of `cs` below `base`.
  caf::error make_parents(int base, const std::vector<std::string>& cs, unique_fd& out) {
    out = unique_fd{::fcntl(base, F_DUPFD_CLOEXEC, 0)};
    for (size_t i = 0; i + 1 < cs.size(); ++i) {
      if (::mkdirat(out.get(), cs[i].c_str(), 0755) != 0 && errno != EEXIST)
        return sys_error("make the directory " + where(join(cs, 0, i + 1)));
      unique_fd next{open_beneath(out.get(), cs[i], O_PATH | O_DIRECTORY)};
      if (!next)
        return sys_error("open " + where(join(cs, 0, i + 1)));
      out = std::move(next);
    }
    return {};
  }

  static std::array<timespec, 2> times_of(archive_entry* e) {
    std::array<timespec, 2> t{};
    t[1].tv_sec = archive_entry_mtime(e);
    t[1].tv_nsec = archive_entry_mtime_nsec(e);
    t[0] = archive_entry_atime_is_set(e)
               ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)}
               : t[1];
    return t;
  }

  /// Mode and times (fd: O_PATH with `by_path`, then through /proc/self/fd).
  caf::error meta(int fd, archive_entry* e, const std::string& rel, bool by_path) {
    auto mode = static_cast<mode_t>(archive_entry_perm(e));
    auto ts = times_of(e);
    if (by_path) {
      auto self = "/proc/self/fd/" + std::to_string(fd);
      if (::chmod(self.c_str(), mode) != 0 || ::utimensat(AT_FDCWD, self.c_str(), ts.data(), 0))
        return sys_error("set the mode and times of " + where(rel));
      return {};
    }
    if (::fchmod(fd, mode) != 0 || ::futimens(fd, ts.data()) != 0)
      return sys_error("set the mode and times of " + where(rel));
    return {};
  }

  std::string where(const std::string& rel) const {
    return (st_.base == "/" ? "" : st_.base) + "/" + rel + " in container " + st_.target.container;
  }

  caf::error escaped(const std::string& name, const std::string& why) const {
    return make_error(errc::invalid_argument,
                      "cp: tar entry '" + name + "' refused: " + why + " (nothing was copied)");
  }

  caf::error bad_tar(archive* a, const std::string& what) const {
    const char* text = archive_error_string(a);
    return make_error(errc::invalid_argument,
                      "cp: bad tar (" + what + "): " + (text ? text : "unreadable"));
  }

  session_state& st_;
  std::string top_;
};

caf::error finish_in(session_state& st) {
  unique_fd base{open_in_root(st.root.get(), st.base, O_PATH | O_DIRECTORY)};
  if (!base)
    return sys_error("open " + st.base + " in container " + st.target.container);
  tar_in in{st};
  if (auto err = in.check(base.get()))
    return err;
  return in.write(base.get());
}

copy_stream_actor::behavior_type session(session_ptr self, copy_target target, std::string path,
                                         std::string source) {
  self->state.target = std::move(target);
  self->state.path = std::move(path);
  self->state.source = std::move(source);
  auto fail_quit = [self](caf::error err) -> caf::error {
    self->quit();
    return err;
  };
  auto out_only = [](bool out) -> caf::error {
    return make_error(errc::invalid_argument,
                      std::string{"cp: this copy goes "} + (out ? "out of" : "into") +
                          " the container");
  };
  return {
      [self, fail_quit](start_atom) -> caf::result<void> {
        auto& st = self->state;
        if (auto err = open_root(st))
          return fail_quit(err);
        if (auto err = make_spool(st))
          return fail_quit(err);
        if (auto err = st.source.empty() ? start_out(st) : start_in(st))
          return fail_quit(err);
        return caf::unit;
      },
      [self, fail_quit, out_only](get_atom) -> caf::result<std::string> {
        auto& st = self->state;
        if (!st.source.empty())
          return out_only(false);
        std::string buf(1 << 17, '\0');
        auto n = ::read(st.spool.get(), buf.data(), buf.size());
        if (n < 0)
          return fail_quit(sys_error("read the spool"));
        buf.resize(static_cast<size_t>(n));
        if (n == 0)
          self->quit();
        return buf;
      },
      [self, fail_quit, out_only](put_atom, std::string& bytes) -> caf::result<void> {
        auto& st = self->state;
        if (st.source.empty())
          return out_only(true);
        size_t at = 0;
        while (at < bytes.size()) {
          auto n = ::write(st.spool.get(), bytes.data() + at, bytes.size() - at);
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0)
            return fail_quit(sys_error("spool the tar"));
          at += static_cast<size_t>(n);
        }
        return caf::unit;
      },
      [self, fail_quit, out_only](done_atom) -> caf::result<void> {
        auto& st = self->state;
        if (st.source.empty())
          return out_only(true);
        auto err = finish_in(st);
        self->quit();
        if (err)
          return err;
        return caf::unit;
      },
      caf::after(std::chrono::minutes(2)) >> [self] { self->quit(); },
  };
}

} // namespace

caf::result<copy_stream_actor>
open_copy(containers_private::stateful_pointer<containers_state> self, copy_target target,
          std::string path, std::string source) {
  auto s = self->spawn<caf::detached>(session, std::move(target), std::move(path),
                                      std::move(source));
  auto rp = self->make_response_promise<copy_stream_actor>();
  self->request(s, caf::infinite, start_atom::value)
      .then([rp, s]() mutable { rp.deliver(s); }, [rp](caf::error& err) mutable { rp.deliver(err); });
  return rp;
}

} // namespace cyto::containers
