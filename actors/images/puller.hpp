#pragma once
// The blocking work of pulls and imports, run on a worker thread: resolve a name to a
// manifest (picking the platform from an index), fetch what the content store lacks
// (layers in parallel, bounded), unpack missing snapshots, and describe the image.

#include <functional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "actors/images/content_store.hpp"
#include "actors/images/manifest.hpp"
#include "actors/images/reference.hpp"
#include "actors/images/registry_client.hpp"
#include "actors/images/snapshots.hpp"
#include "bus/images.hpp"

namespace cyto::images {

/// What a job may use. Everything it touches is safe to share with other jobs: the
/// stores only ever rename complete files and directories into place.
struct job_context {
  content_store& store;
  snapshot_store& snapshots;
  const registry_settings& settings;
  /// True once the job should stop (daemon shutting down).
  std::function<bool()> cancelled;
  /// Receives progress (called from any of the job's threads, serialized).
  std::function<void(const image_progress&)> report;
};

/// Pulls `ref` for `want` from its registry.
caf::expected<image_info> pull_image(job_context& ctx, const image_ref& ref, const platform& want);

/// Imports every image of an OCI layout directory or an oci-archive tar at `path`.
/// `name` (optional) names the image when the layout holds exactly one.
caf::expected<std::vector<image_info>> import_images(job_context& ctx, const std::string& path,
                                                     const std::string& name,
                                                     const platform& want);

} // namespace cyto::images
