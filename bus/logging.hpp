#pragma once
// Named spdlog loggers sharing one set of sinks: one logger per actor or component.

#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "bus/messages.hpp"

namespace cyto::log {

/// Sets the sinks and level every logger made by `get` uses; existing loggers are
/// rebuilt with them. Call before actors start (it is not safe against concurrent logging).
void init(std::vector<spdlog::sink_ptr> sinks, spdlog::level::level_enum level);

/// Returns the logger called `name`, made on first use with the shared sinks.
std::shared_ptr<spdlog::logger> get(const std::string& name);

/// Converts between our level and spdlog's.
spdlog::level::level_enum to_spdlog(log_level x) noexcept;
log_level from_spdlog(spdlog::level::level_enum x) noexcept;

/// Parses "trace|debug|info|warn|error|critical" (also "warning", "err").
std::optional<log_level> parse_level(std::string_view text) noexcept;

} // namespace cyto::log
