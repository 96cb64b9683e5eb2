#pragma once
// Reads what an executable already wrote to its output files, up to the point where the
// live stream (topic "process.output", lines tagged with file offsets) takes over.
// Plain C++, blocking file I/O: run it off the scheduler threads.

#include <cstdint>
#include <string>

#include "bus/observe.hpp"

namespace cyto::observe {

struct history_request {
  std::string stdout_path;
  std::string stderr_path;
  /// output_streams mask.
  uint8_t which = out_both;
  /// Lines already in the files (else only where the live stream starts).
  bool from_start = true;
  /// The writer still runs: a last line without '\n' is left to the live stream.
  bool running = false;
  /// Most bytes read per file; older lines are skipped (counted).
  uint64_t max_bytes = 16 << 20;
};

/// Lines of stdout (all of them) then stderr, and per stream the offset the live
/// stream continues at. A missing file reads as empty.
output_history read_history(const history_request& req);

} // namespace cyto::observe
