#pragma once
// Image references: "[registry/]repository[:tag][@sha256:hex]", as the distribution spec
// and every docker-compatible tool write them.

#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace cyto::images {

struct image_ref {
  /// "host[:port]"; short names get the configured default registry.
  std::string registry;
  /// "library/busybox", "team/app"
  std::string repository;
  /// Empty when only a digest was given.
  std::string tag;
  /// "sha256:<64 hex>" or empty.
  std::string digest;

  /// "registry/repository"
  std::string repo_name() const;
  /// The canonical name an image is recorded under: "registry/repo:tag", or
  /// "registry/repo@digest" when no tag was given.
  std::string name() const;
  /// What to ask the registry's manifests endpoint for: the digest if given, else the tag.
  std::string reference() const;
};

/// Parses a reference. Short names ("busybox", "team/app:1") resolve to
/// `default_registry` ("docker.io" adds "library/" to one-part names). A missing tag and
/// digest means tag "latest". Errors are invalid_argument naming what is wrong.
caf::expected<image_ref> parse_reference(std::string_view text,
                                         std::string_view default_registry = "docker.io");

/// True if `text` is "sha256:" followed by 64 lowercase hex digits.
bool is_sha256_digest(std::string_view text);

/// The host to connect to for a registry name ("docker.io" is served by
/// "registry-1.docker.io").
std::string registry_host(const std::string& registry);

} // namespace cyto::images
