#pragma once
// Rendering for humans (aligned tables) and scripts (--json).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cyto::cli {

/// Prints rows as "key  value" with the keys padded to one width.
void print_table(const std::vector<std::pair<std::string, std::string>>& rows);

/// Prints one JSON document on one line.
void print_json(const nlohmann::json& j);

/// "3h12m5s", "250ms" for a duration in nanoseconds.
std::string human_duration(uint64_t nanos);

/// "2026-11-23T11:05:43.123Z" for nanoseconds since the epoch (UTC).
std::string iso_time(int64_t unix_nanos);

/// "2026-11-23T11:05:43.123456789Z", RFC 3339 with nanoseconds (logs --timestamps).
std::string rfc3339_nanos(int64_t unix_nanos);

/// "a b c"
std::string join(const std::vector<std::string>& xs, const char* sep = " ");

} // namespace cyto::cli
