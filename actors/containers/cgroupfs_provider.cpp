#include "actors/containers/cgroupfs_provider.hpp"

#include <filesystem>
#include <map>

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
  if (p.empty())
    return invalid("linux.cgroupsPath \"" + given + "\": names no cgroup");
  auto slash = p.rfind('/');
  cg_path out;
  // A single level ("/cgrouptest") is a cgroup right below the hierarchy's root: no
  // parents to make (roots stays empty, the driver works on the root itself).
  out.cell = slash == std::string::npos ? p : p.substr(slash + 1);
  auto parent = slash == std::string::npos ? std::string{} : p.substr(0, slash);
  if (!parent.empty())
    if (auto err = cells::check_name(parent))
      return invalid("linux.cgroupsPath \"" + given + "\": " + context_of(err));
  if (auto err = cells::check_name(out.cell))
    return invalid("linux.cgroupsPath \"" + given + "\": " + context_of(err));
  for (size_t i = 0; !parent.empty() && i <= parent.size(); ++i)
    if (i == parent.size() || parent[i] == '/')
      out.roots.push_back(parent.substr(0, i));
  return out;
}

/// The hierarchy-relative parent of the cell ("" for a single-level path).
std::string parent_of(const cg_path& p) {
  return p.roots.empty() ? std::string{} : p.roots.back();
}

/// The container's own cgroup: its processes live in it (no "_" leaf, runtime-spec).
std::unique_ptr<cells::cgroup_driver> driver_for(cgroup_mode mode, const cg_path& p) {
  return cells::make_cgroup_driver(mode, parent_of(p), cells::process_leaf::none);
}

std::string device_number(int64_t n) {
  return n < 0 ? std::string{"*"} : std::to_string(n);
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
  // Per-device rates, one io_device_limit per device (0 leaves a rate unlimited).
  std::map<std::string, io_device_limit> rates;
  auto rate = [&](const std::vector<oci::block_device_value>& list, uint64_t io_device_limit::*f) {
    for (auto& v : list) {
      auto dev = std::to_string(v.major) + ":" + std::to_string(v.minor);
      auto& d = rates[dev];
      d.device = dev;
      d.*f = v.value;
    }
  };
  rate(r.throttle_read_bps, &io_device_limit::rbps);
  rate(r.throttle_write_bps, &io_device_limit::wbps);
  rate(r.throttle_read_iops, &io_device_limit::riops);
  rate(r.throttle_write_iops, &io_device_limit::wiops);
  for (auto& [dev, d] : rates)
    l.io_max.push_back(d);
  if (auto err = cells::check_limits(l, cells::online_cpus()))
    return invalid("linux.resources: " + context_of(err));
  return l;
}

/// Refuses, before anything is made, the resources this host's cgroups cannot express
/// (to_limits covers what the cells' limits can say; these are the rest).
status check_extras(const oci::resources& r, cgroup_mode mode) {
  auto no = [&](const std::string& field, const std::string& why) {
    return status{"unsupported", "linux.resources." + field + ": " + why};
  };
  if (mode == cgroup_mode::v2) {
    const char* v1_only = "has no cgroup v2 equivalent on this host";
    if (r.memory_swappiness)
      return no("memory.swappiness", v1_only);
    if (r.disable_oom_killer)
      return no("memory.disableOOMKiller", v1_only);
    if (r.memory_kernel)
      return no("memory.kernel", v1_only);
    if (r.memory_kernel_tcp)
      return no("memory.kernelTCP", v1_only);
    if (r.blkio_leaf_weight)
      return no("blockIO.leafWeight", v1_only);
    if (!r.devices.empty())
      return no("devices", "device rules need the cgroup v1 devices controller (cgroup v2 "
                           "device programs are not implemented)");
    if (r.memory_swap && *r.memory_swap != -1 && !r.memory_limit)
      return invalid("linux.resources.memory.swap: needs memory.limit with cgroup v2");
  } else if (!r.devices.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists("/sys/fs/cgroup/devices/devices.allow", ec))
      return no("devices", "the devices controller is not mounted on this host");
  }
  return {};
}

/// Writes one control file; a missing file means the host cannot apply `field`.
status put(const std::string& dir, const std::string& file, const std::string& value,
           const std::string& field) {
  std::error_code ec;
  if (dir.empty() || !std::filesystem::exists(dir + "/" + file, ec))
    return {"unsupported", "linux.resources." + field + ": this host has no " + file};
  if (auto err = cells::write_file(dir + "/" + file, value))
    return {std::string{to_string(code_of(err))}, "linux.resources." + field + ": "
                                                     + context_of(err)};
  return {};
}

std::string dir_of(const std::string& file) {
  return file.empty() ? file : std::filesystem::path{file}.parent_path().string();
}

/// The resources to_limits leaves out, on the cell the driver just made.
status apply_extras(const cells::cgroup_driver& d, const std::string& cell,
                    const oci::resources& r) {
  auto mem = dir_of(d.file(cell, "memory.max"));
  auto io = dir_of(d.file(cell, "io.weight"));
  status s;
  if (d.mode() == cgroup_mode::v1) {
    auto bytes = [](int64_t v) { return std::to_string(v); };
    if (r.memory_swap && (s = put(mem, "memory.memsw.limit_in_bytes", bytes(*r.memory_swap),
                                  "memory.swap")))
      return s;
    if (r.memory_kernel && (s = put(mem, "memory.kmem.limit_in_bytes", bytes(*r.memory_kernel),
                                    "memory.kernel")))
      return s;
    if (r.memory_kernel_tcp
        && (s = put(mem, "memory.kmem.tcp.limit_in_bytes", bytes(*r.memory_kernel_tcp),
                    "memory.kernelTCP")))
      return s;
    if (r.memory_swappiness
        && (s = put(mem, "memory.swappiness", std::to_string(*r.memory_swappiness),
                    "memory.swappiness")))
      return s;
    if (r.disable_oom_killer
        && (s = put(mem, "memory.oom_control", "1", "memory.disableOOMKiller")))
      return s;
    if (r.blkio_leaf_weight
        && (s = put(io, "blkio.leaf_weight", std::to_string(*r.blkio_leaf_weight),
                    "blockIO.leafWeight")))
      return s;
    for (auto& w : r.blkio_weight_device)
      if ((s = put(io, "blkio.weight_device",
                   std::to_string(w.major) + ":" + std::to_string(w.minor) + " "
                     + std::to_string(w.value),
                   "blockIO.weightDevice")))
        return s;
    return {};
  }
  if (r.memory_swap) {
    // The spec counts memory and swap together; memory.swap.max is the swap alone.
    auto v = *r.memory_swap == -1 ? std::string{"max"}
                                  : std::to_string(*r.memory_swap - *r.memory_limit);
    if ((s = put(mem, "memory.swap.max", v, "memory.swap")))
      return s;
  }
  for (auto& w : r.blkio_weight_device)
    if ((s = put(io, "io.weight",
                 std::to_string(w.major) + ":" + std::to_string(w.minor) + " "
                   + std::to_string(w.value * 10),
                 "blockIO.weightDevice")))
      return s;
  return {};
}

/// v1 hierarchies the cells' driver does not use, which the runtime keeps itself for its
/// containers: devices (where device rules are enforced; cells leave devices to the host)
/// and freezer (pause/resume; v2 has cgroup.freeze in the cell itself).
constexpr const char* devices_mount = "/sys/fs/cgroup/devices";
constexpr const char* freezer_mount = "/sys/fs/cgroup/freezer";

std::string extra_dir(const char* mount, const cg_path& p) {
  auto parent = parent_of(p);
  return std::string{mount} + (parent.empty() ? "" : "/" + parent) + "/" + p.cell;
}

bool mounted(const char* mount) {
  std::error_code ec;
  return std::filesystem::exists(std::string{mount} + "/cgroup.procs", ec);
}

/// Makes the container's cgroup in `mount` (parents as needed); answers its dir.
result<std::string> make_extra(const char* mount, const cg_path& p) {
  for (auto& root : p.roots)
    if (auto err = cells::make_dir(std::string{mount} + "/" + root, true))
      return to_status(err);
  auto dir = extra_dir(mount, p);
  if (auto err = cells::make_dir(dir))
    return to_status(err);
  return dir;
}

/// Removes the container's cgroup in `mount` (if any) and the parents cyto made there.
void remove_extra(const char* mount, const cg_path& p) {
  std::error_code ec;
  auto dir = extra_dir(mount, p);
  if (!std::filesystem::exists(dir, ec))
    return;
  if (cells::remove_dir(dir))
    return;
  if (p.roots.empty() || p.roots.front().rfind("cyto-", 0) != 0)
    return;
  for (auto i = p.roots.rbegin(); i != p.roots.rend(); ++i)
    if (cells::remove_dir(std::string{mount} + "/" + *i))
      return;
}

/// Devices every container gets whatever its rules say (runtime-spec's default devices:
/// null, zero, full, random, urandom, tty, console/pts, ptmx), plus mknod of any.
std::vector<oci::device_rule> default_device_rules() {
  auto c = [](int64_t major, int64_t minor, const char* access = "rwm") {
    return oci::device_rule{true, 'c', major, minor, access};
  };
  return {c(-1, -1, "m"), {true, 'b', -1, -1, "m"}, c(1, 3), c(1, 5), c(1, 7), c(1, 8),
          c(1, 9), c(5, 0), c(5, 1), c(5, 2), c(136, -1)};
}

std::string rule_text(const oci::device_rule& r) {
  if (r.type == 'a' && r.major < 0 && r.minor < 0)
    return "a";
  return std::string(1, r.type) + " " + device_number(r.major) + ":" + device_number(r.minor)
         + " " + r.access;
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
    if (auto s = check_extras(linux.resources, mode))
      return s;
    auto driver = driver_for(mode, *path);
    if (auto err = driver->supports(*limits))
      return to_status(err);
    if (driver->exists(path->cell))
      return status{"already_exists", "cgroup " + linux.cgroups_path + " exists"};
    for (auto& root : path->roots)
      if (auto err = cells::make_cgroup_driver(mode, root)->init()) {
        remove_roots(*path, mode);
        return to_status(err);
      }
    auto undo = [&](status s) {
      remove_extra(devices_mount, *path);
      remove_extra(freezer_mount, *path);
      driver->remove(path->cell);
      remove_roots(*path, mode);
      return s;
    };
    if (auto err = driver->create(path->cell, *limits)) {
      remove_roots(*path, mode);
      return to_status(err);
    }
    if (auto s = apply_extras(*driver, path->cell, linux.resources))
      return undo(s);
    cgroup_placement out{driver->procs_files(path->cell)};
    if (!linux.resources.devices.empty()) {
      auto devs = place_devices(*path, linux);
      if (!devs)
        return undo(devs.error());
      out.procs_files.push_back(*devs);
    }
    if (mode == cgroup_mode::v1 && mounted(freezer_mount)) {
      auto dir = make_extra(freezer_mount, *path);
      if (!dir)
        return undo(dir.error());
      out.procs_files.push_back(*dir + "/cgroup.procs");
    }
    return out;
  }

  status release(const std::string& id, const std::string& cgroups_path) override {
    auto path = split(id, cgroups_path);
    if (!path)
      return path.error();
    auto mode = host_mode();
    auto driver = driver_for(mode, *path);
    if (driver->exists(path->cell))
      if (auto err = driver->remove(path->cell))
        return to_status(err);
    remove_extra(devices_mount, *path);
    remove_extra(freezer_mount, *path);
    remove_roots(*path, mode);
    return {};
  }

  std::vector<pid_t> pids(const std::string& id, const std::string& cgroups_path) override {
    auto path = split(id, cgroups_path);
    if (!path)
      return {};
    return driver_for(host_mode(), *path)->pids(path->cell, true);
  }

  status freeze(const std::string& id, const std::string& cgroups_path, bool frozen) override {
    auto file = freeze_file(id, cgroups_path);
    if (!file)
      return file.error();
    auto v1 = file->ends_with("freezer.state");
    if (auto err = cells::write_file(*file, v1 ? (frozen ? "FROZEN" : "THAWED") : (frozen ? "1" : "0")))
      return to_status(err);
    // v1 freezes in steps (FREEZING); answer once it is done, as runc does.
    for (int i = 0; v1 && frozen && i < 1000 && !this->frozen(id, cgroups_path); ++i)
      ::usleep(1000);
    return {};
  }

  bool frozen(const std::string& id, const std::string& cgroups_path) override {
    auto file = freeze_file(id, cgroups_path);
    if (!file)
      return false;
    auto v = cells::read_file(*file);
    return v && (v->rfind("FROZEN", 0) == 0 || v->rfind("1", 0) == 0);
  }

  status update(const std::string& id, const std::string& cgroups_path,
                const oci::resources& r) override {
    auto path = split(id, cgroups_path);
    if (!path)
      return path.error();
    if (!r.devices.empty())
      return invalid("linux.resources.devices: cannot be updated on a running container");
    auto mode = host_mode();
    auto limits = to_limits(r, mode);
    if (!limits)
      return limits.error();
    if (auto s = check_extras(r, mode))
      return s;
    auto driver = driver_for(mode, *path);
    if (auto err = driver->update(path->cell, *limits))
      return to_status(err);
    return apply_extras(*driver, path->cell, r);
  }

private:
  /// freezer.state of the v1 freezer hierarchy, or cgroup.freeze of the v2 cell.
  static result<std::string> freeze_file(const std::string& id, const std::string& cgroups_path) {
    auto path = split(id, cgroups_path);
    if (!path)
      return path.error();
    std::error_code ec;
    if (host_mode() == cgroup_mode::v1) {
      auto f = extra_dir(freezer_mount, *path) + "/freezer.state";
      if (!std::filesystem::exists(f, ec))
        return status{"unsupported", "pause: the container has no freezer cgroup (the freezer "
                                     "controller is not mounted on this host)"};
      return f;
    }
    auto f = driver_for(cgroup_mode::v2, *path)->file(path->cell, "cgroup.freeze");
    if (!std::filesystem::exists(f, ec))
      return status{"unsupported", "pause: this kernel has no cgroup.freeze"};
    return f;
  }

  /// Makes the container's devices cgroup (parents as needed) and writes its rules in
  /// order, then the default devices; answers its cgroup.procs.
  static result<std::string> place_devices(const cg_path& p, const oci::linux_config& linux) {
    auto made = make_extra(devices_mount, p);
    if (!made)
      return made.error();
    auto dir = *made;
    auto rules = linux.resources.devices;
    auto defaults = default_device_rules();
    rules.insert(rules.end(), defaults.begin(), defaults.end());
    for (auto& d : linux.devices)
      if (d.type == 'c' || d.type == 'b' || d.type == 'u')
        rules.push_back({true, d.type == 'b' ? 'b' : 'c', d.major, d.minor, "rwm"});
    for (size_t i = 0; i < rules.size(); ++i) {
      auto file = dir + (rules[i].allow ? "/devices.allow" : "/devices.deny");
      if (auto err = cells::write_file(file, rule_text(rules[i]))) {
        std::string field = i < linux.resources.devices.size()
                              ? "linux.resources.devices[" + std::to_string(i) + "]"
                              : "default device " + rule_text(rules[i]);
        return status{std::string{to_string(code_of(err))}, field + ": " + context_of(err)};
      }
    }
    return dir + "/cgroup.procs";
  }

  /// Parents that cyto made ("cyto-" names: the default /cyto-runtime, tests' cyto-test-*)
  /// are removed when empty; rmdir fails while another container's cgroup is still below,
  /// which ends the walk. Parents of other names may belong to the host: never touched.
  static void remove_roots(const cg_path& p, cgroup_mode mode) {
    if (p.roots.empty() || p.roots.front().rfind("cyto-", 0) != 0)
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
