#pragma once
// Cgroups for the standalone `cyto-runtime`: linux.cgroupsPath on this host's cgroupfs,
// through the cells domain's cgroup driver (v1/hybrid and v2), so there is one driver in
// the tree. In the daemon the cells actor hands out cells instead.

#include <memory>

#include "actors/containers/runtime.hpp"

namespace cyto::containers {

/// linux.resources in the cells' v2 terms; an error names a value the driver refuses.
std::unique_ptr<cgroup_provider> make_cgroupfs_provider();

} // namespace cyto::containers
