#include "actors/images/snapshots.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "actors/images/reference.hpp"
#include "bus/errc.hpp"

namespace cyto::images {

namespace fs = std::filesystem;

namespace {

constexpr const char* temp_prefix = ".tmp-";

} // namespace

uint64_t remove_tree(const std::string& path) {
  uint64_t bytes = 0;
  std::error_code ec;
  // Writable first: unpacked layers may hold read-only directories, in which only root
  // could unlink (a half-unpacked layer of a non-root unpack stayed behind otherwise).
  auto writable = [](const fs::path& dir, fs::file_status st) {
    if ((st.permissions() & fs::perms::owner_all) != fs::perms::owner_all)
      ::fchmodat(AT_FDCWD, dir.c_str(), static_cast<mode_t>(st.permissions()) | S_IRWXU, 0);
  };
  if (auto top = fs::symlink_status(path, ec); fs::is_directory(top))
    writable(path, top);
  for (auto it = fs::recursive_directory_iterator{path, fs::directory_options::none, ec};
       !ec && it != fs::recursive_directory_iterator{}; it.increment(ec)) {
    auto st = it->symlink_status(ec);
    if (fs::is_regular_file(st))
      bytes += it->file_size(ec);
    else if (fs::is_directory(st))
      writable(it->path(), st); // before the iterator descends into it
  }
  fs::remove_all(path, ec);
  return bytes;
}

caf::expected<std::unique_ptr<snapshot_store>> snapshot_store::open(const std::string& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec)
    return make_error(errc::unavailable, "create " + root + ": " + ec.message());
  for (auto& e : fs::directory_iterator{root, ec})
    if (e.path().filename().string().rfind(temp_prefix, 0) == 0)
      remove_tree(e.path());
  return std::unique_ptr<snapshot_store>{new snapshot_store(root)};
}

std::string snapshot_store::path(const std::string& chain_id) const {
  return root_ + "/" + chain_id.substr(7);
}

bool snapshot_store::has(const std::string& chain_id) const {
  struct stat st{};
  return is_sha256_digest(chain_id) && ::stat(path(chain_id).c_str(), &st) == 0
         && S_ISDIR(st.st_mode);
}

caf::error snapshot_store::create(const std::string& chain_id, const std::string& blob_path,
                                  const std::string& diff_id, unpack_stats& stats,
                                  const std::function<bool()>& cancelled) {
  static std::atomic<uint64_t> counter{0};
  auto temp = root_ + "/" + temp_prefix + chain_id.substr(7, 16) + "-"
              + std::to_string(::getpid()) + "-" + std::to_string(++counter);
  if (::mkdir(temp.c_str(), 0755) != 0)
    return make_error(errno == ENOSPC || errno == EDQUOT ? errc::resource_exhausted
                                                         : errc::unavailable,
                      "create " + temp + ": " + std::strerror(errno));
  auto got = unpack_layer(blob_path, temp, stats, cancelled);
  if (!got) {
    remove_tree(temp);
    return got.error();
  }
  if (*got != diff_id) {
    remove_tree(temp);
    return make_error(errc::invalid_argument, "layer diff id mismatch: the config says "
                                                + diff_id + ", the layer unpacks to " + *got);
  }
  auto dest = path(chain_id);
  if (::rename(temp.c_str(), dest.c_str()) != 0) {
    auto e = errno;
    remove_tree(temp);
    if ((e == EEXIST || e == ENOTEMPTY) && has(chain_id))
      return {};
    return make_error(errc::unavailable, "rename " + temp + " to " + dest + ": " + std::strerror(e));
  }
  return {};
}

std::vector<std::string> snapshot_store::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{root_, ec}) {
    auto id = "sha256:" + e.path().filename().string();
    if (is_sha256_digest(id))
      out.push_back(id);
  }
  return out;
}

uint64_t snapshot_store::remove(const std::string& chain_id) {
  if (!has(chain_id))
    return 0;
  // Rename first so a crash mid-way leaves a temp dir (cleaned at start), never a
  // half-deleted snapshot that looks complete.
  static std::atomic<uint64_t> counter{0};
  auto doomed = root_ + "/" + temp_prefix + "rm-" + std::to_string(++counter) + "-"
                + chain_id.substr(7, 16);
  if (::rename(path(chain_id).c_str(), doomed.c_str()) != 0)
    return 0;
  return remove_tree(doomed);
}

caf::error mount_overlay(const std::vector<std::string>& lowers, const std::string& upper,
                         const std::string& work, const std::string& target) {
  if (lowers.empty())
    return make_error(errc::invalid_argument, "overlay needs at least one lower dir");
  std::string opts = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); ++i) {
    if (lowers[i].find_first_of(":,") != std::string::npos)
      return make_error(errc::invalid_argument,
                        "overlay lower dir " + lowers[i] + " contains ':' or ','");
    opts += (i ? ":" : "") + lowers[i];
  }
  opts += ",upperdir=" + upper + ",workdir=" + work;
  if (opts.size() >= 4095)
    return make_error(errc::unsupported,
                      "overlay options of " + std::to_string(lowers.size())
                        + " layers exceed a page; use a shorter state dir");
  if (::mount("overlay", target.c_str(), "overlay", 0, opts.c_str()) != 0)
    return make_error(errno == ENODEV ? errc::unsupported : errc::internal,
                      "mount overlay on " + target + ": " + std::strerror(errno));
  return {};
}

caf::error unmount(const std::string& target) {
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT)
    return make_error(errno == EBUSY ? errc::failed_precondition : errc::internal,
                      "unmount " + target + ": " + std::strerror(errno));
  return {};
}

bool is_mounted(const std::string& target) {
  std::ifstream in{"/proc/self/mountinfo"};
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point ...
    size_t pos = 0;
    for (int i = 0; i < 4 && pos != std::string::npos; ++i)
      pos = line.find(' ', pos + 1);
    if (pos == std::string::npos)
      continue;
    auto end = line.find(' ', pos + 1);
    if (line.substr(pos + 1, end - pos - 1) == target)
      return true;
  }
  return false;
}

} // namespace cyto::images
