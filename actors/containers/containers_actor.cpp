#include "actors/containers/containers_actor.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/containers/bundle.hpp"
#include "actors/containers/copy.hpp"
#include "actors/containers/file_wait.hpp"
#include "actors/containers/state_rows.hpp"
#include "bus/errc.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"
#include "bus/random_id.hpp"

namespace cyto::containers {

namespace {

using self_ptr = containers_private::stateful_pointer<containers_state>;
using container = containers_state::container;
using info_cb = std::function<void(caf::expected<container_info>)>;
using done_cb = std::function<void(caf::error)>;
using nlohmann::json;
using store::to_blob;
namespace fs = std::filesystem;

/// Parent cells of every container and pod cell, so `cyto cell ls` groups them.
constexpr const char* containers_cell = "containers";
constexpr const char* pods_cell = "pods";
constexpr const char* pause_exe = "pause";

/// A workload attaches to the network it names unless it names none ("" or "none").
bool names_network(const std::string& network) {
  return !network.empty() && network != "none";
}
bool wants_network(const container_spec& spec) {
  return names_network(spec.network);
}

/// The network of a workload created without one: the configured default (like
/// rootful podman), "none" when that is off. Stored in the spec, so inspect shows it.
void resolve_network(const containers_config& cfg, std::string& network) {
  if (network.empty())
    network = names_network(cfg.default_network) ? cfg.default_network : "none";
}
/// The owner the images actor records for containers' root file systems.
constexpr const char* rootfs_owner = "containers";
constexpr std::chrono::milliseconds create_timeout{60000};
constexpr std::chrono::milliseconds start_timeout{30000};

/// Answers a request of a void handler (CAF 0.17's typed promise has no empty deliver).
void deliver_ok(caf::typed_response_promise<void>& rp) {
  static_cast<caf::response_promise&>(rp).deliver(caf::unit);
}

int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// A restart policy as podman spells it ("" is "no"); --rm excludes any but "no".
caf::error check_restart(restart_policy& r, bool auto_remove) {
  if (r.mode.empty())
    r.mode = "no";
  if (r.mode != "no" && r.mode != "on-failure" && r.mode != "always" && r.mode != "unless-stopped")
    return make_error(errc::invalid_argument,
                      "restart policy '" + r.mode +
                          "': give no, on-failure[:MAX_RETRIES], always or unless-stopped");
  if (r.max_retries > 0 && r.mode != "on-failure")
    return make_error(errc::invalid_argument,
                      "restart policy '" + r.mode + ":" + std::to_string(r.max_retries) +
                          "': a retry count goes with on-failure only");
  if (auto_remove && r.mode != "no")
    return make_error(errc::invalid_argument,
                      "--rm and restart policy '" + r.mode +
                          "' exclude each other: an auto-removed container cannot be restarted");
  return {};
}

caf::error check_name(const std::string& what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return make_error(errc::invalid_argument,
                      what + " name '" + name +
                          "': 1-63 of [A-Za-z0-9_.-], starting with a letter or digit");
  return {};
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

bool pidfd_signal(int pidfd, int sig) {
  return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0;
}

/// Signals a pid only if it still is the process that started at `start_time`.
bool signal_checked(pid_t pid, uint64_t start_time, int sig) {
  if (pid <= 0)
    return false;
  int fd = pidfd_open(pid);
  if (fd < 0)
    return false;
  bool ok = (start_time == 0 || process_start_time(pid) == start_time) && pidfd_signal(fd, sig);
  ::close(fd);
  return ok;
}

/// Removes a bundle dir without ever descending into a directory (rootfs may still be a
/// mount point if unmounting failed: then it stays, and so does the dir).
void remove_bundle_dir(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..")
        continue;
      auto p = dir + "/" + n;
      if (::unlink(p.c_str()) != 0 && errno == EISDIR)
        ::rmdir(p.c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

std::string bundle_path(const containers_state& st, const std::string& id) {
  return st.config.state_dir + "/bundles/" + id;
}

std::string runtime_root(const containers_state& st) {
  return st.config.state_dir + "/runtime";
}

/// The runtime's state of a container (<state>/runtime/<id>). The shim deletes it when the
/// container ends; a shim killed with its cell (a force free, a create undone after a
/// crash of cytod) cannot, so removals delete it once the cell is gone.
void remove_runtime_dir(const containers_state& st, const std::string& id) {
  std::error_code ec;
  fs::remove_all(runtime_root(st) + "/" + id, ec);
}

void persist(self_ptr self, container& c, const char* state) {
  container_row row{c.info,           c.start_time,       c.shim_pid,
                    c.net_attached,   c.shim_start_time, c.stopped_by_user};
  if (auto err = self->state.db->put({kind_container, c.info.id, state, to_blob(row)}))
    self->state.log->error("record container {}: {}", c.info.spec.name, render(err));
}

void persist(self_ptr self, containers_state::pod& p, const char* state) {
  pod_row row{p.info, p.net_attached};
  if (auto err = self->state.db->put({kind_pod, p.info.spec.name, state, to_blob(row)}))
    self->state.log->error("record pod {}: {}", p.info.spec.name, render(err));
}

container* find(containers_state& st, const std::string& text) {
  if (auto i = st.containers.find(text); i != st.containers.end())
    return &i->second;
  if (text.size() >= 4 && text.find_first_not_of("0123456789abcdef") == std::string::npos) {
    container* hit = nullptr;
    for (auto& [n, c] : st.containers)
      if (c.info.id.compare(0, text.size(), text) == 0) {
        if (hit)
          return nullptr; // ambiguous
        hit = &c;
      }
    return hit;
  }
  return nullptr;
}

container* find_by_id(containers_state& st, const std::string& id) {
  for (auto& [n, c] : st.containers)
    if (c.info.id == id)
      return &c;
  return nullptr;
}

caf::error no_container(const std::string& text) {
  return make_error(errc::not_found, "container " + text + ": no such container");
}

/// cyto cp of a container (see copy.hpp): out with an empty `source`.
caf::result<copy_stream_actor> copy_of(self_ptr self, const std::string& name, std::string path,
                                       std::string source) {
  auto* c = find(self->state, name);
  if (!c)
    return no_container(name);
  if (c->removing)
    return make_error(errc::failed_precondition, "container " + name + " is being removed");
  copy_target t{c->info.spec.name, c->info.bundle + "/rootfs", {}, c->info.spec.read_only,
                self->state.config.state_dir};
  for (auto& m : c->info.spec.mounts)
    t.mounts.push_back(m.target);
  return open_copy(self, std::move(t), std::move(path), std::move(source));
}

pod_info pod_view(const containers_state& st, const containers_state::pod& p) {
  auto out = p.info;
  out.containers.clear();
  for (auto& [n, c] : st.containers)
    if (c.info.spec.pod == p.info.spec.name)
      out.containers.push_back(n);
  return out;
}

/// `configured` if set, else the actor the registry has under `name`; unavailable when
/// none is registered (`what`: what is then not available).
template <class Handle>
void with_service(self_ptr self, const Handle& configured, const char* name,
                  const std::string& what, std::function<void(caf::expected<Handle>)> k) {
  if (configured)
    return k(configured);
  auto none = std::string{"no "} + name + " actor runs on this node";
  self->request(self->state.config.registry, caf::infinite, get_atom::value, std::string{name})
      .then(
          [k, none](caf::strong_actor_ptr& h) {
            if (!h)
              return k(make_error(errc::unavailable, none));
            k(caf::actor_cast<Handle>(h));
          },
          [k, none, what](caf::error&) {
            k(make_error(errc::unavailable, what + " not available: " + none));
          });
}

/// Looks the network actor up; unavailable when none is registered.
void with_network(self_ptr self, std::function<void(caf::expected<network_actor>)> k) {
  with_service(self, self->state.config.network, service_name::network, "networks are",
               std::move(k));
}

/// Detaches `owner` from its network and then runs `k` (also when the detach failed: the
/// error is logged), so removals finish only once the lease, veth and netns are gone.
void detach(self_ptr self, const std::string& owner, std::function<void()> k = {}) {
  with_network(self, [self, owner, k](caf::expected<network_actor> net) {
    if (!net) {
      if (k)
        k();
      return;
    }
    self->request(*net, caf::infinite, detach_atom::value, owner)
        .then(
            [k] {
              if (k)
                k();
            },
            [self, owner, k](caf::error& err) {
              self->state.log->error("detach {}: {}", owner, render(err));
              if (k)
                k();
            });
  });
}

/// Releases the volume claims of container `id`, then runs `k` (also when that failed:
/// the claims are trimmed at the next start).
void release_volumes(self_ptr self, const std::string& id, std::function<void()> k) {
  auto& vols = self->state.config.volumes;
  if (!vols)
    return k();
  self->request(vols, caf::infinite, detach_atom::value, id)
      .then([k] { k(); },
            [self, id, k](caf::error& err) {
              self->state.log->error("release the volumes of container {}: {}", id.substr(0, 12),
                                     render(err));
              k();
            });
}

/// Spawns a blocking waiter for `path` (while `pid` lives) on a thread of its own.
void wait_file(self_ptr self, const std::string& path, uint32_t pid,
               std::chrono::milliseconds timeout,
               std::function<void(caf::expected<std::string>)> k) {
  auto waiter = self->spawn<caf::detached>(
      [](file_waiter_actor::pointer w) -> file_waiter_actor::behavior_type {
        return {
            [w](wait_atom, std::string& p, uint32_t pid, uint32_t ms) -> caf::result<std::string> {
              auto r = wait_for_file(p, static_cast<pid_t>(pid), std::chrono::milliseconds{ms});
              w->quit();
              if (!r)
                return std::move(r.error());
              return std::move(*r);
            }};
      });
  self->request(waiter, caf::infinite, wait_atom::value, path, pid,
                static_cast<uint32_t>(timeout.count()))
      .then([k](std::string& text) { k(std::move(text)); }, [k](caf::error& err) { k(err); });
}

/// The error a shim wrote ({"error": "cyto.<code>: text", "exit_code": N}).
caf::error shim_error(const json& j) {
  auto text = j.value("error", std::string{"unknown error"});
  auto code = j.value("exit_code", 125);
  auto parsed = parse_rendered(text);
  auto ec = parsed ? parsed->first : errc::internal;
  auto ctx = parsed ? parsed->second : text;
  if (code == 127)
    ec = errc::not_found;
  else if (code == 126)
    ec = errc::permission_denied;
  return make_error(ec, ctx + " (exit code " + std::to_string(code) + ")");
}

/// The last lines of a file (a shim's stderr) for an error text.
std::string tail_of(const std::string& path) {
  auto text = read_file(path);
  while (!text.empty() && text.back() == '\n')
    text.pop_back();
  if (text.size() > 400)
    text = text.substr(text.size() - 400);
  return text;
}

// -- removal ------------------------------------------------------------------------

/// Removes what a container has: network, rootfs, bundle, cell, record. Never fails
/// half-way silently: each step logs what it could not undo.
void dismantle(self_ptr self, const std::string& id, const std::string& name,
               const std::string& cell, bool net_attached, done_cb done) {
  if (net_attached)
    return detach(self, "container/" + name,
                  [=] { dismantle(self, id, name, cell, false, done); });
  // The claims go last, once the record is gone: a volume is never removable while a
  // container that mounts it is still listed.
  done = [self, id, done](caf::error err) {
    release_volumes(self, id, [done, err] { done(err); });
  };
  // The rootfs and the cell are independent: both are asked at once (the removal takes
  // the longer of the two, not their sum); the record goes once both are done.
  auto left = std::make_shared<int>(2);
  auto one_done = [=] {
    if (--*left > 0)
      return;
    remove_runtime_dir(self->state, id);
    self->state.db->erase(kind_container, id);
    done({});
  };
  auto& st = self->state;
  self->request(st.config.images, caf::infinite, unmount_atom::value, id,
                std::string{rootfs_owner})
      .then(
          [=] {
            remove_bundle_dir(bundle_path(self->state, id));
            one_done();
          },
          [=](caf::error& err) {
            if (code_of(err) != errc::not_found) {
              self->state.log->error("unmount rootfs of container {}: {}", name, render(err));
              // The bundle keeps its mounted rootfs: only its files go.
            }
            remove_bundle_dir(bundle_path(self->state, id));
            one_done();
          });
  self->request(st.config.cells, caf::infinite, free_atom::value, cell, false, true)
      .then([=] { one_done(); },
            [=](caf::error& err) {
              if (code_of(err) != errc::not_found)
                self->state.log->error("free cell {} of container {}: {}", cell, name,
                                       render(err));
              one_done();
            });
}

void remove_now(self_ptr self, const std::string& name, done_cb done) {
  auto& st = self->state;
  auto i = st.containers.find(name);
  if (i == st.containers.end())
    return done(no_container(name));
  auto& c = i->second;
  c.removing = true;
  // Marked first: a crash in the middle is finished at the next start, never a listed
  // container whose rootfs or cell is half gone.
  persist(self, c, "removing");
  auto id = c.info.id;
  auto cell = c.info.cell;
  bool net = c.net_attached;
  c.net_attached = false;
  dismantle(self, id, name, cell, net, [self, name, done](caf::error err) {
    self->state.containers.erase(name);
    self->state.log->info("removed container {}", name);
    done(std::move(err));
  });
}

// -- exit -----------------------------------------------------------------------------

void finish_exit(self_ptr self, const std::string& id, caf::error start_error);
bool should_restart(const container& c);
void schedule_restart(self_ptr self, container& c);

/// The shim ended: the container has stopped. Reads exit.json (also for containers
/// that ended while the daemon was down), answers waiters, then auto-removes.
void on_shim_exit(self_ptr self, const std::string& id, exit_status shim) {
  auto& st = self->state;
  auto* c = find_by_id(st, id);
  if (!c || c->info.state == container_state::stopped)
    return;
  auto dir = bundle_path(st, id);
  auto exit_text = read_file(dir + "/exit.json");
  auto started = json::parse(read_file(dir + "/started.json"), nullptr, false);
  auto ex = json::parse(exit_text, nullptr, false);
  auto& info = c->info;
  caf::error start_error;
  if (started.is_object() && started.contains("error")) {
    start_error = shim_error(started);
    info.error = render(start_error);
  }
  if (ex.is_object()) {
    info.exit_code = ex.value("exit_code", 0);
    info.exit_signal = ex.value("signal", 0);
    info.finished_unix_nanos = ex.value("finished_unix_nanos", now_nanos());
  } else {
    info.exit_code = shim.known ? (shim.signal ? 128 + shim.signal : shim.code) : 255;
    info.finished_unix_nanos = now_nanos();
    if (info.error.empty())
      info.error = "the runtime shim ended without writing exit.json";
  }
  info.state = container_state::stopped;
  info.pid = 0;
  if (c->pidfd >= 0) {
    ::close(c->pidfd);
    c->pidfd = -1;
  }
  if (c->net_attached) {
    // Whoever waits for the exit (and --rm) finds the lease, veth and netns gone.
    c->net_attached = false;
    return detach(self, "container/" + info.spec.name,
                  [self, id, start_error] { finish_exit(self, id, start_error); });
  }
  finish_exit(self, id, start_error);
}

/// The rest of on_shim_exit once the container's network is released: record, answer
/// waiters, auto-remove.
void finish_exit(self_ptr self, const std::string& id, caf::error start_error) {
  auto& st = self->state;
  auto* c = find_by_id(st, id);
  if (!c)
    return;
  auto& info = c->info;
  // Recorded as "restarting" while the policy will start it again: a daemon killed in the
  // backoff does so at its next start.
  bool again = should_restart(*c);
  persist(self, *c, again ? "restarting" : "stopped");
  st.log->info("container {} stopped: exit code {}", info.spec.name, info.exit_code);
  auto name = info.spec.name;
  auto starting = std::move(c->starting);
  c->starting.clear();
  for (auto& k : starting) {
    if (start_error)
      k(start_error);
    else
      k(info);
  }
  c = find_by_id(st, id);
  if (!c)
    return;
  for (auto& rp : c->waiters)
    rp.deliver(info);
  c->waiters.clear();
  auto runners = std::move(c->runners);
  c->runners.clear();
  auto stopped = info;
  auto conts = std::move(c->on_exit);
  c->on_exit.clear();
  for (auto& k : conts)
    k();
  c = find_by_id(st, id);
  if (c && c->info.spec.auto_remove && !c->removing) {
    remove_now(self, name, [runners, stopped](caf::error) mutable {
      for (auto& rp : runners)
        rp.deliver(stopped);
    });
    return;
  }
  for (auto& rp : runners)
    rp.deliver(stopped);
  if (again && (c = find_by_id(st, id)) && should_restart(*c))
    schedule_restart(self, *c);
}

void watch_shim(self_ptr self, const container& c) {
  auto id = c.info.id;
  self->request(self->state.config.cells, caf::infinite, wait_atom::value, c.info.cell,
                c.info.executable)
      .then([self, id](exit_status& s) { on_shim_exit(self, id, s); },
            [self, id](caf::error& err) {
              self->state.log->warn("lost the shim of container {}: {}", id, render(err));
              on_shim_exit(self, id, exit_status{true, false, 0, 0});
            });
}

/// Allocates a cell, making its top-level parent ("containers", "pods") when the cells
/// actor does not have it, so an idle daemon shows no empty cells. Nothing is cached: the
/// parent may be freed behind our back (`cyto cell free containers`), and an
/// `already_exists` is ours only if the cells actor then knows the cell (a create that
/// raced us made it); otherwise it is somebody else's cgroup and the error says so.
template <class Ok, class Fail>
void allocate_cell(self_ptr self, cell_spec cs, Ok ok, Fail fail) {
  auto top = cs.name.substr(0, cs.name.find('/'));
  auto cells = self->state.config.cells;
  auto go = [self, cs, ok, fail]() mutable {
    self->request(self->state.config.cells, caf::infinite, allocate_atom::value, cs)
        .then(std::move(ok), std::move(fail));
  };
  if (top == cs.name)
    return go();
  auto make_parent = [self, cells, top, go, fail]() mutable {
    cell_spec parent;
    parent.name = top;
    self->request(cells, caf::infinite, allocate_atom::value, parent)
        .then([go](cell_info&) mutable { go(); },
              [self, cells, top, go, fail](caf::error& err) mutable {
                if (code_of(err) != errc::already_exists)
                  return fail(err);
                self->request(cells, caf::infinite, get_atom::value, top)
                    .then([go](cell_info&) mutable { go(); },
                          [fail, err](caf::error&) mutable { fail(err); });
              });
  };
  // The parent is there nearly always: allocate at once, and make it only when the
  // cells actor says it is missing (one request per create instead of two).
  self->request(cells, caf::infinite, allocate_atom::value, cs)
      .then(std::move(ok), [make_parent, fail](caf::error& err) mutable {
        if (code_of(err) == errc::not_found)
          return make_parent();
        fail(err);
      });
}

// -- create ---------------------------------------------------------------------------

/// One create in flight and what it has made so far (undone on failure).
struct create_job {
  container_spec spec;
  container_info info;
  image_info image;
  std::string pod_cell;
  uint32_t pause_pid = 0;
  net_attachment attachment;
  bool cell = false;
  bool mounted = false;
  bool attached = false;
  /// Volume claims were asked for (released on failure), the volumes they made (removed
  /// on failure) and each volume's host directory.
  bool claimed = false;
  std::vector<std::string> made_volumes;
  std::map<std::string, std::string> volume_paths;
  executable_info shim;
  uint64_t shim_start_time = 0;
  info_cb done;
  /// The image as the caller resolved it (not asked for again).
  std::optional<image_info> known_image;
};
using job_ptr = std::shared_ptr<create_job>;

void fail_create(self_ptr self, job_ptr job, caf::error err) {
  auto& st = self->state;
  st.log->info("create of container {} failed: {}", job->info.spec.name, render(err));
  auto answer = [self, job, err] {
    remove_runtime_dir(self->state, job->info.id);
    self->state.db->erase(kind_container, job->info.id);
    self->state.reserved.erase(job->info.spec.name);
    job->done(err);
  };
  auto finish = [self, job, answer] {
    if (!job->claimed)
      return answer();
    release_volumes(self, job->info.id, [self, job, answer] {
      // What this create made goes with it (unless another container claimed it since).
      for (auto& v : job->made_volumes)
        self->request(self->state.config.volumes, caf::infinite, delete_atom::value, v, true)
            .then([] {},
                  [self, v](caf::error& e) {
                    self->state.log->warn("remove volume {} of a failed create: {}", v, render(e));
                  });
      answer();
    });
  };
  if (job->attached)
    detach(self, "container/" + job->info.spec.name);
  auto free_cell = [self, job, finish] {
    if (!job->cell)
      return finish();
    self->request(self->state.config.cells, caf::infinite, free_atom::value, job->info.cell, false,
                  true)
        .then([finish] { finish(); },
              [self, job, finish](caf::error& e) {
                self->state.log->error("free cell {}: {}", job->info.cell, render(e));
                finish();
              });
  };
  if (!job->mounted) {
    remove_bundle_dir(job->info.bundle);
    return free_cell();
  }
  self->request(st.config.images, caf::infinite, unmount_atom::value, job->info.id,
                std::string{rootfs_owner})
      .then(
          [self, job, free_cell] {
            remove_bundle_dir(job->info.bundle);
            free_cell();
          },
          [self, job, free_cell](caf::error& e) {
            self->state.log->error("unmount rootfs {}: {}", job->info.id, render(e));
            free_cell();
          });
}

/// The shim's answer (created.json) taken into `c`: created, its process's pid and pidfd.
caf::error adopt_created(container& c, const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object())
    return make_error(errc::internal, "created.json is not JSON: " + text);
  if (j.contains("error"))
    return shim_error(j);
  c.info.state = container_state::created;
  c.info.pid = j.value("pid", 0u);
  c.start_time = j.value("start_time", uint64_t{0});
  if (c.pidfd >= 0)
    ::close(c.pidfd);
  c.pidfd = -1;
  int fd = pidfd_open(static_cast<pid_t>(c.info.pid));
  if (fd >= 0 && process_start_time(static_cast<pid_t>(c.info.pid)) == c.start_time)
    c.pidfd = fd;
  else if (fd >= 0)
    ::close(fd);
  return {};
}

/// Why a shim gave no created.json, for an error text.
caf::error no_created(const caf::error& err, const executable_info& shim) {
  auto why = tail_of(shim.stderr_path);
  return make_error(errc::internal, "the runtime shim did not create the container: " +
                                        context_of(err) + (why.empty() ? "" : ": " + why));
}

/// The cell executable that creates and supervises container `info` (`cyto-runtime shim`).
executable_spec shim_executable(const containers_state& st, const container_info& info) {
  executable_spec exe;
  exe.cell = info.cell;
  exe.name = info.executable;
  exe.argv = {st.config.runtime_path, "--root", runtime_root(st)};
  if (st.config.default_seccomp)
    exe.argv.push_back("--default-seccomp");
  exe.argv.insert(exe.argv.end(), {"shim", "--bundle", info.bundle});
  if (info.spec.interactive)
    exe.argv.push_back("--interactive");
  exe.argv.push_back(info.id);
  exe.description = "container " + info.spec.name + " (" + info.image_name + ")";
  return exe;
}

/// A pod member joins the namespaces of the pod's pause process and takes its hostname.
void join_pod(bundle_request& req, const std::string& pod, uint32_t pause_pid) {
  auto ns = "/proc/" + std::to_string(pause_pid) + "/ns/";
  req.join = {{"network", ns + "net"}, {"ipc", ns + "ipc"}, {"uts", ns + "uts"}};
  req.hostname = pod;
}

void use_attachment(bundle_request& req, const net_attachment& a) {
  req.netns_path = a.netns_path;
  req.ips = a.ips;
  req.dns_servers = a.dns_servers;
  req.dns_search = a.dns_search;
}

attach_request container_attach(const container_spec& spec) {
  attach_request req;
  req.owner = "container/" + spec.name;
  req.network = spec.network;
  req.ports = spec.ports;
  req.ifname = "eth0";
  return req;
}

void create_started(self_ptr self, job_ptr job) {
  auto path = job->info.bundle + "/created.json";
  wait_file(self, path, job->shim.pid, create_timeout,
            [self, job](caf::expected<std::string> text) {
              auto& st = self->state;
              if (!text)
                return fail_create(self, job, no_created(text.error(), job->shim));
              container fresh;
              fresh.info = job->info;
              if (auto err = adopt_created(fresh, *text))
                return fail_create(self, job, err);
              auto& c = st.containers[job->info.spec.name];
              c = fresh;
              c.shim_pid = job->shim.pid;
              c.shim_start_time = job->shim_start_time;
              c.net_attached = job->attached;
              persist(self, c, "created");
              st.reserved.erase(job->info.spec.name);
              st.log->info("created container {} ({}) from {} pid={}", c.info.spec.name,
                           c.info.id.substr(0, 12), c.info.image_name, c.info.pid);
              watch_shim(self, c);
              job->done(c.info);
            });
}

void create_write_bundle(self_ptr self, job_ptr job) {
  auto& st = self->state;
  bundle_request req;
  req.spec = job->spec;
  auto img = parse_image_config(job->image.config_json);
  if (!img)
    return fail_create(self, job, img.error());
  req.image = *img;
  req.rootfs = job->info.bundle + "/rootfs";
  req.hostname = job->spec.hostname.empty() ? job->spec.name : job->spec.hostname;
  if (job->pause_pid)
    join_pod(req, job->spec.pod, job->pause_pid);
  if (job->attached) {
    use_attachment(req, job->attachment);
    job->info.ips = job->attachment.ips;
  }
  req.host_resolv_conf = read_file("/etc/resolv.conf");
  req.volume_paths = job->volume_paths;
  auto files = make_bundle(req, job->info.bundle);
  if (!files)
    return fail_create(self, job, files.error());
  if (auto err = write_bundle(*files, job->info.bundle))
    return fail_create(self, job, err);
  job->info.command = files->command;
  self->request(st.config.cells, caf::infinite, start_atom::value,
                shim_executable(st, job->info))
      .then(
          [self, job](executable_info& info) {
            job->shim = info;
            // Read while the shim waits for created.json to be read: it still is our
            // shim (its exit is not reaped before the cells actor hears of it).
            job->shim_start_time = process_start_time(static_cast<pid_t>(info.pid));
            create_started(self, job);
          },
          [self, job](caf::error& err) { fail_create(self, job, err); });
}

void create_mounted(self_ptr self, job_ptr job) {
  if (!wants_network(job->spec))
    return create_write_bundle(self, job);
  with_network(self, [self, job](caf::expected<network_actor> net) {
    if (!net)
      return fail_create(self, job, net.error());
    self->request(*net, caf::infinite, attach_atom::value, container_attach(job->spec))
        .then(
            [self, job](net_attachment& a) {
              job->attachment = std::move(a);
              job->attached = true;
              create_write_bundle(self, job);
            },
            [self, job](caf::error& err) { fail_create(self, job, err); });
  });
}

void claim_volumes(self_ptr self, job_ptr job, size_t i);
void create_from_image(self_ptr self, job_ptr job);

/// Makes a container of `spec`; `known` is its image when the caller resolved it already
/// (a run that pulled or looked it up: one request to the images actor less).
void create(self_ptr self, container_spec spec, info_cb done,
            std::optional<image_info> known = {}) {
  auto& st = self->state;
  auto job = std::make_shared<create_job>();
  job->known_image = std::move(known);
  job->info.id = random_id();
  if (spec.name.empty())
    spec.name = job->info.id.substr(0, 12);
  if (auto err = check_name("container", spec.name))
    return done(err);
  if (st.containers.count(spec.name) || st.reserved.count(spec.name))
    return done(make_error(errc::already_exists, "container " + spec.name + " exists"));
  if (spec.image.empty())
    return done(make_error(errc::invalid_argument, "no image given"));
  // A pod's member shares the pod's network: it names none of its own.
  if (spec.pod.empty())
    resolve_network(st.config, spec.network);
  if (!spec.ports.empty() && !wants_network(spec))
    return done(make_error(errc::invalid_argument,
                           "port mappings need a network (--network); a container without "
                           "one has only lo"));
  for (auto& p : spec.ports)
    if (p.container_port == 0 || (p.protocol != "tcp" && p.protocol != "udp"))
      return done(make_error(errc::invalid_argument,
                             "port mapping: the container port must be 1..65535 and the "
                             "protocol tcp or udp"));
  if (auto err = check_restart(spec.restart, spec.auto_remove))
    return done(err);
  if (auto err = check_mounts(spec.mounts))
    return done(err);
  job->info.cell = std::string{containers_cell} + "/" + spec.name;
  if (!spec.pod.empty()) {
    auto p = st.pods.find(spec.pod);
    if (p == st.pods.end())
      return done(make_error(errc::not_found, "pod " + spec.pod + ": no such pod"));
    if (!p->second.info.running)
      return done(make_error(errc::failed_precondition,
                             "pod " + spec.pod + " is stopped; containers join running pods"));
    if (wants_network(spec) || !spec.hostname.empty())
      return done(make_error(errc::invalid_argument,
                             "a container in a pod shares the pod's network and hostname; "
                             "give --network and --hostname to the pod"));
    job->pause_pid = p->second.info.pause_pid;
    job->info.cell = p->second.info.cell + "/" + spec.name;
  }
  job->spec = spec;
  job->info.spec = spec;
  job->info.executable = spec.name;
  job->info.bundle = bundle_path(st, job->info.id);
  job->info.created_unix_nanos = now_nanos();
  job->done = std::move(done);
  st.reserved[spec.name] = job->info.id;
  container_row row{job->info, 0, 0, false};
  if (auto err = st.db->put({kind_container, job->info.id, "creating", to_blob(row)})) {
    st.reserved.erase(spec.name);
    return job->done(err);
  }
  claim_volumes(self, job, 0);
}

/// Claims the spec's named volumes one by one (from mounts[i] on), then goes on to the image.
void claim_volumes(self_ptr self, job_ptr job, size_t i) {
  auto& mounts = job->spec.mounts;
  while (i < mounts.size() && mounts[i].kind != "volume")
    ++i;
  if (i == mounts.size())
    return create_from_image(self, job);
  auto& vols = self->state.config.volumes;
  if (!vols)
    return fail_create(self, job,
                       make_error(errc::unavailable, "named volumes are not available: no "
                                                     "volumes actor runs on this node"));
  job->claimed = true;
  volume_claim c{mounts[i].source, {job->info.id, job->info.spec.name}};
  self->request(vols, caf::infinite, attach_atom::value, c)
      .then(
          [self, job, i](volume_info& v, bool made) {
            if (made)
              job->made_volumes.push_back(v.name);
            job->volume_paths[v.name] = v.path;
            claim_volumes(self, job, i + 1);
          },
          [self, job](caf::error& err) { fail_create(self, job, err); });
}

void create_with_image(self_ptr self, job_ptr job, image_info& img);

void create_from_image(self_ptr self, job_ptr job) {
  if (job->known_image)
    return create_with_image(self, job, *job->known_image);
  auto& st = self->state;
  self->request(st.config.images, caf::infinite, get_atom::value, job->spec.image)
      .then([self, job](image_info& img) { create_with_image(self, job, img); },
            [self, job](caf::error& err) { fail_create(self, job, err); });
}

/// Allocates the cell, mounts the rootfs of `img` and goes on to the network.
void create_with_image(self_ptr self, job_ptr job, image_info& img) {
  job->image = img;
  job->info.image_name = img.name;
  job->info.image_digest = img.manifest_digest;
  cell_spec cs;
  cs.name = job->info.cell;
  cs.limits = job->spec.limits;
  allocate_cell(
      self, cs,
      [self, job](cell_info&) {
        job->cell = true;
        std::error_code ec;
        fs::create_directories(job->info.bundle, ec);
        if (ec)
          return fail_create(
              self, job,
              make_error(errc::unavailable,
                         "create bundle dir " + job->info.bundle + ": " + ec.message()));
        ::chmod(job->info.bundle.c_str(), 0700);
        self->request(self->state.config.images, caf::infinite, mount_atom::value,
                      job->image.name, job->info.id, job->info.bundle + "/rootfs",
                      std::string{rootfs_owner}, false)
            .then(
                [self, job](rootfs_info&) {
                  job->mounted = true;
                  create_mounted(self, job);
                },
                [self, job](caf::error& err) { fail_create(self, job, err); });
      },
      [self, job](caf::error& err) { fail_create(self, job, err); });
}

// -- start, stop ----------------------------------------------------------------------

bool signal_container(container& c, int sig);

/// Lets a created container's process run. `started` (if any) hears once it runs (or
/// why not); `runner` (if any) is answered once it has stopped.
caf::error start_created(self_ptr self, container& c, info_cb started,
                         std::optional<caf::typed_response_promise<container_info>> runner) {
  if (!c.starting.empty())
    return make_error(errc::failed_precondition,
                      "container " + c.info.spec.name + " is being started");
  if (!signal_checked(static_cast<pid_t>(c.shim_pid), c.shim_start_time, SIGUSR1))
    return make_error(errc::unavailable,
                      "the runtime shim of container " + c.info.spec.name + " is gone");
  c.start_requested = true;
  if (runner)
    c.runners.push_back(*runner);
  if (started)
    c.starting.push_back(std::move(started));
  auto id = c.info.id;
  wait_file(self, c.info.bundle + "/started.json", c.shim_pid, start_timeout,
            [self, id](caf::expected<std::string> text) {
              auto& st = self->state;
              auto* c = find_by_id(st, id);
              if (!c || !text)
                return; // the shim ended: on_shim_exit answers
              auto starting = std::move(c->starting);
              c->starting.clear();
              auto j = json::parse(*text, nullptr, false);
              if (j.is_object() && j.contains("error")) {
                auto err = shim_error(j);
                c->info.error = render(err);
                for (auto& k : starting)
                  k(err);
                return;
              }
              c->info.started_unix_nanos = now_nanos();
              if (c->info.state == container_state::created) {
                c->info.state = container_state::running;
                persist(self, *c, "running");
                st.log->info("started container {}{}", c->info.spec.name,
                             c->info.restart_count > 0
                                 ? " (restart " + std::to_string(c->info.restart_count) + ")"
                                 : std::string{});
              }
              for (auto& k : starting)
                k(c->info);
            });
  return {};
}

/// The end of a recreate that did not make it: recorded stopped with the reason, the
/// network attached for it released, whoever waits for the container's end answered.
void recreate_failed(self_ptr self, const std::string& id, caf::error err, done_cb done) {
  auto& st = self->state;
  auto* c = find_by_id(st, id);
  if (!c)
    return done(err);
  c->recreating = false;
  c->info.state = container_state::stopped;
  c->info.pid = 0;
  c->info.error = render(err);
  st.log->warn("container {} could not be made to run again: {}", c->info.spec.name,
               render(err));
  persist(self, *c, "stopped");
  auto answer = [self, id, err, done] {
    auto* c = find_by_id(self->state, id);
    if (c) {
      auto waiters = std::move(c->waiters);
      auto conts = std::move(c->on_exit);
      c->waiters.clear();
      c->on_exit.clear();
      for (auto& rp : waiters)
        rp.deliver(c->info);
      for (auto& k : conts)
        k();
    }
    done(err);
  };
  if (!c->net_attached)
    return answer();
  c->net_attached = false;
  persist(self, *c, "stopped");
  detach(self, "container/" + c->info.spec.name, answer);
}

/// The second half of recreate: the bundle refreshed, a new shim in the container's cell
/// (appending to its log), created.json taken in.
void recreate_spawn(self_ptr self, const std::string& id, const bundle_request& req,
                    done_cb done, bool first_try = true) {
  auto& st = self->state;
  auto* c = find_by_id(st, id);
  if (!c)
    return done(no_container(id));
  if (auto err = refresh_bundle(req, c->info.bundle))
    return recreate_failed(self, id, err, done);
  // The last run's answers go first: a waiter must not read them as the new shim's.
  for (auto* f : {"created.json", "started.json", "exit.json"})
    ::unlink((c->info.bundle + "/" + f).c_str());
  remove_runtime_dir(st, id);
  c->info.ips = req.ips;
  self->request(st.config.cells, caf::infinite, start_atom::value, shim_executable(st, c->info),
                true)
      .then(
          [self, id, done](executable_info& shim) {
            auto shim_start = process_start_time(static_cast<pid_t>(shim.pid));
            auto path = bundle_path(self->state, id) + "/created.json";
            wait_file(
                self, path, shim.pid, create_timeout,
                [self, id, done, shim, shim_start](caf::expected<std::string> text) {
                  auto& st = self->state;
                  auto* c = find_by_id(st, id);
                  if (!c)
                    return done(no_container(id));
                  if (!text) {
                    self->request(st.config.cells, caf::infinite, stop_atom::value,
                                  c->info.cell, c->info.executable, int32_t{SIGKILL},
                                  uint32_t{0})
                        .then([](exit_status&) {}, [](caf::error&) {});
                    return recreate_failed(self, id, no_created(text.error(), shim), done);
                  }
                  if (auto err = adopt_created(*c, *text))
                    return recreate_failed(self, id, err, done);
                  c->shim_pid = shim.pid;
                  c->shim_start_time = shim_start;
                  c->recreating = false;
                  c->info.error.clear();
                  c->info.exit_code = 0;
                  c->info.exit_signal = 0;
                  c->info.finished_unix_nanos = 0;
                  persist(self, *c, "created");
                  st.log->info("container {} created again pid={}", c->info.spec.name,
                               c->info.pid);
                  watch_shim(self, *c);
                  if (c->stopped_by_user || c->removing) {
                    // Stopped or removed meanwhile: the new process goes before it ran.
                    signal_container(*c, SIGTERM);
                    return done(make_error(errc::failed_precondition,
                                           "container " + c->info.spec.name +
                                               " was stopped while it was being started"));
                  }
                  done({});
                });
          },
          [self, id, req, done, first_try](caf::error& err) {
            auto* c = find_by_id(self->state, id);
            if (!c || !first_try || code_of(err) != errc::already_exists)
              return recreate_failed(self, id, err, done);
            // A shim of an earlier recreate that cytod was killed in the middle of: it
            // aborts its process that never ran (SIGTERM), then the new one is started.
            self->state.log->warn("container {}: ending a stray shim before running it again",
                                  c->info.spec.name);
            self->request(self->state.config.cells, caf::infinite, stop_atom::value,
                          c->info.cell, c->info.executable, int32_t{SIGTERM}, uint32_t{5000})
                .then([self, id, req, done](exit_status&) {
                        recreate_spawn(self, id, req, done, false);
                      },
                      [self, id, done](caf::error& e) { recreate_failed(self, id, e, done); });
          });
}

void attach_for_recreate(self_ptr self, const std::string& id, bundle_request req,
                         done_cb done);

/// Makes a stopped container created again: its pod's namespaces and its network
/// attached anew (ports, a lease), the bundle brought up to date, a new shim that
/// creates the process from the same bundle and rootfs. `done` hears once it is created.
void recreate(self_ptr self, container& c, done_cb done) {
  auto& st = self->state;
  c.recreating = true;
  c.start_requested = false;
  ++c.run;
  auto id = c.info.id;
  auto& spec = c.info.spec;
  bundle_request req;
  req.spec = spec;
  req.hostname = spec.hostname.empty() ? spec.name : spec.hostname;
  req.host_resolv_conf = read_file("/etc/resolv.conf");
  if (!spec.pod.empty()) {
    auto p = st.pods.find(spec.pod);
    if (p == st.pods.end() || !p->second.info.running)
      return recreate_failed(self, id,
                             make_error(errc::failed_precondition,
                                        "pod " + spec.pod +
                                            " is not running; its containers run in it"),
                             done);
    join_pod(req, spec.pod, p->second.info.pause_pid);
  }
  if (!wants_network(spec))
    return recreate_spawn(self, id, req, done);
  if (c.net_attached) {
    // Left attached by a recreate that cytod was killed in the middle of: detached first.
    c.net_attached = false;
    return detach(self, "container/" + spec.name,
                  [self, id, req, done]() mutable { attach_for_recreate(self, id, req, done); });
  }
  attach_for_recreate(self, id, req, done);
}

/// The network part of recreate: attached again (a new lease, the same ports).
void attach_for_recreate(self_ptr self, const std::string& id, bundle_request req,
                         done_cb done) {
  with_network(self, [self, id, req, done](caf::expected<network_actor> net) mutable {
    auto* c = find_by_id(self->state, id);
    if (!c)
      return done(no_container(id));
    if (!net)
      return recreate_failed(self, id, net.error(), done);
    self->request(*net, caf::infinite, attach_atom::value, container_attach(c->info.spec))
        .then(
            [self, id, req, done](net_attachment& a) mutable {
              auto* c = find_by_id(self->state, id);
              if (!c) {
                detach(self, a.owner);
                return done(no_container(id));
              }
              c->net_attached = true;
              // Recorded: a crash from here on detaches it at the next restart or removal.
              persist(self, *c, "restarting");
              use_attachment(req, a);
              recreate_spawn(self, id, req, done);
            },
            [self, id, done](caf::error& err) { recreate_failed(self, id, err, done); });
  });
}

/// A user's start or init of a stopped container: the policy counts its restarts afresh
/// (as podman does) and may restart it again.
void user_starts(container& c) {
  c.stopped_by_user = false;
  if (c.info.state == container_state::stopped) {
    c.info.restart_count = 0;
    c.backoff_ms = 0;
  }
}

/// Why a container cannot be started now, if it cannot.
caf::error cannot_start(const container& c) {
  if (c.info.state == container_state::running)
    return make_error(errc::failed_precondition,
                      "container " + c.info.spec.name + " is already running");
  if (c.removing)
    return make_error(errc::failed_precondition,
                      "container " + c.info.spec.name + " is being removed");
  if (c.recreating || !c.starting.empty())
    return make_error(errc::failed_precondition,
                      "container " + c.info.spec.name + " is being started");
  return {};
}

caf::error start(self_ptr self, const std::string& text, bool wait,
                 caf::typed_response_promise<container_info> rp) {
  auto& st = self->state;
  auto* c = find(st, text);
  if (!c)
    return no_container(text);
  if (auto err = cannot_start(*c))
    return err;
  user_starts(*c);
  info_cb started;
  std::optional<caf::typed_response_promise<container_info>> runner;
  if (wait)
    runner = rp;
  else
    started = [rp](caf::expected<container_info> r) mutable {
      if (r)
        rp.deliver(std::move(*r));
      else
        rp.deliver(std::move(r.error()));
    };
  if (c->info.state != container_state::stopped)
    return start_created(self, *c, started, runner);
  // A stopped one runs again: the same id, rootfs and bundle, a new process.
  auto id = c->info.id;
  recreate(self, *c, [self, id, started, runner, rp](caf::error err) mutable {
    auto* c = find_by_id(self->state, id);
    if (!err && !c)
      err = no_container(id);
    if (!err)
      err = start_created(self, *c, started, runner);
    if (err)
      rp.deliver(err);
  });
  return {};
}

// -- one-call run ---------------------------------------------------------------------

/// Between the observe actor and a run's output sink (the gateway): batches go on tagged
/// with the caller's watch id, the caller's credit (`demand`) and end (`unsub`) go back
/// to the observe actor under its own subscription id. The batches' sender is this relay,
/// so the caller knows where its credit goes.
caf::behavior output_relay(caf::event_based_actor* self, output_sink_actor sink, uint64_t watch) {
  struct relay_state {
    observe_actor observe;
    uint64_t id = 0;
    bool gone = false; // the caller ended the stream before the subscription was known
  };
  auto st = std::make_shared<relay_state>();
  auto unsubscribe = [self, st] {
    if (st->observe)
      self->send(st->observe, unsub_atom::value, st->id);
    self->quit();
  };
  return {
      [st, unsubscribe](observe_actor& observe, uint64_t id) {
        st->observe = std::move(observe);
        st->id = id;
        if (st->gone)
          unsubscribe();
      },
      [self, st, sink, watch](output_batch& b) {
        if (!st->observe) { // before the subscribe's answer: the batch says who and which
          st->observe = caf::actor_cast<observe_actor>(self->current_sender());
          st->id = b.subscription;
        }
        bool end = b.end;
        b.subscription = watch;
        self->send(sink, std::move(b));
        if (end)
          self->quit();
      },
      [self, st](demand_atom, uint64_t, uint32_t n) {
        if (st->observe)
          self->send(st->observe, demand_atom::value, st->id, n);
      },
      [st, unsubscribe](unsub_atom, uint64_t) {
        st->gone = true;
        if (st->observe)
          unsubscribe();
      },
  };
}

/// Looks the observe actor up (the config's, else the registry's).
void with_observe(self_ptr self, std::function<void(caf::expected<observe_actor>)> k) {
  with_service(self, self->state.config.observe, service_name::observe, "output is",
               std::move(k));
}

/// One `cyto run` in flight: image, create, output, start, answered through `rp`.
struct run_job {
  container_spec spec;
  run_options opts;
  output_sink_actor output;
  image_progress_sink_actor progress;
  caf::typed_response_promise<container_info> rp;
};
using run_ptr = std::shared_ptr<run_job>;

/// A run that failed after its create: the container goes, then the error is the answer.
void fail_run(self_ptr self, run_ptr job, const std::string& name, caf::error err) {
  remove_now(self, name, [job, err](caf::error) mutable { job->rp.deliver(err); });
}

void run_start(self_ptr self, run_ptr job, const std::string& name) {
  if (auto err = start(self, name, job->opts.wait, job->rp))
    fail_run(self, job, name, err); // nothing ran: a failed run leaves nothing
}

/// Created: follows its output from the first line (when asked), then starts it.
void run_created(self_ptr self, run_ptr job, const container_info& info) {
  auto name = info.spec.name;
  if (job->opts.output_watch == 0 || !job->output)
    return run_start(self, job, name);
  auto relay = self->spawn(output_relay, job->output, job->opts.output_watch);
  auto cell = info.cell;
  auto exe = info.executable;
  with_observe(self, [self, job, name, relay, cell, exe](caf::expected<observe_actor> obs) {
    if (!obs) {
      caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
      return fail_run(self, job, name, obs.error());
    }
    self->request(*obs, caf::infinite, subscribe_atom::value, output_atom::value, cell, exe,
                  uint8_t{out_both}, true, true, output_filter{},
                  caf::actor_cast<output_sink_actor>(relay))
        .then(
            [self, job, name, relay, obs](uint64_t id) {
              caf::anon_send(relay, *obs, id);
              run_start(self, job, name);
            },
            [self, job, name, relay](caf::error& err) {
              caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
              fail_run(self, job, name, err);
            });
  });
}

void run_create(self_ptr self, run_ptr job, std::optional<image_info> image) {
  create(
      self, job->spec,
      [self, job](caf::expected<container_info> r) {
        if (r)
          run_created(self, job, *r);
        else
          job->rp.deliver(std::move(r.error()));
      },
      std::move(image));
}

/// The image as the pull policy wants it, then the rest of the run.
void run_image(self_ptr self, run_ptr job) {
  auto& st = self->state;
  auto policy = static_cast<pull_policy>(job->opts.pull);
  auto image = job->spec.image;
  auto pull = [self, job, image] {
    self->request(self->state.config.images, caf::infinite, pull_atom::value, image,
                  std::string{}, job->opts.progress_watch, job->progress)
        .then([self, job](image_info& img) { run_create(self, job, img); },
              [job](caf::error& err) { job->rp.deliver(err); });
  };
  if (job->opts.pull > static_cast<uint8_t>(pull_policy::never)) {
    job->rp.deliver(make_error(errc::invalid_argument, "pull policy " +
                                                           std::to_string(job->opts.pull) +
                                                           " is not missing, always or never"));
    return;
  }
  if (image.empty())
    return run_create(self, job, {}); // create says what is wrong
  if (policy == pull_policy::always)
    return pull();
  self->request(st.config.images, caf::infinite, get_atom::value, image)
      .then([self, job](image_info& img) { run_create(self, job, img); },
            [self, job, image, policy, pull](caf::error& err) {
              if (code_of(err) != errc::not_found)
                job->rp.deliver(err);
              else if (policy == pull_policy::never)
                job->rp.deliver(make_error(errc::not_found,
                                           "image " + image +
                                               " is not in the store and the pull policy is "
                                               "never (pull it first, or run with --pull "
                                               "missing)"));
              else
                pull();
            });
}

// -- restart policy -------------------------------------------------------------------

constexpr uint32_t backoff_first_ms = 100;
constexpr uint32_t backoff_max_ms = 5000;
/// A run at least this long starts the backoff afresh.
constexpr int64_t settled_nanos = int64_t{10} * 1000000000;

/// Whether the container's policy starts it again now that its process has exited.
bool should_restart(const container& c) {
  auto& i = c.info;
  auto& r = i.spec.restart;
  if (!c.start_requested || c.stopped_by_user || c.removing || c.recreating ||
      i.spec.auto_remove || i.state != container_state::stopped)
    return false;
  if (r.mode == "always" || r.mode == "unless-stopped")
    return true;
  if (r.mode == "on-failure")
    return i.exit_code != 0 && (r.max_retries == 0 || i.restart_count < r.max_retries);
  return false;
}

void schedule_restart(self_ptr self, container& c) {
  auto ran = c.info.finished_unix_nanos - c.info.started_unix_nanos;
  if (c.info.started_unix_nanos > 0 && ran >= settled_nanos)
    c.backoff_ms = 0;
  c.backoff_ms = c.backoff_ms == 0 ? backoff_first_ms : std::min(backoff_max_ms, c.backoff_ms * 2);
  self->state.log->info("container {} exited ({}): restart policy {} starts it again in {} ms",
                        c.info.spec.name, c.info.exit_code, c.info.spec.restart.mode,
                        c.backoff_ms);
  self->delayed_send(self, std::chrono::milliseconds{c.backoff_ms}, start_atom::value, c.info.id,
                     c.run);
}

/// The backoff is over: the policy starts the container again (if it still should).
void policy_restart(self_ptr self, const std::string& id, uint64_t run) {
  auto* c = find_by_id(self->state, id);
  if (!c || c->run != run || !should_restart(*c))
    return;
  ++c->info.restart_count;
  auto name = c->info.spec.name;
  recreate(self, *c, [self, id, name](caf::error err) {
    auto* c = find_by_id(self->state, id);
    if (!err && !c)
      err = no_container(id);
    if (!err)
      err = start_created(self, *c, {}, std::nullopt);
    if (err)
      self->state.log->warn("restart of container {}: {}", name, render(err));
  });
}

/// A user stopped (or killed) it: the restart policy leaves it stopped, also a restart
/// that waits for its backoff.
void stopped_by_user(self_ptr self, container& c) {
  c.stopped_by_user = true;
  if (c.info.state == container_state::stopped && !c.recreating)
    persist(self, c, "stopped");
}

// -- stop -------------------------------------------------------------------------------

/// Sends `sig` to the container's process, or (not started yet) aborts its shim.
bool signal_container(container& c, int sig) {
  // Not started: SIGTERM makes the shim delete the container and write exit.json.
  if (c.info.state == container_state::created)
    return signal_checked(static_cast<pid_t>(c.shim_pid), c.shim_start_time, SIGTERM);
  if (c.pidfd >= 0)
    return pidfd_signal(c.pidfd, sig);
  // Not adopted (its start time did not match): the shim forwards the usual signals.
  return signal_checked(static_cast<pid_t>(c.shim_pid), c.shim_start_time, sig);
}

/// Stops a container; `k` runs once it has stopped (a container being made created
/// again is stopped once it is).
void stop_container(self_ptr self, container& c, int sig, uint32_t timeout_ms,
                    std::function<void()> k) {
  if (c.info.state == container_state::stopped && !c.recreating)
    return k();
  c.on_exit.push_back(std::move(k));
  if (c.recreating)
    return; // recreate_spawn sees stopped_by_user or removing and aborts it
  signal_container(c, sig);
  if (timeout_ms > 0)
    self->delayed_send(self, std::chrono::milliseconds{timeout_ms}, tick_atom::value, c.info.id,
                       c.run);
}

// -- pods -----------------------------------------------------------------------------

/// Stops every container of a pod (then `k`).
void stop_pod_containers(self_ptr self, const std::string& pod, int sig, uint32_t timeout_ms,
                         std::function<void()> k) {
  auto& st = self->state;
  auto left = std::make_shared<size_t>(1);
  auto one_done = [left, k] {
    if (--*left == 0)
      k();
  };
  for (auto& [n, c] : st.containers) {
    if (c.info.spec.pod != pod)
      continue;
    stopped_by_user(self, c);
    if (c.info.state != container_state::stopped || c.recreating) {
      ++*left;
      stop_container(self, c, sig, timeout_ms, one_done);
    }
  }
  one_done();
}

void stop_pause(self_ptr self, const std::string& pod, uint32_t timeout_ms,
                std::function<void()> k) {
  auto& st = self->state;
  auto p = st.pods.find(pod);
  if (p == st.pods.end() || !p->second.info.running)
    return k();
  // Detach while the pause process still holds the netns: the plugins' DEL needs it.
  if (p->second.net_attached) {
    p->second.net_attached = false;
    persist(self, p->second, "ready");
    return detach(self, "pod/" + pod, [=] { stop_pause(self, pod, timeout_ms, k); });
  }
  self->request(st.config.cells, caf::infinite, stop_atom::value, p->second.info.cell,
                std::string{pause_exe}, int32_t{SIGTERM}, timeout_ms)
      .then(
          [self, pod, k](exit_status&) {
            auto& st = self->state;
            if (auto p = st.pods.find(pod); p != st.pods.end()) {
              p->second.info.running = false;
              p->second.info.pause_pid = 0;
              persist(self, p->second, "ready");
            }
            k();
          },
          [self, pod, k](caf::error& err) {
            self->state.log->warn("stop pause process of pod {}: {}", pod, render(err));
            k();
          });
}

void create_pod(self_ptr self, pod_spec spec, caf::typed_response_promise<pod_info> rp) {
  auto& st = self->state;
  containers_state::pod p;
  p.info.spec = spec;
  p.info.cell = std::string{pods_cell} + "/" + spec.name;
  p.info.created_unix_nanos = now_nanos();
  persist(self, p, "creating");
  st.pods[spec.name] = p;
  auto fail = [self, spec, rp](caf::error err) mutable {
    auto& st = self->state;
    auto cell = std::string{pods_cell} + "/" + spec.name;
    if (st.pods[spec.name].net_attached)
      detach(self, "pod/" + spec.name);
    st.pods.erase(spec.name);
    self->request(st.config.cells, caf::infinite, free_atom::value, cell, true, true)
        .then(
            [self, spec, rp, err]() mutable {
              self->state.db->erase(kind_pod, spec.name);
              rp.deliver(err);
            },
            [self, spec, rp, err](caf::error&) mutable {
              self->state.db->erase(kind_pod, spec.name);
              rp.deliver(err);
            });
  };
  cell_spec cs;
  cs.name = p.info.cell;
  cs.limits = spec.limits;
  cs.isolate_process = true;
  cs.isolate_network = true;
  allocate_cell(
      self, cs,
      [self, spec, rp, fail](cell_info&) mutable {
        auto& st = self->state;
        executable_spec exe;
        exe.cell = std::string{pods_cell} + "/" + spec.name;
        exe.name = pause_exe;
        exe.argv = {st.config.runtime_path, "idle"};
        exe.description = "pause process of pod " + spec.name;
        self->request(st.config.cells, caf::infinite, start_atom::value, exe)
            .then(
                [self, spec, rp, fail](executable_info& info) mutable {
                  auto& st = self->state;
                  auto& p = st.pods[spec.name];
                  p.info.pause_pid = info.pid;
                  p.info.running = true;
                  auto finish = [self, spec, rp]() mutable {
                    auto& p = self->state.pods[spec.name];
                    persist(self, p, "ready");
                    self->state.log->info("created pod {} pause pid={}", spec.name,
                                          p.info.pause_pid);
                    rp.deliver(pod_view(self->state, p));
                  };
                  if (!names_network(spec.network))
                    return finish();
                  with_network(self, [self, spec, info, fail,
                                      finish](caf::expected<network_actor> net) mutable {
                    if (!net)
                      return fail(net.error());
                    attach_request req;
                    req.owner = "pod/" + spec.name;
                    req.network = spec.network;
                    req.ports = spec.ports;
                    req.netns_path = "/proc/" + std::to_string(info.pid) + "/ns/net";
                    req.ifname = "eth0";
                    self->request(*net, caf::infinite, attach_atom::value, req)
                        .then(
                            [self, spec, finish](net_attachment& a) mutable {
                              auto& p = self->state.pods[spec.name];
                              p.net_attached = true;
                              p.info.ips = a.ips;
                              finish();
                            },
                            [fail](caf::error& err) mutable { fail(err); });
                  });
                },
                [fail](caf::error& err) mutable { fail(err); });
      },
      [fail](caf::error& err) mutable { fail(err); });
}

/// The last step of removing a pod: its cell, record and entry.
void remove_pod_cell(self_ptr self, const std::string& name,
                     caf::typed_response_promise<void> rp) {
  auto finish = [self, name, rp]() mutable {
    auto& st = self->state;
    st.pods.erase(name);
    st.db->erase(kind_pod, name);
    st.log->info("removed pod {}", name);
    deliver_ok(rp);
  };
  self->request(self->state.config.cells, caf::infinite, free_atom::value,
                std::string{pods_cell} + "/" + name, true, true)
      .then([finish]() mutable { finish(); },
            [self, name, finish](caf::error& err) mutable {
              self->state.log->error("free the cell of pod {}: {}", name, render(err));
              finish();
            });
}

void remove_pod(self_ptr self, const std::string& name, caf::typed_response_promise<void> rp) {
  stop_pod_containers(self, name, SIGKILL, 0, [self, name, rp]() mutable {
    auto& st = self->state;
    std::vector<std::string> members;
    for (auto& [n, c] : st.containers)
      if (c.info.spec.pod == name && !c.removing)
        members.push_back(n);
    auto left = std::make_shared<size_t>(members.size() + 1);
    auto all_done = [self, name, rp, left]() mutable {
      if (--*left > 0)
        return;
      stop_pause(self, name, 2000, [self, name, rp]() mutable {
        auto& st = self->state;
        if (auto p = st.pods.find(name); p != st.pods.end() && p->second.net_attached) {
          // The pause process was gone already (e.g. it died while cytod was down).
          p->second.net_attached = false;
          return detach(self, "pod/" + name, [self, name, rp]() mutable {
            remove_pod_cell(self, name, rp);
          });
        }
        remove_pod_cell(self, name, rp);
      });
    };
    for (auto& m : members)
      remove_now(self, m, [all_done](caf::error) mutable { all_done(); });
    all_done();
  });
}

// -- restart ----------------------------------------------------------------------------

void reconcile(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  auto pods = st.db->load_all<pod_row>(kind_pod, dropped);
  if (pods) {
    for (auto& [r, row] : *pods) {
      auto name = row.info.spec.name;
      if (r.state != "ready") {
        st.log->warn("cleaning up half-made pod {}", name);
        self->request(st.config.cells, caf::infinite, free_atom::value, row.info.cell, true, true)
            .then([] {}, [](caf::error&) {});
        if (row.net_attached || names_network(row.info.spec.network))
          detach(self, "pod/" + name);
        st.db->erase(kind_pod, name);
        continue;
      }
      auto& p = st.pods[name];
      p.info = row.info;
      p.net_attached = row.net_attached;
      self->request(st.config.cells, caf::infinite, get_atom::value, row.info.cell)
          .then(
              [self, name](cell_info& ci) {
                auto& p = self->state.pods[name];
                bool alive = false;
                for (auto& e : ci.executables)
                  if (e.spec.name == pause_exe && !e.status.exited) {
                    alive = true;
                    p.info.pause_pid = e.pid;
                  }
                p.info.running = alive;
                if (!alive)
                  p.info.pause_pid = 0;
              },
              [self, name](caf::error&) {
                auto& p = self->state.pods[name];
                p.info.running = false;
                p.info.pause_pid = 0;
              });
    }
  }
  auto rows = st.db->load_all<container_row>(kind_container, dropped);
  for (auto& key : dropped)
    st.log->error("state.db: unreadable record {}; quarantined (cyto health)", key);
  if (!rows) {
    st.log->error("read containers from state.db: {}", render(rows.error()));
    return;
  }
  for (auto& [r, row] : *rows) {
    auto& info = row.info;
    if (r.state == "creating" || r.state == "removing") {
      st.log->warn("cleaning up half-{} container {}", r.state == "creating" ? "made" : "removed",
                   info.spec.name);
      dismantle(self, info.id, info.spec.name, info.cell, true, [](caf::error) {});
      continue;
    }
    auto& c = st.containers[info.spec.name];
    c.info = info;
    c.start_time = row.start_time;
    c.shim_pid = row.shim_pid;
    c.shim_start_time = row.shim_start_time;
    c.net_attached = row.net_attached;
    c.stopped_by_user = row.stopped_by_user;
    if (info.state == container_state::stopped) {
      if (c.net_attached) {
        // Attached again for a run that cytod was killed before it made: released.
        c.net_attached = false;
        persist(self, c, r.state.c_str());
        detach(self, "container/" + info.spec.name);
      }
      if (r.state == "restarting") {
        // The policy was to start it again when cytod was killed: it still is.
        c.start_requested = true;
        schedule_restart(self, c);
      }
      continue;
    }
    c.start_requested = info.state == container_state::running;
    if (info.state == container_state::created) {
      // Started (the shim wrote started.json) but cytod was killed before it recorded so:
      // an abort (what a created container gets) would not end it.
      auto path = bundle_path(st, info.id) + "/started.json";
      auto started = json::parse(read_file(path), nullptr, false);
      struct stat sst{};
      if (started.is_object() && started.contains("pid") && ::stat(path.c_str(), &sst) == 0) {
        c.info.state = container_state::running;
        c.start_requested = true;
        c.info.started_unix_nanos = int64_t{sst.st_mtim.tv_sec} * 1000000000 + sst.st_mtim.tv_nsec;
        persist(self, c, "running");
        st.log->info("container {} was started before cytod stopped; recorded as running",
                     info.spec.name);
      }
    }
    int fd = pidfd_open(static_cast<pid_t>(info.pid));
    if (fd >= 0 && process_start_time(static_cast<pid_t>(info.pid)) == row.start_time) {
      c.pidfd = fd;
      st.log->info("re-adopted container {} pid={}", info.spec.name, info.pid);
    } else if (fd >= 0) {
      ::close(fd);
    }
    // The cells actor re-adopted the shim; it answers at once if the shim is gone
    // (then exit.json says how the container ended).
    watch_shim(self, c);
  }
  // Claims of containers whose removal (or failed create) a crash cut short after the
  // record went. Sent before any create can claim: the volumes actor sees them in order.
  if (st.config.volumes) {
    std::vector<std::string> live;
    for (auto& [n, c] : st.containers)
      live.push_back(c.info.id);
    self->request(st.config.volumes, caf::infinite, trim_atom::value, std::move(live))
        .then([] {},
              [self](caf::error& err) {
                self->state.log->error("trim volume claims: {}", render(err));
              });
  }
}

} // namespace

std::string containers_config::validate() const {
  if (state_dir.empty() || state_dir.front() != '/')
    return "state_dir must be an absolute path";
  if (runtime_path.empty() || runtime_path.front() != '/')
    return "containers.runtime_path must be an absolute path";
  if (!cells || !images || !registry)
    return "the cells, images and registry actors are needed";
  return {};
}

containers_state::~containers_state() {
  for (auto& [n, c] : containers)
    if (c.pidfd >= 0)
      ::close(c.pidfd);
}

containers_private::behavior_type containers(self_ptr self, containers_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("containers");
  std::error_code ec;
  fs::create_directories(st.config.state_dir + "/bundles", ec);
  fs::create_directories(runtime_root(st), ec);
  auto db = store::state_db::open(st.config.state_dir + "/state.db");
  if (!db) {
    st.log->error("containers unavailable: {}", render(db.error()));
    // Without state.db nothing could be recorded before it exists: the actor quits and
    // the gateway answers cyto.unavailable for the service.
    self->quit(db.error());
    return {containers_private::behavior_type::unsafe_init{}, caf::behavior{}};
  }
  st.db = std::move(*db);
  st.db->declare(kind_container, container_row_version, {{1, container_v1_to_v2}, {2, container_v2_to_v3}});
  if (!st.config.demo_image.empty()) {
    auto path = st.config.demo_image;
    self->request(st.config.images, caf::infinite, get_atom::value, std::string{"demo"})
        .await([](image_info&) {},
               [self, path](caf::error&) {
                 if (::access((path + "/index.json").c_str(), R_OK) != 0) {
                   self->state.log->warn("demo image {} is missing; not imported", path);
                   return;
                 }
                 self->request(self->state.config.images, caf::infinite, import_atom::value, path,
                               std::string{"demo"})
                     .await(
                         [self](std::vector<image_info>& imgs) {
                           self->state.log->info("imported the demo image as {}",
                                                 imgs.empty() ? "?" : imgs.front().name);
                         },
                         [self, path](caf::error& err) {
                           self->state.log->error("import demo image {}: {}", path, render(err));
                         });
               });
  }
  reconcile(self);
  st.log->info("containers ready: {} containers, {} pods, runtime {}", st.containers.size(),
               st.pods.size(), st.config.runtime_path);
  return {
      [self](create_atom, container_spec& spec) -> caf::result<container_info> {
        auto rp = self->make_response_promise<container_info>();
        create(self, std::move(spec), [rp](caf::expected<container_info> r) mutable {
          if (r)
            rp.deliver(std::move(*r));
          else
            rp.deliver(std::move(r.error()));
        });
        return rp;
      },
      [self](start_atom, std::string& name, bool wait) -> caf::result<container_info> {
        // Once a promise exists it owns the answer: errors go through it too.
        auto rp = self->make_response_promise<container_info>();
        if (auto err = start(self, name, wait, rp))
          rp.deliver(err);
        return rp;
      },
      [self](init_atom, std::string& name) -> caf::result<container_info> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        if (auto err = cannot_start(*c))
          return err;
        if (c->info.state == container_state::created)
          return c->info;
        user_starts(*c);
        auto rp = self->make_response_promise<container_info>();
        auto id = c->info.id;
        recreate(self, *c, [self, id, rp](caf::error err) mutable {
          auto* c = find_by_id(self->state, id);
          if (!err && !c)
            err = no_container(id);
          if (err)
            rp.deliver(err);
          else
            rp.deliver(c->info);
        });
        return rp;
      },
      [self](run_atom, container_spec& spec, bool wait) -> caf::result<container_info> {
        auto job = std::make_shared<run_job>();
        job->spec = std::move(spec);
        job->opts.wait = wait;
        job->rp = self->make_response_promise<container_info>();
        run_create(self, job, {});
        return job->rp;
      },
      [self](run_atom, container_spec& spec, run_options& opts, output_sink_actor& output,
             image_progress_sink_actor& progress) -> caf::result<container_info> {
        auto job = std::make_shared<run_job>();
        job->spec = std::move(spec);
        job->opts = opts;
        job->output = std::move(output);
        job->progress = std::move(progress);
        job->rp = self->make_response_promise<container_info>();
        run_image(self, job);
        return job->rp;
      },
      [self](stop_atom, std::string& name, int32_t sig,
             uint32_t timeout_ms) -> caf::result<container_info> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        if (sig == 0)
          sig = SIGTERM;
        if (sig < 1 || sig > 64)
          return make_error(errc::invalid_argument,
                            "signal " + std::to_string(sig) + " is not 1..64");
        stopped_by_user(self, *c);
        if (c->info.state == container_state::stopped && !c->recreating)
          return c->info;
        auto rp = self->make_response_promise<container_info>();
        c->waiters.push_back(rp);
        stop_container(self, *c, sig, timeout_ms, [] {});
        return rp;
      },
      [self](kill_atom, std::string& name, int32_t sig) -> caf::result<void> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        if (sig == 0)
          sig = SIGKILL;
        if (sig < 1 || sig > 64)
          return make_error(errc::invalid_argument,
                            "signal " + std::to_string(sig) + " is not 1..64");
        if (c->info.state != container_state::running)
          return make_error(errc::failed_precondition,
                            "container " + c->info.spec.name + " is not running");
        stopped_by_user(self, *c);
        if (!signal_container(*c, sig))
          return make_error(errc::unavailable,
                            "signal container " + c->info.spec.name + ": " + std::strerror(errno));
        return caf::unit;
      },
      [self](delete_atom, std::string& text, bool force) -> caf::result<void> {
        auto& st = self->state;
        auto* c = find(st, text);
        if (!c)
          return no_container(text);
        if (c->removing)
          return make_error(errc::failed_precondition,
                            "container " + c->info.spec.name + " is being removed");
        auto name = c->info.spec.name;
        bool live = c->info.state != container_state::stopped || c->recreating;
        if (live && !force)
          return make_error(errc::failed_precondition,
                            "container " + name + " is running; stop it first or use force");
        auto rp = self->make_response_promise<void>();
        auto then_remove = [self, name, rp]() mutable {
          remove_now(self, name, [rp](caf::error err) mutable {
            if (err)
              rp.deliver(err);
            else
              deliver_ok(rp);
          });
        };
        if (live) {
          c->removing = true;
          stop_container(self, *c, SIGKILL, 0, then_remove);
          return rp;
        }
        then_remove();
        return rp;
      },
      [self](list_atom) {
        std::vector<container_info> out;
        for (auto& [n, c] : self->state.containers)
          out.push_back(c.info);
        return out;
      },
      [self](get_atom, std::string& name) -> caf::result<container_info> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        return c->info;
      },
      [self](exec_atom, exec_spec& spec) -> caf::result<exec_info> {
        auto& st = self->state;
        auto* c = find(st, spec.container);
        if (!c)
          return no_container(spec.container);
        if (c->info.state != container_state::running)
          return make_error(errc::failed_precondition,
                            "container " + c->info.spec.name + " is not running");
        if (spec.argv.empty() || spec.argv.front().empty())
          return make_error(errc::invalid_argument, "exec: no command given");
        executable_spec exe;
        exe.cell = c->info.cell;
        exe.name = "exec-" + std::to_string(c->next_exec++);
        // The id first: a repeated -e must not swallow it.
        exe.argv = {st.config.runtime_path, "--root", runtime_root(st), "exec", c->info.id};
        for (auto& e : spec.env) {
          if (e.find('=') == std::string::npos || e.front() == '=')
            return make_error(errc::invalid_argument,
                              "environment entry '" + e + "' is not KEY=VALUE");
          exe.argv.insert(exe.argv.end(), {"-e", e});
        }
        if (!spec.cwd.empty())
          exe.argv.insert(exe.argv.end(), {"--cwd", spec.cwd});
        if (!spec.user.empty())
          exe.argv.insert(exe.argv.end(), {"--user", spec.user});
        if (spec.tty)
          exe.argv.push_back("--tty");
        if (spec.tty || spec.interactive)
          exe.argv.insert(exe.argv.end(),
                          {"--attach-socket", c->info.bundle + "/" + exe.name + ".sock"});
        exe.argv.push_back("--");
        exe.argv.insert(exe.argv.end(), spec.argv.begin(), spec.argv.end());
        exe.description = "exec in container " + c->info.spec.name;
        auto rp = self->make_response_promise<exec_info>();
        self->request(st.config.cells, caf::infinite, start_atom::value, exe)
            .then(
                [rp](executable_info& info) mutable {
                  rp.deliver(exec_info{info.spec.cell, info.spec.name, info.pid});
                },
                [rp](caf::error& err) mutable { rp.deliver(err); });
        return rp;
      },
      [self](wait_atom, std::string& name) -> caf::result<container_info> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        if (c->info.state == container_state::stopped)
          return c->info;
        auto rp = self->make_response_promise<container_info>();
        c->waiters.push_back(rp);
        return rp;
      },
      [self](create_atom, pod_spec& spec) -> caf::result<pod_info> {
        auto& st = self->state;
        if (auto err = check_name("pod", spec.name))
          return err;
        if (st.pods.count(spec.name))
          return make_error(errc::already_exists, "pod " + spec.name + " exists");
        resolve_network(st.config, spec.network);
        if (!spec.ports.empty() && !names_network(spec.network))
          return make_error(errc::invalid_argument,
                            "port mappings need a network (--network); a pod without one "
                            "has only lo");
        auto rp = self->make_response_promise<pod_info>();
        create_pod(self, std::move(spec), rp);
        return rp;
      },
      [self](stop_atom, pod_atom, std::string& name, uint32_t timeout_ms) -> caf::result<pod_info> {
        auto& st = self->state;
        if (!st.pods.count(name))
          return make_error(errc::not_found, "pod " + name + ": no such pod");
        auto rp = self->make_response_promise<pod_info>();
        stop_pod_containers(
            self, name, SIGTERM, timeout_ms, [self, name, timeout_ms, rp]() mutable {
              stop_pause(self, name, timeout_ms, [self, name, rp]() mutable {
                auto& st = self->state;
                if (auto p = st.pods.find(name); p != st.pods.end())
                  rp.deliver(pod_view(st, p->second));
                else
                  rp.deliver(make_error(errc::not_found, "pod " + name + " was removed"));
              });
            });
        return rp;
      },
      [self](delete_atom, pod_atom, std::string& name, bool force) -> caf::result<void> {
        auto& st = self->state;
        if (!st.pods.count(name))
          return make_error(errc::not_found, "pod " + name + ": no such pod");
        if (!force)
          for (auto& [n, c] : st.containers)
            if (c.info.spec.pod == name && c.info.state != container_state::stopped)
              return make_error(errc::failed_precondition,
                                "pod " + name + " has running containers (" + n +
                                    "); stop the pod first or use force");
        auto rp = self->make_response_promise<void>();
        remove_pod(self, name, rp);
        return rp;
      },
      [self](list_atom, pod_atom) {
        std::vector<pod_info> out;
        for (auto& [n, p] : self->state.pods)
          out.push_back(pod_view(self->state, p));
        return out;
      },
      [self](attach_atom, std::string& name, std::string& exec) -> caf::result<std::string> {
        auto* c = find(self->state, name);
        if (!c)
          return no_container(name);
        if (!exec.empty()) {
          bool ok = exec.size() > 5 && exec.rfind("exec-", 0) == 0 &&
                    exec.find_first_not_of("0123456789", 5) == std::string::npos;
          if (!ok)
            return make_error(errc::invalid_argument,
                              "attach: '" + exec + "' is not an exec of the container");
          if (c->info.state != container_state::running)
            return make_error(errc::failed_precondition,
                              "container " + c->info.spec.name + " is not running");
          return c->info.bundle + "/" + exec + ".sock";
        }
        if (c->info.state == container_state::stopped || c->removing)
          return make_error(errc::failed_precondition,
                            "container " + c->info.spec.name +
                                " has stopped; only a created or running container can be "
                                "attached");
        if (!c->info.spec.tty && !c->info.spec.interactive)
          return make_error(errc::failed_precondition,
                            "container " + c->info.spec.name +
                                " was made without -i or -t: it has no stdin to attach to "
                                "(cyto logs -f shows its output)");
        return c->info.bundle + "/attach.sock";
      },
      [self](copy_atom, get_atom, std::string& name, std::string& path) {
        return copy_of(self, name, std::move(path), {});
      },
      [self](copy_atom, put_atom, std::string& name, std::string& path, std::string& source) {
        return copy_of(self, name, std::move(path), std::move(source));
      },
      bus::internal(self, [self](start_atom, std::string& id,
                                 uint64_t run) { policy_restart(self, id, run); }),
      bus::internal(self, [self](tick_atom, std::string& id, uint64_t run) {
        auto* c = find_by_id(self->state, id);
        if (c && c->run == run && c->info.state != container_state::stopped) {
          self->state.log->info("container {} did not stop in time: SIGKILL", c->info.spec.name);
          signal_container(*c, SIGKILL);
        }
      }),
  };
}

} // namespace cyto::containers
