// cgroup v2 (unified hierarchy): limits written under their own names; controllers are
// enabled in cgroup.subtree_control from the mount down to each cell, and a cell's own
// processes live in its leaf "_" so child cells can be added at any time.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include "actors/cells/cgroup.hpp"
#include "actors/cells/limits.hpp"
#include "bus/errc.hpp"

namespace cyto::cells {

namespace {

namespace fs = std::filesystem;

constexpr const char* wanted[] = {"cpu", "cpuset", "memory", "pids", "io"};

std::vector<std::string> words(const std::string& text) {
  std::istringstream in{text};
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

class cgroup_v2 final : public cgroup_driver {
public:
  cgroup_v2(std::string root, std::string mount, process_leaf leaf)
    : root_(std::move(root)), mount_(std::move(mount)), leaf_(leaf) {
    // What the host offers; init() enables it along the path to our root. A driver used
    // without init() (the OCI runtime's, below roots another made) checks against it too.
    if (auto avail = read_file(mount_ + "/cgroup.controllers"))
      for (auto& c : words(*avail))
        if (std::find(std::begin(wanted), std::end(wanted), c) != std::end(wanted))
          controllers_.push_back(c);
  }

  cgroup_mode mode() const noexcept override {
    return cgroup_mode::v2;
  }

  caf::error init() override {
    if (auto avail = read_file(mount_ + "/cgroup.controllers"); !avail)
      return avail.error();
    if (auto err = make_dir(top(), true))
      return err;
    // Enable along the path: mount root -> our root -> (cells do their own).
    if (auto err = enable(mount_))
      return err;
    return enable(top());
  }

  caf::error supports(const cell_limits& l) const override {
    auto need = [&](const char* ctrl, bool set) -> caf::error {
      if (set && std::find(controllers_.begin(), controllers_.end(), ctrl) == controllers_.end())
        return make_error(errc::unsupported, std::string{"the "} + ctrl
                                               + " controller is not available on this host");
      return {};
    };
    if (auto e = need("cpu", l.cpu_weight || l.cpu_max_quota_us || l.cpu_max_period_us))
      return e;
    if (auto e = need("cpuset", !l.cpuset_cpus.empty() || !l.cpuset_mems.empty()))
      return e;
    if (auto e = need("memory", l.memory_min || l.memory_low || l.memory_high || l.memory_max))
      return e;
    if (auto e = need("pids", l.pids_max != 0))
      return e;
    return need("io", l.io_weight || !l.io_max.empty());
  }

  caf::error create(const std::string& cell, const cell_limits& l) override {
    if (auto err = supports(l))
      return err;
    auto dir = path(cell);
    if (auto err = make_dir(dir))
      return err;
    auto fail = [&](caf::error err) {
      if (leaf_ == process_leaf::own)
        remove_dir(leaf_dir(dir));
      remove_dir(dir);
      return err;
    };
    if (auto err = write_limits(dir, l))
      return fail(std::move(err));
    // Without a leaf the cell's processes live in it, so it may not delegate controllers
    // (the no-internal-processes rule): it stays a leaf itself.
    if (leaf_ == process_leaf::none)
      return {};
    if (auto err = enable(dir))
      return fail(std::move(err));
    if (auto err = make_dir(leaf_dir(dir)))
      return fail(std::move(err));
    return {};
  }

  caf::error update(const std::string& cell, const cell_limits& l) override {
    if (auto err = supports(l))
      return err;
    if (!exists(cell))
      return make_error(errc::not_found, "cell " + cell + " has no cgroup");
    return write_limits(path(cell), l);
  }

  caf::error remove(const std::string& cell) override {
    if (!pids(cell, true).empty())
      return make_error(errc::failed_precondition, "cell " + cell + " still has processes");
    auto dir = path(cell);
    if (leaf_ == process_leaf::own)
      if (auto err = remove_dir(leaf_dir(dir)))
        return err;
    return remove_dir(dir);
  }

  caf::error attach(const std::string& cell, pid_t pid) override {
    return write_file(leaf_dir(path(cell)) + "/cgroup.procs", std::to_string(pid));
  }

  std::vector<std::string> procs_files(const std::string& cell) const override {
    return {leaf_dir(path(cell)) + "/cgroup.procs"};
  }

  std::vector<pid_t> pids(const std::string& cell, bool recursive) const override {
    std::vector<pid_t> out;
    std::error_code ec;
    auto topdir = path(cell);
    auto add = [&](const std::string& d) {
      auto ps = read_procs(d + "/cgroup.procs");
      out.insert(out.end(), ps.begin(), ps.end());
    };
    if (!recursive) {
      add(leaf_dir(topdir));
      return out;
    }
    add(topdir);
    for (auto& e : fs::recursive_directory_iterator{topdir, ec})
      if (e.is_directory(ec))
        add(e.path().string());
    return out;
  }

  bool exists(const std::string& cell) const override {
    std::error_code ec;
    return fs::exists(path(cell), ec);
  }

  std::vector<std::string> list() const override {
    std::set<std::string> names;
    list_cells_under(fs::path{top()}, names);
    return {names.begin(), names.end()}; // sorted: "a" before "a/b"
  }

  std::string file(const std::string& cell, const std::string& name) const override {
    if (name == "cgroup.procs")
      return leaf_dir(path(cell)) + "/cgroup.procs";
    return path(cell) + "/" + name;
  }

  caf::expected<cell_usage> usage(const std::string& cell) const override {
    std::error_code ec;
    auto dir = path(cell);
    if (!fs::is_directory(dir, ec))
      return make_error(errc::not_found, "cell " + cell + " has no cgroup");
    cell_usage u;
    u.cell = cell;
    u.monotonic_nanos = monotonic_nanos();
    u.cpu_usage_usec = read_keyed(dir + "/cpu.stat", "usage_usec");
    u.memory_current = read_number(dir + "/memory.current");
    u.memory_peak = read_number(dir + "/memory.peak");
    u.memory_limit = read_number(dir + "/memory.max"); // "max" reads as 0
    u.oom_kills = read_keyed(dir + "/memory.events", "oom_kill");
    u.pids_current = read_number(dir + "/pids.current");
    // "8:0 rbytes=1 wbytes=2 rios=3 ..." per device.
    std::ifstream io{dir + "/io.stat"};
    std::string word;
    while (io >> word) {
      if (word.rfind("rbytes=", 0) == 0)
        u.io_read_bytes += std::stoull(word.substr(7));
      else if (word.rfind("wbytes=", 0) == 0)
        u.io_write_bytes += std::stoull(word.substr(7));
    }
    return u;
  }

  caf::error destroy_root() override {
    std::error_code ec;
    if (!fs::exists(top(), ec))
      return {};
    std::vector<fs::path> dirs;
    for (auto& e : fs::recursive_directory_iterator{top(), ec})
      if (e.is_directory(ec))
        dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end(),
              [](auto& a, auto& b) { return a.string().size() > b.string().size(); });
    dirs.push_back(top());
    caf::error first;
    for (auto& d : dirs)
      if (auto err = remove_dir(d.string()); err && !first)
        first = std::move(err);
    return first;
  }

private:
  std::string top() const {
    return mount_ + "/" + root_;
  }

  std::string path(const std::string& cell) const {
    return top() + "/" + cell;
  }

  /// Where a cell's own processes live: its leaf, or the cell itself without one.
  std::string leaf_dir(const std::string& dir) const {
    return leaf_ == process_leaf::none ? dir : dir + "/" + std::string{leaf_name};
  }

  caf::error enable(const std::string& dir) {
    if (controllers_.empty())
      return {};
    std::string ctl;
    for (auto& c : controllers_)
      ctl += (ctl.empty() ? "+" : " +") + c;
    return write_file(dir + "/cgroup.subtree_control", ctl);
  }

  static caf::error write_limits(const std::string& dir, const cell_limits& l) {
    auto put = [&](const char* name, const std::string& value) {
      return write_file(dir + "/" + name, value);
    };
    caf::error err;
    if (l.cpu_weight && (err = put("cpu.weight", std::to_string(l.cpu_weight))))
      return err;
    if (l.cpu_max_quota_us || l.cpu_max_period_us) {
      auto period = l.cpu_max_period_us ? l.cpu_max_period_us : 100000;
      auto quota = (l.cpu_max_quota_us == 0 || l.cpu_max_quota_us == cell_limits::unlimited)
                     ? std::string{"max"}
                     : std::to_string(l.cpu_max_quota_us);
      if ((err = put("cpu.max", quota + " " + std::to_string(period))))
        return err;
    }
    if (!l.cpuset_cpus.empty() && (err = put("cpuset.cpus", l.cpuset_cpus)))
      return err;
    if (!l.cpuset_mems.empty() && (err = put("cpuset.mems", l.cpuset_mems)))
      return err;
    std::pair<const char*, uint64_t> mem[] = {{"memory.min", l.memory_min},
                                              {"memory.low", l.memory_low},
                                              {"memory.high", l.memory_high},
                                              {"memory.max", l.memory_max}};
    for (auto& [name, v] : mem)
      if (v && (err = put(name, std::to_string(v))))
        return err;
    if (l.pids_max && (err = put("pids.max", std::to_string(l.pids_max))))
      return err;
    if (l.io_weight && (err = put("io.weight", "default " + std::to_string(l.io_weight))))
      return err;
    for (auto& d : l.io_max) {
      std::string line = d.device;
      auto cap = [&](const char* key, uint64_t v) {
        line += std::string{" "} + key + "=" + (v ? std::to_string(v) : std::string{"max"});
      };
      cap("rbps", d.rbps);
      cap("wbps", d.wbps);
      cap("riops", d.riops);
      cap("wiops", d.wiops);
      if ((err = put("io.max", line)))
        return err;
    }
    return {};
  }

  std::string root_;
  std::string mount_;
  process_leaf leaf_;
  std::vector<std::string> controllers_;
};

} // namespace

std::unique_ptr<cgroup_driver> make_cgroup_v2(std::string root, std::string mount,
                                              process_leaf leaf) {
  return std::make_unique<cgroup_v2>(std::move(root), std::move(mount), leaf);
}

} // namespace cyto::cells
