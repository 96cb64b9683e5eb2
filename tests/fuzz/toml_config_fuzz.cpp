// cytod.toml: every input either applies or gives one error line; then validate.
#include <cstdint>
#include <string_view>

#include "services/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cyto::services::daemon_config cfg;
  std::string_view text{reinterpret_cast<const char*>(data), size};
  if (!cyto::services::apply_toml(text, cfg))
    cyto::services::validate(cfg);
  return 0;
}
