#include "actors/node/host_features.hpp"
#include "actors/vms/accel.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "ebpf/probe.hpp"

namespace cyto::node {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(sep, start);
    if (end == std::string_view::npos)
      end = text.size();
    if (end > start)
      out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool is_v1_controller(std::string_view opt) {
  static constexpr std::string_view known[] = {
      "blkio",  "cpu",  "cpuacct", "cpuset",   "devices",    "freezer", "hugetlb",
      "memory", "misc", "net_cls", "net_prio", "perf_event", "pids",    "rdma"};
  return std::find(std::begin(known), std::end(known), opt) != std::end(known);
}

bool tracefs_mounted() {
  for (auto& line : split(read_file("/proc/self/mounts"), '\n')) {
    auto fields = split(line, ' ');
    if (fields.size() >= 3 && fields[1] == "/sys/kernel/tracing" && fields[2] == "tracefs")
      return true;
  }
  return false;
}

} // namespace

std::vector<cgroup_mount> parse_cgroup_mounts(std::string_view mountinfo) {
  std::vector<cgroup_mount> out;
  for (auto& line : split(mountinfo, '\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    auto dash = line.find(" - ");
    if (dash == std::string::npos)
      continue;
    auto left = split(std::string_view{line}.substr(0, dash), ' ');
    auto right = split(std::string_view{line}.substr(dash + 3), ' ');
    if (left.size() < 5 || right.empty())
      continue;
    cgroup_mount m;
    m.path = left[4];
    if (right[0] == "cgroup2") {
      m.v2 = true;
    } else if (right[0] == "cgroup") {
      if (right.size() >= 3)
        for (auto& opt : split(right[2], ','))
          if (is_v1_controller(opt))
            m.controllers.push_back(opt);
    } else {
      continue;
    }
    out.push_back(std::move(m));
  }
  return out;
}

cgroup_mode classify(const std::vector<cgroup_mount>& mounts) {
  bool v1 = std::any_of(mounts.begin(), mounts.end(), [](auto& m) { return !m.v2; });
  bool v2 = std::any_of(mounts.begin(), mounts.end(), [](auto& m) { return m.v2; });
  if (v1 && v2)
    return cgroup_mode::hybrid;
  if (v1)
    return cgroup_mode::v1;
  if (v2)
    return cgroup_mode::v2;
  return cgroup_mode::unknown;
}

host_features detect_host_features() {
  namespace fs = std::filesystem;
  host_features f;
  auto mounts = parse_cgroup_mounts(read_file("/proc/self/mountinfo"));
  f.cgroups = classify(mounts);
  for (auto& m : mounts) {
    if (m.v2 && f.cgroups == cgroup_mode::v2) {
      for (auto& c : split(read_file(m.path + "/cgroup.controllers"), ' '))
        f.cgroup_controllers.push_back(c.back() == '\n' ? c.substr(0, c.size() - 1) : c);
    } else if (!m.v2) {
      f.cgroup_controllers.insert(f.cgroup_controllers.end(), m.controllers.begin(),
                                  m.controllers.end());
    }
  }
  std::sort(f.cgroup_controllers.begin(), f.cgroup_controllers.end());
  f.cgroup_controllers.erase(std::unique(f.cgroup_controllers.begin(), f.cgroup_controllers.end()),
                             f.cgroup_controllers.end());
  std::error_code ec;
  for (auto& e : fs::directory_iterator{"/proc/self/ns", ec}) {
    auto name = e.path().filename().string();
    if (name.find("_for_children") == std::string::npos)
      f.namespaces.push_back(name);
  }
  std::sort(f.namespaces.begin(), f.namespaces.end());
  f.btf = fs::exists("/sys/kernel/btf/vmlinux", ec);
  // The one accurate answer is loading the event programs (which also mounts
  // tracefs when absent); bpf() alone working says little (tp_btf, ring buffers).
  f.ebpf = ebpf::probe::supported(f.ebpf_detail);
  if (f.ebpf)
    f.ebpf_detail.clear();
  f.tracefs = tracefs_mounted();
  auto accel = vms::choose_accel();
  f.kvm = accel.kvm_device;
  f.vm_accel = accel.accel;
  f.vm_accel_reason = accel.reason;
  for (auto& line : split(read_file("/proc/filesystems"), '\n'))
    if (line.size() >= 7 && line.substr(line.size() - 7) == "overlay")
      f.overlayfs = true;
  if (int fd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)); fd >= 0) {
    f.pidfd = true;
    close(fd);
  }
  utsname u{};
  if (uname(&u) == 0)
    f.kernel_release = u.release;
  return f;
}

} // namespace cyto::node
