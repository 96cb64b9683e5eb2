#include "actors/containers/cgroupfs_provider.hpp"

#include <linux/magic.h>
#include <sys/statfs.h>

#include "actors/cells/cgroup.hpp"
#include "actors/cells/limits.hpp"
#include "bus/errc.hpp"

namespace cyto::containers {

namespace {

status to_status(const caf::error& err) {
  return {std::string{to_string(code_of(err))}, context_of(err)};
}

struct cg_path {
  std::vector<std::string> roots; // "a", "a/b": the parents, outermost first
  std::string cell;
};

result<cg_path> split(const std::string& id, const std::string& given) {
  std::string p = given.empty() ? "/cyto-runtime/" + id : given;
  if (p.find(':') != std::string::npos)
    return invalid("linux.cgroupsPath \"" + p + "\": systemd slices are not supported; use a "
                   "cgroupfs path such as /machine/" + id);
  while (!p.empty() && p.front() == '/')
    p.erase(0, 1);
  while (!p.empty() && p.back() == '/')
    p.pop_back();
  auto slash = p.rfind('/');
  if (p.empty() || slash == std::string::npos)
    return invalid("linux.cgroupsPath \"" + given + "\": needs a parent and a name (/parent/"
                   + id + ")");
  cg_path out;
  out.cell = p.substr(slash + 1);
  auto parent = p.substr(0, slash);
  if (auto err = cells::check_name(parent))
    return invalid("linux.cgroupsPath \"" + given + "\": " + context_of(err));
  if (auto err = cells::check_name(out.cell))
    return invalid("linux.cgroupsPath \"" + given + "\": " + context_of(err));
  for (size_t i = 0; i <= parent.size(); ++i)
    if (i == parent.size() || parent[i] == '/')
      out.roots.push_back(parent.substr(0, i));
  return out;
}

cgroup_mode host_mode() {
  struct statfs sf{};
  if (::statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
    return cgroup_mode::v2;
  return cgroup_mode::v1;
}

result<cell_limits> to_limits(const oci::resources& r, cgroup_mode mode) {
  cell_limits l;
  if (r.memory_limit && *r.memory_limit > 0)
    l.memory_max = static_cast<uint64_t>(*r.memory_limit);
  if (r.memory_reservation && *r.memory_reservation > 0) {
    // v1's soft limit is the driver's memory.high; v2 keeps it as a protection (memory.low).
    if (mode == cgroup_mode::v2)
      l.memory_low = static_cast<uint64_t>(*r.memory_reservation);
    else
      l.memory_high = static_cast<uint64_t>(*r.memory_reservation);
  }
  if (r.cpu_shares && *r.cpu_shares > 0)
    l.cpu_weight = std::max<uint64_t>(1, *r.cpu_shares * 100 / 1024);
  if (r.cpu_quota || r.cpu_period) {
    l.cpu_max_period_us = r.cpu_period.value_or(100000);
    l.cpu_max_quota_us = (!r.cpu_quota || *r.cpu_quota <= 0)
                           ? cell_limits::unlimited
                           : static_cast<uint64_t>(*r.cpu_quota);
  }
  l.cpuset_cpus = r.cpu_cpus;
  l.cpuset_mems = r.cpu_mems;
  if (r.pids_limit && *r.pids_limit > 0)
    l.pids_max = static_cast<uint64_t>(*r.pids_limit);
  if (r.blkio_weight)
    l.io_weight = uint64_t{*r.blkio_weight} * 10;
  if (auto err = cells::check_limits(l, cells::online_cpus()))
    return invalid("linux.resources: " + context_of(err));
  return l;
}

class cgroupfs_provider final : public cgroup_provider {
public:
  result<cgroup_placement> place(const std::string& id, const oci::linux_config& linux) override {
    auto path = split(id, linux.cgroups_path);
    if (!path)
      return path.error();
    auto mode = host_mode();
    auto limits = to_limits(linux.resources, mode);
    if (!limits)
      return limits.error();
    auto driver = cells::make_cgroup_driver(mode, path->roots.back());
    if (auto err = driver->supports(*limits))
      return to_status(err);
    if (driver->exists(path->cell))
      return status{"already_exists", "cgroup " + linux.cgroups_path + " exists"};
    for (auto& root : path->roots)
      if (auto err = cells::make_cgroup_driver(mode, root)->init()) {
        remove_roots(*path, mode);
        return to_status(err);
      }
    if (auto err = driver->create(path->cell, *limits)) {
      remove_roots(*path, mode);
      return to_status(err);
    }
    return cgroup_placement{driver->procs_files(path->cell)};
  }

  status release(const std::string& id, const std::string& cgroups_path) override {
    auto path = split(id, cgroups_path);
    if (!path)
      return path.error();
    auto mode = host_mode();
    auto driver = cells::make_cgroup_driver(mode, path->roots.back());
    if (driver->exists(path->cell))
      if (auto err = driver->remove(path->cell))
        return to_status(err);
    remove_roots(*path, mode);
    return {};
  }

  std::vector<pid_t> pids(const std::string& id, const std::string& cgroups_path) override {
    auto path = split(id, cgroups_path);
    if (!path)
      return {};
    return cells::make_cgroup_driver(host_mode(), path->roots.back())->pids(path->cell, true);
  }

private:
  /// Parents that cyto made ("cyto-" names: the default /cyto-runtime, tests' cyto-test-*)
  /// are removed when empty; rmdir fails while another container's cgroup is still below,
  /// which ends the walk. Parents of other names may belong to the host: never touched.
  static void remove_roots(const cg_path& p, cgroup_mode mode) {
    if (p.roots.front().rfind("cyto-", 0) != 0)
      return;
    for (auto i = p.roots.rbegin(); i != p.roots.rend(); ++i) {
      auto slash = i->rfind('/');
      auto parent = slash == std::string::npos ? std::string{} : i->substr(0, slash);
      auto name = slash == std::string::npos ? *i : i->substr(slash + 1);
      if (cells::make_cgroup_driver(mode, parent)->remove(name))
        return;
    }
  }
};

} // namespace

std::unique_ptr<cgroup_provider> make_cgroupfs_provider() {
  return std::make_unique<cgroupfs_provider>();
}

} // namespace cyto::containers
