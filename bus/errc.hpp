#pragma once
// The one error vocabulary of cyto: carried as caf::error on the bus and as a
// "cyto.<code>: <text>" Cap'n Proto exception at the gateway.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace cyto {

/// Error codes. The numbers are pinned: they cross nodes and match
/// schema/common.capnp's ErrorCode. Never renumber; only append.
enum class errc : uint8_t {
  /// Not an error.
  ok = 0,
  /// The named thing (cell, image, subscription, service) does not exist.
  not_found = 1,
  /// A thing with that name exists already.
  already_exists = 2,
  /// The request is malformed or a value is out of range.
  invalid_argument = 3,
  /// The caller may not do this.
  permission_denied = 4,
  /// A limit was reached (queue full, no ids left, memory).
  resource_exhausted = 5,
  /// The service or a dependency cannot answer now (actor down, registry unreachable).
  unavailable = 6,
  /// A bug or an unexpected answer from the kernel.
  internal = 7,
  /// The system is not in a state that allows this (e.g. free a cell with processes).
  failed_precondition = 8,
  /// This host or build cannot do this (missing kernel feature, cgroup v1 limit).
  unsupported = 9,
  /// The call was cancelled.
  cancelled = 10,
  /// The call took longer than allowed.
  timeout = 11,
};

/// The highest code in use; codes above it are unknown.
inline constexpr errc errc_last = errc::timeout;

/// The CAF error category of cyto errors.
inline constexpr caf::atom_value errc_category = caf::atom("cyto");

/// snake_case name of a code ("not_found"); "unknown" for values past errc_last.
std::string_view to_string(errc code) noexcept;

/// Parses a snake_case name back into a code.
std::optional<errc> errc_from_string(std::string_view name) noexcept;

/// Makes a cyto error carrying a human context ("cell web: no such cell").
caf::error make_error(errc code, std::string context);

/// Makes a cyto error without context (lets caf::error be built from an errc).
caf::error make_error(errc code);

/// The cyto code of any error: our own category as is, CAF's system errors
/// mapped (receiver down -> unavailable, timeout -> timeout, ...), anything else internal.
errc code_of(const caf::error& err) noexcept;

/// The human context of an error (the text after "cyto.<code>: ").
std::string context_of(const caf::error& err);

/// Renders "cyto.<code>: <context>", the stable form users and scripts see.
std::string render(const caf::error& err);

/// Renders "cyto.<code>: <context>" from parts.
std::string render(errc code, std::string_view context);

/// Parses "cyto.<code>: <context>" (also when prefixed, e.g. by "remote exception: ").
/// Returns nothing if the text holds no cyto error.
std::optional<std::pair<errc, std::string>> parse_rendered(std::string_view text);

} // namespace cyto
