#pragma once
// Checks of cell names and limits before anything touches the kernel.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "bus/cells.hpp"

namespace cyto::cells {

/// The cgroup directory that holds a cell's own processes (children are its siblings).
inline constexpr std::string_view leaf_name = "_";

/// A cell name: '/'-separated segments of [A-Za-z0-9._-], none "." or ".." or "_",
/// no empty segment, at most 255 bytes.
caf::error check_name(std::string_view name);

/// Online CPUs of this host as a sorted list ("0-1,3" -> {0,1,3}); empty if unreadable.
std::vector<int> online_cpus();

/// Parses a cpu/mem list ("0-2,5"); nothing on malformed input.
std::optional<std::vector<int>> parse_cpu_list(std::string_view text);

/// Range and consistency checks of limits that hold on every host
/// (weights 1..10000, period 1ms..1s, quota <= period x online cpus,
/// min <= low <= high <= max, cpuset within online CPUs, pids >= 1).
caf::error check_limits(const cell_limits& limits, const std::vector<int>& cpus);

} // namespace cyto::cells
