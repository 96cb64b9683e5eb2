#pragma once
// Messages of the volumes domain: named volumes (a directory of the state dir that
// outlives the containers mounting it) and the claims containers hold on them. The
// containers actor claims the volumes of a container at create and releases them once
// the container is removed; a claimed volume cannot be removed.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace cyto {

/// A container that uses a volume: the claim a create made and a removal releases.
struct volume_user {
  /// The container's id (64 hex digits): claims are keyed by it.
  std::string id;
  /// Its name, for display.
  std::string name;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, volume_user& x) {
  return f(caf::meta::type_name("volume_user"), x.id, x.name);
}

/// A named volume as list and inspect report it.
struct volume_info {
  /// [A-Za-z0-9][A-Za-z0-9_.-]{0,127}; generated (64 hex digits) when create gets none.
  std::string name;
  /// The host directory containers mount: <state>/volumes/<name>/_data.
  std::string path;
  int64_t created_unix_nanos = 0;
  /// Containers (running or not, until removed) that use it, by id.
  std::vector<volume_user> users;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, volume_info& x) {
  return f(caf::meta::type_name("volume_info"), x.name, x.path, x.created_unix_nanos, x.users);
}

/// What a claim asks for: volume `volume` (made when missing) for container `user`.
struct volume_claim {
  std::string volume;
  volume_user user;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, volume_claim& x) {
  return f(caf::meta::type_name("volume_claim"), x.volume, x.user);
}

} // namespace cyto
