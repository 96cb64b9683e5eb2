#pragma once
// Detects what this host supports. Plain C++: no actors, no capnp.

#include <string>
#include <string_view>
#include <vector>

#include "bus/messages.hpp"

namespace cyto::node {

/// A cgroup mount seen in /proc/self/mountinfo.
struct cgroup_mount {
  std::string path;
  bool v2 = false;
  /// v1: controllers named in the super options (cpu, memory, ...).
  std::vector<std::string> controllers;
};

/// Parses the cgroup and cgroup2 mounts out of a mountinfo text.
std::vector<cgroup_mount> parse_cgroup_mounts(std::string_view mountinfo);

/// v2 if only cgroup2 is mounted, v1 if only cgroup, hybrid if both, unknown if none.
cgroup_mode classify(const std::vector<cgroup_mount>& mounts);

/// Probes the running host (mountinfo, /proc, /sys, /dev/kvm, syscalls).
host_features detect_host_features();

} // namespace cyto::node
