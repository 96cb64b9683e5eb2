#include "actors/observe/output_history.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "bus/output_times.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cyto::observe {

namespace {

/// The records of `<path>.times` (none if it is missing: output of an older cytod).
std::vector<output_time_record> read_times(const std::string& path) {
  std::vector<output_time_record> out;
  int fd = ::open((path + ".times").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return out;
  struct stat st {};
  ::fstat(fd, &st);
  out.resize(static_cast<size_t>(st.st_size) / sizeof(output_time_record));
  auto want = out.size() * sizeof(output_time_record);
  size_t got = 0;
  while (got < want) {
    auto n = ::pread(fd, reinterpret_cast<char*>(out.data()) + got, want - got,
                     static_cast<off_t>(got));
    if (n <= 0)
      break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got / sizeof(output_time_record));
  return out;
}

/// Reads one file into `out` and returns where the live stream takes over.
uint64_t read_one(const std::string& path, int32_t stream, const history_request& req,
                  output_history& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      out.error = "open " + path + ": " + std::strerror(errno);
    return 0;
  }
  struct stat st {};
  ::fstat(fd, &st);
  auto size = static_cast<uint64_t>(st.st_size);
  // Lines past the last record (not seen by the reader yet) get the file's mtime.
  auto mtime = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  auto times = read_times(path);
  size_t rec = 0;
  auto time_at = [&](uint64_t offset) {
    while (rec < times.size() && times[rec].end_offset <= offset)
      ++rec;
    return rec < times.size() ? times[rec].unix_nanos : mtime;
  };
  auto start = size > req.max_bytes ? size - req.max_bytes : 0;
  std::string data;
  data.resize(size - start);
  size_t got = 0;
  while (got < data.size()) {
    auto n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(start + got));
    if (n <= 0)
      break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  if (start > 0) {
    // Count the lines left out, then begin at a line boundary.
    std::string head(start, '\0');
    auto n = ::pread(fd, head.data(), head.size(), 0);
    out.skipped += static_cast<uint64_t>(
        std::count(head.begin(), head.begin() + std::max<ssize_t>(n, 0), '\n'));
    auto nl = data.find('\n');
    auto cut = nl == std::string::npos ? data.size() : nl + 1;
    if (nl != std::string::npos)
      ++out.skipped;
    data.erase(0, cut);
    start += cut;
  }
  ::close(fd);
  // A running writer may be in the middle of its last line: that one comes live.
  auto last_nl = data.rfind('\n');
  auto complete = req.running ? (last_nl == std::string::npos ? 0 : last_nl + 1) : data.size();
  if (req.from_start) {
    size_t pos = 0;
    while (pos < complete) {
      auto nl = data.find('\n', pos);
      auto end = nl == std::string::npos || nl >= complete ? complete : nl;
      out.lines.push_back(output_line{stream, data.substr(pos, end - pos), time_at(start + pos)});
      pos = end + 1;
    }
  }
  return start + complete;
}

} // namespace

output_history read_history(const history_request& req) {
  output_history out;
  if (req.which & out_stdout)
    out.end_offsets[1] = read_one(req.stdout_path, 1, req, out);
  if (req.which & out_stderr)
    out.end_offsets[2] = read_one(req.stderr_path, 2, req, out);
  return out;
}

} // namespace cyto::observe
