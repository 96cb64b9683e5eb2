// What a CNI plugin prints on ADD: any JSON, however shaped, is read or refused, never
// a crash or an escaping exception (the network actor would die of one).
#include <cstdint>

#include <nlohmann/json.hpp>

#include "actors/network/cni.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded())
    return 0;
  cyto::net_attachment a;
  cyto::network::read_result(j, a);
  return 0;
}
