#include "services/errors.hpp"

#include <kj/debug.h>

namespace cyto::services {

kj::Exception to_exception(errc code, std::string_view context) {
  auto text = render(code, context);
  auto type = kj::Exception::Type::FAILED;
  if (code == errc::resource_exhausted)
    type = kj::Exception::Type::OVERLOADED;
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(text.data(), text.size()));
}

kj::Exception to_exception(const caf::error& err) {
  return to_exception(code_of(err), context_of(err));
}

void fail(errc code, std::string_view context) {
  kj::throwFatalException(to_exception(code, context));
}

schema::ErrorCode to_capnp(errc code) noexcept {
  static_assert(static_cast<uint16_t>(schema::ErrorCode::TIMEOUT) == static_cast<uint8_t>(errc::timeout));
  static_assert(static_cast<uint16_t>(schema::ErrorCode::NOT_FOUND) == static_cast<uint8_t>(errc::not_found));
  if (code > errc_last)
    return schema::ErrorCode::INTERNAL;
  return static_cast<schema::ErrorCode>(static_cast<uint16_t>(code));
}

errc from_capnp(schema::ErrorCode code) noexcept {
  auto v = static_cast<uint16_t>(code);
  return v <= static_cast<uint8_t>(errc_last) ? static_cast<errc>(v) : errc::internal;
}

std::pair<errc, std::string> from_exception(const kj::Exception& e) {
  std::string_view text{e.getDescription().cStr()};
  if (auto parsed = parse_rendered(text))
    return *parsed;
  return {errc::internal, std::string{text}};
}

} // namespace cyto::services
