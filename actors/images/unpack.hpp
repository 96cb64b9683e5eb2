#pragma once
// Unpacks one layer (tar, optionally gzip or zstd) into an empty directory with
// libarchive, in overlayfs form: a whiteout ".wh.name" becomes a 0:0 character device
// "name", an opaque marker ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its
// directory. Keeps hard links, symlinks, devices, fifos, modes, ownership, xattrs and
// times. Refuses absolute names, ".." and any write through a symlink that leaves the
// directory (every parent is opened with openat2(RESOLVE_BENEATH)).

#include <functional>
#include <cstdint>
#include <functional>
#include <string>

#include <caf/expected.hpp>

namespace cyto::images {

struct unpack_stats {
  uint64_t entries = 0;
  /// Bytes of the uncompressed tar stream.
  uint64_t tar_bytes = 0;
};

/// Unpacks the layer blob at `blob_path` into `dest` (an existing empty directory).
/// Returns the digest of the uncompressed tar (the layer's diff id). On error the
/// caller removes `dest`: nothing is ever written outside it.
caf::expected<std::string> unpack_layer(const std::string& blob_path, const std::string& dest,
                                        unpack_stats& stats,
                                        const std::function<bool()>& cancelled = {});

} // namespace cyto::images
