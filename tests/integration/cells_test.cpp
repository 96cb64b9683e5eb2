// Integration tests of cells: a real cytod with its own cgroup root, spoken to over
// Cap'n Proto (and once through the cyto CLI); what it claims is checked against the
// kernel (cgroup files, /proc). Needs root (exits 77 = skipped otherwise).
//
// The host may be cgroup v1, hybrid or v2: the test reads /proc/self/mountinfo itself
// and looks for the v1 file names (cpu.shares, memory.limit_in_bytes, ...) or the v2
// ones accordingly.
#define BOOST_TEST_MODULE integration_cells
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <pwd.h>

#include <nlohmann/json.hpp>

#include "schema/cells.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace schema = cyto::schema;
namespace fs = std::filesystem;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

// -- the host's cgroup mounts, read independently of cytod -----------------------------


std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.pop_back();
  s.erase(0, s.find_first_not_of(" \t\n"));
  return s;
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// The controllers a cell uses; each names the hierarchy (v1) its files live in.
const std::vector<std::string> cell_controllers = {"cpu",    "cpuacct", "cpuset",
                                                   "memory", "pids",    "blkio"};

struct cgroup_host {
  bool v2 = false;                         // cgroup2 is the only cgroup file system
  std::string v2_mount;                    // when v2
  std::map<std::string, std::string> v1;   // controller -> mount point (v1, hybrid)
  std::vector<std::string> all_mounts;     // every cgroup/cgroup2 mount point

  static const cgroup_host& get() {
    static const cgroup_host h = read();
    return h;
  }

  static cgroup_host read() {
    cgroup_host h;
    bool any_v1 = false;
    std::vector<std::string> v2_mounts;
    for (auto& m : host_cgroup_mounts()) {
      h.all_mounts.push_back(m.path);
      if (m.v2) {
        v2_mounts.push_back(m.path);
        continue;
      }
      any_v1 = true;
      for (auto& opt : m.options)
        if (std::find(cell_controllers.begin(), cell_controllers.end(), opt)
            != cell_controllers.end())
          h.v1.emplace(opt, m.path);
    }
    h.v2 = !any_v1 && !v2_mounts.empty();
    if (h.v2)
      h.v2_mount = v2_mounts.front();
    return h;
  }

  /// Directory of `cell` (or of the daemon's root when cell is empty) in the hierarchy
  /// that holds `ctrl`.
  std::string dir(const daemon_fixture& d, const std::string& ctrl,
                  const std::string& cell = "") const {
    std::string base;
    if (v2) {
      base = v2_mount;
    } else {
      auto i = v1.find(ctrl);
      if (i == v1.end())
        throw std::runtime_error("no v1 hierarchy holds the " + ctrl + " controller");
      base = i->second;
    }
    return base + "/" + d.cgroup_root() + (cell.empty() ? "" : "/" + cell);
  }

  /// The hierarchies cytod must build every cell in.
  std::set<std::string> cell_mounts() const {
    if (v2)
      return {v2_mount};
    std::set<std::string> out;
    for (auto& [c, m] : v1)
      out.insert(m);
    return out;
  }
};

const cgroup_host& host() {
  return cgroup_host::get();
}

/// Reads a cgroup (or any) file, trimmed; "<missing>" if it cannot be read.
std::string cg_read(const std::string& path) {
  if (!fs::exists(path))
    return "<missing: " + path + ">";
  return trim(read_text(path));
}

/// Every directory below the daemon's root, relative to it, per cgroup mount point.
std::map<std::string, std::set<std::string>> dirs_under_root(const daemon_fixture& d) {
  std::map<std::string, std::set<std::string>> out;
  for (auto& m : host().all_mounts) {
    fs::path top = fs::path{m} / d.cgroup_root();
    std::error_code ec;
    if (!fs::is_directory(top, ec))
      continue;
    auto& set = out[m];
    for (auto& e : fs::recursive_directory_iterator{top, ec})
      if (e.is_directory(ec))
        set.insert(fs::relative(e.path(), top).string());
  }
  return out;
}

std::string show_set(const std::set<std::string>& xs) {
  std::string out = "{";
  for (auto& x : xs)
    out += (out.size() > 1 ? ", " : "") + x;
  return out + "}";
}

/// Checks that the cgroup directories under the daemon's root are exactly those of
/// `cells` (each cell plus its leaf "_") in every hierarchy a cell uses, and that no
/// other hierarchy holds anything else.
void expect_cgroup_dirs(const daemon_fixture& d, const std::set<std::string>& cells) {
  std::set<std::string> want;
  for (auto& c : cells) {
    want.insert(c);
    want.insert(c + "/_");
  }
  auto have = dirs_under_root(d);
  for (auto& m : host().cell_mounts()) {
    auto it = have.find(m);
    auto got = it == have.end() ? std::set<std::string>{} : it->second;
    BOOST_TEST(show_set(got) == show_set(want), "cgroup dirs under " << m << "/"
                                                                    << d.cgroup_root());
  }
  for (auto& [m, got] : have) {
    std::set<std::string> extra;
    std::set_difference(got.begin(), got.end(), want.begin(), want.end(),
                        std::inserter(extra, extra.end()));
    BOOST_TEST(extra.empty(), "unexpected cgroup dirs under " << m << "/" << d.cgroup_root()
                                                              << ": " << show_set(extra));
  }
}

/// Pids listed in every cgroup.procs at and below `dir`.
std::vector<pid_t> procs_below(const std::string& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return out;
  std::vector<std::string> dirs{dir};
  for (auto& e : fs::recursive_directory_iterator{dir, ec})
    if (e.is_directory(ec))
      dirs.push_back(e.path().string());
  for (auto& d : dirs) {
    std::ifstream in{d + "/cgroup.procs"};
    pid_t p;
    while (in >> p)
      out.push_back(p);
  }
  return out;
}

bool pid_alive(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

/// True while pid exists and is not a zombie.
bool pid_running(pid_t pid) {
  auto stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size())
    return pid_alive(pid);
  return stat[close + 2] != 'Z';
}

/// Waits (bounded) until none of the pids exists any more (reaped, too); returns those
/// left. For the daemon's own children: it must reap them.
std::vector<pid_t> wait_pids_gone(const std::vector<pid_t>& pids,
                                  std::chrono::milliseconds timeout = 5s,
                                  bool zombies_count_as_gone = false) {
  auto deadline = steady::now() + timeout;
  std::vector<pid_t> left;
  while (true) {
    left.clear();
    for (auto p : pids)
      if (zombies_count_as_gone ? pid_running(p) : pid_alive(p))
        left.push_back(p);
    if (left.empty() || steady::now() >= deadline)
      return left;
    std::this_thread::sleep_for(10ms);
  }
}

/// Waits (bounded) until none of the pids runs any more. For orphans (processes whose
/// parent is gone, e.g. after the daemon was killed): reaping them is init's business,
/// and some inits are slow at it, so a zombie counts as ended.
std::vector<pid_t> wait_pids_ended(const std::vector<pid_t>& pids,
                                   std::chrono::milliseconds timeout = 5s) {
  return wait_pids_gone(pids, timeout, true);
}

/// Polls until pred() holds or the timeout passes; returns whether it held.
template <class Pred>
bool poll_until(Pred&& pred, std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  while (!pred()) {
    if (steady::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// -- plain copies of what the daemon answers --------------------------------------------

struct exit_view {
  bool exited = false;
  bool known = false;
  int code = 0;
  int signal = 0;
};

std::ostream& operator<<(std::ostream& os, const exit_view& s) {
  return os << "{exited=" << s.exited << " known=" << s.known << " code=" << s.code
            << " signal=" << s.signal << "}";
}

struct exe_view {
  std::string name, cell;
  std::vector<std::string> argv;
  uint32_t pid = 0, ns_pid = 0;
  exit_view status;
  std::string stdout_path, stderr_path;
};

struct cell_view {
  std::string name;
  uint64_t cpu_weight = 0, cpu_quota_us = 0, cpu_period_us = 0;
  std::string cpus;
  uint64_t mem_high = 0, mem_max = 0, pids_max = 0;
  bool isolate_process = false, isolate_network = false;
  std::vector<exe_view> exes;
  std::vector<uint32_t> pids;
  std::string cgroup_path;
  std::vector<cell_view> children;

  const exe_view* exe(const std::string& n) const {
    for (auto& e : exes)
      if (e.name == n)
        return &e;
    return nullptr;
  }
};

exit_view view(schema::ExitStatus::Reader s) {
  return {s.getExited(), s.getKnown(), s.getCode(), s.getSignal()};
}

exe_view view(schema::ExecutableInfo::Reader e) {
  exe_view v;
  v.name = e.getExecutable().getName().cStr();
  v.cell = e.getCellName().cStr();
  for (auto a : e.getExecutable().getArgv())
    v.argv.emplace_back(a.cStr());
  v.pid = e.getPid();
  v.ns_pid = e.getNsPid();
  v.status = view(e.getStatus());
  v.stdout_path = e.getStdoutPath().cStr();
  v.stderr_path = e.getStderrPath().cStr();
  return v;
}

cell_view view(schema::CellInfo::Reader info) {
  cell_view v;
  auto c = info.getCell();
  v.name = c.getName().cStr();
  v.cpu_weight = c.getCpu().getWeight();
  v.cpu_quota_us = c.getCpu().getMaxQuotaUs();
  v.cpu_period_us = c.getCpu().getMaxPeriodUs();
  v.cpus = c.getCpuset().getCpus().cStr();
  v.mem_high = c.getMemory().getHigh();
  v.mem_max = c.getMemory().getMax();
  v.pids_max = c.getPidsMax();
  v.isolate_process = c.getIsolateProcess();
  v.isolate_network = c.getIsolateNetwork();
  for (auto e : info.getExecutables())
    v.exes.push_back(view(e));
  for (auto p : info.getPids())
    v.pids.push_back(p);
  v.cgroup_path = info.getCgroupPath().cStr();
  for (auto k : info.getChildren())
    v.children.push_back(view(k));
  return v;
}

/// Every cell of a list answer, depth first, with its nesting flattened away.
void flatten(const std::vector<cell_view>& cells, std::vector<const cell_view*>& out) {
  for (auto& c : cells) {
    out.push_back(&c);
    flatten(c.children, out);
  }
}

std::set<std::string> names_of(const std::vector<cell_view>& cells) {
  std::vector<const cell_view*> all;
  flatten(cells, all);
  std::set<std::string> out;
  for (auto* c : all)
    out.insert(c->name);
  return out;
}

const cell_view* find_cell(const std::vector<cell_view>& cells, const std::string& name) {
  std::vector<const cell_view*> all;
  flatten(cells, all);
  for (auto* c : all)
    if (c->name == name)
      return c;
  return nullptr;
}

// -- requests ---------------------------------------------------------------------------

struct cell_req {
  std::string name{};
  uint64_t cpu_weight = 0, cpu_quota_us = 0, cpu_period_us = 0;
  std::string cpus{};
  std::string mems{};
  uint64_t mem_min = 0, mem_low = 0, mem_high = 0, mem_max = 0;
  uint64_t pids_max = 0;
  bool isolate_process = false, isolate_network = false;
};

struct exe_req {
  std::vector<std::string> argv{};
  std::string name{};
  std::string command{};
  int64_t uid = -1;
  int64_t gid = -1;
  std::string cwd{};
  std::vector<std::string> env{};
};

constexpr uint64_t MiB = 1024 * 1024;

/// The Cells service of one daemon, on this thread's kj loop. Every call is bounded.
class cells_api {
public:
  explicit cells_api(const daemon_fixture& d) : d_(d) {
    connect();
  }

  /// (Re)connects, e.g. after the daemon was restarted.
  void connect() {
    svc_.reset();
    conn_.reset();
    conn_ = d_.connect(io_);
    svc_ = conn_->node().cellsRequest().send().getService();
  }

  kj::AsyncIoContext& io() {
    return io_;
  }

  cell_view allocate(const cell_req& r) {
    auto req = svc_->allocateRequest();
    auto c = req.initCell();
    c.setName(r.name);
    auto cpu = c.initCpu();
    cpu.setWeight(r.cpu_weight);
    cpu.setMaxQuotaUs(r.cpu_quota_us);
    cpu.setMaxPeriodUs(r.cpu_period_us);
    auto cs = c.initCpuset();
    cs.setCpus(r.cpus);
    cs.setMems(r.mems);
    auto m = c.initMemory();
    m.setMin(r.mem_min);
    m.setLow(r.mem_low);
    m.setHigh(r.mem_high);
    m.setMax(r.mem_max);
    c.setPidsMax(r.pids_max);
    c.setIsolateProcess(r.isolate_process);
    c.setIsolateNetwork(r.isolate_network);
    return view(wait_for(io_, req.send()).getInfo());
  }

  exe_view start(const std::string& cell, const exe_req& e) {
    auto req = svc_->startRequest();
    req.setCellName(cell);
    auto x = req.initExecutable();
    x.setName(e.name);
    auto argv = x.initArgv(static_cast<unsigned>(e.argv.size()));
    for (unsigned i = 0; i < e.argv.size(); ++i)
      argv.set(i, e.argv[i]);
    x.setCommand(e.command);
    x.setUid(e.uid);
    x.setGid(e.gid);
    x.setCwd(e.cwd);
    auto env = x.initEnv(static_cast<unsigned>(e.env.size()));
    for (unsigned i = 0; i < e.env.size(); ++i)
      env.set(i, e.env[i]);
    return view(wait_for(io_, req.send()).getInfo());
  }

  exit_view stop(const std::string& cell, const std::string& exe, int sig = 0,
                 uint32_t timeout_ms = 5000) {
    auto req = svc_->stopRequest();
    req.setCellName(cell);
    req.setExecutableName(exe);
    req.setSignal(sig);
    req.setTimeoutMs(timeout_ms);
    return view(wait_for(io_, req.send(), (timeout_ms + 10000) * kj::MILLISECONDS).getStatus());
  }

  exit_view wait(const std::string& cell, const std::string& exe,
                 kj::Duration timeout = 20 * kj::SECONDS) {
    auto req = svc_->waitRequest();
    req.setCellName(cell);
    req.setExecutableName(exe);
    return view(wait_for(io_, req.send(), timeout).getStatus());
  }

  std::vector<cell_view> list() {
    auto resp = wait_for(io_, svc_->listRequest().send());
    std::vector<cell_view> out;
    for (auto c : resp.getCells())
      out.push_back(view(c));
    return out;
  }

  cell_view get(const std::string& name) {
    auto req = svc_->getRequest();
    req.setName(name);
    return view(wait_for(io_, req.send()).getInfo());
  }

  /// Asks to wait for `exe`, then frees its cell with force; returns what the wait says.
  exit_view wait_across_forced_free(const std::string& cell, const std::string& exe) {
    auto wreq = svc_->waitRequest();
    wreq.setCellName(cell);
    wreq.setExecutableName(exe);
    auto waiting = wreq.send();
    free(cell, false, true);
    return view(wait_for(io_, kj::mv(waiting)).getStatus());
  }

  void free(const std::string& name, bool recursive = false, bool force = false) {
    auto req = svc_->freeRequest();
    req.setName(name);
    req.setRecursive(recursive);
    req.setForce(force);
    wait_for(io_, req.send(), 20 * kj::SECONDS);
  }

private:
  const daemon_fixture& d_;
  kj::AsyncIoContext io_ = kj::setupAsyncIo();
  std::unique_ptr<rpc_connection> conn_;
  std::optional<schema::Cells::Client> svc_;
};

/// The description of the kj exception f() throws, or "" if it succeeds.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
    return "";
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
}

/// Expects `expr` to fail with "cyto.<code>: ...".
#define EXPECT_REFUSED(code, expr)                                                          \
  do {                                                                                      \
    auto err_ = error_of([&] { expr; });                                                    \
    BOOST_TEST(contains(err_, "cyto." code ":"),                                            \
               #expr << " should fail with cyto." code ", got: "                            \
                     << (err_.empty() ? std::string{"<success>"} : err_));                  \
  } while (0)

/// The daemon's log, for failure messages.
std::string log_of(const daemon_fixture& d) {
  return "\n--- cytod log:\n" + d.log();
}

/// Runs `cyto --socket <daemon's socket> args...`.
process_result run_cyto(const daemon_fixture& d, std::vector<std::string> args,
                        std::chrono::milliseconds timeout = 15s) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

std::string show(const process_result& r) {
  return describe_status(r.status) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

/// The line of /proc/PID/cgroup for a v1 controller ("4:memory:/path") or the unified
/// line ("0::/path"); returns the path part or "<none>".
std::string proc_cgroup_path(pid_t pid, const std::string& ctrl) {
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/cgroup"))) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos)
      continue;
    auto ctrls = split(line.substr(first + 1, second - first - 1), ',');
    bool match = ctrl.empty() ? ctrls.empty()
                              : std::find(ctrls.begin(), ctrls.end(), ctrl) != ctrls.end();
    if (match)
      return line.substr(second + 1);
  }
  return "<none>";
}

} // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(limits_land_in_cgroup_files) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  auto info = api.allocate({.name = "limited",
                            .cpu_weight = 50,
                            .cpu_quota_us = 50000,
                            .cpu_period_us = 100000,
                            .cpus = "0",
                            .mem_high = 128 * MiB,
                            .mem_max = 256 * MiB,
                            .pids_max = 100});
  // The answer echoes the limits.
  BOOST_TEST(info.name == "limited");
  BOOST_TEST(info.cpu_weight == 50u);
  BOOST_TEST(info.cpu_quota_us == 50000u);
  BOOST_TEST(info.cpu_period_us == 100000u);
  BOOST_TEST(info.cpus == "0");
  BOOST_TEST(info.mem_high == 128 * MiB);
  BOOST_TEST(info.mem_max == 256 * MiB);
  BOOST_TEST(info.pids_max == 100u);

  // The kernel holds them.
  auto f = [&](const std::string& ctrl, const std::string& file) {
    return cg_read(h.dir(d, ctrl, "limited") + "/" + file);
  };
  if (h.v2) {
    BOOST_TEST(f("cpu", "cpu.weight") == "50");
    BOOST_TEST(f("cpu", "cpu.max") == "50000 100000");
    BOOST_TEST(f("memory", "memory.max") == std::to_string(256 * MiB));
    BOOST_TEST(f("memory", "memory.high") == std::to_string(128 * MiB));
    BOOST_TEST(f("pids", "pids.max") == "100");
    BOOST_TEST(f("cpuset", "cpuset.cpus") == "0");
  } else {
    BOOST_TEST(f("cpu", "cpu.shares") == std::to_string(50 * 1024 / 100));
    BOOST_TEST(f("cpu", "cpu.cfs_quota_us") == "50000");
    BOOST_TEST(f("cpu", "cpu.cfs_period_us") == "100000");
    BOOST_TEST(f("memory", "memory.limit_in_bytes") == std::to_string(256 * MiB));
    BOOST_TEST(f("memory", "memory.soft_limit_in_bytes") == std::to_string(128 * MiB));
    BOOST_TEST(f("pids", "pids.max") == "100");
    BOOST_TEST(f("cpuset", "cpuset.cpus") == "0");
    // The leaf where the processes go can run them: it got the cpuset too.
    BOOST_TEST(cg_read(h.dir(d, "cpuset", "limited") + "/_/cpuset.cpus") == "0");
    BOOST_TEST(!cg_read(h.dir(d, "cpuset", "limited") + "/_/cpuset.mems").empty());
  }
  expect_cgroup_dirs(d, {"limited"});

  // get() tells the same.
  auto got = api.get("limited");
  BOOST_TEST(got.mem_max == 256 * MiB);
  BOOST_TEST(got.pids_max == 100u);
  BOOST_TEST(got.exes.empty());
  BOOST_TEST(got.pids.empty());

  api.free("limited");
  expect_cgroup_dirs(d, {});
  BOOST_TEST(api.list().empty());
}

BOOST_AUTO_TEST_CASE(started_process_is_in_the_cell) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  api.allocate({.name = "box"});
  auto exe = api.start("box", {.argv = {"sleep", "60"}});
  BOOST_TEST(exe.name == "sleep");
  BOOST_TEST(exe.cell == "box");
  BOOST_REQUIRE(exe.pid > 1u);
  BOOST_TEST(!exe.status.exited);
  auto pid = static_cast<pid_t>(exe.pid);
  BOOST_TEST(pid_alive(pid));

  // The kernel puts the process in the cell's leaf.
  auto want = "/" + d.cgroup_root() + "/box/_";
  if (h.v2) {
    BOOST_TEST(proc_cgroup_path(pid, "") == want);
  } else {
    BOOST_TEST(proc_cgroup_path(pid, "memory") == want);
    BOOST_TEST(proc_cgroup_path(pid, "pids") == want);
    BOOST_TEST(proc_cgroup_path(pid, "cpu") == want);
  }
  auto procs = read_text(h.dir(d, "pids", "box") + "/_/cgroup.procs");
  BOOST_TEST(trim(procs) == std::to_string(pid));
  // The process runs sleep (it was exec'd, not left as a copy of the daemon).
  BOOST_TEST(trim(read_text("/proc/" + std::to_string(pid) + "/comm")) == "sleep");

  // list() shows it, running.
  auto cells = api.list();
  BOOST_REQUIRE(cells.size() == 1u);
  BOOST_TEST(cells[0].name == "box");
  auto* listed = cells[0].exe("sleep");
  BOOST_REQUIRE(listed != nullptr);
  BOOST_TEST(listed->pid == exe.pid);
  BOOST_TEST(!listed->status.exited);
  BOOST_TEST((std::find(cells[0].pids.begin(), cells[0].pids.end(), exe.pid)
              != cells[0].pids.end()));

  // stop: SIGTERM, reported as such, and the process is gone.
  auto st = api.stop("box", "sleep");
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.known, st);
  BOOST_TEST(st.signal == SIGTERM, st);
  BOOST_TEST(st.code == 0, st);
  BOOST_TEST(wait_pids_gone({pid}).empty(), "pid " << pid << " still exists after stop");
  BOOST_TEST(trim(read_text(h.dir(d, "pids", "box") + "/_/cgroup.procs")).empty());
  auto after = api.get("box");
  BOOST_REQUIRE(after.exe("sleep") != nullptr);
  BOOST_TEST(after.exe("sleep")->status.exited);
  BOOST_TEST(after.exe("sleep")->status.signal == SIGTERM);
  BOOST_TEST(after.pids.empty());
  api.free("box");
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(exit_code_is_reported_by_wait) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "w"});
  auto exe = api.start("w", {.argv = {"sh", "-c", "echo out; echo err >&2; exit 7"}});
  BOOST_TEST(exe.name == "sh");
  auto st = api.wait("w", "sh");
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.known, st);
  BOOST_TEST(st.code == 7, st);
  BOOST_TEST(st.signal == 0, st);
  // Waiting again answers at once with the same status.
  auto again = api.wait("w", "sh", 5 * kj::SECONDS);
  BOOST_TEST(again.code == 7, again);
  BOOST_TEST(trim(read_text(exe.stdout_path)) == "out");
  BOOST_TEST(trim(read_text(exe.stderr_path)) == "err");

  // A shell command (no argv) runs through /bin/sh -c.
  api.start("w", {.name = "cmd", .command = "exit 3"});
  auto st2 = api.wait("w", "cmd");
  BOOST_TEST(st2.exited, st2);
  BOOST_TEST(st2.code == 3, st2);
  api.free("w");
}

/// The OOM test needs perl to allocate with, and no swap (the limit does not cover swap).
boost::test_tools::assertion_result can_oom(boost::unit_test::test_unit_id) {
  if (::access("/usr/bin/perl", X_OK) != 0) {
    boost::test_tools::assertion_result r{false};
    r.message() << "no /usr/bin/perl to allocate memory with";
    return r;
  }
  boost::test_tools::assertion_result r{lines_of(read_text("/proc/swaps")).size() <= 1};
  r.message() << "swap is on; a cell's memory limit does not cover swap";
  return r;
}

BOOST_AUTO_TEST_CASE(memory_hog_over_memory_max_is_oom_killed,
                     *boost::unit_test::precondition(can_oom)) {
  auto& h = host();
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "hog", .mem_max = 32 * MiB});
  auto dir = h.dir(d, "memory", "hog");
  BOOST_TEST(cg_read(dir + (h.v2 ? "/memory.max" : "/memory.limit_in_bytes"))
             == std::to_string(32 * MiB));
  // 200 MiB of touched memory, far above the 32 MiB limit.
  auto exe = api.start(
    "hog", {.argv = {"perl", "-e", "$x = 'a' x (200*1024*1024); print length($x), qq{\\n};"}});
  auto st = api.wait("hog", "perl", 30 * kj::SECONDS);
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.known, st);
  BOOST_TEST(st.signal == SIGKILL, st << " stdout: " << read_text(exe.stdout_path)
                                      << " stderr: " << read_text(exe.stderr_path));
  BOOST_TEST(trim(read_text(exe.stdout_path)).empty(), "the hog finished its allocation");

  // The kernel says it was its OOM killer.
  auto oom_kills = [](const std::string& file) -> long {
    for (auto& line : lines_of(read_text(file))) {
      auto f = split(line, ' ');
      if (f.size() == 2 && f[0] == "oom_kill")
        return std::stol(f[1]);
    }
    return -1;
  };
  if (h.v2) {
    BOOST_TEST(oom_kills(dir + "/memory.events") >= 1, read_text(dir + "/memory.events"));
  } else {
    // v1 counts the kill in the memcg of the killed task (the leaf) only.
    auto kills = std::max(oom_kills(dir + "/memory.oom_control"),
                          oom_kills(dir + "/_/memory.oom_control"));
    BOOST_TEST(kills >= 1, "memory.oom_control: " << read_text(dir + "/memory.oom_control")
                                                  << " leaf: "
                                                  << read_text(dir + "/_/memory.oom_control"));
    BOOST_TEST(std::stol(cg_read(dir + "/memory.failcnt")) > 0);
  }
  api.free("hog");
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(pids_max_stops_a_fork_loop) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  api.allocate({.name = "forks", .pids_max = 10});
  auto dir = h.dir(d, "pids", "forks");
  BOOST_TEST(cg_read(dir + "/pids.max") == "10");
  auto exe = api.start(
    "forks", {.argv = {"sh", "-c", "for i in $(seq 1 50); do sleep 30 & done; wait"}});

  long most = 0;
  auto failed_to_fork = [&] {
    auto err = lower(read_text(exe.stderr_path));
    return contains(err, "fork") || contains(err, "resource temporarily unavailable");
  };
  bool saw = poll_until(
    [&] {
      auto cur = cg_read(dir + "/pids.current");
      if (!cur.empty() && std::isdigit(static_cast<unsigned char>(cur[0])))
        most = std::max(most, std::stol(cur));
      return failed_to_fork();
    },
    10s);
  BOOST_TEST(saw, "no fork failure in stderr: " << read_text(exe.stderr_path));
  // A few more samples once the limit is reached.
  for (int i = 0; i < 20; ++i) {
    auto cur = cg_read(dir + "/pids.current");
    if (!cur.empty() && std::isdigit(static_cast<unsigned char>(cur[0])))
      most = std::max(most, std::stol(cur));
    std::this_thread::sleep_for(5ms);
  }
  BOOST_TEST(most <= 10, "pids.current reached " << most);
  BOOST_TEST(most >= 2, "the loop never forked (pids.current at most " << most << ")");
  if (fs::exists(dir + "/pids.events")) {
    // The refused forks are counted in the cell, or (v1, newer kernels: local events)
    // in the leaf the forking shell runs in.
    auto max_events = [](const std::string& file) -> long {
      for (auto& line : lines_of(read_text(file))) {
        auto f = split(line, ' ');
        if (f.size() == 2 && f[0] == "max")
          return std::stol(f[1]);
      }
      return 0;
    };
    auto cell_events = read_text(dir + "/pids.events");
    auto leaf_events = read_text(dir + "/_/pids.events");
    BOOST_TEST(max_events(dir + "/pids.events") + max_events(dir + "/_/pids.events") >= 1,
               "pids.events of the cell: " << cell_events << " of its leaf: " << leaf_events);
  }

  auto left = procs_below(h.dir(d, "pids", "forks"));
  BOOST_TEST(!left.empty());
  BOOST_TEST(left.size() <= 10u);

  // free --force kills whatever is left (the sleeps outlive the shell) and removes it.
  api.free("forks", false, true);
  BOOST_TEST(wait_pids_ended(left).empty(), "processes of the cell survived free --force");
  BOOST_TEST(api.list().empty());
  expect_cgroup_dirs(d, {});
}

// free --force used to report the process it killed as known=false (meant only for
// re-adopted processes); and the cell's output files stayed under <state>/logs forever.
BOOST_AUTO_TEST_CASE(forced_free_reports_the_kill_and_removes_output_files) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "doomed"});
  auto exe = api.start("doomed", {.argv = {"sleep", "60"}, .name = "sleeper"});
  BOOST_TEST(fs::exists(exe.stdout_path));
  auto st = api.wait_across_forced_free("doomed", "sleeper");
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.known, st);
  BOOST_TEST(st.signal == SIGKILL, st);
  BOOST_TEST(!fs::exists(exe.stdout_path), exe.stdout_path << " outlived its cell");
  BOOST_TEST(!fs::exists(d.state_dir() + "/logs/doomed"));
  BOOST_TEST(api.list().empty());
}

BOOST_AUTO_TEST_CASE(isolated_process_is_pid_1_and_sees_only_its_own) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "iso", .isolate_process = true});
  auto exe = api.start(
    "iso", {.argv = {"sh", "-c",
                     "echo $$; ls /proc | grep -E '^[0-9]+$' | wc -l; "
                     "cat /proc/sys/kernel/hostname; sleep 0.2"}});
  BOOST_TEST(exe.ns_pid == 1u);
  BOOST_TEST(exe.pid != 1u);
  BOOST_TEST(exe.pid != exe.ns_pid);
  auto st = api.wait("iso", "sh");
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.code == 0, st << " stderr: " << read_text(exe.stderr_path));
  auto out = lines_of(read_text(exe.stdout_path));
  BOOST_REQUIRE_MESSAGE(out.size() == 3u, "stdout: " << read_text(exe.stdout_path)
                                                     << " stderr: " << read_text(exe.stderr_path));
  BOOST_TEST(trim(out[0]) == "1", "$$ inside the cell");
  auto count = std::stoi(trim(out[1]));
  BOOST_TEST(count >= 1);
  BOOST_TEST(count <= 4, "processes visible in the cell's /proc: " << count);
  BOOST_TEST(trim(out[2]) == "iso", "hostname inside the cell");
  // The host's /proc and hostname are untouched.
  BOOST_TEST(fs::exists("/proc/" + std::to_string(d.pid())));
  api.free("iso");
}

BOOST_AUTO_TEST_CASE(isolated_network_sees_only_lo) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "net", .isolate_network = true});
  bool have_ip = ::access("/usr/sbin/ip", X_OK) == 0 || ::access("/sbin/ip", X_OK) == 0
                 || ::access("/usr/bin/ip", X_OK) == 0;
  bool have_busybox = ::access("/usr/bin/busybox", X_OK) == 0 || ::access("/bin/busybox", X_OK) == 0;
  std::string script = "cat /proc/net/dev; echo ---";
  if (have_ip)
    script += "; ip -o link show";
  script += "; echo ---";
  if (have_busybox)
    script += "; busybox ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1; echo ping=$?";
  auto exe = api.start("net", {.argv = {"sh", "-c", script}});
  auto st = api.wait("net", "sh");
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.code == 0, st << " stderr: " << read_text(exe.stderr_path));
  auto out = read_text(exe.stdout_path);
  auto parts = std::vector<std::string>{};
  {
    std::string cur;
    for (auto& line : lines_of(out)) {
      if (line == "---") {
        parts.push_back(cur);
        cur.clear();
      } else {
        cur += line + "\n";
      }
    }
    parts.push_back(cur);
  }
  BOOST_REQUIRE_MESSAGE(parts.size() == 3u, "stdout: " << out);
  // /proc/net/dev: two header lines, then one line per interface.
  std::set<std::string> ifaces;
  for (auto& line : lines_of(parts[0])) {
    auto colon = line.find(':');
    if (colon == std::string::npos || contains(line, "|"))
      continue;
    ifaces.insert(trim(line.substr(0, colon)));
  }
  BOOST_TEST(show_set(ifaces) == "{lo}", "/proc/net/dev in the cell:\n" << parts[0]);
  if (have_ip) {
    auto links = lines_of(parts[1]);
    BOOST_TEST(links.size() == 1u, "ip link in the cell:\n" << parts[1]);
    if (!links.empty()) {
      BOOST_TEST(contains(links[0], ": lo:"), links[0]);
      BOOST_TEST(contains(links[0], ",UP"), "lo is not up: " << links[0]);
    }
  }
  if (have_busybox)
    BOOST_TEST(contains(parts[2], "ping=0"), "ping 127.0.0.1 in the cell: " << parts[2]);
  api.free("net");
}

BOOST_AUTO_TEST_CASE(nested_cells_form_a_tree) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  api.allocate({.name = "a"});
  auto b = api.allocate({.name = "a/b", .mem_max = 64 * MiB});
  auto c = api.allocate({.name = "a/b/c", .mem_max = 32 * MiB});
  api.allocate({.name = "d"});
  auto a = api.get("a");

  auto cells = api.list();
  BOOST_REQUIRE_MESSAGE(cells.size() == 2u, "top-level cells: " << show_set(names_of(cells)));
  std::sort(cells.begin(), cells.end(), [](auto& x, auto& y) { return x.name < y.name; });
  BOOST_TEST(cells[0].name == "a");
  BOOST_TEST(cells[1].name == "d");
  BOOST_TEST(cells[1].children.empty());
  BOOST_REQUIRE(cells[0].children.size() == 1u);
  BOOST_TEST(cells[0].children[0].name == "a/b");
  BOOST_REQUIRE(cells[0].children[0].children.size() == 1u);
  BOOST_TEST(cells[0].children[0].children[0].name == "a/b/c");
  BOOST_TEST(cells[0].children[0].children[0].mem_max == 32 * MiB);
  BOOST_TEST(cells[0].children[0].children[0].children.empty());

  // Each child's cgroup is inside its parent's.
  BOOST_TEST(!a.cgroup_path.empty());
  BOOST_TEST(b.cgroup_path == a.cgroup_path + "/b");
  BOOST_TEST(c.cgroup_path == b.cgroup_path + "/c");
  auto mem = [&](const std::string& cell) {
    return h.dir(d, "memory", cell) + (h.v2 ? "/memory.max" : "/memory.limit_in_bytes");
  };
  BOOST_TEST(mem("a/b/c") == h.dir(d, "memory", "a") + "/b/c/"
                               + (h.v2 ? "memory.max" : "memory.limit_in_bytes"));
  BOOST_TEST(cg_read(mem("a/b")) == std::to_string(64 * MiB));
  BOOST_TEST(cg_read(mem("a/b/c")) == std::to_string(32 * MiB));
  expect_cgroup_dirs(d, {"a", "a/b", "a/b/c", "d"});

  // A process in the innermost cell lands in its leaf.
  auto exe = api.start("a/b/c", {.argv = {"sleep", "30"}});
  auto path = proc_cgroup_path(static_cast<pid_t>(exe.pid), h.v2 ? "" : "memory");
  BOOST_TEST(path == "/" + d.cgroup_root() + "/a/b/c/_");

  // Not without recursive, and that changes nothing.
  EXPECT_REFUSED("failed_precondition", api.free("a"));
  BOOST_TEST(show_set(names_of(api.list())) == "{a, a/b, a/b/c, d}");
  expect_cgroup_dirs(d, {"a", "a/b", "a/b/c", "d"});
  // Recursive but not forced: the sleep in a/b/c refuses it.
  EXPECT_REFUSED("failed_precondition", api.free("a", true, false));
  BOOST_TEST(pid_alive(static_cast<pid_t>(exe.pid)));
  expect_cgroup_dirs(d, {"a", "a/b", "a/b/c", "d"});

  api.free("a", true, true);
  BOOST_TEST(wait_pids_gone({static_cast<pid_t>(exe.pid)}).empty());
  auto left = api.list();
  BOOST_TEST(show_set(names_of(left)) == "{d}");
  expect_cgroup_dirs(d, {"d"});
  EXPECT_REFUSED("not_found", api.get("a/b"));
  api.free("d");
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_refused_and_change_nothing) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();

  for (std::string bad : {std::string{""}, std::string{".."}, std::string{"/abs"},
                          std::string{"a//b"}, std::string(256, 'x'), std::string{"a\x01"},
                          std::string{"a/"}, std::string{"."}, std::string{"a b"}})
    EXPECT_REFUSED("invalid_argument", api.allocate({.name = bad}));

  // The longest name is fine, and works.
  {
    std::string longest(255, 'x');
    api.allocate({.name = longest});
    api.start(longest, {.argv = {"true"}});
    auto st = api.wait(longest, "true");
    BOOST_TEST(st.code == 0, st);
    api.free(longest);
  }

  api.allocate({.name = "ok"});
  EXPECT_REFUSED("already_exists", api.allocate({.name = "ok"}));
  EXPECT_REFUSED("not_found", api.allocate({.name = "missing/child"}));
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "w", .cpu_weight = 10001}));
  EXPECT_REFUSED("invalid_argument",
                 api.allocate({.name = "q", .cpu_quota_us = 10'000'000, .cpu_period_us = 100'000}));
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "cs", .cpus = "999"}));
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "cs2", .cpus = "zero"}));
  // The kernel would store another number than 2^64-1 (and echo it back as ours).
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "huge", .mem_max = UINT64_MAX}));
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "pm", .pids_max = uint64_t{1} << 40}));
  // Passes the daemon's own checks but the kernel refuses it (no memory node 63): the
  // half-made cgroup must go again.
  EXPECT_REFUSED("invalid_argument", api.allocate({.name = "mems", .mems = "63"}));
  EXPECT_REFUSED("invalid_argument",
                 api.allocate({.name = "m", .mem_high = 256 * MiB, .mem_max = 128 * MiB}));
  if (!h.v2) {
    auto err = error_of([&] { api.allocate({.name = "min", .mem_min = 64 * MiB}); });
    BOOST_TEST(contains(err, "cyto.invalid_argument:"), err);
    BOOST_TEST(contains(err, "cgroup v1"), err);
    auto err2 = error_of([&] { api.allocate({.name = "low", .mem_low = 64 * MiB}); });
    BOOST_TEST(contains(err2, "cyto.invalid_argument:"), err2);
    BOOST_TEST(contains(err2, "cgroup v1"), err2);
  }

  EXPECT_REFUSED("not_found", api.start("nope", {.argv = {"sleep", "30"}}));
  // Negative ids other than -1 used to run the process as root.
  EXPECT_REFUSED("invalid_argument", api.start("ok", {.argv = {"id"}, .uid = -5}));
  EXPECT_REFUSED("invalid_argument", api.start("ok", {.argv = {"id"}, .gid = -7}));
  EXPECT_REFUSED("invalid_argument", api.start("ok", {.argv = {"env"}, .env = {"NOEQUALS"}}));
  EXPECT_REFUSED("invalid_argument", api.start("ok", {.argv = {"env"}, .env = {"=x"}}));
  auto dup = api.start("ok", {.argv = {"sleep", "30"}, .name = "dup"});
  EXPECT_REFUSED("already_exists", api.start("ok", {.argv = {"sleep", "30"}, .name = "dup"}));
  EXPECT_REFUSED("not_found", api.start("ok", {.argv = {"cyto-no-such-program-4711"}}));
  EXPECT_REFUSED("not_found", api.start("ok", {.argv = {"/nonexistent/bin/prog"}}));
  EXPECT_REFUSED("invalid_argument", api.start("ok", {}));
  EXPECT_REFUSED("invalid_argument", api.start("ok", {.argv = {"sleep", "1"}, .name = "../x"}));
  {
    // A name too long for its output files: refused as bad input (or run), never an
    // internal error.
    auto err = error_of([&] {
      api.start("ok", {.argv = {"true"}, .name = std::string(250, 'n')});
      api.wait("ok", std::string(250, 'n'));
    });
    BOOST_TEST((err.empty() || contains(err, "cyto.invalid_argument:")),
               "a 250-byte executable name: " << err);
  }
  if (::getpwuid(4242424) == nullptr)
    EXPECT_REFUSED("invalid_argument",
                   api.start("ok", {.argv = {"sleep", "30"}, .name = "u", .uid = 4242424}));
  EXPECT_REFUSED("not_found", api.stop("ok", "ghost"));
  EXPECT_REFUSED("invalid_argument", api.stop("ok", "dup", 99, 1000));
  EXPECT_REFUSED("invalid_argument", api.stop("ok", "dup", -1, 1000));
  EXPECT_REFUSED("not_found", api.stop("nope", "dup"));
  EXPECT_REFUSED("not_found", api.wait("ok", "ghost"));
  EXPECT_REFUSED("not_found", api.get("nope"));
  EXPECT_REFUSED("not_found", api.free("nope"));
  EXPECT_REFUSED("failed_precondition", api.free("ok"));
  BOOST_TEST(pid_alive(static_cast<pid_t>(dup.pid)), "the refused free killed the process");

  // Nothing of the refused calls is left: one cell, one executable, one process.
  auto cells = api.list();
  BOOST_TEST(show_set(names_of(cells)) == "{ok}");
  if (auto* ok = find_cell(cells, "ok")) {
    std::set<std::string> exes;
    for (auto& e : ok->exes)
      exes.insert(e.name);
    exes.erase(std::string(250, 'n')); // if the long name was accepted and ran
    BOOST_TEST(show_set(exes) == "{dup}");
    BOOST_TEST((ok->pids == std::vector<uint32_t>{dup.pid}));
  }
  expect_cgroup_dirs(d, {"ok"});
  BOOST_TEST((procs_below(h.dir(d, "pids", "ok")) == std::vector<pid_t>{static_cast<pid_t>(dup.pid)}));

  // The daemon is still well: the cell works as before.
  auto st = api.stop("ok", "dup");
  BOOST_TEST(st.signal == SIGTERM, st);
  api.free("ok");
  BOOST_TEST(api.list().empty());
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(kill_9_and_restart_readopts_20_executables) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  api.allocate({.name = "long"});
  std::map<std::string, pid_t> pids;
  for (int i = 0; i < 20; ++i) {
    auto name = "s" + std::to_string(i);
    auto exe = api.start("long", {.argv = {"sleep", "300"}, .name = name});
    pids[name] = static_cast<pid_t>(exe.pid);
  }
  std::vector<pid_t> all;
  for (auto& [n, p] : pids)
    all.push_back(p);

  // kill -9 the daemon: the workloads live on.
  auto st = d.stop(SIGKILL);
  BOOST_TEST(WIFSIGNALED(st));
  for (auto& [n, p] : pids)
    BOOST_TEST(pid_alive(p), n << " pid " << p << " died with the daemon");
  auto in_cgroup = procs_below(h.dir(d, "pids", "long"));
  BOOST_TEST(in_cgroup.size() == 20u);
  // One of them ends while no daemon watches.
  const std::string gone_name = "s19";
  const pid_t gone_pid = pids.at(gone_name);
  BOOST_REQUIRE(::kill(gone_pid, SIGKILL) == 0);
  BOOST_TEST(wait_pids_ended({gone_pid}).empty(), "s19 did not die");

  // Restart on the same state dir and cgroup root: all 20 are re-adopted, running.
  d.start();
  api.connect();
  auto cells = api.list();
  BOOST_REQUIRE_MESSAGE(cells.size() == 1u, "cells after restart: " << show_set(names_of(cells))
                                                                     << log_of(d));
  BOOST_TEST(cells[0].name == "long");
  BOOST_TEST(cells[0].exes.size() == 20u);
  for (auto& [n, p] : pids) {
    auto* e = cells[0].exe(n);
    BOOST_REQUIRE_MESSAGE(e != nullptr, n << " missing after restart" << log_of(d));
    BOOST_TEST(e->pid == static_cast<uint32_t>(p));
    if (n != gone_name)
      BOOST_TEST(!e->status.exited, n << " not running after restart: " << e->status);
  }
  BOOST_TEST(cells[0].pids.size() == 19u);
  // The one that ended meanwhile is reported exited, how is unknown.
  auto gone = api.wait("long", gone_name, 5 * kj::SECONDS);
  BOOST_TEST(gone.exited, gone);
  BOOST_TEST(!gone.known, gone);

  // The restarted daemon runs new executables in the re-adopted cell.
  auto fresh = api.start("long", {.argv = {"sh", "-c", "exit 5"}, .name = "fresh"});
  auto fresh_st = api.wait("long", "fresh");
  BOOST_TEST(fresh_st.known, fresh_st);
  BOOST_TEST(fresh_st.code == 5, fresh_st);
  BOOST_TEST(proc_cgroup_path(static_cast<pid_t>(fresh.pid), h.v2 ? "" : "memory") == "<none>",
             "the finished process is still visible");

  // Stop each: the re-adopted process is no longer our child, so how it ended is unknown.
  for (auto& [n, p] : pids) {
    if (n == gone_name)
      continue;
    auto s = api.stop("long", n, 0, 5000);
    BOOST_TEST(s.exited, n << " " << s);
    BOOST_TEST(!s.known, n << " " << s);
  }
  auto left = wait_pids_ended(all);
  BOOST_TEST(left.empty(), left.size() << " of the 20 still exist after stop");
  for (auto& m : host().cell_mounts()) {
    auto procs = procs_below(m + "/" + d.cgroup_root() + "/long");
    BOOST_TEST(procs.empty(), procs.size() << " processes left in " << m);
  }
  auto after = api.get("long");
  BOOST_TEST(after.pids.empty());
  for (auto& e : after.exes)
    BOOST_TEST(e.status.exited, e.name << " " << e.status);
  api.free("long");
  expect_cgroup_dirs(d, {});
  BOOST_TEST(api.list().empty());
}

BOOST_AUTO_TEST_CASE(cli_cell_round_trip) {
  daemon_fixture d;
  auto& h = host();
  auto r = run_cyto(d, {"cell", "allocate", "clicell", "--memory-max", "64M", "--cpu-max",
                        "20ms/100ms"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r));
  if (h.v2) {
    BOOST_TEST(cg_read(h.dir(d, "memory", "clicell") + "/memory.max") == std::to_string(64 * MiB));
    BOOST_TEST(cg_read(h.dir(d, "cpu", "clicell") + "/cpu.max") == "20000 100000");
  } else {
    BOOST_TEST(cg_read(h.dir(d, "memory", "clicell") + "/memory.limit_in_bytes")
               == std::to_string(64 * MiB));
    BOOST_TEST(cg_read(h.dir(d, "cpu", "clicell") + "/cpu.cfs_quota_us") == "20000");
    BOOST_TEST(cg_read(h.dir(d, "cpu", "clicell") + "/cpu.cfs_period_us") == "100000");
  }

  auto s = run_cyto(d, {"cell", "start", "clicell", "--wait", "--", "sh", "-c", "exit 3"});
  BOOST_TEST(s.code() == 3, show(s));

  auto ls = run_cyto(d, {"cell", "ls", "--json"});
  BOOST_REQUIRE_MESSAGE(ls.code() == 0, show(ls));
  json j;
  BOOST_REQUIRE_NO_THROW(j = json::parse(ls.out));
  BOOST_REQUIRE_MESSAGE(j.is_array(), ls.out);
  bool found = false;
  for (auto& c : j)
    if (c.at("name") == "clicell") {
      found = true;
      BOOST_TEST(c.at("memory").at("max").get<uint64_t>() == 64 * MiB);
      BOOST_TEST(c.at("cpu").at("maxQuotaUs").get<uint64_t>() == 20000u);
      BOOST_TEST(c.at("cpu").at("maxPeriodUs").get<uint64_t>() == 100000u);
      BOOST_REQUIRE(c.at("executables").size() == 1u);
      auto& e = c.at("executables")[0];
      BOOST_TEST(e.at("status").at("exited").get<bool>());
      BOOST_TEST(e.at("status").at("code").get<int>() == 3);
    }
  BOOST_TEST(found, ls.out);

  auto in = run_cyto(d, {"cell", "inspect", "clicell", "--json"});
  BOOST_TEST(in.code() == 0, show(in));
  BOOST_TEST(contains(in.out, "\"clicell\""), show(in));

  auto fr = run_cyto(d, {"cell", "free", "clicell"});
  BOOST_TEST(fr.code() == 0, show(fr));
  auto ls2 = run_cyto(d, {"cell", "ls", "--json"});
  BOOST_REQUIRE_MESSAGE(ls2.code() == 0, show(ls2));
  BOOST_TEST(json::parse(ls2.out).empty(), ls2.out);
  expect_cgroup_dirs(d, {});

  // A bad size: exit 1, one line on stderr naming the error code, nothing made.
  auto bad = run_cyto(d, {"cell", "allocate", "badsize", "--memory-max", "12Q"});
  BOOST_TEST(bad.code() == 1, show(bad));
  BOOST_TEST(lines_of(bad.err).size() == 1u, show(bad));
  BOOST_TEST(contains(bad.err, "cyto.invalid_argument"), show(bad));
  BOOST_TEST(contains(run_cyto(d, {"cell", "ls", "--json"}).out, "[]"));
  expect_cgroup_dirs(d, {});

  // A daemon-side refusal is reported the same way.
  auto dup = run_cyto(d, {"cell", "free", "never-made"});
  BOOST_TEST(dup.code() == 1, show(dup));
  BOOST_TEST(lines_of(dup.err).size() == 1u, show(dup));
  BOOST_TEST(contains(dup.err, "cyto.not_found"), show(dup));
}

BOOST_AUTO_TEST_CASE(stop_escalates_to_sigkill_after_the_timeout) {
  daemon_fixture d;
  cells_api api{d};
  auto& h = host();
  api.allocate({.name = "stubborn"});
  auto exe = api.start("stubborn", {.argv = {"sh", "-c",
                                             "trap '' TERM; echo ready; "
                                             "while :; do sleep 0.05; done"}});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return contains(read_text(exe.stdout_path), "ready"); },
                                   5s),
                        "the shell never got ready: " << read_text(exe.stderr_path));
  auto t0 = steady::now();
  auto st = api.stop("stubborn", "sh", 0, 300);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0);
  BOOST_TEST(st.exited, st);
  BOOST_TEST(st.known, st);
  BOOST_TEST(st.signal == SIGKILL, st);
  BOOST_TEST(took.count() >= 250, "SIGKILL came after " << took.count() << " ms, not ~300");
  BOOST_TEST(took.count() < 5000, "stop took " << took.count() << " ms");
  BOOST_TEST(wait_pids_gone({static_cast<pid_t>(exe.pid)}).empty());
  // Stopping it again answers with the same status at once.
  auto again = api.stop("stubborn", "sh", 0, 300);
  BOOST_TEST(again.signal == SIGKILL, again);
  // Its last short sleep ends by itself; then the cell is empty and can go.
  BOOST_TEST(poll_until([&] { return procs_below(h.dir(d, "pids", "stubborn")).empty(); }, 5s));
  api.free("stubborn");
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(executable_runs_as_the_given_uid_and_gid) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "users"});
  auto exe = api.start("users", {.argv = {"sh", "-c", "id -u; id -g; id -G"},
                                 .uid = static_cast<int64_t>(nobody_uid),
                                 .gid = static_cast<int64_t>(nobody_gid)});
  auto st = api.wait("users", "sh");
  BOOST_TEST(st.code == 0, st << " stderr: " << read_text(exe.stderr_path));
  auto out = lines_of(read_text(exe.stdout_path));
  BOOST_REQUIRE_MESSAGE(out.size() == 3u, "stdout: " << read_text(exe.stdout_path));
  BOOST_TEST(out[0] == std::to_string(nobody_uid));
  BOOST_TEST(out[1] == std::to_string(nobody_gid));
  BOOST_TEST(out[2] == std::to_string(nobody_gid), "supplementary groups were kept");
  api.free("users");
}

BOOST_AUTO_TEST_CASE(sigterm_of_the_daemon_leaves_workloads_running) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "calm"});
  auto exe = api.start("calm", {.argv = {"sleep", "300"}});
  auto pid = static_cast<pid_t>(exe.pid);
  auto st = d.stop(SIGTERM);
  BOOST_TEST(exit_code(st) == 0, describe_status(st) << log_of(d));
  std::this_thread::sleep_for(100ms);
  BOOST_TEST(pid_running(pid), "a clean daemon shutdown killed its workload");
  d.start();
  api.connect();
  auto c = api.get("calm");
  BOOST_REQUIRE(c.exe("sleep") != nullptr);
  BOOST_TEST(!c.exe("sleep")->status.exited, c.exe("sleep")->status);
  auto s = api.stop("calm", "sleep");
  BOOST_TEST(s.exited, s);
  BOOST_TEST(!s.known, s);
  BOOST_TEST(wait_pids_ended({pid}).empty());
  api.free("calm");
  expect_cgroup_dirs(d, {});
}

BOOST_AUTO_TEST_CASE(refused_start_keeps_the_previous_run_and_its_output) {
  daemon_fixture d;
  cells_api api{d};
  api.allocate({.name = "again"});
  auto first = api.start("again", {.argv = {"sh", "-c", "echo first; echo oops >&2; exit 4"},
                                   .name = "job"});
  auto st = api.wait("again", "job");
  BOOST_REQUIRE_MESSAGE(st.code == 4, st);
  BOOST_REQUIRE(read_text(first.stdout_path) == "first\n");

  // A second run under the same name that cannot start (its working directory is missing).
  auto err = error_of([&] {
    api.start("again", {.argv = {"true"}, .name = "job", .cwd = "/nonexistent/cyto-test"});
  });
  BOOST_TEST(contains(err, "cyto."), "the start should be refused, got: "
                                       << (err.empty() ? std::string{"<success>"} : err));

  // The refusal changed nothing: the previous run is still reported, with its output ...
  auto c = api.get("again");
  BOOST_REQUIRE(c.exe("job") != nullptr);
  BOOST_TEST(c.exe("job")->pid == first.pid);
  BOOST_TEST(c.exe("job")->status.code == 4, c.exe("job")->status);
  BOOST_TEST(read_text(first.stdout_path) == "first\n",
             "the refused start emptied the previous run's stdout");
  BOOST_TEST(read_text(first.stderr_path) == "oops\n",
             "the refused start emptied the previous run's stderr");

  // ... and so does state.db: a restarted daemon still knows it.
  d.stop(SIGKILL);
  d.start();
  api.connect();
  auto after = api.get("again");
  BOOST_TEST(after.exe("job") != nullptr,
             "the refused start erased the previous run from state.db" << log_of(d));
  if (auto* job = after.exe("job")) {
    BOOST_TEST(job->pid == first.pid);
    BOOST_TEST(job->status.exited, job->status);
    BOOST_TEST(job->status.code == 4, job->status);
  }
  api.free("again");
  expect_cgroup_dirs(d, {});
}
