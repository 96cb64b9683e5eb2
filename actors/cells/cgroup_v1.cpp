// cgroup v1 (and hybrid hosts): one directory per controller hierarchy; v2 limit names
// are mapped to v1 files, and limits v1 cannot express are refused.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "actors/cells/cgroup.hpp"
#include "actors/cells/limits.hpp"
#include "bus/errc.hpp"

namespace cyto::cells {

namespace {

namespace fs = std::filesystem;

/// Controllers cyto uses on v1; each may share a hierarchy with another (cpu,cpuacct).
constexpr const char* wanted[] = {"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio"};

class cgroup_v1 final : public cgroup_driver {
public:
  cgroup_v1(std::string root, std::string mount, process_leaf leaf)
    : root_(std::move(root)), leaf_(leaf) {
    std::error_code ec;
    for (auto* c : wanted) {
      auto dir = fs::path{mount} / c;
      if (!fs::exists(dir / "cgroup.procs", ec))
        continue;
      auto real = fs::canonical(dir, ec).string();
      if (ec)
        continue;
      auto i = std::find_if(hier_.begin(), hier_.end(), [&](auto& h) { return h.dir == real; });
      if (i == hier_.end())
        hier_.push_back({real, {c}});
      else
        i->controllers.push_back(c);
    }
  }

  cgroup_mode mode() const noexcept override {
    return cgroup_mode::v1;
  }

  caf::error init() override {
    if (hier_.empty())
      return make_error(errc::unsupported, "no cgroup v1 controller is mounted");
    for (auto& h : hier_) {
      auto dir = h.dir + "/" + root_;
      if (auto err = make_dir(dir, true))
        return err;
      if (has(h, "cpuset")) {
        if (auto err = inherit_cpuset(dir))
          return err;
        // New cpusets below copy their parent's cpus and mems by themselves (the flag
        // is inherited): no per-cell writes, which rebuild scheduler domains each time.
        if (auto err = write_file(dir + "/cgroup.clone_children", "1"))
          return err;
      }
    }
    return {};
  }

  caf::error supports(const cell_limits& l) const override {
    auto no = [](const char* what) {
      return make_error(errc::invalid_argument,
                        std::string{what} + " is not supported with cgroup v1");
    };
    if (l.memory_min != 0)
      return no("memory.min");
    if (l.memory_low != 0)
      return no("memory.low");
    auto need = [&](const char* ctrl, bool set) -> caf::error {
      if (set && !hier_of(ctrl))
        return make_error(errc::unsupported, std::string{"the "} + ctrl
                                               + " controller is not mounted on this host");
      return {};
    };
    if (auto e = need("cpu", l.cpu_weight || l.cpu_max_quota_us || l.cpu_max_period_us))
      return e;
    if (auto e = need("cpuset", !l.cpuset_cpus.empty() || !l.cpuset_mems.empty()))
      return e;
    if (auto e = need("memory", l.memory_high || l.memory_max))
      return e;
    if (auto e = need("pids", l.pids_max != 0))
      return e;
    if (auto e = need("blkio", l.io_weight || !l.io_max.empty()))
      return e;
    if (l.io_weight != 0 && !fs::exists(hier_of("blkio")->dir + "/blkio.weight"))
      return make_error(errc::unsupported,
                        "io.weight is not supported on this host (no blkio.weight: the block "
                        "scheduler has no proportional weights)");
    return {};
  }

  caf::error create(const std::string& cell, const cell_limits& l) override {
    if (auto err = supports(l))
      return err;
    std::vector<std::string> made;
    auto fail = [&](caf::error err) {
      for (auto i = made.rbegin(); i != made.rend(); ++i)
        remove_dir(*i);
      return err;
    };
    for (auto& h : hier_) {
      auto dir = path(h, cell);
      if (auto err = make_dir(dir))
        return fail(std::move(err));
      made.push_back(dir);
      // Below a parent without clone_children (a host cgroup, not cyto's root) a new
      // cpuset starts empty and no task may join it: copy the parent's.
      if (has(h, "cpuset") && read_number(dir + "/cgroup.clone_children") == 0)
        if (auto err = inherit_cpuset(dir))
          return fail(std::move(err));
    }
    if (auto err = write_limits(cell, l))
      return fail(std::move(err));
    if (leaf_ == process_leaf::none)
      return {};
    for (auto& h : hier_) {
      auto leaf = path(h, cell) + "/" + std::string{leaf_name};
      if (auto err = make_dir(leaf))
        return fail(std::move(err));
      made.push_back(leaf);
    }
    return {};
  }

  caf::error update(const std::string& cell, const cell_limits& l) override {
    if (auto err = supports(l))
      return err;
    if (!exists(cell))
      return make_error(errc::not_found, "cell " + cell + " has no cgroup");
    return write_limits(cell, l);
  }

  caf::error remove(const std::string& cell) override {
    if (!pids(cell, true).empty())
      return make_error(errc::failed_precondition, "cell " + cell + " still has processes");
    caf::error first;
    for (auto& h : hier_) {
      auto dir = path(h, cell);
      auto e1 = leaf_ == process_leaf::none ? caf::error{} : remove_dir(leaf_dir(dir));
      auto e2 = remove_dir(dir);
      if (!first)
        first = e1 ? std::move(e1) : std::move(e2);
    }
    return first;
  }

  caf::error attach(const std::string& cell, pid_t pid) override {
    for (auto& h : hier_)
      if (auto err = write_file(leaf_dir(path(h, cell)) + "/cgroup.procs", std::to_string(pid)))
        return err;
    return {};
  }

  std::vector<std::string> procs_files(const std::string& cell) const override {
    std::vector<std::string> out;
    for (auto& h : hier_)
      out.push_back(leaf_dir(path(h, cell)) + "/cgroup.procs");
    return out;
  }

  std::vector<pid_t> pids(const std::string& cell, bool recursive) const override {
    std::vector<pid_t> out;
    const hierarchy* h = hier_of("pids");
    if (!h)
      h = hier_of("memory");
    if (!h && !hier_.empty())
      h = &hier_.front();
    if (!h)
      return out;
    std::error_code ec;
    auto top = path(*h, cell);
    auto add = [&](const std::string& dir) {
      auto ps = read_procs(dir + "/cgroup.procs");
      out.insert(out.end(), ps.begin(), ps.end());
    };
    if (!recursive) {
      add(leaf_dir(top));
      return out;
    }
    add(top);
    for (auto& e : fs::recursive_directory_iterator{top, ec})
      if (e.is_directory(ec))
        add(e.path().string());
    return out;
  }

  bool exists(const std::string& cell) const override {
    std::error_code ec;
    return !hier_.empty() && fs::exists(path(hier_.front(), cell), ec);
  }

  std::vector<std::string> list() const override {
    std::set<std::string> names;
    for (auto& h : hier_)
      list_cells_under(fs::path{h.dir} / root_, names);
    return {names.begin(), names.end()}; // sorted: "a" before "a/b"
  }

  std::string file(const std::string& cell, const std::string& name) const override {
    if (name == "cgroup.procs") {
      auto* h = hier_of("pids");
      return h ? leaf_dir(path(*h, cell)) + "/cgroup.procs" : std::string{};
    }
    auto [ctrl, v1name] = map_name(name);
    auto* h = hier_of(ctrl);
    return h ? path(*h, cell) + "/" + v1name : std::string{};
  }

  caf::expected<cell_usage> usage(const std::string& cell) const override {
    if (!exists(cell))
      return make_error(errc::not_found, "cell " + cell + " has no cgroup");
    cell_usage u;
    u.cell = cell;
    u.monotonic_nanos = monotonic_nanos();
    auto at = [&](const char* ctrl, const char* name) {
      auto* h = hier_of(ctrl);
      return h ? path(*h, cell) + "/" + name : std::string{};
    };
    u.cpu_usage_usec = read_number(at("cpuacct", "cpuacct.usage")) / 1000;
    u.memory_current = read_number(at("memory", "memory.usage_in_bytes"));
    u.memory_peak = read_number(at("memory", "memory.max_usage_in_bytes"));
    // Unlimited is the largest page-aligned value: anything past 2^62 means none.
    u.memory_limit = read_number(at("memory", "memory.limit_in_bytes"));
    if (u.memory_limit >= (uint64_t{1} << 62))
      u.memory_limit = 0;
    u.oom_kills = read_keyed(at("memory", "memory.oom_control"), "oom_kill");
    u.pids_current = read_number(at("pids", "pids.current"));
    // "8:0 Read 4096" lines per device, then "Total N".
    std::ifstream io{at("blkio", "blkio.throttle.io_service_bytes_recursive")};
    std::string dev, op;
    uint64_t n = 0;
    std::string line;
    while (std::getline(io, line)) {
      std::istringstream ls{line};
      if (!(ls >> dev >> op >> n))
        continue;
      if (op == "Read")
        u.io_read_bytes += n;
      else if (op == "Write")
        u.io_write_bytes += n;
    }
    return u;
  }

  caf::error destroy_root() override {
    caf::error first;
    for (auto& h : hier_) {
      std::error_code ec;
      auto top = fs::path{h.dir} / root_;
      if (!fs::exists(top, ec))
        continue;
      std::vector<fs::path> dirs;
      for (auto& e : fs::recursive_directory_iterator{top, ec})
        if (e.is_directory(ec))
          dirs.push_back(e.path());
      std::sort(dirs.begin(), dirs.end(), [](auto& a, auto& b) {
        return a.string().size() > b.string().size();
      });
      dirs.push_back(top);
      for (auto& d : dirs)
        if (auto err = remove_dir(d.string()); err && !first)
          first = std::move(err);
    }
    return first;
  }

private:
  struct hierarchy {
    std::string dir;
    std::vector<std::string> controllers;
  };

  static bool has(const hierarchy& h, const char* c) {
    return std::find(h.controllers.begin(), h.controllers.end(), c) != h.controllers.end();
  }

  const hierarchy* hier_of(const std::string& c) const {
    for (auto& h : hier_)
      if (has(h, c.c_str()))
        return &h;
    return nullptr;
  }

  std::string path(const hierarchy& h, const std::string& cell) const {
    return h.dir + "/" + root_ + "/" + cell;
  }

  /// Where a cell's own processes live: its leaf, or the cell itself without one.
  std::string leaf_dir(const std::string& dir) const {
    return leaf_ == process_leaf::none ? dir : dir + "/" + std::string{leaf_name};
  }

  static std::pair<std::string, std::string> map_name(const std::string& v2) {
    if (v2 == "cpu.weight") return {"cpu", "cpu.shares"};
    if (v2 == "cpu.max") return {"cpu", "cpu.cfs_quota_us"};
    if (v2 == "cpu.max.period") return {"cpu", "cpu.cfs_period_us"};
    if (v2 == "memory.max") return {"memory", "memory.limit_in_bytes"};
    if (v2 == "memory.high") return {"memory", "memory.soft_limit_in_bytes"};
    if (v2 == "memory.current") return {"memory", "memory.usage_in_bytes"};
    if (v2 == "pids.max") return {"pids", "pids.max"};
    if (v2 == "pids.current") return {"pids", "pids.current"};
    if (v2 == "cpuset.cpus") return {"cpuset", "cpuset.cpus"};
    if (v2 == "cpuset.mems") return {"cpuset", "cpuset.mems"};
    if (v2 == "io.weight") return {"blkio", "blkio.weight"};
    return {"", ""};
  }

  /// v1 cpusets start empty: copy the parent's cpus and mems so tasks may join.
  static caf::error inherit_cpuset(const std::string& dir) {
    auto parent = fs::path{dir}.parent_path().string();
    for (auto* f : {"cpuset.cpus", "cpuset.mems"}) {
      auto v = read_file(parent + "/" + f);
      if (!v)
        return v.error();
      auto value = *v;
      while (!value.empty() && value.back() == '\n')
        value.pop_back();
      if (value.empty())
        continue;
      if (auto err = write_file(dir + "/" + f, value))
        return err;
    }
    return {};
  }

  caf::error write_limits(const std::string& cell, const cell_limits& l) {
    auto put = [&](const char* ctrl, const std::string& name, const std::string& value) {
      return write_file(path(*hier_of(ctrl), cell) + "/" + name, value);
    };
    caf::error err;
    if (l.cpu_weight && (err = put("cpu", "cpu.shares", std::to_string(std::max<uint64_t>(
                                                          2, l.cpu_weight * 1024 / 100)))))
      return err;
    if (l.cpu_max_quota_us || l.cpu_max_period_us) {
      auto period = l.cpu_max_period_us ? l.cpu_max_period_us : 100000;
      if ((err = put("cpu", "cpu.cfs_period_us", std::to_string(period))))
        return err;
      auto quota = (l.cpu_max_quota_us == 0 || l.cpu_max_quota_us == cell_limits::unlimited)
                     ? std::string{"-1"}
                     : std::to_string(l.cpu_max_quota_us);
      if ((err = put("cpu", "cpu.cfs_quota_us", quota)))
        return err;
    }
    if (!l.cpuset_cpus.empty() && (err = put("cpuset", "cpuset.cpus", l.cpuset_cpus)))
      return err;
    if (!l.cpuset_mems.empty() && (err = put("cpuset", "cpuset.mems", l.cpuset_mems)))
      return err;
    if (l.memory_max && (err = put("memory", "memory.limit_in_bytes", std::to_string(l.memory_max))))
      return err;
    if (l.memory_high
        && (err = put("memory", "memory.soft_limit_in_bytes", std::to_string(l.memory_high))))
      return err;
    if (l.pids_max && (err = put("pids", "pids.max", std::to_string(l.pids_max))))
      return err;
    if (l.io_weight
        && (err = put("blkio", "blkio.weight",
                      std::to_string(std::clamp<uint64_t>(l.io_weight / 10, 10, 1000)))))
      return err;
    for (auto& d : l.io_max) {
      std::pair<const char*, uint64_t> caps[] = {{"blkio.throttle.read_bps_device", d.rbps},
                                                 {"blkio.throttle.write_bps_device", d.wbps},
                                                 {"blkio.throttle.read_iops_device", d.riops},
                                                 {"blkio.throttle.write_iops_device", d.wiops}};
      for (auto& [file, v] : caps)
        if (v && (err = put("blkio", file, d.device + " " + std::to_string(v))))
          return err;
    }
    return {};
  }

  std::string root_;
  process_leaf leaf_;
  std::vector<hierarchy> hier_;
};

} // namespace

std::unique_ptr<cgroup_driver> make_cgroup_v1(std::string root, std::string mount,
                                              process_leaf leaf) {
  return std::make_unique<cgroup_v1>(std::move(root), std::move(mount), leaf);
}

} // namespace cyto::cells
