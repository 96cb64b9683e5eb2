#include "actors/containers/runtime.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "actors/containers/container_init.hpp"
#include "actors/containers/fd_passing.hpp"
#include "actors/containers/hooks.hpp"
#include "actors/containers/oci_seccomp.hpp"

namespace cyto::containers {

namespace fs = std::filesystem;
using json = nlohmann::json;
using detail::sync_msg;

namespace {

constexpr const char* fifo_name = "exec.fifo";

/// Owns a descriptor.
struct unique_fd {
  int fd = -1;
  unique_fd() = default;
  explicit unique_fd(int f) : fd(f) {}
  unique_fd(unique_fd&& o) noexcept : fd(o.fd) {
    o.fd = -1;
  }
  unique_fd& operator=(unique_fd&& o) noexcept {
    reset();
    fd = o.fd;
    o.fd = -1;
    return *this;
  }
  ~unique_fd() {
    reset();
  }
  void reset() {
    if (fd >= 0)
      ::close(fd);
    fd = -1;
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

status sys_error(const std::string& what) {
  return from_errno(errno, what);
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

/// Process start time (field 22 of /proc/PID/stat) and whether it is a zombie.
std::pair<uint64_t, bool> start_time_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text;
  std::getline(in, text);
  auto close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size())
    return {0, false};
  std::istringstream ss{text.substr(close + 2)};
  std::string field, state;
  ss >> state;
  for (int i = 4; i < 22 && ss >> field; ++i)
    ;
  uint64_t start = 0;
  ss >> start;
  return {start, state == "Z" || state == "X"};
}

std::string now_rfc3339() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  ::gmtime_r(&ts.tv_sec, &t);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &t);
  char out[96];
  std::snprintf(out, sizeof(out), "%s.%09ldZ", buf, ts.tv_nsec);
  return out;
}

json hooks_json(const std::vector<oci::hook>& hooks) {
  json a = json::array();
  for (auto& h : hooks) {
    json o{{"path", h.path}, {"args", h.args}, {"env", h.env}};
    if (h.timeout)
      o["timeout"] = *h.timeout;
    a.push_back(std::move(o));
  }
  return a;
}

std::vector<oci::hook> hooks_from(const json& a) {
  std::vector<oci::hook> out;
  if (!a.is_array())
    return out;
  for (auto& o : a) {
    oci::hook h;
    h.path = o.value("path", "");
    h.args = o.value("args", std::vector<std::string>{});
    h.env = o.value("env", std::vector<std::string>{});
    if (o.contains("timeout"))
      h.timeout = o["timeout"].get<int>();
    out.push_back(std::move(h));
  }
  return out;
}

status write_atomic(const std::string& path, const std::string& text) {
  return write_file_atomic(path, text);
}

result<json> read_record(const std::string& dir) {
  std::ifstream in{dir + "/state.json"};
  if (!in)
    return from_errno(errno, "read " + dir + "/state.json");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    return status{"internal", "state " + dir + "/state.json: " + e.what()};
  }
}

void warn(const std::string& text) {
  std::fprintf(stderr, "cyto-runtime: warning: %s\n", text.c_str());
}

/// Waits until `pid` (not necessarily our child) has exited, at most `ms`.
bool wait_gone(pid_t pid, uint64_t start_time, int ms) {
  int fd = pidfd_open(pid);
  if (fd < 0)
    return true;
  auto [st, zombie] = start_time_of(pid);
  if (st != start_time || zombie) {
    ::close(fd);
    return true;
  }
  pollfd p{fd, POLLIN, 0};
  int rc = ::poll(&p, 1, ms);
  ::close(fd);
  return rc > 0;
}

volatile sig_atomic_t forward_pid = 0;

void forward_signal(int sig) {
  if (forward_pid > 0)
    ::kill(forward_pid, sig);
}

constexpr int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

/// Copies between our stdio and the pty master until the container exits.
void proxy_terminal(int master, int pidfd) {
  termios saved{};
  bool raw = ::isatty(0) && ::tcgetattr(0, &saved) == 0;
  if (raw) {
    termios t = saved;
    ::cfmakeraw(&t);
    ::tcsetattr(0, TCSANOW, &t);
  }
  char buf[4096];
  bool in_open = true;
  for (;;) {
    pollfd p[3] = {{master, POLLIN, 0}, {pidfd, POLLIN, 0}, {in_open ? 0 : -1, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0 && errno != EINTR)
      break;
    if (p[0].revents & (POLLIN | POLLHUP)) {
      auto n = ::read(master, buf, sizeof(buf));
      if (n > 0)
        (void)!::write(1, buf, static_cast<size_t>(n));
      else if (p[1].revents)
        break;
    }
    if (p[2].revents & (POLLIN | POLLHUP)) {
      auto n = ::read(0, buf, sizeof(buf));
      if (n > 0)
        (void)!::write(master, buf, static_cast<size_t>(n));
      else
        in_open = false;
    }
    if ((p[1].revents & POLLIN) && !(p[0].revents & POLLIN))
      break;
  }
  if (raw)
    ::tcsetattr(0, TCSANOW, &saved);
}

} // namespace

std::string container_state::to_json(bool pretty) const {
  json j{{"ociVersion", oci_version}, {"id", id},           {"pid", pid},
         {"status", status},          {"bundle", bundle},    {"created", created},
         {"owner", ""}};
  if (!annotations.empty())
    j["annotations"] = annotations;
  if (exit_code)
    j["exitCode"] = *exit_code;
  return pretty ? j.dump(2) : j.dump();
}

status write_file_atomic(const std::string& path, const std::string& text, bool durable) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return sys_error("create " + tmp);
  auto n = ::write(fd, text.data(), text.size());
  int err = errno;
  bool synced = !durable || ::fsync(fd) == 0;
  if (!synced)
    err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()) || !synced) {
    errno = n < 0 || !synced ? err : EIO;
    ::unlink(tmp.c_str());
    return sys_error((synced ? "write " : "fsync ") + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    return sys_error("rename " + tmp);
  }
  return {};
}

uint64_t process_start_time(pid_t pid) {
  return start_time_of(pid).first;
}

std::optional<int> parse_signal(const std::string& text) {
  if (text.empty())
    return std::nullopt;
  if (std::all_of(text.begin(), text.end(), ::isdigit)) {
    int n = std::stoi(text);
    return n > 0 && n < NSIG ? std::optional<int>{n} : std::nullopt;
  }
  auto name = text.rfind("SIG", 0) == 0 ? text.substr(3) : text;
  for (int s = 1; s < NSIG; ++s) {
    const char* abbrev = sigabbrev_np(s);
    if (abbrev && name == abbrev)
      return s;
  }
  return std::nullopt;
}

runtime::runtime(runtime_options options) : opts_(std::move(options)) {}

std::string runtime::dir(const std::string& id) const {
  return opts_.root + "/" + id;
}

status runtime::check_id(const std::string& id) {
  if (id.empty() || id.size() > 1024)
    return invalid("container id must be 1..1024 characters");
  if (!std::isalnum(static_cast<unsigned char>(id[0])))
    return invalid("container id \"" + id + "\" must start with a letter or digit");
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-'
        && c != '+')
      return invalid("container id \"" + id + "\" may hold only [A-Za-z0-9_.+-]");
  return {};
}

result<pid_t> runtime::create(const std::string& id, const create_options& options) {
  auto c = do_create(id, options, false);
  if (!c)
    return c.error();
  return c->pid;
}

result<runtime::created> runtime::do_create(const std::string& id, const create_options& options,
                                 bool run_mode) {
  if (auto s = check_id(id))
    return s;
  auto loaded = oci::load_bundle(options.bundle);
  if (!loaded)
    return loaded.error();
  const oci::config& cfg = *loaded;
  if (!cfg.process)
    return invalid("process: is required to create a container");
  std::unique_ptr<seccomp_filter> filter;
  if (cfg.linux.seccomp || opts_.default_seccomp) {
    auto f = compile_seccomp(cfg.linux.seccomp ? *cfg.linux.seccomp : default_seccomp_profile());
    if (!f)
      return f.error();
    filter = std::move(*f);
  }
  if (cfg.process->terminal && !run_mode && options.console_socket.empty()
      && options.console_fd < 0)
    return invalid("process.terminal needs --console-socket when the container is created");
  char bundle_real[PATH_MAX];
  if (!::realpath(options.bundle.c_str(), bundle_real))
    return sys_error("bundle " + options.bundle);

  // From here on everything made is undone on error.
  // Like runc, the state root is made with its parents (containerd's shim passes
  // /run/containerd/runc/<namespace> before anything made it).
  for (size_t i = 1; i <= opts_.root.size(); ++i)
    if (i == opts_.root.size() || opts_.root[i] == '/')
      if (::mkdir(opts_.root.substr(0, i).c_str(), 0711) != 0 && errno != EEXIST)
        return sys_error("mkdir " + opts_.root.substr(0, i));
  auto state_dir = dir(id);
  if (::mkdir(state_dir.c_str(), 0711) != 0) {
    if (errno == EEXIST)
      return status{"already_exists", "container " + id + " exists"};
    return sys_error("mkdir " + state_dir);
  }
  bool placed = false;
  pid_t pid = -1;
  auto undo = [&](status st) -> status {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (placed) {
      for (int i = 0; i < 100; ++i) {
        auto s = opts_.cgroups->release(id, cfg.linux.cgroups_path);
        if (!s || s.code() != "failed_precondition")
          break;
        ::usleep(10000);
      }
    }
    std::error_code ec;
    fs::remove_all(state_dir, ec);
    return st;
  };

  unique_fd console;
  if (cfg.process->terminal && !options.console_socket.empty()) {
    console = unique_fd{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (options.console_socket.size() >= sizeof(addr.sun_path))
      return undo(invalid("--console-socket path too long"));
    std::strcpy(addr.sun_path, options.console_socket.c_str());
    if (::connect(console.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
      return undo(sys_error("connect to the console socket " + options.console_socket));
  }
  if (cfg.process->terminal && options.console_socket.empty() && options.console_fd >= 0) {
    console = unique_fd{::fcntl(options.console_fd, F_DUPFD_CLOEXEC, 3)};
    if (console.fd < 0)
      return undo(sys_error("dup the console socket"));
  }
  unique_fd console_peer; // run with a terminal: we are the console socket's other end
  if (cfg.process->terminal && run_mode && options.console_socket.empty()
      && options.console_fd < 0) {
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
      return undo(sys_error("socketpair"));
    console = unique_fd{sp[0]};
    console_peer = unique_fd{sp[1]};
  }

  detail::init_context ctx;
  ctx.cfg = &cfg;
  ctx.seccomp = filter.get();
  ctx.id = id;
  ctx.bundle = bundle_real;
  ctx.console_fd = console.fd;
  ctx.runtime_hooks = !cfg.hooks.prestart.empty() || !cfg.hooks.create_runtime.empty();

  cgroup_placement placement;
  if (opts_.cgroups) {
    auto p = opts_.cgroups->place(id, cfg.linux);
    if (!p)
      return undo(p.error());
    placed = true;
    placement = std::move(*p);
    for (auto& f : placement.procs_files)
      ctx.cgroup_dirs.push_back(f.substr(0, f.rfind('/')));
  }
  unique_fd fifo;
  if (!run_mode) {
    auto path = state_dir + "/" + fifo_name;
    // The process opens it after dropping to process.user (before `created`), so any
    // user may write it; the state dir keeps everyone else away from it. chmod, as the
    // umask would clear the bits mkfifo is given.
    if (::mkfifo(path.c_str(), 0600) != 0 || ::chmod(path.c_str(), 0622) != 0)
      return undo(sys_error("mkfifo " + path));
    // In a new user namespace the process opens it as the container's root.
    if (auto* u = cfg.linux.find(CLONE_NEWUSER); u && u->path.empty()) {
      auto host_of = [](const std::vector<oci::id_mapping>& maps) -> int64_t {
        for (auto& m : maps)
          if (m.container_id == 0 && m.size > 0)
            return m.host_id;
        return -1;
      };
      auto uid = host_of(cfg.linux.uid_mappings), gid = host_of(cfg.linux.gid_mappings);
      if (uid >= 0 && gid >= 0
          && ::chown(path.c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(gid)) != 0)
        return undo(sys_error("chown " + path + " to the container's root"));
    }
    fifo = unique_fd{::open(path.c_str(), O_PATH | O_CLOEXEC)};
    if (fifo.fd < 0)
      return undo(sys_error("open " + path));
    ctx.fifo_fd = fifo.fd;
  }
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0)
    return undo(sys_error("socketpair"));
  unique_fd mine{sp[0]}, theirs{sp[1]};

  unsigned long flags = 0;
  for (auto& n : cfg.linux.namespaces)
    if (n.path.empty() && n.flag != CLONE_NEWCGROUP)
      flags |= static_cast<unsigned long>(n.flag);
  // A pid namespace is joined by the runtime itself: setns(CLONE_NEWPID) only decides
  // where children go, so the container process starts inside it.
  unique_fd own_pidns;
  if (auto* p = cfg.linux.find(CLONE_NEWPID); p && !p->path.empty()) {
    unique_fd target{::open(p->path.c_str(), O_RDONLY | O_CLOEXEC)};
    own_pidns = unique_fd{::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)};
    if (target.fd < 0 || ::setns(target.fd, CLONE_NEWPID) != 0)
      return undo(sys_error("linux.namespaces: join pid namespace " + p->path));
  }
  sigset_t block, old;
  sigemptyset(&block);
  for (int s : forwarded)
    sigaddset(&block, s);
  ::sigprocmask(SIG_BLOCK, &block, &old);
  pid = static_cast<pid_t>(::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0));
  if (pid == 0) {
    mine.reset();
    ctx.sync_fd = theirs.fd;
    detail::container_init(ctx);
  }
  int clone_err = errno;
  if (own_pidns.fd >= 0)
    ::setns(own_pidns.fd, CLONE_NEWPID);
  if (run_mode) {
    forward_pid = pid > 0 ? pid : 0;
    struct sigaction sa{};
    sa.sa_handler = forward_signal;
    sa.sa_flags = SA_RESTART;
    for (int s : forwarded)
      ::sigaction(s, &sa, nullptr);
  }
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  theirs.reset();
  if (pid < 0) {
    errno = clone_err;
    pid = -1;
    return undo(sys_error("clone the container process"));
  }

  // The child waits for `go`: join it to its cgroups and write its id maps first.
  for (auto& f : placement.procs_files) {
    int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
    auto v = std::to_string(pid);
    bool ok = fd >= 0 && ::write(fd, v.data(), v.size()) == static_cast<ssize_t>(v.size());
    int err = errno;
    if (fd >= 0)
      ::close(fd);
    if (!ok) {
      errno = err;
      return undo(sys_error("move the container process into " + f));
    }
  }
  if (auto* u = cfg.linux.find(CLONE_NEWUSER); u && u->path.empty()) {
    auto write_map = [&](const char* file, const std::vector<oci::id_mapping>& maps) -> status {
      std::string text;
      for (auto& m : maps)
        text += std::to_string(m.container_id) + " " + std::to_string(m.host_id) + " "
                + std::to_string(m.size) + "\n";
      auto path = "/proc/" + std::to_string(pid) + "/" + file;
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      int err = errno;
      if (fd >= 0)
        ::close(fd);
      if (!ok) {
        errno = err;
        return sys_error(std::string{"linux."} + (file[0] == 'u' ? "uidMappings" : "gidMappings")
                         + ": write " + path);
      }
      return {};
    };
    if (auto s = write_map("uid_map", cfg.linux.uid_mappings))
      return undo(s);
    if (auto s = write_map("gid_map", cfg.linux.gid_mappings))
      return undo(s);
  }
  sync_msg go;
  go.kind = sync_msg::go;
  go.pid = pid;
  ::send(mine.fd, &go, sizeof(go), MSG_NOSIGNAL);

  container_state st;
  st.oci_version = oci::spec_version;
  st.id = id;
  st.pid = pid;
  st.bundle = bundle_real;
  st.annotations = cfg.annotations;
  st.created = now_rfc3339();
  for (;;) {
    sync_msg m;
    auto n = ::recv(mine.fd, &m, sizeof(m), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0) {
      if (!run_mode) {
        int ws = 0;
        ::waitpid(pid, &ws, 0);
        pid = -1;
        return undo({"internal", "the container process died during set-up"});
      }
      break; // run: the socket closed on exec
    }
    if (n != sizeof(m))
      return undo(sys_error("read from the container process"));
    if (m.kind == sync_msg::error) {
      int ws = 0;
      ::waitpid(pid, &ws, 0);
      pid = -1;
      m.code[sizeof(m.code) - 1] = m.text[sizeof(m.text) - 1] = 0;
      return undo(status{m.code, m.text}.with_exit_code(m.exit_code));
    }
    if (m.kind == sync_msg::mounted) {
      // createRuntime sees "creating"; the deprecated prestart hooks belonged to start
      // and see "created" (what the runtime-tools suite checks).
      st.status = "created";
      auto state = st.to_json(false);
      for (auto& h : cfg.hooks.prestart)
        if (auto s = run_hook(h, state, "prestart"))
          return undo(s);
      st.status = "creating";
      state = st.to_json(false);
      for (auto& h : cfg.hooks.create_runtime)
        if (auto s = run_hook(h, state, "createRuntime"))
          return undo(s);
      sync_msg r;
      r.kind = sync_msg::resume;
      ::send(mine.fd, &r, sizeof(r), MSG_NOSIGNAL);
      continue;
    }
    if (m.kind == sync_msg::created)
      break;
  }
  json record{{"ociVersion", st.oci_version},
              {"id", id},
              {"pid", pid},
              {"startTime", start_time_of(pid).first},
              {"bundle", st.bundle},
              {"rootfs", cfg.root_path},
              {"created", st.created},
              {"annotations", cfg.annotations},
              {"cgroupsPath", cfg.linux.cgroups_path},
              {"cgroup", placed},
              {"defaultSeccomp", !cfg.linux.seccomp && opts_.default_seccomp},
              {"poststart", hooks_json(cfg.hooks.poststart)},
              {"poststop", hooks_json(cfg.hooks.poststop)}};
  if (auto s = write_atomic(state_dir + "/state.json", record.dump()))
    return undo(s);
  if (!options.pid_file.empty())
    if (auto s = write_atomic(options.pid_file, std::to_string(pid)))
      return undo(s);
  created out{pid, -1};
  if (console_peer.fd >= 0)
    out.master = detail::receive_fd(console_peer.fd);
  return out;
}

status runtime::start(const std::string& id) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status != "created")
    return {"failed_precondition", "container " + id + " is " + st->status + ", not created"};
  auto rec = read_record(dir(id));
  if (!rec)
    return rec.error();
  auto path = dir(id) + "/" + fifo_name;
  unique_fd fifo{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (fifo.fd < 0)
    return sys_error("open " + path);
  unique_fd pidfd{pidfd_open(st->pid)};
  for (;;) {
    pollfd p[2] = {{fifo.fd, POLLIN, 0}, {pidfd.fd, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return sys_error("wait for the container process");
    }
    if (p[0].revents & POLLIN) {
      char c;
      if (::read(fifo.fd, &c, 1) == 1)
        break;
    }
    if (p[1].revents & POLLIN)
      return {"failed_precondition", "container " + id + " exited before it was started"};
    if (p[0].revents & POLLHUP)
      ::usleep(1000); // no writer yet
  }
  ::unlink(path.c_str());
  st->status = "running";
  auto state_text = st->to_json(false);
  for (auto& h : hooks_from((*rec)["poststart"]))
    if (auto s = run_hook(h, state_text, "poststart"))
      warn(s.render());
  return {};
}

result<int> runtime::run(const std::string& id, const create_options& options) {
  auto made = do_create(id, options, true);
  if (!made)
    return made.error();
  auto pid = &made->pid;
  unique_fd pidfd{pidfd_open(*pid)};
  int master = made->master;
  auto rec = read_record(dir(id));
  if (rec) {
    container_state st;
    st.oci_version = oci::spec_version;
    st.id = id;
    st.status = "running";
    st.pid = *pid;
    st.bundle = (*rec)["bundle"];
    st.annotations = rec->value("annotations", std::map<std::string, std::string>{});
    auto text = st.to_json(false);
    for (auto& h : hooks_from((*rec)["poststart"]))
      if (auto s = run_hook(h, text, "poststart"))
        warn(s.render());
  }
  if (master >= 0) {
    proxy_terminal(master, pidfd.fd);
    ::close(master);
  }
  int ws = 0;
  while (::waitpid(*pid, &ws, 0) < 0 && errno == EINTR)
    ;
  forward_pid = 0;
  int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  if (rec) {
    (*rec)["exitCode"] = code;
    write_atomic(dir(id) + "/state.json", rec->dump());
  }
  if (auto s = cleanup(id, true))
    return s;
  return code;
}

result<int> runtime::wait(const std::string& id) {
  auto e = wait_exit(id);
  if (!e)
    return e.error();
  return e->code;
}

result<exit_status> runtime::wait_exit(const std::string& id) {
  auto st = state(id);
  if (!st)
    return st.error();
  auto rec = read_record(dir(id));
  if (!rec)
    return rec.error();
  if (rec->contains("exitCode"))
    return exit_status{(*rec)["exitCode"].get<int>(), rec->value("exitSignal", 0)};
  pid_t pid = rec->value("pid", 0);
  int ws = 0;
  pid_t r;
  while ((r = ::waitpid(pid, &ws, 0)) < 0 && errno == EINTR)
    ;
  if (r != pid)
    return status{"failed_precondition",
                  "container " + id + " was not created by this process: its exit status is unknown"};
  exit_status out;
  out.signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
  out.code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + out.signal;
  (*rec)["exitCode"] = out.code;
  (*rec)["exitSignal"] = out.signal;
  if (auto s = write_atomic(dir(id) + "/state.json", rec->dump()))
    return s;
  return out;
}

result<container_state> runtime::state(const std::string& id) {
  if (auto s = check_id(id))
    return s;
  auto d = dir(id);
  struct stat sb{};
  if (::stat(d.c_str(), &sb) != 0)
    return status{"not_found", "container " + id + " does not exist"};
  container_state st;
  st.id = id;
  auto rec = read_record(d);
  if (!rec) {
    st.status = "creating";
    st.oci_version = oci::spec_version;
    return st;
  }
  auto& r = *rec;
  st.oci_version = r.value("ociVersion", oci::spec_version);
  st.pid = r.value("pid", 0);
  st.bundle = r.value("bundle", "");
  st.created = r.value("created", "");
  st.annotations = r.value("annotations", std::map<std::string, std::string>{});
  if (r.contains("exitCode"))
    st.exit_code = r["exitCode"].get<int>();
  auto [start, zombie] = start_time_of(st.pid);
  bool alive = st.pid > 0 && start != 0 && start == r.value("startTime", uint64_t{0}) && !zombie;
  if (!alive)
    st.status = "stopped";
  else if (::access((d + "/" + fifo_name).c_str(), F_OK) == 0)
    st.status = "created";
  else if (r.value("cgroup", false) && opts_.cgroups
           && opts_.cgroups->frozen(id, r.value("cgroupsPath", "")))
    st.status = "paused";
  else
    st.status = "running";
  if (st.status == "stopped")
    st.pid = 0;
  return st;
}

status runtime::pause(const std::string& id) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status != "running")
    return {"failed_precondition", "container " + id + " is " + st->status + ", not running"};
  auto rec = read_record(dir(id));
  if (!rec || !(*rec).value("cgroup", false) || !opts_.cgroups)
    return {"failed_precondition", "container " + id + " has no cgroup of its own to freeze"};
  return opts_.cgroups->freeze(id, (*rec).value("cgroupsPath", ""), true);
}

status runtime::resume(const std::string& id) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status != "paused")
    return {"failed_precondition", "container " + id + " is " + st->status + ", not paused"};
  auto rec = read_record(dir(id));
  if (!rec)
    return rec.error();
  return opts_.cgroups->freeze(id, (*rec).value("cgroupsPath", ""), false);
}

result<std::vector<pid_t>> runtime::processes(const std::string& id) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status == "stopped")
    return std::vector<pid_t>{};
  auto rec = read_record(dir(id));
  if (rec && (*rec).value("cgroup", false) && opts_.cgroups)
    return opts_.cgroups->pids(id, (*rec).value("cgroupsPath", ""));
  return st->pid > 0 ? std::vector<pid_t>{st->pid} : std::vector<pid_t>{};
}

status runtime::update(const std::string& id, const oci::resources& resources) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status == "stopped" || st->status == "creating")
    return {"failed_precondition", "container " + id + " is " + st->status};
  auto rec = read_record(dir(id));
  if (!rec || !(*rec).value("cgroup", false) || !opts_.cgroups)
    return {"failed_precondition", "container " + id + " has no cgroup of its own to update"};
  return opts_.cgroups->update(id, (*rec).value("cgroupsPath", ""), resources);
}

std::vector<container_state> runtime::list() {
  std::vector<container_state> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{opts_.root, ec})
    if (auto st = state(e.path().filename().string()))
      out.push_back(*st);
  return out;
}

status runtime::kill(const std::string& id, int sig, bool all) {
  auto st = state(id);
  if (!st)
    return st.error();
  if (st->status != "created" && st->status != "running" && st->status != "paused")
    return {"failed_precondition", "container " + id + " is " + st->status};
  if (all && opts_.cgroups) {
    auto rec = read_record(dir(id));
    if (rec && (*rec).value("cgroup", false))
      for (pid_t p : opts_.cgroups->pids(id, (*rec).value("cgroupsPath", "")))
        ::kill(p, sig);
  }
  unique_fd fd{pidfd_open(st->pid)};
  if (fd.fd < 0)
    return sys_error("container " + id + ": pidfd_open");
  if (::syscall(SYS_pidfd_send_signal, fd.fd, sig, nullptr, 0) != 0 && errno != ESRCH)
    return sys_error("container " + id + ": send signal " + std::to_string(sig));
  return {};
}

status runtime::remove(const std::string& id, bool force) {
  auto st = state(id);
  if (!st)
    return st.error();
  if ((st->status == "running" || st->status == "paused") && !force)
    return {"failed_precondition", "container " + id + " is " + st->status
                                     + ": stop it first or delete with --force"};
  // runtime-spec: deleting a container that is not stopped has no effect and is an error.
  if ((st->status == "creating" || st->status == "created") && !force)
    return {"failed_precondition",
            "container " + id + " is " + st->status + ": delete it with --force"};
  return cleanup(id, true);
}

status runtime::cleanup(const std::string& id, bool force) {
  auto d = dir(id);
  auto rec = read_record(d);
  if (rec) {
    auto& r = *rec;
    pid_t pid = r.value("pid", 0);
    uint64_t start = r.value("startTime", uint64_t{0});
    auto [now, zombie] = start_time_of(pid);
    // Frozen processes take no signal until thawed (v1 freezer).
    if (r.value("cgroup", false) && opts_.cgroups
        && opts_.cgroups->frozen(id, r.value("cgroupsPath", "")))
      opts_.cgroups->freeze(id, r.value("cgroupsPath", ""), false);
    if (pid > 0 && now == start && !zombie && force) {
      int fd = pidfd_open(pid);
      if (fd >= 0) {
        ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0);
        ::close(fd);
      }
    }
    if (pid > 0 && !wait_gone(pid, start, 10000))
      return {"timeout", "container " + id + ": process " + std::to_string(pid)
                           + " still alive after SIGKILL"};
    auto cg_path = r.value("cgroupsPath", "");
    if (r.value("cgroup", false) && opts_.cgroups) {
      // Without a pid namespace other processes may remain: kill them too.
      status s;
      for (int i = 0; i < 500; ++i) {
        for (pid_t p : opts_.cgroups->pids(id, cg_path))
          ::kill(p, SIGKILL);
        s = opts_.cgroups->release(id, cg_path);
        if (!s || (s.code() != "failed_precondition" && s.code() != "internal"))
          break;
        ::usleep(2000);
      }
      if (s)
        return s;
    }
    container_state st;
    st.oci_version = r.value("ociVersion", oci::spec_version);
    st.id = id;
    st.status = "stopped";
    st.bundle = r.value("bundle", "");
    st.annotations = r.value("annotations", std::map<std::string, std::string>{});
    auto text = st.to_json(false);
    for (auto& h : hooks_from(r["poststop"]))
      if (auto s = run_hook(h, text, "poststop"))
        warn(s.render());
  }
  std::error_code ec;
  fs::remove_all(d, ec);
  if (ec)
    return {"internal", "remove " + d + ": " + ec.message()};
  return {};
}

} // namespace cyto::containers
