#include "actors/images/unpack.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include <archive.h>
#include <dirent.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "actors/images/content_store.hpp"
#include "bus/errc.hpp"

namespace cyto::images {

namespace {

/// libarchive's message for `a`'s last error; `otherwise` when it has none (it returns
/// NULL after ARCHIVE_EOF, e.g. for an empty or cut compressed stream).
std::string archive_text(archive* a, const char* otherwise) {
  const char* text = archive_error_string(a);
  return text ? text : otherwise;
}


constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";
constexpr size_t read_block = 256 * 1024;

struct archive_closer {
  void operator()(archive* a) const {
    archive_read_free(a);
  }
};
using archive_ptr = std::unique_ptr<archive, archive_closer>;

struct unique_fd {
  int fd = -1;
  unique_fd() = default;
  explicit unique_fd(int f) : fd(f) {
  }
  unique_fd(unique_fd&& o) noexcept : fd(o.fd) {
    o.fd = -1;
  }
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~unique_fd() {
    reset();
  }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
};

caf::error fail(const std::string& name, const std::string& why) {
  return make_error(errc::invalid_argument, "layer entry '" + name + "': " + why);
}

caf::error sys_fail(const std::string& name, const std::string& what) {
  auto e = errno;
  return make_error(e == ENOSPC || e == EDQUOT ? errc::resource_exhausted : errc::internal,
                    "layer entry '" + name + "': " + what + ": " + std::strerror(e));
}

int open_beneath(int root, const std::string& rel, uint64_t flags) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(
    ::syscall(SYS_openat2, root, rel.empty() ? "." : rel.c_str(), &how, sizeof(how)));
}

/// Normalizes a tar member name into components; empty optional-like result on refusal.
bool clean_path(const char* raw, std::string& out, std::string& why) {
  std::string_view p{raw ? raw : ""};
  bool absolute = !p.empty() && p.front() == '/';
  out.clear();
  size_t i = 0;
  while (i <= p.size()) {
    auto j = p.find('/', i);
    if (j == std::string_view::npos)
      j = p.size();
    auto comp = p.substr(i, j - i);
    if (comp == "..") {
      why = "'..' is not allowed in names";
      return false;
    }
    if (!comp.empty() && comp != ".") {
      if (!out.empty())
        out += '/';
      out.append(comp);
    }
    i = j + 1;
  }
  // "/" alone names the root (some tools write it); any other absolute name is refused.
  if (absolute && !out.empty()) {
    why = "absolute names are not allowed";
    return false;
  }
  return true;
}

struct stream_source {
  archive* outer;
  sha256* hash;
  uint64_t* bytes;
  std::vector<char> buf;
  bool failed = false;
  /// The decompressed stream has ended.
  bool eof = false;
};

la_ssize_t read_decompressed(archive*, void* user, const void** out) {
  auto& s = *static_cast<stream_source*>(user);
  auto n = archive_read_data(s.outer, s.buf.data(), s.buf.size());
  if (n < 0) {
    s.failed = true;
    return -1;
  }
  if (n == 0)
    s.eof = true;
  s.hash->update(s.buf.data(), static_cast<size_t>(n));
  *s.bytes += static_cast<uint64_t>(n);
  *out = s.buf.data();
  return n;
}

class extractor {
public:
  extractor(int root, bool as_root, const stream_source& src)
    : root_(root), as_root_(as_root), src_(src) {
  }

  /// The stream ended right after the last entry's data, without its padding and the
  /// end-of-archive blocks (umoci 0.4 writes layers like that; the diff id covers exactly
  /// these bytes, so nothing is lost). Treated as the end of the archive.
  bool ended_without_trailer() const noexcept {
    return ended_without_trailer_;
  }

  caf::error entry(archive* in, archive_entry* e) {
    std::string name, why;
    const char* raw = archive_entry_pathname(e);
    if (!clean_path(raw, name, why))
      return fail(raw ? raw : "", why);
    if (name.empty())
      return {}; // the layer root itself
    auto slash = name.rfind('/');
    std::string dir = slash == std::string::npos ? "" : name.substr(0, slash);
    std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
    auto pfd = parent(dir, name);
    if (!pfd)
      return pfd.error();
    int p = *pfd;
    if (base == opaque_marker) {
      auto path = "/proc/self/fd/" + std::to_string(p);
      if (::setxattr(path.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0)
        return sys_fail(name, "mark directory opaque");
      return {};
    }
    if (base.compare(0, whiteout_prefix.size(), whiteout_prefix) == 0) {
      auto hidden = base.substr(whiteout_prefix.size());
      if (hidden.empty() || hidden == "." || hidden == "..")
        return fail(name, "bad whiteout name");
      remove_existing(p, hidden, false);
      if (::mknodat(p, hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0)
        return sys_fail(name, "make whiteout");
      return {};
    }
    auto type = archive_entry_filetype(e);
    auto mode = archive_entry_perm(e);
    if (const char* link = archive_entry_hardlink(e)) {
      std::string target;
      if (!clean_path(link, target, why) || target.empty())
        return fail(name, "hard link target '" + std::string{link} + "': "
                            + (why.empty() ? "empty" : why));
      auto ts = target.rfind('/');
      auto tdir = open_beneath(root_, ts == std::string::npos ? "" : target.substr(0, ts),
                               O_PATH | O_DIRECTORY);
      if (tdir < 0)
        return errno == EXDEV || errno == ELOOP
                 ? fail(name, "hard link target '" + target + "' leaves the layer")
                 : sys_fail(name, "open hard link target's directory");
      unique_fd tfd{tdir};
      remove_existing(p, base, false);
      auto tbase = ts == std::string::npos ? target : target.substr(ts + 1);
      if (::linkat(tfd.fd, tbase.c_str(), p, base.c_str(), 0) != 0)
        return sys_fail(name, "hard link to '" + target + "'");
      return {};
    }
    switch (type) {
      case AE_IFDIR: {
        struct stat st{};
        if (::fstatat(p, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
          remove_existing(p, base, false);
        if (::mkdirat(p, base.c_str(), 0700) != 0 && errno != EEXIST)
          return sys_fail(name, "mkdir");
        unique_fd d{::openat(p, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
        if (d.fd < 0)
          return sys_fail(name, "open directory");
        if (auto err = metadata_fd(d.fd, e, mode, name))
          return err;
        dir_times_.push_back({name, times_of(e)});
        return {};
      }
      case AE_IFREG: {
        remove_existing(p, base, false);
        unique_fd f{::openat(p, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                             0600)};
        if (f.fd < 0)
          return sys_fail(name, "create file");
        const void* buf;
        size_t size;
        la_int64_t offset;
        int r;
        la_int64_t written = 0;
        while ((r = archive_read_data_block(in, &buf, &size, &offset)) == ARCHIVE_OK) {
          written = offset + static_cast<la_int64_t>(size);
          auto* c = static_cast<const char*>(buf);
          while (size > 0) {
            auto w = ::pwrite(f.fd, c, size, offset);
            if (w < 0) {
              if (errno == EINTR)
                continue;
              return sys_fail(name, "write");
            }
            c += w;
            size -= static_cast<size_t>(w);
            offset += w;
          }
        }
        if (r != ARCHIVE_EOF && src_.eof && !src_.failed && written == archive_entry_size(e))
          ended_without_trailer_ = true;
        else if (r != ARCHIVE_EOF)
          return make_error(errc::invalid_argument, "layer entry '" + name + "': read: "
                                                      + archive_text(in, "truncated"));
        auto sz = archive_entry_size(e);
        if (sz > 0 && ::ftruncate(f.fd, sz) != 0)
          return sys_fail(name, "set size");
        if (auto err = metadata_fd(f.fd, e, mode, name))
          return err;
        auto t = times_of(e);
        ::futimens(f.fd, t.data());
        return {};
      }
      case AE_IFLNK: {
        remove_existing(p, base, false);
        const char* target = archive_entry_symlink(e);
        if (::symlinkat(target ? target : "", p, base.c_str()) != 0)
          return sys_fail(name, "symlink");
        if (as_root_ && ::fchownat(p, base.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                                   static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW)
                          != 0)
          return sys_fail(name, "chown symlink");
        if (auto err = xattrs_path(p, base, e, name))
          return err;
        auto t = times_of(e);
        ::utimensat(p, base.c_str(), t.data(), AT_SYMLINK_NOFOLLOW);
        return {};
      }
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO: {
        remove_existing(p, base, false);
        dev_t dev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
        if (::mknodat(p, base.c_str(), static_cast<mode_t>(type) | mode, dev) != 0) {
          if (errno == EPERM && !as_root_)
            return {}; // devices need root; a non-root unpack (tests) skips them
          return sys_fail(name, "mknod");
        }
        unique_fd f{::openat(p, base.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)};
        if (as_root_ && f.fd >= 0
            && ::fchownat(f.fd, "", static_cast<uid_t>(archive_entry_uid(e)),
                          static_cast<gid_t>(archive_entry_gid(e)), AT_EMPTY_PATH)
                 != 0)
          return sys_fail(name, "chown");
        ::fchmodat(p, base.c_str(), mode, 0);
        auto t = times_of(e);
        ::utimensat(p, base.c_str(), t.data(), AT_SYMLINK_NOFOLLOW);
        return {};
      }
      default:
        return fail(name, "unsupported file type " + std::to_string(type));
    }
  }

  /// Directory times last: creating their children changed them.
  void finish() {
    for (auto& [name, t] : dir_times_) {
      unique_fd d{open_beneath(root_, name, O_PATH | O_DIRECTORY | O_NOFOLLOW)};
      if (d.fd >= 0)
        ::utimensat(d.fd, "", t.data(), AT_EMPTY_PATH);
    }
  }

private:
  static std::array<timespec, 2> times_of(archive_entry* e) {
    std::array<timespec, 2> t{};
    t[0].tv_sec = archive_entry_atime_is_set(e) ? archive_entry_atime(e) : archive_entry_mtime(e);
    t[0].tv_nsec = archive_entry_atime_is_set(e) ? archive_entry_atime_nsec(e) : 0;
    t[1].tv_sec = archive_entry_mtime(e);
    t[1].tv_nsec = archive_entry_mtime_nsec(e);
    return t;
  }

  /// Opens (making missing directories) the parent directory `dir`, never leaving root.
  caf::expected<int> parent(const std::string& dir, const std::string& name) {
    if (dir == cached_dir_ && cached_fd_.fd >= 0)
      return cached_fd_.fd;
    auto fd = open_dir(dir, name);
    if (!fd)
      return fd.error();
    cached_fd_ = unique_fd{*fd};
    cached_dir_ = dir;
    return cached_fd_.fd;
  }

  caf::expected<int> open_dir(const std::string& dir, const std::string& name) {
    int fd = open_beneath(root_, dir, O_PATH | O_DIRECTORY);
    if (fd >= 0)
      return fd;
    if (errno == EXDEV || errno == ELOOP)
      return fail(name, "its directory '" + dir
                          + "' goes through a symlink that leaves the layer root");
    if (errno == ENOTDIR)
      return fail(name, "'" + dir + "' is not a directory");
    if (errno != ENOENT)
      return sys_fail(name, "open directory '" + dir + "'");
    auto slash = dir.rfind('/');
    auto up = open_dir(slash == std::string::npos ? "" : dir.substr(0, slash), name);
    if (!up)
      return up.error();
    unique_fd upfd{*up};
    auto base = slash == std::string::npos ? dir : dir.substr(slash + 1);
    if (::mkdirat(upfd.fd, base.c_str(), 0755) != 0 && errno != EEXIST)
      return sys_fail(name, "mkdir '" + dir + "'");
    fd = open_beneath(root_, dir, O_PATH | O_DIRECTORY);
    if (fd < 0)
      return sys_fail(name, "open directory '" + dir + "'");
    return fd;
  }

  void remove_existing(int p, const std::string& base, bool) {
    if (::unlinkat(p, base.c_str(), 0) != 0 && (errno == EISDIR || errno == EPERM))
      remove_tree(p, base);
  }

  static void remove_tree(int p, const std::string& base) {
    unique_fd d{::openat(p, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (d.fd >= 0) {
      if (auto* dir = ::fdopendir(::dup(d.fd))) {
        std::vector<std::string> names;
        while (auto* ent = ::readdir(dir))
          if (std::strcmp(ent->d_name, ".") != 0 && std::strcmp(ent->d_name, "..") != 0)
            names.emplace_back(ent->d_name);
        ::closedir(dir);
        for (auto& n : names)
          if (::unlinkat(d.fd, n.c_str(), 0) != 0)
            remove_tree(d.fd, n);
      }
    }
    ::unlinkat(p, base.c_str(), AT_REMOVEDIR);
  }

  caf::error metadata_fd(int fd, archive_entry* e, mode_t mode, const std::string& name) {
    if (as_root_ && ::fchown(fd, static_cast<uid_t>(archive_entry_uid(e)),
                             static_cast<gid_t>(archive_entry_gid(e)))
                      != 0)
      return sys_fail(name, "chown");
    // after chown, which clears set-id bits
    if (::fchmod(fd, mode) != 0)
      return sys_fail(name, "chmod");
    archive_entry_xattr_reset(e);
    const char* key;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
      if (::fsetxattr(fd, key, value, size, 0) != 0 && errno != EOPNOTSUPP
          && !(errno == EPERM && !as_root_))
        return sys_fail(name, std::string{"set xattr "} + key);
    }
    return {};
  }

  caf::error xattrs_path(int p, const std::string& base, archive_entry* e,
                         const std::string& name) {
    if (archive_entry_xattr_reset(e) == 0)
      return {};
    auto path = "/proc/self/fd/" + std::to_string(p) + "/" + base;
    const char* key;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
      if (::lsetxattr(path.c_str(), key, value, size, 0) != 0 && errno != EOPNOTSUPP
          && errno != EPERM)
        return sys_fail(name, std::string{"set xattr "} + key);
    }
    return {};
  }

  int root_;
  bool as_root_;
  const stream_source& src_;
  bool ended_without_trailer_ = false;
  std::string cached_dir_;
  unique_fd cached_fd_;
  std::vector<std::pair<std::string, std::array<timespec, 2>>> dir_times_;
};

} // namespace

caf::expected<std::string> unpack_layer(const std::string& blob_path, const std::string& dest,
                                        unpack_stats& stats, const std::function<bool()>& cancelled) {
  unique_fd root{::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (root.fd < 0)
    return make_error(errc::internal, "open " + dest + ": " + std::strerror(errno));
  archive_ptr outer{archive_read_new()};
  archive_read_support_filter_all(outer.get());
  archive_read_support_format_raw(outer.get());
  if (archive_read_open_filename(outer.get(), blob_path.c_str(), read_block) != ARCHIVE_OK)
    return make_error(errc::invalid_argument,
                      "layer " + blob_path + ": " + archive_text(outer.get(), "cannot read it"));
  archive_entry* raw_entry;
  // Found by fuzzing (tests/fuzz/tar_layer_fuzz.cpp): an empty gzip stream ends here with
  // ARCHIVE_EOF and no error text, and a NULL message crashed cytod.
  if (archive_read_next_header(outer.get(), &raw_entry) != ARCHIVE_OK)
    return make_error(errc::invalid_argument,
                      "layer " + blob_path + ": " + archive_text(outer.get(), "no data"));
  sha256 hash;
  stream_source src{outer.get(), &hash, &stats.tar_bytes, std::vector<char>(read_block)};
  archive_ptr in{archive_read_new()};
  archive_read_support_format_tar(in.get());
  archive_read_support_format_gnutar(in.get());
  if (archive_read_open(in.get(), &src, nullptr, read_decompressed, nullptr) != ARCHIVE_OK)
    return make_error(errc::invalid_argument,
                      "layer " + blob_path + ": not a tar archive: "
                        + archive_text(in.get(), "no tar header"));
  extractor x{root.fd, ::geteuid() == 0, src};
  archive_entry* e;
  int r;
  while ((r = archive_read_next_header(in.get(), &e)) == ARCHIVE_OK
         || r == ARCHIVE_WARN) {
    if (cancelled && cancelled())
      return make_error(errc::cancelled, "unpack cancelled");
    ++stats.entries;
    if (auto err = x.entry(in.get(), e))
      return err;
    if (x.ended_without_trailer())
      break;
  }
  if ((r != ARCHIVE_EOF && !x.ended_without_trailer()) || src.failed)
    return make_error(errc::invalid_argument,
                      "layer " + blob_path + ": broken archive: "
                        + archive_text(src.failed ? outer.get() : in.get(), "read error"));
  x.finish();
  // The tar reader stops at the end marker: hash whatever padding follows it too.
  const void* ignored;
  while (true) {
    auto n = read_decompressed(in.get(), &src, &ignored);
    if (n < 0)
      return make_error(errc::invalid_argument, "layer " + blob_path + ": broken compression: "
                                                  + archive_text(outer.get(), "read error"));
    if (n == 0)
      break;
  }
  return hash.digest();
}

} // namespace cyto::images
