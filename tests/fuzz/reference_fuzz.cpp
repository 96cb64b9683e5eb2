// Image references ("registry/repo:tag@digest"): never crashes; what parses prints as a
// canonical name that parses back to itself.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "actors/images/reference.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text{reinterpret_cast<const char*>(data), size};
  cyto::images::is_sha256_digest(text);
  auto ref = cyto::images::parse_reference(text);
  if (!ref)
    return 0;
  auto name = ref->name();
  auto again = cyto::images::parse_reference(name);
  if (!again || again->name() != name)
    std::abort(); // a canonical name must round-trip
  ref->reference();
  cyto::images::registry_host(ref->registry);
  return 0;
}
