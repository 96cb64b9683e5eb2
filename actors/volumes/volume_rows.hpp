#pragma once
// What state.db keeps of named volumes, and the schema version of those rows
// (store::state_db::declare).

#include <cstdint>

#include "actors/store/state_db.hpp"
#include "bus/volumes.hpp"

namespace cyto::volumes {

/// Rows of kind "volume", keyed by name. States: "creating" (written before the
/// directory), "ready", "removing" (written before the data goes).
inline constexpr const char* kind_volume = "volume";

/// The schema version of kind "volume" rows: 1, the first.
inline constexpr uint32_t volume_row_version = 1;

/// What state.db keeps of a volume: its info, the claims (users) included, so a claim
/// is written in the same row update that makes it.
struct volume_row {
  volume_info info;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, volume_row& x) {
  return f(caf::meta::type_name("volume_row"), x.info);
}

} // namespace cyto::volumes
