#pragma once
// A container's OCI bundle from its image config and the user's spec: config.json
// (entrypoint/cmd/env/user/workdir merged with the overrides, podman's default
// capabilities, namespaces, masked and read-only paths) and the files bind-mounted
// over /etc/hosts, /etc/hostname and /etc/resolv.conf. Plain C++; nothing here touches
// the kernel except reading the image's /etc/passwd and /etc/group.

#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "bus/containers.hpp"

namespace cyto::containers {

/// The parts of an OCI image config a container takes.
struct image_defaults {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;
  std::string user;
  std::string workdir;
};

/// Reads the image config JSON ({"config": {...}}); invalid_argument if malformed.
caf::expected<image_defaults> parse_image_config(const std::string& json_text);

/// Everything that goes into one bundle.
struct bundle_request {
  container_spec spec;
  image_defaults image;
  /// The mounted rootfs (bundle/rootfs); its etc/passwd and etc/group resolve names.
  std::string rootfs;
  /// Empty: a new network namespace (only lo). Else the netns file to join.
  std::string netns_path;
  /// Namespaces to join instead of making them ("ipc" -> "/proc/<pid>/ns/ipc").
  std::map<std::string, std::string> join;
  std::string hostname;
  /// From the network attachment: addresses (CIDR) and DNS.
  std::vector<std::string> ips;
  std::vector<std::string> dns_servers;
  std::vector<std::string> dns_search;
  /// The host's resolv.conf text, used when the attachment has no DNS servers.
  std::string host_resolv_conf;
  /// The host directory of each named volume the spec mounts (claimed through the
  /// volumes actor), by volume name.
  std::map<std::string, std::string> volume_paths;
};

/// What the bundle dir gets.
struct bundle_files {
  std::string config_json;
  std::string hosts;
  std::string hostname;
  std::string resolv_conf;
  /// The process's argv after the merge.
  std::vector<std::string> command;
};

/// podman's default capabilities (without "CAP_").
const std::vector<std::string>& default_capabilities();

/// Checks the spec's mounts (-v, --tmpfs) before anything is made: kinds, targets
/// (absolute, no "..", not "/" and not in /proc, /sys or on /dev, each once), bind
/// sources (absolute, existing: not_found otherwise), tmpfs modes (octal, in `source`).
caf::error check_mounts(const std::vector<container_mount>& mounts);

/// Builds the bundle files; invalid_argument for a bad user, capability, env entry, or
/// when neither the spec nor the image gives a command. `bundle` is the bundle dir.
caf::expected<bundle_files> make_bundle(const bundle_request& req, const std::string& bundle);

/// Writes the bundle files into `bundle` (which must exist); nothing is left on error.
caf::error write_bundle(const bundle_files& files, const std::string& bundle);

/// Brings the bundle of a container that runs again up to date with its new network
/// attachment and pod namespaces: config.json's namespace paths (req.join, netns_path),
/// hosts (req.ips) and resolv.conf; the rest of config.json stays as it was made.
caf::error refresh_bundle(const bundle_request& req, const std::string& bundle);

} // namespace cyto::containers
