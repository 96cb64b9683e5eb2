#pragma once
// Human units on the command line: sizes (256M), durations (50ms), cpu.max (50ms/100ms).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cyto::cli {

/// "1024", "512K", "256M", "1G", "2T" (binary multiples; also "Ki", "MiB", "kb").
std::optional<uint64_t> parse_size(std::string_view text);

/// "500us", "50ms", "2s", "1m" -> microseconds; a bare number is microseconds.
std::optional<uint64_t> parse_duration_us(std::string_view text);

/// cpu.max as "QUOTA/PERIOD", "QUOTA" (period 100ms) or "max[/PERIOD]".
struct cpu_max {
  uint64_t quota_us = 0; // UINT64_MAX for "max"
  uint64_t period_us = 0;
};
std::optional<cpu_max> parse_cpu_max(std::string_view text);

/// "TERM", "SIGTERM", "15" -> 15.
std::optional<int> parse_signal(std::string_view text);

/// A port mapping as given on the command line: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO].
struct port_spec {
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::string protocol = "tcp";
  std::string host_ip;
};
std::optional<port_spec> parse_port(std::string_view text);

/// "8080:80/tcp" (with "IP:" in front when bound to one address).
std::string port_text(const port_spec& p);

/// "1.5GiB" style rendering of a byte count.
std::string human_size(uint64_t bytes);

/// A point in time as podman's logs --since/--until take it, in Unix nanoseconds: a
/// duration back from `now_nanos` ("10m", "1h30m", "90s", "500ms"), an RFC 3339 time
/// ("2026-12-04T18:00:00Z", fractions and "+01:00" offsets too) or Unix seconds
/// ("1764871200.5").
std::optional<int64_t> parse_time_nanos(std::string_view text, int64_t now_nanos);

} // namespace cyto::cli
