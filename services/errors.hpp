#pragma once
// Errors at the gateway: cyto::errc <-> "cyto.<code>: text" kj exceptions and
// schema ErrorCode values.

#include <string_view>

#include <kj/exception.h>

#include "bus/errc.hpp"
#include "schema/common.capnp.h"

namespace cyto::services {

/// The exception a client sees for a bus error: description "cyto.<code>: <context>".
kj::Exception to_exception(const caf::error& err);
kj::Exception to_exception(errc code, std::string_view context);

/// Throws to_exception(code, context).
[[noreturn]] void fail(errc code, std::string_view context);

/// errc <-> schema::ErrorCode (the numbers are pinned to match).
schema::ErrorCode to_capnp(errc code) noexcept;
errc from_capnp(schema::ErrorCode code) noexcept;

/// The cyto code and text in any exception (a kj::Exception we made, or any other:
/// its description is kept under `internal`).
std::pair<errc, std::string> from_exception(const kj::Exception& e);

} // namespace cyto::services
