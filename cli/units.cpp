#include "cli/units.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace cyto::cli {

namespace units_impl {

/// Splits "256M" into 256 and "M"; the number part must be digits.
bool split(std::string_view text, uint64_t& n, std::string& unit) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])))
    ++i;
  if (i == 0)
    return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, n);
  if (ec != std::errc{})
    return false;
  unit.clear();
  for (char c : text.substr(i))
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return true;
}

bool mul(uint64_t n, uint64_t by, uint64_t& out) {
  if (by != 0 && n > UINT64_MAX / by)
    return false;
  out = n * by;
  return true;
}

/// A number followed by one of `units` (case-insensitive; "" for none), times its factor.
std::optional<uint64_t> scaled(std::string_view text,
                               std::initializer_list<std::pair<std::string_view, uint64_t>> units) {
  uint64_t n;
  std::string unit;
  if (!split(text, n, unit))
    return std::nullopt;
  for (auto& [name, by] : units) {
    uint64_t out;
    if (unit == name)
      return mul(n, by, out) ? std::optional<uint64_t>{out} : std::nullopt;
  }
  return std::nullopt;
}

} // namespace units_impl

std::optional<uint64_t> parse_size(std::string_view text) {
  using namespace units_impl;
  constexpr uint64_t k = 1ull << 10, m = 1ull << 20, g = 1ull << 30, t = 1ull << 40;
  return scaled(text, {{"", 1},     {"b", 1},    {"k", k},    {"ki", k},  {"kib", k},
                       {"kb", k},   {"m", m},    {"mi", m},   {"mib", m}, {"mb", m},
                       {"g", g},    {"gi", g},   {"gib", g},  {"gb", g},  {"t", t},
                       {"ti", t},   {"tib", t},  {"tb", t}});
}

std::optional<uint64_t> parse_duration_us(std::string_view text) {
  using namespace units_impl;
  return scaled(text, {{"", 1}, {"us", 1}, {"ms", 1000}, {"s", 1000000}, {"m", 60000000},
                       {"min", 60000000}});
}

std::optional<cpu_max> parse_cpu_max(std::string_view text) {
  using namespace units_impl;
  cpu_max out;
  auto slash = text.find('/');
  auto quota = text.substr(0, slash);
  if (quota == "max") {
    out.quota_us = UINT64_MAX;
  } else if (auto q = parse_duration_us(quota)) {
    out.quota_us = *q;
  } else {
    return std::nullopt;
  }
  if (slash != std::string_view::npos) {
    auto p = parse_duration_us(text.substr(slash + 1));
    if (!p || *p == 0)
      return std::nullopt;
    out.period_us = *p;
  }
  return out;
}

std::optional<int> parse_signal(std::string_view text) {
  using namespace units_impl;
  int n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc{} && p == text.data() + text.size())
    return (n >= 1 && n <= 64) ? std::optional<int>{n} : std::nullopt;
  std::string name{text};
  for (auto& c : name)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0)
    name = name.substr(3);
  for (int s = 1; s < 32; ++s)
    if (auto* abbrev = sigabbrev_np(s); abbrev && name == abbrev)
      return s;
  return std::nullopt;
}

std::optional<int64_t> parse_time_nanos(std::string_view text, int64_t now_nanos) {
  using namespace units_impl;
  std::string s{text};
  // RFC 3339: date 'T' time, optional fraction, then Z or an offset.
  int y, mo, d, h, mi, sec, used = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                  &used) == 6 && used == 19) {
    int64_t frac = 0;
    size_t i = 19;
    if (i < s.size() && s[i] == '.') {
      int64_t scale = 100'000'000;
      size_t digits = 0;
      for (++i; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i, ++digits) {
        frac += (s[i] - '0') * scale;
        scale /= 10;
      }
      if (digits == 0)
        return std::nullopt;
    }
    int64_t offset = 0;
    if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
      ++i;
    } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
      int oh, om, n = 0;
      if (std::sscanf(s.c_str() + i + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
        return std::nullopt;
      offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
      i += 6;
    } else {
      return std::nullopt;
    }
    if (i != s.size() || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
      return std::nullopt;
    tm t{};
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    t.tm_sec = sec;
    return (static_cast<int64_t>(timegm(&t)) - offset) * 1'000'000'000 + frac;
  }
  // Unix seconds, maybe with a fraction.
  if (!s.empty() && s.find_first_not_of("0123456789.") == std::string::npos
      && std::count(s.begin(), s.end(), '.') <= 1 && s.front() != '.' && s.back() != '.') {
    auto dot = s.find('.');
    int64_t secs = std::stoll(s.substr(0, dot));
    int64_t frac = 0;
    if (dot != std::string::npos) {
      auto f = (s.substr(dot + 1) + "000000000").substr(0, 9);
      frac = std::stoll(f);
    }
    return secs * 1'000'000'000 + frac;
  }
  // A duration: number-unit pairs (h, m, s, ms, us), e.g. 1h30m.
  static const std::pair<std::string_view, int64_t> units[] = {
      {"h", 3600'000'000'000}, {"ms", 1'000'000}, {"us", 1'000},
      {"m", 60'000'000'000},   {"s", 1'000'000'000}};
  int64_t total = 0;
  size_t i = 0;
  if (s.empty())
    return std::nullopt;
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])))
      ++j;
    if (j == i || j - i > 12)
      return std::nullopt;
    int64_t n = std::stoll(s.substr(i, j - i));
    bool matched = false;
    for (auto& [name, scale] : units) {
      if (s.compare(j, name.size(), name) == 0) {
        total += n * scale;
        i = j + name.size();
        matched = true;
        break;
      }
    }
    if (!matched)
      return std::nullopt;
  }
  return now_nanos - total;
}

std::string human_size(uint64_t bytes) {
  using namespace units_impl;
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof(buf), "%llu%s", static_cast<unsigned long long>(v), units[u]);
  else
    std::snprintf(buf, sizeof(buf), "%.1f%s", v, units[u]);
  return buf;
}

std::optional<port_spec> parse_port(std::string_view text) {
  using namespace units_impl;
  port_spec out;
  auto slash = text.find('/');
  if (slash != std::string_view::npos) {
    out.protocol = std::string{text.substr(slash + 1)};
    if (out.protocol != "tcp" && out.protocol != "udp" && out.protocol != "sctp")
      return std::nullopt;
    text = text.substr(0, slash);
  }
  auto last = text.rfind(':');
  if (last == std::string_view::npos)
    return std::nullopt;
  auto front = text.substr(0, last);
  if (auto ip = front.rfind(':'); ip != std::string_view::npos) {
    out.host_ip = std::string{front.substr(0, ip)};
    if (out.host_ip.empty())
      return std::nullopt;
    front = front.substr(ip + 1);
  }
  auto number = [](std::string_view s) -> std::optional<uint16_t> {
    if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
      return std::nullopt;
    auto v = std::stoul(std::string{s});
    if (v == 0 || v > 65535)
      return std::nullopt;
    return static_cast<uint16_t>(v);
  };
  auto host = number(front), container = number(text.substr(last + 1));
  if (!host || !container)
    return std::nullopt;
  out.host_port = *host;
  out.container_port = *container;
  return out;
}

std::string port_text(const port_spec& p) {
  using namespace units_impl;
  return (p.host_ip.empty() ? "" : p.host_ip + ":") + std::to_string(p.host_port) + ":"
         + std::to_string(p.container_port) + "/" + p.protocol;
}

} // namespace cyto::cli
