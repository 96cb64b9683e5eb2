#pragma once
// OCI / Docker schema 2 manifests, indexes (manifest lists) and image configs.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace cyto::images {

namespace media_type {
inline constexpr const char* oci_manifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* oci_index = "application/vnd.oci.image.index.v1+json";
inline constexpr const char* docker_manifest =
  "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* docker_list =
  "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr const char* oci_config = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* docker_config = "application/vnd.docker.container.image.v1+json";
/// What a client sends in Accept for a manifest.
inline constexpr const char* accept_manifests =
  "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
  "application/vnd.docker.distribution.manifest.list.v2+json, "
  "application/vnd.docker.distribution.manifest.v2+json";
} // namespace media_type

/// How a layer blob is compressed.
enum class compression { none, gzip, zstd };

/// The compression of a layer media type, or nothing if it is not a layer type we unpack.
std::optional<compression> layer_compression(const std::string& media_type);

struct platform {
  std::string os;
  std::string architecture;
  std::string variant;
  /// "linux/amd64" or "linux/arm64/v8"
  std::string str() const;
};

/// Parses "os/arch[/variant]"; empty text means linux/amd64.
caf::expected<platform> parse_platform(const std::string& text);

struct descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::optional<platform> for_platform;
};

/// An image manifest or an index: which one is in `is_index`.
struct manifest {
  std::string media_type;
  bool is_index = false;
  /// Image manifest.
  descriptor config;
  std::vector<descriptor> layers;
  /// Index.
  std::vector<descriptor> manifests;
};

/// Parses a manifest document. `declared` is the Content-Type (or the descriptor's
/// media type) if known; an unsupported type is an `unsupported` error naming it.
caf::expected<manifest> parse_manifest(const std::string& body, const std::string& declared);

/// Picks the manifest for `want` from an index (variant ignored when `want` has none).
caf::expected<descriptor> pick_platform(const manifest& index, const platform& want);

struct image_config {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string created;
  std::vector<std::string> diff_ids;
};

caf::expected<image_config> parse_config(const std::string& body);

/// Chain ids of a layer stack: chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
std::vector<std::string> chain_ids(const std::vector<std::string>& diff_ids);

} // namespace cyto::images
