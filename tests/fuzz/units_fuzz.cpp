// The CLI's unit parsers (sizes, durations, cpu.max, signals, port mappings). A port that
// parses prints as text that parses back to the same mapping.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "cli/units.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyto::cli;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  if (auto s = parse_size(text))
    human_size(*s);
  parse_duration_us(text);
  parse_cpu_max(text);
  parse_signal(text);
  if (auto p = parse_port(text)) {
    auto again = parse_port(port_text(*p));
    if (!again || again->host_port != p->host_port || again->container_port != p->container_port
        || again->protocol != p->protocol || again->host_ip != p->host_ip)
      std::abort();
  }
  return 0;
}
