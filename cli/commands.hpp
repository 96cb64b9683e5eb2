#pragma once
// One function per CLI verb; each returns the process exit code.

#include <cstdint>
#include <string>

#include "cli/client.hpp"

namespace cyto::cli {

int cmd_discover(const global_options& g);
int cmd_health(const global_options& g);
int cmd_version(const global_options& g);

struct logs_options {
  bool daemon = false;
  bool follow = false;
  std::string level = "info";
  uint32_t tail = 100;
};

int cmd_logs(const global_options& g, const logs_options& o);

} // namespace cyto::cli
