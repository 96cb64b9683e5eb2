// `exec`: another process in a running container. The caller joins the container's
// cgroup and namespaces itself (user first), then forks so the child is inside the pid
// namespace; the child takes the container's process settings and execs.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "actors/containers/attach.hpp"
#include "actors/containers/container_init.hpp"
#include "actors/containers/fd_passing.hpp"
#include "actors/containers/oci_seccomp.hpp"
#include "actors/containers/runtime.hpp"
#include "actors/containers/signals.hpp"

namespace cyto::containers {

namespace {

using json = nlohmann::json;

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f = -1) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// `pid` into <dir>/<name> (a temp file, then rename), through a descriptor of the dir
/// opened before this process joined the container's mount namespace.
status write_pid_at(int dir, const std::string& name, pid_t pid) {
  auto tmp = name + ".tmp";
  int fd = ::openat(dir, tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return from_errno(errno, "exec: create the pid file " + tmp);
  auto text = std::to_string(pid);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  ::close(fd);
  if (!ok || ::renameat(dir, tmp.c_str(), dir, name.c_str()) != 0) {
    err = ok ? errno : err;
    ::unlinkat(dir, tmp.c_str(), 0);
    return from_errno(err, "exec: write the pid file " + name);
  }
  return {};
}

status failed(status s) {
  if (s.exit_code() != 126 && s.exit_code() != 127)
    return std::move(s).with_exit_code(125);
  return s;
}

std::vector<std::string> lines(const std::string& path) {
  std::ifstream in{path};
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    out.push_back(l);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in{s};
  while (std::getline(in, cur, sep))
    out.push_back(cur);
  return out;
}

/// "hierarchy-id:controllers" -> path, from /proc/PID/cgroup.
std::map<std::string, std::string> cgroups_of(const std::string& pid) {
  std::map<std::string, std::string> out;
  for (auto& l : lines("/proc/" + pid + "/cgroup")) {
    auto c = l.find(':'), d = l.find(':', c + 1);
    if (c != std::string::npos && d != std::string::npos)
      out[l.substr(0, d)] = l.substr(d + 1);
  }
  return out;
}

/// The directory of cgroup `path` in the hierarchy with `controllers` ("" = cgroup2).
std::string cgroup_dir(const std::string& controllers, const std::string& path) {
  auto wanted = split(controllers, ',');
  for (auto& l : lines("/proc/self/mountinfo")) {
    auto dash = l.find(" - ");
    if (dash == std::string::npos)
      continue;
    auto f = split(l.substr(0, dash), ' ');
    auto tail = split(l.substr(dash + 3), ' ');
    if (f.size() < 5 || tail.size() < 3)
      continue;
    bool v2 = tail[0] == "cgroup2";
    if (controllers.empty() != v2 || (!v2 && tail[0] != "cgroup"))
      continue;
    auto opts = split(tail[2], ',');
    bool all = true;
    for (auto& w : wanted)
      all = all && std::find(opts.begin(), opts.end(), w) != opts.end();
    auto& root = f[3];
    if (!all || path.compare(0, root.size(), root) != 0)
      continue;
    auto rest = root == "/" ? path : path.substr(root.size());
    return f[4] + (rest == "/" ? "" : rest);
  }
  return {};
}

/// Moves the caller into every cgroup of `pid` it is not in already.
status join_cgroups(pid_t pid) {
  auto theirs = cgroups_of(std::to_string(pid));
  auto mine = cgroups_of("self");
  for (auto& [key, path] : theirs) {
    if (mine[key] == path)
      continue;
    auto dir = cgroup_dir(key.substr(key.find(':') + 1), path);
    if (dir.empty())
      continue; // a hierarchy not mounted here
    auto file = dir + "/cgroup.procs";
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && ::write(fd, "0", 1) == 1;
    int err = errno;
    if (fd >= 0)
      ::close(fd);
    if (!ok)
      return from_errno(err, "join the container's cgroup " + file);
  }
  return {};
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat x {
  }, y{};
  return ::stat(a.c_str(), &x) == 0 && ::stat(b.c_str(), &y) == 0 && x.st_dev == y.st_dev &&
         x.st_ino == y.st_ino;
}

/// The primary gid of `uid` in the current root's /etc/passwd, 0 when not listed.
uint32_t primary_gid(uint32_t uid) {
  for (auto& l : lines("/etc/passwd")) {
    auto f = split(l, ':');
    if (f.size() > 3 && f[2] == std::to_string(uid))
      try {
        return static_cast<uint32_t>(std::stoul(f[3]));
      } catch (const std::exception&) {
        return 0;
      }
  }
  return 0;
}

/// The child's failure, to the parent over a close-on-exec pipe.
struct exec_error {
  int exit_code = 0;
  char code[32] = {};
  char text[1024] = {};
};

[[noreturn]] void child_fail(int fd, const status& s) {
  exec_error e;
  e.exit_code = s.exit_code();
  std::snprintf(e.code, sizeof(e.code), "%s", s.code().c_str());
  std::snprintf(e.text, sizeof(e.text), "%s", s.text().c_str());
  (void)!::write(fd, &e, sizeof(e));
  ::_exit(e.exit_code);
}

struct ns_kind {
  const char* name;
  int flag;
};

// The user namespace first: the others are joined with the capabilities it gives.
constexpr ns_kind namespaces[] = {{"user", CLONE_NEWUSER},    {"mnt", CLONE_NEWNS},
                                  {"pid", CLONE_NEWPID},      {"ipc", CLONE_NEWIPC},
                                  {"uts", CLONE_NEWUTS},      {"net", CLONE_NEWNET},
                                  {"cgroup", CLONE_NEWCGROUP}};

} // namespace

result<int> runtime::exec(const std::string& id, const exec_options& options) {
  if (options.args.empty() && !options.process)
    return failed(invalid("exec: a command is needed"));
  auto st = state(id);
  if (!st)
    return failed(st.error());
  if (st->status != "running")
    return failed(
        {"failed_precondition", "container " + id + " is " + st->status + ", not running"});
  std::ifstream rec_in{dir(id) + "/state.json"};
  json rec = json::parse(rec_in, nullptr, false);
  if (!rec.is_object())
    return failed(
        {"internal", "container " + id + ": unreadable state " + dir(id) + "/state.json"});
  auto cfg = oci::load_bundle(st->bundle);
  if (!cfg)
    return failed(cfg.error());
  if (!cfg->process && !options.process)
    return failed(invalid("config.json of container " + id + " has no process"));
  oci::process proc = options.process ? *options.process : *cfg->process;
  proc.terminal = options.tty || (options.process && options.process->terminal);
  if (!options.args.empty())
    proc.args = options.args;
  bool attaching = !options.attach_socket.empty();
  if (attaching && (options.detach || !options.console_socket.empty()))
    return failed(invalid("exec: --attach-socket excludes --detach and --console-socket"));
  if (proc.terminal && options.console_socket.empty() && !attaching)
    return failed(invalid("exec: a terminal needs --console-socket (where its pty goes)"));
  // The attach socket's client first: the process's first output must reach it.
  attach_server attach;
  fd_guard console_peer, stdin_read, stdin_write;
  int console_child = -1;
  if (attaching) {
    if (auto s = attach.listen(options.attach_socket))
      return failed(s);
    if (auto s = attach.wait_first_client(10000))
      return failed(s);
    int fds[2];
    if (proc.terminal ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0
                      : ::pipe2(fds, O_CLOEXEC) != 0)
      return failed(from_errno(errno, "exec: make the process's stdio"));
    if (proc.terminal) {
      console_child = fds[0]; // the child sends the pty master through it, we take it at [1]
      console_peer.fd = fds[1];
    } else {
      stdin_read.fd = fds[0];
      stdin_write.fd = fds[1];
    }
  }
  // The pid file is a path of the caller's too: its dir is opened before joining.
  fd_guard pid_dir;
  std::string pid_name;
  if (!options.pid_file.empty()) {
    auto slash = options.pid_file.rfind('/');
    auto dir_path = slash == std::string::npos ? std::string{"."}
                                               : options.pid_file.substr(0, slash + 1);
    pid_name = options.pid_file.substr(slash == std::string::npos ? 0 : slash + 1);
    pid_dir.fd = ::open(dir_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pid_dir.fd < 0 || pid_name.empty())
      return failed(from_errno(pid_name.empty() ? EINVAL : errno,
                               "exec: --pid-file " + options.pid_file));
  }
  // The console socket is a path of the caller's: connect before joining the container.
  fd_guard console;
  if (proc.terminal && attaching) {
    console.fd = console_child;
  } else if (proc.terminal) {
    console.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (options.console_socket.size() >= sizeof(sa.sun_path))
      return failed(invalid("exec: --console-socket path is too long"));
    std::memcpy(sa.sun_path, options.console_socket.c_str(), options.console_socket.size());
    if (console.fd < 0
        || ::connect(console.fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0)
      return failed(from_errno(errno, "exec: connect to the console socket "
                                        + options.console_socket));
  }
  for (auto& kv : options.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return failed(invalid("exec: environment entry \"" + kv + "\" is not K=V"));
    auto key = kv.substr(0, eq + 1);
    auto it = std::find_if(proc.env.begin(), proc.env.end(),
                           [&](const std::string& e) { return e.rfind(key, 0) == 0; });
    if (it != proc.env.end())
      *it = kv;
    else
      proc.env.push_back(kv);
  }
  if (!options.cwd.empty()) {
    if (options.cwd.front() != '/')
      return failed(invalid("exec: --cwd \"" + options.cwd + "\" must be an absolute path"));
    proc.cwd = options.cwd;
  }
  if (options.uid) {
    proc.user.uid = *options.uid;
    proc.user.additional_gids.clear();
  }
  std::unique_ptr<seccomp_filter> filter;
  if (cfg->linux.seccomp || rec.value("defaultSeccomp", false)) {
    auto f = compile_seccomp(cfg->linux.seccomp ? *cfg->linux.seccomp : default_seccomp_profile());
    if (!f)
      return failed(f.error());
    filter = std::move(*f);
  }

  // Everything of the container is opened through /proc before any namespace changes.
  pid_t target = st->pid;
  fd_guard pidfd{detail::open_pidfd(target)};
  auto proc_dir = "/proc/" + std::to_string(target);
  std::vector<std::pair<const ns_kind*, int>> joins;
  auto close_joins = [&] {
    for (auto& j : joins)
      ::close(j.second);
  };
  bool join_mnt = false;
  for (auto& n : namespaces) {
    auto path = proc_dir + "/ns/" + n.name;
    if (::access(path.c_str(), F_OK) != 0 ||
        same_file(path, std::string{"/proc/self/ns/"} + n.name))
      continue;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      auto s = from_errno(errno, "open " + path);
      close_joins();
      return failed(s);
    }
    joins.emplace_back(&n, fd);
    join_mnt = join_mnt || n.flag == CLONE_NEWNS;
  }
  fd_guard root{::open((proc_dir + "/root").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  // The pidfd pins the process: if it is still the container's, the /proc opens were too.
  if (pidfd.fd < 0 || root.fd < 0 ||
      process_start_time(target) != rec.value("startTime", uint64_t{0})) {
    close_joins();
    return failed({"failed_precondition", "container " + id + " is not running"});
  }
  if (auto s = join_cgroups(target)) {
    close_joins();
    return failed(s);
  }
  for (auto& [n, fd] : joins) {
    int rc = ::setns(fd, n->flag);
    int err = errno;
    if (rc != 0) {
      close_joins();
      return failed(from_errno(err, std::string{"join the container's "} + n->name + " namespace"));
    }
    // Become the namespace's root (if it has one) before joining the others with it.
    if (n->flag == CLONE_NEWUSER) {
      (void)!::setresgid(0, 0, 0);
      (void)!::setresuid(0, 0, 0);
    }
  }
  close_joins();

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
    return failed(from_errno(errno, "pipe"));
  fd_guard err_r{pipe_fds[0]}, err_w{pipe_fds[1]};
  detail::signal_fd sigs{SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  pid_t child = ::fork();
  if (child < 0)
    return failed(from_errno(errno, "fork into the container's pid namespace"));
  if (child == 0) {
    int fd = err_w.fd;
    if (proc.terminal)
      if (auto s = detail::attach_new_pty(console.fd, proc))
        child_fail(fd, s);
    if (stdin_read.fd >= 0 && ::dup2(stdin_read.fd, 0) < 0)
      child_fail(fd, from_errno(errno, "exec: stdin"));
    // Without a mount namespace of its own the container is a chroot of ours.
    if (!join_mnt && (::fchdir(root.fd) != 0 || ::chroot(".") != 0))
      child_fail(fd, from_errno(errno, "enter the container's root"));
    if (options.uid)
      proc.user.gid = options.gid ? *options.gid : primary_gid(*options.uid);
    else if (options.gid)
      proc.user.gid = *options.gid;
    if (auto s = detail::apply_rlimits(proc))
      child_fail(fd, s);
    if (proc.oom_score_adj) {
      int o = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
      auto v = std::to_string(*proc.oom_score_adj);
      if (o >= 0) {
        (void)!::write(o, v.data(), v.size());
        ::close(o);
      }
    }
    if (::chdir(proc.cwd.c_str()) != 0)
      child_fail(fd, from_errno(errno, "cwd: chdir " + proc.cwd));
    auto program = detail::find_program(proc);
    if (!program) {
      auto e = program.error();
      child_fail(fd, status{e.code(),
                            "exec: \"" + proc.args[0] + "\": " +
                                (e.exit_code() == 127 ? "not found in the container's PATH or root"
                                                      : "not executable")}
                         .with_exit_code(e.exit_code()));
    }
    auto s = detail::exec_process(proc, filter.get(), *program);
    child_fail(fd, s);
  }
  ::close(err_w.fd);
  err_w.fd = -1;
  exec_error e;
  ssize_t n;
  while ((n = ::read(err_r.fd, &e, sizeof(e))) < 0 && errno == EINTR)
    ;
  fd_guard child_fd{detail::open_pidfd(child)};
  if (n == static_cast<ssize_t>(sizeof(e))) {
    while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR)
      ;
    e.code[sizeof(e.code) - 1] = e.text[sizeof(e.text) - 1] = 0;
    return failed(status{e.code, e.text}.with_exit_code(e.exit_code));
  }
  if (options.detach) {
    // The caller (conmon, a shim) reaps it: it is a subreaper or waits on the pid file.
    if (pid_dir.fd >= 0)
      if (auto s = write_pid_at(pid_dir.fd, pid_name, child))
        return failed(s);
    return 0;
  }
  if (attaching) {
    ::close(console.fd);
    console.fd = -1;
    if (proc.terminal) {
      int master = detail::receive_fd(console_peer.fd);
      if (master >= 0)
        attach.set_master(master);
    } else {
      attach.set_stdin(stdin_write.fd);
      stdin_write.fd = -1;
    }
    ::close(stdin_read.fd);
    stdin_read.fd = -1;
  }
  if (child_fd.fd >= 0)
    serve_until_exit(attaching ? &attach : nullptr, sigs, child_fd.fd,
                     {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2});
  if (attaching)
    attach.finish();
  int ws = 0;
  while (::waitpid(child, &ws, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

} // namespace cyto::containers
