#pragma once
// IPv4 subnets: parsing "a.b.c.d/n", overlap, and picking free subnets from a pool.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace cyto::network {

struct ipv4_net {
  /// Network address, host order.
  uint32_t base = 0;
  uint8_t prefix = 0;

  uint32_t mask() const {
    return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  }
  uint32_t last() const {
    return base | ~mask();
  }
  bool contains(uint32_t addr) const {
    return (addr & mask()) == base;
  }
  bool overlaps(const ipv4_net& o) const {
    return base <= o.last() && o.base <= last();
  }
  std::string str() const;
};

/// "10.1.2.3" -> host-order address.
std::optional<uint32_t> parse_ipv4(const std::string& text);
std::string ipv4_text(uint32_t addr);

/// "10.88.0.0/16": invalid_argument if malformed, host bits set, or the prefix is
/// outside 8..30 (a network needs a gateway and at least one workload address).
caf::expected<ipv4_net> parse_subnet(const std::string& text);

/// The first `size`-prefixed subnet inside `pool` overlapping none of `used`;
/// resource_exhausted if there is none.
caf::expected<ipv4_net> pick_subnet(const ipv4_net& pool, uint8_t size,
                                    const std::vector<ipv4_net>& used);

} // namespace cyto::network
