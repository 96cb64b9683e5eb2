#pragma once
// Layer snapshots: one directory per chain id under <images>/snapshots/<hex>, holding
// that layer unpacked in overlayfs form. Shared by every image with the same layer stack
// below it; a root file system is an overlay mount of them.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "actors/images/unpack.hpp"

namespace cyto::images {

class snapshot_store {
public:
  /// Makes `root` if missing and removes half-made snapshots of a previous run.
  static caf::expected<std::unique_ptr<snapshot_store>> open(const std::string& root);

  std::string path(const std::string& chain_id) const;
  bool has(const std::string& chain_id) const;

  /// Unpacks the layer blob into a fresh directory, checks that its uncompressed digest
  /// is `diff_id`, then renames it into place as the snapshot of `chain_id`. On any error
  /// nothing is left. A snapshot that appeared meanwhile (another pull) wins.
  caf::error create(const std::string& chain_id, const std::string& blob_path,
                    const std::string& diff_id, unpack_stats& stats,
                    const std::function<bool()>& cancelled = {});

  /// Every chain id with a snapshot.
  std::vector<std::string> list() const;
  /// Deletes a snapshot; returns the bytes freed (file sizes).
  uint64_t remove(const std::string& chain_id);

private:
  explicit snapshot_store(std::string root) : root_(std::move(root)) {
  }
  std::string root_;
};

/// Removes a directory tree without following symlinks; returns the bytes of the
/// regular files in it.
uint64_t remove_tree(const std::string& path);

/// Mounts overlayfs on `target`: `lowers` (top first), `upper`, `work`.
caf::error mount_overlay(const std::vector<std::string>& lowers, const std::string& upper,
                         const std::string& work, const std::string& target);

/// Unmounts `target`; not being mounted is no error.
caf::error unmount(const std::string& target);

/// Whether `target` is a mount point in this mount namespace.
bool is_mounted(const std::string& target);

} // namespace cyto::images
