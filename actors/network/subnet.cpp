#include "actors/network/subnet.hpp"

#include <arpa/inet.h>

#include "bus/errc.hpp"

namespace cyto::network {

std::string ipv4_net::str() const {
  return ipv4_text(base) + "/" + std::to_string(prefix);
}

std::optional<uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  // inet_pton accepts only the four-part dotted form, no octal or short forms.
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1)
    return std::nullopt;
  return ntohl(a.s_addr);
}

std::string ipv4_text(uint32_t addr) {
  in_addr a{htonl(addr)};
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

caf::expected<ipv4_net> parse_subnet(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return make_error(errc::invalid_argument, "subnet '" + text + "': " + why);
  };
  auto slash = text.find('/');
  if (slash == std::string::npos)
    return bad("not in CIDR form like 10.88.0.0/16");
  auto addr = parse_ipv4(text.substr(0, slash));
  if (!addr)
    return bad("'" + text.substr(0, slash) + "' is not an IPv4 address");
  auto len = text.substr(slash + 1);
  if (len.empty() || len.size() > 2 || len.find_first_not_of("0123456789") != std::string::npos)
    return bad("the prefix length must be a number");
  auto prefix = std::stoi(len);
  if (prefix < 8 || prefix > 30)
    return bad("the prefix length must be 8..30");
  ipv4_net net{*addr, static_cast<uint8_t>(prefix)};
  if ((*addr & net.mask()) != *addr)
    return bad("host bits are set (did you mean " + ipv4_net{*addr & net.mask(), net.prefix}.str()
               + "?)");
  return net;
}

caf::expected<ipv4_net> pick_subnet(const ipv4_net& pool, uint8_t size,
                                    const std::vector<ipv4_net>& used) {
  if (size < pool.prefix || size > 30)
    return make_error(errc::invalid_argument, "subnet size /" + std::to_string(size)
                                                + " does not fit the pool " + pool.str());
  uint64_t step = uint64_t{1} << (32 - size);
  for (uint64_t b = pool.base; b + step - 1 <= pool.last(); b += step) {
    ipv4_net cand{static_cast<uint32_t>(b), size};
    bool free = true;
    for (auto& u : used)
      free = free && !cand.overlaps(u);
    if (free)
      return cand;
  }
  return make_error(errc::resource_exhausted,
                    "no free /" + std::to_string(size) + " subnet left in the pool " + pool.str());
}

} // namespace cyto::network
