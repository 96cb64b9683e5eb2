#pragma once
// Messages of the images domain: pulled images, pull progress, prepared root file systems.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cyto {

/// One layer of an image as the store keeps it.
struct image_layer {
  /// Digest of the blob as pulled (compressed).
  std::string digest;
  std::string media_type;
  /// Bytes of the blob.
  uint64_t size = 0;
  /// Digest of the uncompressed tar (the config's rootfs.diff_ids entry).
  std::string diff_id;
  /// Identity of the snapshot: the layer on top of every layer below it.
  std::string chain_id;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, image_layer& x) {
  return f(caf::meta::type_name("image_layer"), x.digest, x.media_type, x.size, x.diff_id,
           x.chain_id);
}

/// An image in the store.
struct image_info {
  /// "registry/repository:tag" (or "...@sha256:..." when pulled by digest only).
  std::string name;
  /// What the name resolved to: the manifest or index digest.
  std::string digest;
  /// The platform's image manifest (== digest unless the name is an index).
  std::string manifest_digest;
  std::string media_type;
  std::string config_digest;
  std::string os;
  std::string architecture;
  std::string variant;
  /// The config's "created", as written there (RFC 3339).
  std::string created;
  /// Bytes of the blobs: config plus layers.
  uint64_t size = 0;
  std::vector<image_layer> layers;
  /// The image config (JSON) as stored.
  std::string config_json;
  int64_t pulled_unix_nanos = 0;
  /// Root file systems prepared from this image now.
  uint32_t in_use = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, image_info& x) {
  return f(caf::meta::type_name("image_info"), x.name, x.digest, x.manifest_digest, x.media_type,
           x.config_digest, x.os, x.architecture, x.variant, x.created, x.size, x.layers,
           x.config_json, x.pulled_unix_nanos, x.in_use);
}

/// Phases of one blob during a pull. Values match schema/images.capnp's LayerPhase.
enum class pull_phase : uint8_t { waiting = 0, downloading, verifying, extracting, done, exists };

/// Published on topic "image.progress" (and sent to the pull's sink): one blob's state.
struct image_progress {
  /// The pull's watch id, chosen by the caller.
  uint64_t watch = 0;
  std::string ref;
  std::string digest;
  pull_phase phase = pull_phase::waiting;
  uint64_t current = 0;
  uint64_t total = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, image_progress& x) {
  return f(caf::meta::type_name("image_progress"), x.watch, x.ref, x.digest, x.phase, x.current,
           x.total);
}

/// What prune removed.
struct prune_report {
  uint32_t blobs = 0;
  uint32_t snapshots = 0;
  uint64_t bytes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, prune_report& x) {
  return f(caf::meta::type_name("prune_report"), x.blobs, x.snapshots, x.bytes);
}

/// A root file system prepared from an image: an overlay mount of the image's snapshots
/// (read-only lower dirs) with a private upper and work dir, mounted on `target`.
struct rootfs_info {
  /// The owner's id (a container id); unique among prepared root file systems.
  std::string id;
  std::string image;
  std::string manifest_digest;
  std::string target;
  /// Top layer first, as overlayfs takes them.
  std::vector<std::string> lower_dirs;
  std::string upper_dir;
  std::string work_dir;
  /// Who mounted it ("containers", "vms", or "api:" + the gateway caller); only its owner
  /// unmounts it (root over the unix socket: any "api:" one). Empty: recorded before
  /// owners were (schema v1), anyone may. Since schema v2 of kind "rootfs".
  std::string owner;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rootfs_info& x) {
  return f(caf::meta::type_name("rootfs_info"), x.id, x.image, x.manifest_digest, x.target,
           x.lower_dirs, x.upper_dir, x.work_dir, x.owner);
}

} // namespace cyto
