// OCI runtime config.json as cyto-runtime reads it: every bad field is an error value,
// never a crash or an escaping exception.
#include <cstdint>
#include <string>

#include "actors/containers/oci_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  cyto::containers::oci::parse_config(text, "/nonexistent/fuzz-bundle");
  return 0;
}
