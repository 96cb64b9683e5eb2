#include "actors/cells/cells_actor.hpp"

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <pwd.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <caf/all.hpp>

#include "actors/cells/limits.hpp"
#include "actors/cells/spawn.hpp"
#include "bus/errc.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"

namespace cyto::cells {

namespace {

using self_ptr = cells_private::stateful_pointer<cells_state>;
namespace fs = std::filesystem;

constexpr const char* kind_cell = "cell";
/// Executable names become file names (<name>.stdout.new): keep well under NAME_MAX.
constexpr size_t max_exe_name = 200;
constexpr const char* kind_exe = "exe";
/// A cell's network attachment (net_attachment), kept next to its cell record.
constexpr const char* kind_cell_net = "cellnet";

std::string net_owner(const std::string& cell) {
  return "cell/" + cell;
}

/// What state.db keeps of an executable.
struct exe_row {
  executable_info info;
  uint64_t start_time = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exe_row& x) {
  return f(caf::meta::type_name("exe_row"), x.info, x.start_time);
}

using store::to_blob;

std::string exe_key(const std::string& cell, const std::string& exe) {
  return cell + ":" + exe;
}

int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

bool is_child_of(const std::string& name, const std::string& parent) {
  return name.size() > parent.size() && name.compare(0, parent.size(), parent) == 0
         && name[parent.size()] == '/';
}

cell_info info_of(self_ptr self, const std::string& name, const cells_state::cell_record& c) {
  cell_info out;
  out.spec = c.spec;
  for (auto& [n, e] : c.exes)
    out.executables.push_back(e.info);
  for (auto p : self->state.cgroups->pids(name, false))
    out.pids.push_back(static_cast<uint32_t>(p));
  out.cgroup_path = fs::path{self->state.cgroups->file(name, "cgroup.procs")}.parent_path().parent_path();
  out.net = c.net;
  return out;
}

void signal_pidfd(int pidfd, int sig) {
  ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
}

/// Records an exit: status, waiters, state.db, the bus.
void finish(self_ptr self, const std::string& cell, cells_state::exe_record& e,
            exit_status status) {
  auto& st = self->state;
  e.running = false;
  e.info.status = status;
  if (e.pidfd >= 0) {
    ::close(e.pidfd);
    e.pidfd = -1;
  }
  st.by_token.erase(e.token);
  for (auto& w : e.waiters)
    w.deliver(status);
  e.waiters.clear();
  exe_row row{e.info, e.start_time};
  auto blob = to_blob(row);
  if (auto err = st.db->set_state(kind_exe, exe_key(cell, e.info.spec.name), "exited", &blob))
    st.log->error("record exit of {}/{}: {}", cell, e.info.spec.name, render(err));
  st.log->info("executable {}/{} pid={} exited{} code={} signal={}", cell, e.info.spec.name,
               e.info.pid, status.known ? "" : " (status unknown: re-adopted)", status.code,
               status.signal);
  // The end of its output, after its last line (the watcher reports lines before exits).
  process_output end;
  end.cell = cell;
  end.executable = e.info.spec.name;
  end.stream = 0;
  end.pid = e.info.pid;
  self->send(st.config.topics, publish_atom::value, std::string{topic::process_output},
             caf::make_message(std::move(end)));
  self->send(st.config.topics, publish_atom::value, std::string{topic::process_exited},
             caf::make_message(process_exited{cell, e.info.spec.name, e.info.pid, status}));
}

/// Kills what runs in a cell's cgroup (and below it) and waits (bounded) until it is empty.
void kill_all(self_ptr self, const std::vector<std::string>& cells) {
  auto& st = self->state;
  // TODO(perf): wait for the cgroups to empty without holding the actor (rare path).
  for (int i = 0; i < 400; ++i) {
    bool empty = true;
    for (auto& t : cells)
      for (auto p : st.cgroups->pids(t)) {
        ::kill(p, SIGKILL);
        empty = false;
      }
    if (empty)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// Erases a freed cell's records; its network attachment is gone. (Not those of a cell of
/// the same name allocated meanwhile.)
void forget_cell(self_ptr self, const std::string& name) {
  auto& st = self->state;
  if (st.cells.count(name) || st.pending.count(name))
    return;
  st.db->erase(kind_cell_net, name);
  st.db->erase(kind_cell, name);
}

/// Finishes at start what a crash cut short: an allocation (record, no or a part of the
/// cgroup) or a free (record marked "freeing"). The record goes last, after the network
/// detach, so a crash in here is finished at the next start again.
void undo_cell(self_ptr self, const std::string& name, const cell_spec& spec) {
  auto& st = self->state;
  kill_all(self, {name});
  if (auto err = st.cgroups->remove(name))
    st.log->error("clean up cell {}: {}", name, render(err));
  std::error_code ec;
  fs::remove_all(fs::path{st.config.state_dir} / "logs" / name, ec);
  st.log->warn("cleaned up half-made or half-freed cell {}", name);
  if (spec.network.empty() || !st.config.network)
    return forget_cell(self, name);
  self->request(st.config.network, caf::infinite, detach_atom::value, net_owner(name))
    .then([self, name] { forget_cell(self, name); },
          [self, name](caf::error& err) {
            self->state.log->error("detach half-freed cell {} from its network: {}", name,
                                   render(err));
          });
}

/// Brings state.db and the kernel back in line after a (re)start.
void reconcile(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> quarantined;
  auto cells = st.db->load_all<cell_spec>(kind_cell, quarantined);
  for (auto& key : quarantined)
    st.log->error("state.db: unreadable record of cell {}; quarantined (cyto health)", key);
  if (!cells) {
    st.log->error("read cells from state.db: {}", render(cells.error()));
    return;
  }
  std::vector<std::pair<std::string, cell_spec>> undone;
  for (auto& [r, spec] : *cells) {
    if (r.state != "ready") {
      // A crash between the record and the cgroup, or in the middle of a free.
      undone.emplace_back(r.key, std::move(spec));
      continue;
    }
    if (!st.cgroups->exists(r.key)) {
      if (auto err = st.cgroups->create(r.key, spec.limits)) {
        st.log->error("re-create cgroup of cell {}: {}", r.key, render(err));
        continue;
      }
      st.log->warn("cgroup of cell {} was gone; re-created", r.key);
    }
    st.cells[r.key].spec = std::move(spec);
  }
  // Children before their parents (a parent's cgroup goes only once theirs have).
  std::sort(undone.begin(), undone.end(),
            [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
  for (auto& [name, spec] : undone)
    undo_cell(self, name, spec);
  quarantined.clear();
  if (auto nets = st.db->load_all<net_attachment>(kind_cell_net, quarantined)) {
    for (auto& [r, net] : *nets) {
      auto c = st.cells.find(r.key);
      if (c == st.cells.end())
        st.db->erase(kind_cell_net, r.key);
      else
        c->second.net = std::move(net);
    }
  }
  auto exes = st.db->load_all<exe_row>(kind_exe, quarantined);
  for (auto& key : quarantined)
    st.log->error("state.db: unreadable record {}; quarantined (cyto health)", key);
  if (!exes)
    return;
  for (auto& [r, row] : *exes) {
    if (st.cells.count(row.info.spec.cell) == 0 || r.state == "starting") {
      st.db->erase(kind_exe, r.key);
      continue;
    }
    auto& cell = st.cells[row.info.spec.cell];
    auto& e = cell.exes[row.info.spec.name];
    e.info = row.info;
    e.start_time = row.start_time;
    if (r.state != "running")
      continue;
    auto pid = static_cast<pid_t>(row.info.pid);
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    // Same pid and same start time: the very process we started, not a reuse of its pid.
    if (pidfd >= 0 && start_time_of(pid) == row.start_time) {
      e.pidfd = pidfd;
      e.running = true;
      e.token = st.next_token++;
      st.by_token[e.token] = {row.info.spec.cell, row.info.spec.name};
      st.watcher->watch(e.token, pidfd);
      // Its output keeps going to the same files: publish what it writes from now on.
      st.watcher->follow(e.token, 1, e.info.stdout_path, true);
      st.watcher->follow(e.token, 2, e.info.stderr_path, true);
      st.log->info("re-adopted {}/{} pid={}", row.info.spec.cell, row.info.spec.name, pid);
      self->send(st.config.topics, publish_atom::value, std::string{topic::process_started},
                 caf::make_message(e.info));
    } else {
      if (pidfd >= 0)
        ::close(pidfd);
      e.token = 0;
      finish(self, row.info.spec.cell, e, exit_status{true, false, 0, 0});
    }
  }
}

/// "12,34,56": pids for a log line or an error.
/// Network counters of a cell: /proc/PID/net/dev of one of its processes whose network
/// namespace is not the daemon's (lo left out). Nothing when all share the host's.
void add_net_usage(const std::vector<pid_t>& pids, cell_usage& u) {
  struct stat self_ns{};
  if (::stat("/proc/self/ns/net", &self_ns) != 0)
    return;
  for (auto pid : pids) {
    auto base = "/proc/" + std::to_string(pid);
    struct stat ns{};
    if (::stat((base + "/ns/net").c_str(), &ns) != 0 || ns.st_ino == self_ns.st_ino)
      continue;
    std::ifstream dev{base + "/net/dev"};
    if (!dev)
      continue;
    // "  eth0: rx_bytes rx_packets ... (8 rx fields) tx_bytes ...", after two header lines.
    std::string line;
    uint64_t rx = 0, tx = 0;
    while (std::getline(dev, line)) {
      auto colon = line.find(':');
      if (colon == std::string::npos)
        continue;
      auto name = line.substr(0, colon);
      name.erase(0, name.find_first_not_of(' '));
      if (name == "lo")
        continue;
      std::istringstream fields{line.substr(colon + 1)};
      uint64_t v[9] = {};
      for (auto& x : v)
        fields >> x;
      rx += v[0];
      tx += v[8];
    }
    u.net_rx_bytes = rx;
    u.net_tx_bytes = tx;
    u.net_available = true;
    return;
  }
}

std::string pid_list(const std::vector<pid_t>& pids) {
  std::string out;
  for (auto p : pids)
    out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

/// Cgroups under the daemon's root that state.db does not know (another daemon's with a
/// different state dir, or a crash between mkdir and record): an empty one is removed, one
/// with processes is kept and never reused (allocate of its name says so).
/// Cgroups under the root that are not cells nor hold any, children before their parents.
std::vector<std::string> unknown_cgroups(cells_state& st) {
  auto all = st.cgroups->list();
  auto known_below = [&](const std::string& name) {
    auto i = st.cells.lower_bound(name + "/");
    return i != st.cells.end() && i->first.rfind(name + "/", 0) == 0;
  };
  std::vector<std::string> out;
  for (auto i = all.rbegin(); i != all.rend(); ++i)
    if (st.cells.count(*i) == 0 && !known_below(*i))
      out.push_back(*i);
  return out;
}

void sweep_strays(self_ptr self) {
  auto& st = self->state;
  for (auto& name : unknown_cgroups(st)) {
    auto pids = st.cgroups->pids(name, true);
    if (pids.empty()) {
      if (auto err = st.cgroups->remove(name))
        st.log->warn("stray cgroup {} (not in state.db): cannot remove: {}", name, render(err));
      else
        st.log->info("removed stray empty cgroup {} (not in state.db)", name);
      continue;
    }
    st.log->warn("stray cgroup {} (not in state.db) holds pids {}: kept, not reused", name,
                 pid_list(pids));
  }
}

/// Takes the attachments as the network actor knows them after a restart (it may have
/// attached a cell anew, e.g. after a reboot, with another address).
void refresh_attachments(self_ptr self) {
  auto& st = self->state;
  if (!st.config.network)
    return;
  std::set<std::string> nets;
  for (auto& [name, c] : st.cells)
    if (!c.net.owner.empty())
      nets.insert(c.net.network);
  for (auto& net : nets)
    self->request(st.config.network, caf::infinite, get_atom::value, net)
      .then(
        [self](network_info& info) {
          auto& st = self->state;
          for (auto& a : info.attachments) {
            if (a.owner.rfind("cell/", 0) != 0)
              continue;
            auto c = st.cells.find(a.owner.substr(5));
            if (c == st.cells.end() || c->second.net.owner != a.owner || c->second.net.ips == a.ips)
              continue;
            c->second.net = a;
            st.db->put({kind_cell_net, c->first, "ready", to_blob(a)});
          }
        },
        [self, net](caf::error& err) {
          self->state.log->warn("network {} of cells: {}", net, render(err));
        });
}

caf::error check_user(const executable_spec& spec) {
  // -1 means "the daemon's own"; any other negative id used to run the process as root.
  if (spec.uid < -1)
    return make_error(errc::invalid_argument,
                      "uid " + std::to_string(spec.uid) + " is not valid (-1: keep cytod's)");
  if (spec.gid < -1)
    return make_error(errc::invalid_argument,
                      "gid " + std::to_string(spec.gid) + " is not valid (-1: keep cytod's)");
  for (auto& e : spec.env)
    if (e.find('=') == std::string::npos || e.front() == '=')
      return make_error(errc::invalid_argument,
                        "environment entry '" + e + "' is not NAME=VALUE");
  if (spec.uid >= 0) {
    passwd pw{}, *res = nullptr;
    char buf[4096];
    if (spec.uid > UINT32_MAX
        || getpwuid_r(static_cast<uid_t>(spec.uid), &pw, buf, sizeof(buf), &res) != 0 || !res)
      return make_error(errc::invalid_argument,
                        "uid " + std::to_string(spec.uid) + " does not exist on this host");
  }
  if (spec.gid >= 0) {
    group gr{}, *res = nullptr;
    char buf[4096];
    if (spec.gid > UINT32_MAX
        || getgrgid_r(static_cast<gid_t>(spec.gid), &gr, buf, sizeof(buf), &res) != 0 || !res)
      return make_error(errc::invalid_argument,
                        "gid " + std::to_string(spec.gid) + " does not exist on this host");
  }
  return {};
}

/// Opens a fresh output file of an executable (or, `keep`, the previous run's to append to).
int open_log(const std::string& path, bool keep) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | (keep ? 0 : O_TRUNC) | O_APPEND | O_CLOEXEC,
                0640);
}

caf::result<executable_info> start(self_ptr self, executable_spec spec, bool keep_output) {
  auto& st = self->state;
  auto c = st.cells.find(spec.cell);
  if (c == st.cells.end())
    return make_error(errc::not_found, "cell " + spec.cell + " does not exist");
  if (spec.argv.empty() && spec.command.empty())
    return make_error(errc::invalid_argument, "give a program (argv) or a shell command");
  if (spec.argv.empty())
    spec.argv = {"/bin/sh", "-c", spec.command};
  if (spec.name.empty())
    spec.name = fs::path{spec.argv[0]}.filename().string();
  if (spec.name.size() > max_exe_name)
    return make_error(errc::invalid_argument, "executable name is longer than "
                                                + std::to_string(max_exe_name) + " bytes");
  if (spec.name.find('/') != std::string::npos || check_name(spec.name))
    return make_error(errc::invalid_argument,
                      "executable name '" + spec.name
                        + "' may hold only letters, digits, '.', '_' and '-'");
  if (auto e = c->second.exes.find(spec.name); e != c->second.exes.end() && e->second.running)
    return make_error(errc::already_exists, "executable " + spec.name + " already runs in cell "
                                              + spec.cell);
  if (auto err = check_user(spec))
    return err;
  if (std::none_of(spec.env.begin(), spec.env.end(),
                   [](auto& e) { return e.rfind("PATH=", 0) == 0; }))
    spec.env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

  auto log_dir = fs::path{st.config.state_dir} / "logs" / spec.cell;
  std::error_code ec;
  fs::create_directories(log_dir, ec);
  executable_info info;
  info.stdout_path = (log_dir / (spec.name + ".stdout")).string();
  info.stderr_path = (log_dir / (spec.name + ".stderr")).string();
  // A new run writes to fresh files that replace the previous run's only once it has
  // started: a refused start keeps the previous output (and record) as they were. With
  // keep_output it appends to them instead (what it writes is all a refusal adds: nothing).
  auto new_out = keep_output ? info.stdout_path : info.stdout_path + ".new";
  auto new_err = keep_output ? info.stderr_path : info.stderr_path + ".new";
  int out = open_log(new_out, keep_output);
  int err_fd = open_log(new_err, keep_output);
  auto close_logs = [&] {
    if (out >= 0) ::close(out);
    if (err_fd >= 0) ::close(err_fd);
  };
  auto drop_logs = [&] {
    close_logs();
    if (keep_output)
      return;
    ::unlink(new_out.c_str());
    ::unlink(new_err.c_str());
  };
  if (out < 0 || err_fd < 0) {
    int err = errno;
    drop_logs();
    return make_error(errc::internal, "open output files in " + log_dir.string() + ": "
                                        + std::strerror(err));
  }

  auto key = exe_key(spec.cell, spec.name);
  std::optional<exe_row> previous;
  if (auto e = c->second.exes.find(spec.name); e != c->second.exes.end())
    previous = exe_row{e->second.info, e->second.start_time};
  info.spec = spec;
  exe_row row{info, 0};
  if (auto e = st.db->put({kind_exe, key, "starting", to_blob(row)})) {
    drop_logs();
    return e;
  }
  const auto& cell = c->second.spec;
  spawn_request req;
  req.argv = spec.argv;
  req.env = spec.env;
  req.cwd = spec.cwd;
  if (spec.uid >= 0)
    req.uid = static_cast<uid_t>(spec.uid);
  if (spec.gid >= 0)
    req.gid = static_cast<gid_t>(spec.gid);
  req.isolate_process = cell.isolate_process;
  req.isolate_network = cell.isolate_network;
  req.hostname = fs::path{spec.cell}.filename().string();
  req.netns_path = c->second.net.netns_path;
  req.stdout_fd = out;
  req.stderr_fd = err_fd;
  req.cgroup_procs = st.cgroups->procs_files(spec.cell);
  auto child = spawn(req);
  if (!child) {
    drop_logs();
    if (previous)
      st.db->put({kind_exe, key, "exited", to_blob(*previous)});
    else
      st.db->erase(kind_exe, key);
    return child.error();
  }
  close_logs();
  if (!keep_output) {
    ::rename(new_out.c_str(), info.stdout_path.c_str());
    ::rename(new_err.c_str(), info.stderr_path.c_str());
  }
  info.pid = static_cast<uint32_t>(child->pid);
  info.ns_pid = static_cast<uint32_t>(ns_pid_of(child->pid));
  info.started_unix_nanos = now_nanos();
  auto& e = c->second.exes[spec.name];
  e = cells_state::exe_record{};
  e.info = info;
  e.pidfd = child->pidfd;
  e.running = true;
  e.start_time = start_time_of(child->pid);
  e.token = st.next_token++;
  st.by_token[e.token] = {spec.cell, spec.name};
  row = exe_row{info, e.start_time};
  auto blob = to_blob(row);
  if (auto err = st.db->set_state(kind_exe, key, "running", &blob))
    st.log->error("record start of {}/{}: {}", spec.cell, spec.name, render(err));
  // Files first: an exit seen before they were followed would leave them followed forever.
  // Appended output is followed from where the previous run's ended.
  st.watcher->follow(e.token, 1, info.stdout_path, keep_output);
  st.watcher->follow(e.token, 2, info.stderr_path, keep_output);
  if (!st.watcher->watch(e.token, e.pidfd))
    st.log->error("cannot watch pidfd of {}/{}", spec.cell, spec.name);
  st.log->info("started {}/{} pid={} ns_pid={}", spec.cell, spec.name, info.pid, info.ns_pid);
  self->send(st.config.topics, publish_atom::value, std::string{topic::process_started},
             caf::make_message(info));
  return info;
}

/// Detaches the given cells from their networks; the answer comes once all are done
/// (a failed detach is logged, the cell is gone either way).
caf::result<void> detach_all(self_ptr self, std::vector<std::string> cells) {
  auto& st = self->state;
  if (cells.empty())
    return caf::unit;
  auto rp = self->make_response_promise(); // untyped: the typed one cannot deliver void
  auto left = std::make_shared<size_t>(cells.size()); // shared by the replies' handlers
  for (auto& name : cells) {
    auto done = [rp, left]() mutable {
      if (--*left == 0)
        rp.deliver(caf::unit);
    };
    self->request(st.config.network, caf::infinite, detach_atom::value, net_owner(name))
      .then(
        [self, name, done]() mutable {
          forget_cell(self, name);
          done();
        },
        [self, name, done](caf::error& err) mutable {
          // The "freeing" record stays: the next start tries again.
          self->state.log->error("detach cell {} from its network: {}", name, render(err));
          done();
        });
  }
  return rp;
}

caf::result<void> free_cell(self_ptr self, const std::string& name, bool recursive, bool force) {
  auto& st = self->state;
  if (st.cells.count(name) == 0)
    return make_error(errc::not_found, "cell " + name + " does not exist");
  std::vector<std::string> targets;
  for (auto& [n, c] : st.cells)
    if (is_child_of(n, name))
      targets.push_back(n);
  if (!targets.empty() && !recursive)
    return make_error(errc::failed_precondition,
                      "cell " + name + " has child cells (" + targets.front()
                        + (targets.size() > 1 ? ", ..." : "") + "); free them first or use recursive");
  std::reverse(targets.begin(), targets.end()); // deepest first
  targets.push_back(name);
  if (!force)
    for (auto& t : targets)
      if (auto pids = st.cgroups->pids(t); !pids.empty())
        return make_error(errc::failed_precondition,
                          "cell " + t + " has " + std::to_string(pids.size())
                            + " running processes; stop them first or use force");
  // Marked first: a crash from here on is finished at the next start (undo_cell), never
  // a listed cell without its cgroup nor an attachment without its cell.
  for (auto& t : targets)
    if (auto err = st.db->set_state(kind_cell, t, "freeing"))
      return err;
  if (force) {
    for (auto& t : targets)
      for (auto& [n, e] : st.cells[t].exes)
        if (e.running)
          signal_pidfd(e.pidfd, SIGKILL);
    kill_all(self, targets);
  }
  std::vector<std::string> attached;
  for (auto& t : targets) {
    if (auto err = st.cgroups->remove(t)) {
      for (auto& u : targets)
        if (st.cells.count(u))
          st.db->set_state(kind_cell, u, "ready");
      return err;
    }
    auto& cell = st.cells[t];
    for (auto& [n, e] : cell.exes) {
      if (e.running)
        finish(self, t, e, exit_status{true, true, 0, SIGKILL}); // we killed it: known
      st.db->erase(kind_exe, exe_key(t, n));
    }
    bool on_network = !cell.net.owner.empty() && st.config.network;
    st.cells.erase(t);
    // Its executables' output files go with it (a container's `rm` is a cell free), before
    // its record: a crash in between is finished at the next start (undo_cell).
    std::error_code ec;
    fs::remove_all(fs::path{st.config.state_dir} / "logs" / t, ec);
    if (ec)
      st.log->warn("remove the output files of cell {}: {}", t, ec.message());
    // An attached cell's records go once it is detached (detach_all).
    if (on_network)
      attached.push_back(t);
    else
      forget_cell(self, t);
    st.log->info("freed cell {}", t);
  }
  return detach_all(self, std::move(attached));
}

/// Allocation of a cell that names a network: the cgroup exists, the attach is asked
/// for; the answer comes when it is done (and on failure the cgroup goes again).
caf::result<cell_info> attach_cell(self_ptr self, const cell_spec& spec) {
  auto& st = self->state;
  auto rp = self->make_response_promise<cell_info>();
  auto name = spec.name;
  st.pending.insert(name);
  auto undo = [self, name] {
    auto& st = self->state;
    st.pending.erase(name);
    st.cgroups->remove(name);
    st.db->erase(kind_cell, name);
  };
  attach_request req;
  req.owner = net_owner(name);
  req.network = spec.network;
  req.ports = spec.ports;
  self->request(st.config.network, caf::infinite, attach_atom::value, std::move(req))
    .then(
      [self, rp, spec, undo](net_attachment& a) mutable {
        auto& st = self->state;
        auto err = st.db->put({kind_cell_net, spec.name, "ready", to_blob(a)});
        if (!err)
          err = st.db->set_state(kind_cell, spec.name, "ready");
        if (err) {
          self->send(st.config.network, detach_atom::value, a.owner);
          st.db->erase(kind_cell_net, spec.name);
          undo();
          rp.deliver(std::move(err));
          return;
        }
        st.pending.erase(spec.name);
        auto& c = st.cells[spec.name];
        c.spec = spec;
        c.net = std::move(a);
        st.log->info("allocated cell {} on network {} ({})", spec.name, c.net.network,
                     c.net.ips.empty() ? "-" : c.net.ips.front());
        rp.deliver(info_of(self, spec.name, c));
      },
      [rp, undo](caf::error& err) mutable {
        undo();
        rp.deliver(std::move(err));
      });
  return rp;
}

} // namespace

std::string cells_config::validate() const {
  if (state_dir.empty())
    return "no state dir";
  if (cgroup_root.empty() || cgroup_root.find('/') != std::string::npos || cgroup_root == ".."
      || cgroup_root == ".")
    return "cgroup root must be one directory name, got '" + cgroup_root + "'";
  if (!topics)
    return "no topic actor";
  return {};
}

cells_state::~cells_state() {
  watcher.reset(); // stop its thread before closing the fds it may report on
  for (auto& [n, c] : cells)
    for (auto& [en, e] : c.exes)
      if (e.pidfd >= 0)
        ::close(e.pidfd);
}

cells_private::behavior_type cells(self_ptr self, cells_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("cells");
  st.cpus = online_cpus();
  st.cgroups = make_cgroup_driver(st.config.mode, st.config.cgroup_root);
  // Without its cgroup subtree or state.db the actor still runs, answering every call
  // with the reason, so the rest of the node keeps working and the caller learns why.
  auto fail = [&](caf::error cause) -> cells_private::behavior_type {
    st.log->error("cells unavailable: {}", render(cause));
    auto why = make_error(errc::unavailable, "cells: " + context_of(cause));
    return {
      [why](allocate_atom, cell_spec&) -> caf::result<cell_info> { return why; },
      [why](free_atom, std::string&, bool, bool) -> caf::result<void> { return why; },
      [why](start_atom, executable_spec&) -> caf::result<executable_info> { return why; },
      [why](start_atom, executable_spec&, bool) -> caf::result<executable_info> { return why; },
      [why](stop_atom, std::string&, std::string&, int32_t,
            uint32_t) -> caf::result<exit_status> { return why; },
      [why](list_atom) -> caf::result<std::vector<cell_info>> { return why; },
      [why](get_atom, std::string&) -> caf::result<cell_info> { return why; },
      [why](wait_atom, std::string&, std::string&) -> caf::result<exit_status> { return why; },
      [](exited_atom, uint64_t, exit_status) {},
      [](kill_atom, uint64_t) {},
      [](output_atom, uint64_t, int32_t, std::string&, uint64_t) {},
      [why](stats_atom, std::string&) -> caf::result<std::vector<cell_usage>> { return why; },
      [why](health_atom) -> caf::result<std::vector<std::string>> { return why; },
    };
  };
  if (auto err = st.cgroups->init())
    return fail(std::move(err));
  std::error_code ec;
  fs::create_directories(st.config.state_dir, ec);
  auto db = state_db::open(st.config.state_dir + "/state.db");
  if (!db)
    return fail(db.error());
  st.db = std::move(*db);
  // The watcher thread reports exits as messages, sent as the actor itself (internal:
  // the handlers accept them from nobody else); a weak handle avoids a reference cycle.
  auto weak = caf::actor_cast<caf::weak_actor_ptr>(self);
  st.watcher = std::make_unique<exit_watcher>(
    [weak](uint64_t token, exit_report r) {
      if (auto strong = weak.lock()) {
        auto me = caf::actor_cast<cells_private>(strong);
        caf::send_as(me, me, exited_atom::value, token,
                     exit_status{true, r.known, r.code, r.signal});
      }
    },
    [weak](uint64_t token, int stream, std::string line, uint64_t offset) {
      if (auto strong = weak.lock()) {
        auto me = caf::actor_cast<cells_private>(strong);
        caf::send_as(me, me, output_atom::value, token, static_cast<int32_t>(stream),
                     std::move(line), offset);
      }
    });
  reconcile(self);
  sweep_strays(self);
  refresh_attachments(self);
  st.log->info("cells ready: cgroup {} root {}, {} cells", to_string(st.cgroups->mode()),
               st.config.cgroup_root, st.cells.size());
  return {
    [self](allocate_atom, cell_spec& spec) -> caf::result<cell_info> {
      auto& st = self->state;
      if (auto err = check_name(spec.name))
        return err;
      if (auto err = check_limits(spec.limits, st.cpus))
        return err;
      if (auto err = st.cgroups->supports(spec.limits))
        return err;
      if (st.cells.count(spec.name) > 0 || st.pending.count(spec.name) > 0)
        return make_error(errc::already_exists, "cell " + spec.name + " exists");
      if (spec.network.empty() && !spec.ports.empty())
        return make_error(errc::invalid_argument, "ports need a network");
      if (!spec.network.empty() && spec.isolate_network)
        return make_error(errc::invalid_argument,
                          "a cell takes either a network or isolate-network, not both");
      if (!spec.network.empty() && !st.config.network)
        return make_error(errc::unavailable, "no network service on this node");
      if (auto slash = spec.name.rfind('/'); slash != std::string::npos) {
        auto parent = spec.name.substr(0, slash);
        if (st.cells.count(parent) == 0)
          return make_error(errc::not_found, "parent cell " + parent + " does not exist");
      }
      if (st.cgroups->exists(spec.name)) {
        // Not ours (state.db does not know it): never adopt it silently.
        auto list = pid_list(st.cgroups->pids(spec.name, true));
        return make_error(errc::already_exists,
                          "a cgroup for cell " + spec.name + " exists that this daemon does not own ("
                            + fs::path{st.cgroups->file(spec.name, "cgroup.procs")}
                                .parent_path()
                                .parent_path()
                                .string()
                            + (list.empty() ? ", empty" : ", pids " + list)
                            + "); remove it, or stop what runs there");
      }
      if (auto err = st.db->put({kind_cell, spec.name, "creating", to_blob(spec)}))
        return err;
      if (auto err = st.cgroups->create(spec.name, spec.limits)) {
        st.db->erase(kind_cell, spec.name);
        return err;
      }
      if (!spec.network.empty())
        return attach_cell(self, spec);
      if (auto err = st.db->set_state(kind_cell, spec.name, "ready")) {
        st.cgroups->remove(spec.name);
        st.db->erase(kind_cell, spec.name);
        return err;
      }
      auto& c = st.cells[spec.name];
      c.spec = spec;
      st.log->info("allocated cell {}", spec.name);
      return info_of(self, spec.name, c);
    },
    [self](free_atom, std::string& name, bool recursive, bool force) -> caf::result<void> {
      return free_cell(self, name, recursive, force);
    },
    [self](start_atom, executable_spec& spec) -> caf::result<executable_info> {
      return start(self, std::move(spec), false);
    },
    [self](start_atom, executable_spec& spec, bool keep_output) -> caf::result<executable_info> {
      return start(self, std::move(spec), keep_output);
    },
    [self](stop_atom, std::string& cell, std::string& exe, int32_t sig,
           uint32_t timeout_ms) -> caf::result<exit_status> {
      auto& st = self->state;
      auto c = st.cells.find(cell);
      if (c == st.cells.end())
        return make_error(errc::not_found, "cell " + cell + " does not exist");
      auto e = c->second.exes.find(exe);
      if (e == c->second.exes.end())
        return make_error(errc::not_found, "no executable " + exe + " in cell " + cell);
      if (sig == 0)
        sig = SIGTERM;
      if (sig < 1 || sig > 64)
        return make_error(errc::invalid_argument, "signal " + std::to_string(sig) + " is not 1..64");
      if (!e->second.running)
        return e->second.info.status;
      signal_pidfd(e->second.pidfd, sig);
      if (timeout_ms > 0)
        self->delayed_send(self, std::chrono::milliseconds{timeout_ms}, kill_atom::value,
                           e->second.token);
      auto rp = self->make_response_promise<exit_status>();
      e->second.waiters.push_back(rp);
      return rp;
    },
    [self](list_atom) {
      std::vector<cell_info> out;
      for (auto& [name, c] : self->state.cells)
        out.push_back(info_of(self, name, c));
      return out;
    },
    [self](get_atom, std::string& name) -> caf::result<cell_info> {
      auto c = self->state.cells.find(name);
      if (c == self->state.cells.end())
        return make_error(errc::not_found, "cell " + name + " does not exist");
      return info_of(self, name, c->second);
    },
    [self](wait_atom, std::string& cell, std::string& exe) -> caf::result<exit_status> {
      auto& st = self->state;
      auto c = st.cells.find(cell);
      if (c == st.cells.end())
        return make_error(errc::not_found, "cell " + cell + " does not exist");
      auto e = c->second.exes.find(exe);
      if (e == c->second.exes.end())
        return make_error(errc::not_found, "no executable " + exe + " in cell " + cell);
      if (!e->second.running)
        return e->second.info.status;
      auto rp = self->make_response_promise<exit_status>();
      e->second.waiters.push_back(rp);
      return rp;
    },
    bus::internal(self, [self](exited_atom, uint64_t token, exit_status status) {
      auto& st = self->state;
      auto i = st.by_token.find(token);
      if (i == st.by_token.end())
        return;
      auto [cell, exe] = i->second;
      auto& e = st.cells[cell].exes[exe];
      finish(self, cell, e, status);
    }),
    bus::internal(self, [self](output_atom, uint64_t token, int32_t stream, std::string& line,
                               uint64_t offset) {
      auto& st = self->state;
      auto i = st.by_token.find(token);
      if (i == st.by_token.end())
        return;
      auto& [cell, exe] = i->second;
      self->send(st.config.topics, publish_atom::value, std::string{topic::process_output},
                 caf::make_message(process_output{cell, exe, stream, std::move(line),
                                                  st.cells[cell].exes[exe].info.pid, offset,
                                                  now_nanos()}));
    }),
    [self](health_atom) {
      auto& st = self->state;
      std::vector<std::string> out;
      for (auto& name : unknown_cgroups(st))
        if (auto pids = st.cgroups->pids(name, true); !pids.empty())
          out.push_back("stray cgroup " + name + " (not in state.db) holds pids " + pid_list(pids)
                        + ": kept, its name is not reused; stop those processes or remove it");
      return out;
    },
    [self](stats_atom, std::string& name) -> caf::result<std::vector<cell_usage>> {
      auto& st = self->state;
      std::vector<cell_usage> out;
      if (!name.empty() && st.cells.count(name) == 0)
        return make_error(errc::not_found, "cell " + name + " does not exist");
      for (auto& [n, c] : st.cells) {
        if (!name.empty() && n != name)
          continue;
        auto u = st.cgroups->usage(n);
        if (!u)
          return std::move(u.error());
        add_net_usage(st.cgroups->pids(n, true), *u);
        out.push_back(std::move(*u));
      }
      return out;
    },
    bus::internal(self, [self](kill_atom, uint64_t token) {
      auto& st = self->state;
      auto i = st.by_token.find(token);
      if (i == st.by_token.end())
        return;
      auto& e = st.cells[i->second.first].exes[i->second.second];
      if (e.running) {
        st.log->info("{}/{} did not stop in time: SIGKILL", i->second.first, i->second.second);
        signal_pidfd(e.pidfd, SIGKILL);
      }
    }),
  };
}

} // namespace cyto::cells
