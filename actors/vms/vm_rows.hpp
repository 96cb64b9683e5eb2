#pragma once
// What state.db keeps of a VM (its vm_info, kind "vm"), the schema version of those rows
// and the migrations from older ones (store::state_db::declare).

#include <cstdint>
#include <vector>

#include "actors/store/state_db.hpp"
#include "bus/errc.hpp"
#include "bus/vms.hpp"

namespace cyto::vms {

inline constexpr const char* kind_vm = "vm";

/// The schema version of kind "vm" rows: 2 added vm_spec::network and ::image, and
/// vm_info::ips, gateway, tap, mac and image_root.
inline constexpr uint32_t vm_row_version = 2;

/// A vm row as schema v1 laid it out: today's fields in the same order, without those
/// of v2. Reads a v1 blob into today's vm_info (the new fields empty) and writes one.
struct vm_row_v1 {
  vm_info& info;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, vm_row_v1& x) {
  auto& i = x.info;
  auto& s = i.spec;
  return f(s.name, s.vcpus, s.memory_bytes, s.kernel, s.initrd, s.cmdline, s.drives, s.accel,
           s.machine, s.labels, s.init_args, i.state, i.pid, i.exit_reason, i.exit_code, i.accel,
           i.accel_reason, i.machine, i.cell, i.executable, i.console_path, i.channel_path,
           i.qmp_path, i.dir, i.created_unix_nanos, i.started_unix_nanos, i.finished_unix_nanos);
}

/// state_db migration step 1 -> 2 of kind "vm".
inline caf::expected<std::vector<char>> vm_v1_to_v2(const std::vector<char>& blob) {
  vm_info info;
  vm_row_v1 old{info};
  if (!store::from_blob(blob, old))
    return make_error(errc::internal, "not a schema v1 vm row");
  return store::to_blob(info);
}

} // namespace cyto::vms
