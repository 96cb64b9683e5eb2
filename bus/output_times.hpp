#pragma once
// When an executable's output lines were seen: `<output file>.times`, written by the cells
// actor's output reader and read by the observe actor's history reader (logs --since,
// --until, --timestamps). The output file itself is the workload's, bytes as written.

#include <cstdint>

namespace cyto {

/// One record per read of the output file: the lines that end before `end_offset` (and
/// after the previous record's) were seen at `unix_nanos`. Host byte order, appended.
struct output_time_record {
  uint64_t end_offset = 0;
  int64_t unix_nanos = 0;
};
static_assert(sizeof(output_time_record) == 16);

} // namespace cyto
