#include "bus/errc.hpp"

#include <array>

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace cyto {

namespace {

constexpr std::array<std::string_view, static_cast<size_t>(errc_last) + 1> names = {
  "ok",          "not_found",           "already_exists", "invalid_argument",
  "permission_denied", "resource_exhausted", "unavailable",    "internal",
  "failed_precondition", "unsupported",  "cancelled",      "timeout",
};

errc from_sec(caf::sec code) noexcept {
  switch (code) {
    case caf::sec::request_receiver_down:
    case caf::sec::cannot_forward_to_invalid_actor:
    case caf::sec::no_route_to_receiving_node:
    case caf::sec::cannot_connect_to_node:
      return errc::unavailable;
    case caf::sec::request_timeout:
    case caf::sec::connection_timeout:
      return errc::timeout;
    case caf::sec::unexpected_message:
    case caf::sec::invalid_argument:
      return errc::invalid_argument;
    default:
      return errc::internal;
  }
}

} // namespace

std::string_view to_string(errc code) noexcept {
  auto i = static_cast<size_t>(code);
  return i < names.size() ? names[i] : std::string_view{"unknown"};
}

std::optional<errc> errc_from_string(std::string_view name) noexcept {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name)
      return static_cast<errc>(i);
  return std::nullopt;
}

caf::error make_error(errc code, std::string context) {
  return caf::error{static_cast<uint8_t>(code), errc_category,
                    caf::make_message(std::move(context))};
}

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), errc_category};
}

errc code_of(const caf::error& err) noexcept {
  if (!err)
    return errc::ok;
  if (err.category() == errc_category)
    return err.code() <= static_cast<uint8_t>(errc_last) ? static_cast<errc>(err.code())
                                                         : errc::internal;
  if (err.category() == caf::atom("system"))
    return from_sec(static_cast<caf::sec>(err.code()));
  return errc::internal;
}

std::string context_of(const caf::error& err) {
  if (!err)
    return {};
  const auto& ctx = err.context();
  if (err.category() == errc_category) {
    if (ctx.match_elements<std::string>())
      return ctx.get_as<std::string>(0);
    return {};
  }
  // Foreign categories (CAF's own): keep CAF's rendering so nothing is lost.
  if (err.category() == caf::atom("system"))
    return "actor system: " + caf::to_string(static_cast<caf::sec>(err.code()))
           + (ctx.empty() ? "" : " " + caf::to_string(ctx));
  return caf::to_string(err);
}

std::string render(errc code, std::string_view context) {
  std::string out = "cyto.";
  out += to_string(code);
  out += ": ";
  out += context;
  return out;
}

std::string render(const caf::error& err) {
  return render(code_of(err), context_of(err));
}

std::optional<std::pair<errc, std::string>> parse_rendered(std::string_view text) {
  auto pos = text.find("cyto.");
  while (pos != std::string_view::npos) {
    auto rest = text.substr(pos + 5);
    auto colon = rest.find(": ");
    if (colon != std::string_view::npos) {
      if (auto code = errc_from_string(rest.substr(0, colon)))
        return std::make_pair(*code, std::string{rest.substr(colon + 2)});
    }
    pos = text.find("cyto.", pos + 5);
  }
  return std::nullopt;
}

} // namespace cyto
