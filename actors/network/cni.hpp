#pragma once
// CNI 1.0 from the runtime's side: run a plugin binary with the CNI_* environment and
// its configuration on stdin, chain a conflist's plugins (ADD in order, each given the
// previous result; DEL in reverse), and read results and errors. No plugin code here:
// the plugins are Debian's containernetworking-plugins.

#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "bus/network.hpp"

namespace cyto::network {

/// The Debian package that ships the standard plugins (named in "missing plugin" errors).
inline constexpr const char* plugins_package = "containernetworking-plugins";

/// What one invocation is about (the CNI_* variables besides the command).
struct cni_target {
  std::string container_id;
  std::string netns;
  std::string ifname;
  /// Directories searched for plugin binaries (CNI_PATH).
  std::vector<std::string> plugin_dirs;
  std::vector<port_mapping> ports;
};

/// Where the plugin `type` lives in `dirs`; unavailable (naming the package) if nowhere.
caf::expected<std::string> find_plugin(const std::string& type,
                                       const std::vector<std::string>& dirs);

/// Checks that every plugin of a conflist exists (before anything is changed).
caf::error check_plugins(const nlohmann::json& conflist, const std::vector<std::string>& dirs);

/// Runs ADD through the list; returns the final result. On failure runs DEL through
/// the whole list (so nothing is left) and returns the first plugin's error.
caf::expected<nlohmann::json> cni_add(const nlohmann::json& conflist, const cni_target& t);

/// Runs DEL through the list in reverse, given the result ADD returned (null if unknown).
/// Tries every plugin; returns the first error.
caf::error cni_del(const nlohmann::json& conflist, const cni_target& t,
                   const nlohmann::json& prev_result);

/// Runs CHECK through the list with the recorded result.
caf::error cni_check(const nlohmann::json& conflist, const cni_target& t,
                     const nlohmann::json& prev_result);

/// Runs only the IPAM plugin of the conflist's bridge (host-local) for ADD: an address
/// lease for `t` (container id + ifname) without any interface; for a VM's tap.
caf::expected<nlohmann::json> ipam_add(const nlohmann::json& conflist, const cni_target& t);

/// Releases what ipam_add leased.
caf::error ipam_del(const nlohmann::json& conflist, const cni_target& t);

/// Copies IPs, gateway, MAC (of the interface in the netns) and DNS from a CNI result.
/// Never throws: a result of another shape (a plugin's bug) is an internal error naming
/// the field.
caf::error read_result(const nlohmann::json& result, net_attachment& out);

} // namespace cyto::network
