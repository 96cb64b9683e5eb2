#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "actors/cells/cgroup.hpp"
#include "actors/cells/limits.hpp"
#include "bus/errc.hpp"

namespace cyto::cells {

namespace {

errc code_for(int err) {
  switch (err) {
    case ENOENT: return errc::not_found;
    case EACCES:
    case EPERM: return errc::permission_denied;
    case EINVAL:
    case ERANGE: return errc::invalid_argument;
    case EBUSY: return errc::failed_precondition;
    case ENOSPC:
    case ENOMEM: return errc::resource_exhausted;
    default: return errc::internal;
  }
}

} // namespace

caf::error write_file(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return make_error(code_for(err), "open " + path + ": " + std::strerror(err));
  }
  auto n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n < 0 || static_cast<size_t>(n) != value.size())
    return make_error(code_for(err), "write '" + value + "' to " + path + ": "
                                       + (n < 0 ? std::strerror(err) : "short write"));
  return {};
}

caf::expected<std::string> read_file(const std::string& path) {
  std::ifstream in{path};
  if (!in) {
    int err = errno;
    return make_error(code_for(err), "read " + path + ": " + std::strerror(err));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

caf::error make_dir(const std::string& path, bool exist_ok) {
  if (::mkdir(path.c_str(), 0755) == 0 || (exist_ok && errno == EEXIST))
    return {};
  int err = errno;
  return make_error(err == EEXIST ? errc::already_exists : code_for(err),
                    "mkdir " + path + ": " + std::strerror(err));
}

caf::error remove_dir(const std::string& path) {
  if (::rmdir(path.c_str()) == 0 || errno == ENOENT)
    return {};
  int err = errno;
  return make_error(code_for(err), "rmdir " + path + ": " + std::strerror(err));
}

uint64_t read_number(const std::string& path) {
  std::ifstream in{path};
  uint64_t v = 0;
  return (in >> v) ? v : 0;
}

uint64_t read_keyed(const std::string& path, std::string_view key) {
  std::ifstream in{path};
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == key)
      return v;
  return 0;
}

int64_t monotonic_nanos() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::vector<pid_t> read_procs(const std::string& path) {
  std::vector<pid_t> out;
  std::ifstream in{path};
  pid_t p;
  while (in >> p)
    out.push_back(p);
  return out;
}

std::unique_ptr<cgroup_driver> make_cgroup_driver(cgroup_mode mode, std::string root,
                                                  process_leaf leaf) {
  if (mode == cgroup_mode::v2)
    return make_cgroup_v2(std::move(root), "/sys/fs/cgroup", leaf);
  return make_cgroup_v1(std::move(root), "/sys/fs/cgroup", leaf);
}

void list_cells_under(const std::filesystem::path& top, std::set<std::string>& out) {
  std::error_code ec;
  for (auto i = std::filesystem::recursive_directory_iterator{top, ec};
       !ec && i != std::filesystem::recursive_directory_iterator{}; i.increment(ec)) {
    if (!i->is_directory(ec))
      continue;
    if (i->path().filename() == leaf_name) {
      i.disable_recursion_pending();
      continue;
    }
    out.insert(std::filesystem::relative(i->path(), top, ec).string());
  }
}

} // namespace cyto::cells
