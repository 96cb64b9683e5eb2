#include "actors/cells/limits.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <optional>

#include "bus/errc.hpp"

namespace cyto::cells {

namespace {

caf::error bad(std::string text) {
  return make_error(errc::invalid_argument, std::move(text));
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
         || c == '_' || c == '-';
}

} // namespace

caf::error check_name(std::string_view name) {
  if (name.empty())
    return bad("cell name is empty");
  if (name.size() > 255)
    return bad("cell name is longer than 255 bytes");
  if (name.front() == '/')
    return bad("cell name '" + std::string{name} + "' must not start with '/'");
  size_t start = 0;
  while (start <= name.size()) {
    auto end = name.find('/', start);
    if (end == std::string_view::npos)
      end = name.size();
    auto seg = name.substr(start, end - start);
    if (seg.empty())
      return bad("cell name '" + std::string{name} + "' has an empty segment");
    if (seg == "." || seg == "..")
      return bad("cell name '" + std::string{name} + "' has a '" + std::string{seg} + "' segment");
    if (seg == leaf_name)
      return bad("cell name segment '_' is reserved");
    for (char c : seg)
      if (!name_char(c))
        return bad("cell name '" + std::string{name}
                   + "' may hold only letters, digits, '.', '_', '-' and '/'");
    start = end + 1;
  }
  return {};
}

std::optional<std::vector<int>> parse_cpu_list(std::string_view text) {
  std::vector<int> out;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.remove_suffix(1);
  if (text.empty())
    return std::nullopt;
  size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string_view::npos)
      end = text.size();
    auto part = text.substr(start, end - start);
    auto dash = part.find('-');
    int lo = 0, hi = 0;
    auto parse = [](std::string_view s, int& v) {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      return ec == std::errc{} && p == s.data() + s.size() && v >= 0 && v < 65536;
    };
    if (dash == std::string_view::npos) {
      if (!parse(part, lo))
        return std::nullopt;
      hi = lo;
    } else if (!parse(part.substr(0, dash), lo) || !parse(part.substr(dash + 1), hi) || hi < lo) {
      return std::nullopt;
    }
    for (int i = lo; i <= hi; ++i)
      out.push_back(i);
    start = end + 1;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<int> online_cpus() {
  std::ifstream in{"/sys/devices/system/cpu/online"};
  std::string text;
  std::getline(in, text);
  return parse_cpu_list(text).value_or(std::vector<int>{});
}

caf::error check_limits(const cell_limits& l, const std::vector<int>& cpus) {
  if (l.cpu_weight != 0 && (l.cpu_weight < 1 || l.cpu_weight > 10000))
    return bad("cpu weight " + std::to_string(l.cpu_weight) + " is outside 1..10000");
  if (l.io_weight != 0 && l.io_weight > 10000)
    return bad("io weight " + std::to_string(l.io_weight) + " is outside 1..10000");
  auto period = l.cpu_max_period_us != 0 ? l.cpu_max_period_us : 100000;
  if (period < 1000 || period > 1000000)
    return bad("cpu max period " + std::to_string(period) + "us is outside 1ms..1s");
  if (l.cpu_max_quota_us != 0 && l.cpu_max_quota_us != cell_limits::unlimited) {
    if (l.cpu_max_quota_us < 1000)
      return bad("cpu max quota " + std::to_string(l.cpu_max_quota_us) + "us is below 1ms");
    auto ncpu = std::max<size_t>(cpus.size(), 1);
    if (l.cpu_max_quota_us > period * ncpu)
      return bad("cpu max quota " + std::to_string(l.cpu_max_quota_us) + "us per "
                 + std::to_string(period) + "us is more than this host's "
                 + std::to_string(ncpu) + " cpus can give");
  }
  // The kernel keeps memory limits as a page count in a signed long: anything larger is
  // stored as another number than asked, so refuse it (0 means no limit).
  constexpr uint64_t memory_ceiling = uint64_t{INT64_MAX} & ~uint64_t{4095};
  for (auto [what, v] : {std::pair{"min", l.memory_min}, std::pair{"low", l.memory_low},
                         std::pair{"high", l.memory_high}, std::pair{"max", l.memory_max}})
    if (v > memory_ceiling)
      return bad(std::string{"memory "} + what + " of " + std::to_string(v)
                 + " bytes is more than the kernel can hold (" + std::to_string(memory_ceiling)
                 + "); leave it unset for no limit");
  // pids.max is an int in the kernel (PID_MAX_LIMIT is 4M).
  if (l.pids_max > 4194304)
    return bad("pids max " + std::to_string(l.pids_max)
               + " is outside 1..4194304; leave it unset for no limit");
  // min <= low <= high <= max among the ones that are set.
  std::pair<const char*, uint64_t> mem[] = {{"min", l.memory_min},
                                            {"low", l.memory_low},
                                            {"high", l.memory_high},
                                            {"max", l.memory_max}};
  const std::pair<const char*, uint64_t>* prev = nullptr;
  for (auto& m : mem) {
    if (m.second == 0)
      continue;
    if (m.second < 4096 && std::string_view{m.first} != "min" && std::string_view{m.first} != "low")
      return bad(std::string{"memory "} + m.first + " of " + std::to_string(m.second)
                 + " bytes is below one page");
    if (prev && m.second < prev->second)
      return bad(std::string{"memory "} + m.first + " (" + std::to_string(m.second)
                 + ") is below memory " + prev->first + " (" + std::to_string(prev->second) + ")");
    prev = &m;
  }
  if (!l.cpuset_cpus.empty()) {
    auto want = parse_cpu_list(l.cpuset_cpus);
    if (!want)
      return bad("cpuset cpus '" + l.cpuset_cpus + "' is not a cpu list like 0-1,3");
    for (int c : *want)
      if (!cpus.empty() && !std::binary_search(cpus.begin(), cpus.end(), c))
        return bad("cpuset cpus '" + l.cpuset_cpus + "' names cpu " + std::to_string(c)
                   + ", which this host does not have online");
  }
  if (!l.cpuset_mems.empty() && !parse_cpu_list(l.cpuset_mems))
    return bad("cpuset mems '" + l.cpuset_mems + "' is not a node list like 0 or 0-1");
  for (auto& d : l.io_max) {
    auto colon = d.device.find(':');
    int major = 0, minor = 0;
    if (colon == std::string::npos
        || std::from_chars(d.device.data(), d.device.data() + colon, major).ec != std::errc{}
        || std::from_chars(d.device.data() + colon + 1, d.device.data() + d.device.size(), minor)
             .ec != std::errc{})
      return bad("io max device '" + d.device + "' is not major:minor");
  }
  return {};
}

} // namespace cyto::cells
