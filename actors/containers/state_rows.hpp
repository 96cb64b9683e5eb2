#pragma once
// What state.db keeps of containers and pods, and the schema versions of those rows with
// the migrations from older ones (store::state_db::declare).

#include <cstdint>
#include <vector>

#include "actors/store/state_db.hpp"
#include "bus/containers.hpp"
#include "bus/errc.hpp"

namespace cyto::containers {

inline constexpr const char* kind_container = "container";
inline constexpr const char* kind_pod = "pod";

/// What state.db keeps of a container.
struct container_row {
  container_info info;
  uint64_t start_time = 0;
  uint32_t shim_pid = 0;
  bool net_attached = false;
  /// The shim's start time (/proc/PID/stat field 22): signals to shim_pid check it, so a
  /// reused pid is never signalled. 0: unknown (rows of schema v1), not checked.
  uint64_t shim_start_time = 0;
  /// Stopped by a user's stop or kill: the restart policy leaves it stopped (since v3).
  bool stopped_by_user = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_row& x) {
  return f(caf::meta::type_name("container_row"), x.info, x.start_time, x.shim_pid, x.net_attached,
           x.shim_start_time, x.stopped_by_user);
}

/// The schema version of kind "container" rows: 2 added container_spec::sysctls and
/// container_row::shim_start_time; 3 added container_spec::{mounts, restart, tty,
/// interactive}, container_info::restart_count and container_row::stopped_by_user, and
/// spells "no network" as network "none" (an empty network is the default network now).
inline constexpr uint32_t container_row_version = 3;

/// A container row as schema v1 laid it out: v2's fields in the same order, without
/// container_spec::sysctls and container_row::shim_start_time. Reads a v1 blob into
/// today's types (sysctls empty) and writes today's as v1 (the upgrade test makes a
/// state.db of the previous format with it).
struct container_row_v1 {
  container_row& row;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_row_v1& x) {
  auto& i = x.row.info;
  auto& s = i.spec;
  return f(s.name, s.image, s.entrypoint, s.args, s.env, s.workdir, s.user, s.hostname, s.limits,
           s.pod, s.network, s.ports, s.auto_remove, s.read_only, s.cap_add, i.id, i.state, i.pid,
           i.exit_code, i.exit_signal, i.error, i.cell, i.executable, i.image_name,
           i.image_digest, i.bundle, i.command, i.ips, i.created_unix_nanos,
           i.started_unix_nanos, i.finished_unix_nanos, x.row.start_time, x.row.shim_pid,
           x.row.net_attached);
}

/// A container row as schema v2 laid it out: v1's fields, then container_spec::sysctls
/// after cap_add and container_row::shim_start_time at the end.
struct container_row_v2 {
  container_row& row;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, container_row_v2& x) {
  auto& i = x.row.info;
  auto& s = i.spec;
  return f(s.name, s.image, s.entrypoint, s.args, s.env, s.workdir, s.user, s.hostname, s.limits,
           s.pod, s.network, s.ports, s.auto_remove, s.read_only, s.cap_add, s.sysctls, i.id,
           i.state, i.pid, i.exit_code, i.exit_signal, i.error, i.cell, i.executable,
           i.image_name, i.image_digest, i.bundle, i.command, i.ips, i.created_unix_nanos,
           i.started_unix_nanos, i.finished_unix_nanos, x.row.start_time, x.row.shim_pid,
           x.row.net_attached, x.row.shim_start_time);
}

/// state_db migration step 1 -> 2 of kind "container".
inline caf::expected<std::vector<char>> container_v1_to_v2(const std::vector<char>& blob) {
  container_row row;
  container_row_v1 old{row};
  if (!store::from_blob(blob, old))
    return make_error(errc::internal, "not a schema v1 container row");
  container_row_v2 v2{row};
  return store::to_blob(v2);
}

/// state_db migration step 2 -> 3 of kind "container": a container of v2 without a
/// network (and not in a pod) had only lo, which v3 spells "none".
inline caf::expected<std::vector<char>> container_v2_to_v3(const std::vector<char>& blob) {
  container_row row;
  container_row_v2 old{row};
  if (!store::from_blob(blob, old))
    return make_error(errc::internal, "not a schema v2 container row");
  if (row.info.spec.network.empty() && row.info.spec.pod.empty())
    row.info.spec.network = "none";
  return store::to_blob(row);
}

struct pod_row {
  pod_info info;
  bool net_attached = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pod_row& x) {
  return f(caf::meta::type_name("pod_row"), x.info, x.net_attached);
}

} // namespace cyto::containers
