// cyto cp: files between this machine and a container, as tar streams through the
// gateway (Containers.copyOut/copyIn), so it works against a remote node too. Our side of
// the tar is made and unpacked here with libarchive; the container's side is cytod's.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "schema/containers.capnp.h"

namespace cyto::cli {

// Named, not anonymous: the CLI builds as unity files (see CMakeLists.txt).
namespace cmd_cp_impl {

[[noreturn]] void fail(const std::string& code, const std::string& what) {
  throw cli_error("cyto." + code + ": " + what);
}

/// One side of the copy: a container's path, a local path, or "-" (a tar on stdin/stdout).
struct side {
  std::string container;
  std::string path;
  bool stream = false;
};

/// docker's rule: NAME:PATH unless it starts with / or . or has a / before the first ':'.
side parse_side(const std::string& arg) {
  if (arg == "-")
    return {"", "", true};
  auto colon = arg.find(':');
  if (arg.empty() || arg.front() == '/' || arg.front() == '.' || colon == std::string::npos ||
      colon == 0 || arg.find('/') < colon)
    return {"", arg, false};
  return {arg.substr(0, colon), arg.substr(colon + 1), false};
}

/// The path without trailing slashes (and without a trailing "/." when `dot`).
std::string trimmed(std::string p, bool dot = true) {
  for (;;) {
    if (p.size() > 1 && p.back() == '/')
      p.pop_back();
    else if (dot && p.size() > 2 && p.ends_with("/."))
      p.resize(p.size() - 2);
    else
      return p;
  }
}

std::string base_name(const std::string& p) {
  auto t = trimmed(p);
  auto slash = t.rfind('/');
  return slash == std::string::npos ? t : t.substr(slash + 1);
}

std::string parent_of(const std::string& p) {
  auto t = trimmed(p, false);
  auto slash = t.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : t.substr(0, slash);
}

bool contents_form(const std::string& p) {
  return p == "." || p.ends_with("/.") || p.ends_with("/./");
}

struct file_closer {
  void operator()(std::FILE* f) const noexcept {
    std::fclose(f);
  }
};
using spool_file = std::unique_ptr<std::FILE, file_closer>;

spool_file make_spool() {
  spool_file f{std::tmpfile()};
  if (!f)
    fail("internal", std::string{"make a temporary file: "} + std::strerror(errno));
  return f;
}

void write_all(int fd, const void* data, size_t size, const char* what) {
  auto* p = static_cast<const char*>(data);
  while (size > 0) {
    auto n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail("internal", std::string{"write "} + what + ": " + std::strerror(errno));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

std::string archive_text(archive* a) {
  const char* t = archive_error_string(a);
  return t ? t : "libarchive failed";
}

struct read_closer {
  void operator()(archive* a) const noexcept {
    archive_read_free(a);
  }
};
struct write_closer {
  void operator()(archive* a) const noexcept {
    archive_write_free(a);
  }
};
using reader = std::unique_ptr<archive, read_closer>;
using writer = std::unique_ptr<archive, write_closer>;

/// The tar's bytes into a descriptor (the spool or stdout), then done.
class fd_sink final : public schema::ByteSink::Server {
public:
  fd_sink(int fd, uint64_t& bytes) : fd_(fd), bytes_(bytes) {}

  kj::Promise<void> write(WriteContext context) override {
    auto data = context.getParams().getData();
    write_all(fd_, data.begin(), data.size(), "the tar");
    bytes_ += data.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext) override {
    return kj::READY_NOW;
  }

private:
  int fd_;
  uint64_t& bytes_;
};

schema::Containers::Client containers_of(client& c) {
  return wait(c, c.node().containersRequest().send()).getService();
}

// -- out of the container ---------------------------------------------------------------

/// Unpacks the spooled tar (top-level name `top` first) to `dest` by docker cp's rules.
void unpack_to(std::FILE* spool, const std::string& src, const std::string& dest) {
  std::rewind(spool);
  reader a{archive_read_new()};
  archive_read_support_format_tar(a.get());
  if (archive_read_open_FILE(a.get(), spool) != ARCHIVE_OK)
    fail("internal", "read the tar: " + archive_text(a.get()));
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK)
    fail("internal", "the tar from the container is empty: " + archive_text(a.get()));
  // Directory names may end in "/" (pax, GNU tar): compared without it.
  auto plain = [](std::string n) {
    while (n.size() > 1 && n.back() == '/')
      n.pop_back();
    return n;
  };
  std::string top = plain(archive_entry_pathname(e));
  bool src_dir = archive_entry_filetype(e) == AE_IFDIR;
  bool slash = dest.size() > 1 && dest.back() == '/';
  struct stat sb{};
  bool exists = ::stat(dest.c_str(), &sb) == 0;
  std::string dir, new_top;
  bool strip = false;
  if (exists && S_ISDIR(sb.st_mode)) {
    dir = dest;
    strip = src_dir && (contents_form(src) || top == ".");
  } else if (exists) {
    if (src_dir)
      fail("invalid_argument", "cannot copy a directory onto the file " + dest);
    if (slash)
      fail("invalid_argument", dest + " is not a directory");
    dir = parent_of(dest);
    new_top = base_name(dest);
  } else {
    if (slash && !src_dir)
      fail("not_found", "the directory " + dest + " does not exist");
    dir = parent_of(dest);
    new_top = base_name(dest);
  }
  if (::chdir(dir.c_str()) != 0)
    fail("not_found", "the directory " + dir + ": " + std::strerror(errno));
  writer out{archive_write_disk_new()};
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                ARCHIVE_EXTRACT_UNLINK |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
  // "top[/rest]" -> "new_top[/rest]", or "rest" with strip; empty: the entry is skipped.
  auto rename = [&](const std::string& raw) -> std::string {
    auto name = plain(raw);
    std::string rest;
    if (name == top)
      rest = "";
    else if (name.compare(0, top.size() + 1, top + "/") == 0)
      rest = name.substr(top.size() + 1);
    else if (top == ".")
      rest = name; // the container's /: its entries have no "./"
    else
      fail("invalid_argument", "tar entry " + name + " is not below " + top);
    if (strip)
      return rest;
    auto head = new_top.empty() ? top : new_top;
    return rest.empty() ? head : head + "/" + rest;
  };
  int r = ARCHIVE_OK;
  do {
    auto name = rename(archive_entry_pathname(e));
    if (name.empty() || name == ".")
      continue;
    archive_entry_set_pathname(e, name.c_str());
    if (const char* hl = archive_entry_hardlink(e))
      archive_entry_set_hardlink(e, rename(hl).c_str());
    if (archive_write_header(out.get(), e) != ARCHIVE_OK)
      fail("internal", "write " + name + ": " + archive_text(out.get()));
    const void* buf;
    size_t size;
    la_int64_t offset;
    int d;
    while ((d = archive_read_data_block(a.get(), &buf, &size, &offset)) == ARCHIVE_OK)
      if (archive_write_data_block(out.get(), buf, size, offset) != ARCHIVE_OK)
        fail("internal", "write " + name + ": " + archive_text(out.get()));
    if (d != ARCHIVE_EOF)
      fail("internal", "read " + name + ": " + archive_text(a.get()));
    if (archive_write_finish_entry(out.get()) != ARCHIVE_OK)
      fail("internal", "write " + name + ": " + archive_text(out.get()));
  } while ((r = archive_read_next_header(a.get(), &e)) == ARCHIVE_OK);
  if (r != ARCHIVE_EOF)
    fail("internal", "read the tar: " + archive_text(a.get()));
  if (archive_write_close(out.get()) != ARCHIVE_OK)
    fail("internal", "finish " + dest + ": " + archive_text(out.get()));
}

uint64_t copy_out(client& c, const side& from, const side& to) {
  if (!to.stream) {
    struct stat sb{};
    auto parent = parent_of(to.path);
    if (::stat(to.path.c_str(), &sb) != 0 &&
        (::stat(parent.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)))
      fail("not_found", "the parent directory " + parent + " of " + to.path + " does not exist");
  }
  spool_file spool = to.stream ? nullptr : make_spool();
  uint64_t bytes = 0;
  auto req = containers_of(c).copyOutRequest();
  req.setName(from.container);
  req.setPath(from.path);
  req.setSink(kj::heap<fd_sink>(to.stream ? 1 : ::fileno(spool.get()), bytes));
  wait(c, req.send());
  if (!to.stream)
    unpack_to(spool.get(), from.path, to.path);
  return bytes;
}

// -- into the container -----------------------------------------------------------------

/// Writes a tar of the local `src` into `spool`: its top-level entry named `top`.
void pack(const std::string& src, const std::string& top, std::FILE* spool) {
  reader disk{archive_read_disk_new()};
  archive_read_disk_set_symlink_physical(disk.get());
  archive_read_disk_set_behavior(disk.get(), ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                                 ARCHIVE_READDISK_NO_FFLAGS);
  archive_read_disk_set_standard_lookup(disk.get());
  if (archive_read_disk_open(disk.get(), src.c_str()) != ARCHIVE_OK)
    fail("not_found", src + ": " + archive_text(disk.get()));
  writer w{archive_write_new()};
  archive_write_set_format_pax_restricted(w.get());
  archive_write_set_bytes_in_last_block(w.get(), 1);
  if (archive_write_open_FILE(w.get(), spool) != ARCHIVE_OK)
    fail("internal", "write the tar: " + archive_text(w.get()));
  std::vector<char> buf(1 << 17);
  for (;;) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> e{archive_entry_new(),
                                                                    &archive_entry_free};
    int r = archive_read_next_header2(disk.get(), e.get());
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      fail("internal", "read " + src + ": " + archive_text(disk.get()));
    archive_read_disk_descend(disk.get());
    auto type = archive_entry_filetype(e.get());
    if (type == AE_IFSOCK || type == AE_IFCHR || type == AE_IFBLK)
      continue; // not copied, as out of a container
    std::string name = archive_entry_pathname(e.get());
    auto rest = name.size() > src.size() ? name.substr(src.size()) : std::string{};
    while (!rest.empty() && rest.front() == '/')
      rest.erase(0, 1);
    auto renamed = rest.empty() ? top : top + "/" + rest;
    archive_entry_set_pathname(e.get(), renamed.c_str());
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_uname(e.get(), "root");
    archive_entry_set_gname(e.get(), "root");
    if (archive_write_header(w.get(), e.get()) != ARCHIVE_OK)
      fail("internal", "write the header of " + name + ": " + archive_text(w.get()));
    if (type != AE_IFREG)
      continue;
    la_ssize_t n;
    while ((n = archive_read_data(disk.get(), buf.data(), buf.size())) > 0)
      if (archive_write_data(w.get(), buf.data(), static_cast<size_t>(n)) < 0)
        fail("internal", "write " + name + ": " + archive_text(w.get()));
    if (n < 0)
      fail("internal", "read " + name + ": " + archive_text(disk.get()));
  }
  if (archive_write_close(w.get()) != ARCHIVE_OK)
    fail("internal", "finish the tar: " + archive_text(w.get()));
}

uint64_t copy_in(client& c, const side& from, const side& to) {
  std::string source = "archive";
  spool_file spool;
  if (!from.stream) {
    auto src = trimmed(from.path);
    struct stat sb{};
    if (::lstat(src.c_str(), &sb) != 0)
      fail("not_found", from.path + ": " + std::strerror(errno));
    bool dir = S_ISDIR(sb.st_mode);
    if (!dir && trimmed(from.path, false) != from.path)
      fail("invalid_argument", from.path + " is not a directory");
    source = !dir ? "file" : contents_form(from.path) ? "contents" : "directory";
    auto top = base_name(src);
    if (top.empty() || top == "." || top == ".." || top == "/") {
      char* real = ::realpath(src.c_str(), nullptr);
      top = real ? base_name(real) : "";
      std::free(real);
      if (top.empty() || top == "/")
        top = "root";
    }
    spool = make_spool();
    pack(src, top, spool.get());
    std::fflush(spool.get());
    std::rewind(spool.get());
  }
  auto req = containers_of(c).copyInRequest();
  req.setName(to.container);
  req.setPath(to.path);
  req.setSource(source);
  auto input = wait(c, req.send()).getInput();
  int fd = from.stream ? 0 : ::fileno(spool.get());
  std::vector<kj::byte> buf(1 << 17);
  uint64_t bytes = 0;
  for (;;) {
    auto n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail("internal", std::string{"read the tar: "} + std::strerror(errno));
    if (n == 0)
      break;
    auto w = input.writeRequest();
    w.setData(kj::arrayPtr(buf.data(), static_cast<size_t>(n)));
    wait(c, w.send());
    bytes += static_cast<uint64_t>(n);
  }
  wait(c, input.closeRequest().send().ignoreResult());
  return bytes;
}

int cp(const global_options& g, const std::string& src, const std::string& dest) {
  auto from = parse_side(src);
  auto to = parse_side(dest);
  if (!from.container.empty() == !to.container.empty())
    fail("invalid_argument",
         std::string{"cp: "} + (from.container.empty() ? "neither" : "both") +
             " of SRC and DEST name a container (one is CONTAINER:PATH, the other a local "
             "path or -)");
  auto& remote = from.container.empty() ? to : from;
  if (remote.path.empty())
    fail("invalid_argument", "cp: no path after " + remote.container + ":");
  if (from.stream && to.stream)
    fail("invalid_argument", "cp: - on both sides");
  client c{g};
  auto bytes = from.container.empty() ? copy_in(c, from, to) : copy_out(c, from, to);
  if (g.json && !to.stream)
    print_json({{"source", src}, {"destination", dest}, {"tar_bytes", bytes}});
  return 0;
}

} // namespace cmd_cp_impl

void add_cp_command(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_cp_impl;
  static std::string src, dest;
  auto* cmd = app.add_subcommand(
      "cp", "copy files between a container and here: CONTAINER:SRC DEST|- or SRC|- CONTAINER:DEST");
  cmd->footer(
      "Directories are copied whole (modes, times, symlinks as symlinks). As with docker/podman:\n"
      "an existing directory DEST receives SRC by its name; a missing DEST becomes SRC (its\n"
      "parent must exist); SRC/. copies a directory's contents; - is a tar on stdin or stdout.\n"
      "Container paths resolve inside its root file system; paths on its -v/--tmpfs mounts are\n"
      "refused. Works on created, running and stopped containers.\n"
      "Examples: cyto cp web:/etc/hosts ./hosts    cyto cp ./site web:/srv\n"
      "          tar -cf - conf | cyto cp - web:/etc");
  cmd->add_option("src", src, "CONTAINER:PATH, a local path, or -")->required();
  cmd->add_option("dest", dest, "CONTAINER:PATH, a local path, or -")->required();
  cmd->add_option("--socket", g.socket, "cytod's socket");
  cmd->add_option("--node", g.node, "run the verb against this node of the federation");
  cmd->add_flag("--json", g.json, "print what was copied as JSON");
  cmd->callback([&] { run = [&] { return cp(g, src, dest); }; });
}

} // namespace cyto::cli
