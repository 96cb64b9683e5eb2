// Registry JSON: manifests, indexes (under each declared media type), image configs and
// platform strings. Never crashes, never throws.
#include <cstdint>
#include <string>

#include "actors/images/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cyto::images;
  if (size == 0)
    return 0;
  static const char* types[] = {media_type::oci_manifest, media_type::oci_index,
                                media_type::docker_manifest, media_type::docker_list, ""};
  std::string body{reinterpret_cast<const char*>(data) + 1, size - 1};
  auto declared = types[data[0] % (sizeof types / sizeof *types)];
  if (auto m = parse_manifest(body, declared)) {
    platform want;
    want.os = "linux";
    want.architecture = "amd64";
    pick_platform(*m, want);
  }
  if (auto c = parse_config(body))
    chain_ids(c->diff_ids);
  parse_platform(body);
  layer_compression(body);
  return 0;
}
