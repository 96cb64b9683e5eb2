#include "cli/output.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace cyto::cli {

void print_table(const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (auto& [k, v] : rows)
    width = std::max(width, k.size());
  for (auto& [k, v] : rows)
    std::printf("%-*s  %s\n", static_cast<int>(width), k.c_str(), v.c_str());
}

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

std::string human_duration(uint64_t nanos) {
  auto ms = nanos / 1'000'000;
  if (ms < 1000)
    return std::to_string(ms) + "ms";
  auto s = ms / 1000;
  std::string out;
  if (s >= 86400) out += std::to_string(s / 86400) + "d";
  if (s >= 3600) out += std::to_string(s / 3600 % 24) + "h";
  if (s >= 60) out += std::to_string(s / 60 % 60) + "m";
  out += std::to_string(s % 60) + "s";
  return out;
}

namespace output_impl {

/// UTC "YYYY-MM-DDTHH:MM:SS.<fraction>Z" with 3 or 9 fraction digits.
std::string utc_time(int64_t unix_nanos, bool nanos) {
  time_t secs = unix_nanos / 1'000'000'000;
  auto sub = static_cast<int>(unix_nanos % 1'000'000'000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%0*dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, nanos ? 9 : 3,
                nanos ? sub : sub / 1'000'000);
  return buf;
}

} // namespace output_impl

std::string iso_time(int64_t unix_nanos) {
  using namespace output_impl;
  return utc_time(unix_nanos, false);
}

std::string rfc3339_nanos(int64_t unix_nanos) {
  using namespace output_impl;
  return utc_time(unix_nanos, true);
}

std::string join(const std::vector<std::string>& xs, const char* sep) {
  using namespace output_impl;
  std::string out;
  for (auto& x : xs) {
    if (!out.empty())
      out += sep;
    out += x;
  }
  return out;
}

} // namespace cyto::cli
