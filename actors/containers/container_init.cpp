// The container's first process: from clone to exec of process.args.
#include "actors/containers/container_init.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "actors/containers/fd_passing.hpp"
#include "actors/containers/hooks.hpp"
#include "actors/containers/runtime.hpp"

namespace cyto::containers::detail {

namespace {

void send_msg(int fd, const sync_msg& m) {
  while (::send(fd, &m, sizeof(m), MSG_NOSIGNAL) < 0 && errno == EINTR)
    ;
}

bool recv_msg(int fd, sync_msg& m) {
  ssize_t n;
  while ((n = ::recv(fd, &m, sizeof(m), 0)) < 0 && errno == EINTR)
    ;
  return n == static_cast<ssize_t>(sizeof(m));
}

/// Reports a failure to the runtime (or, once it is gone, on stderr) and exits.
[[noreturn]] void die(const init_context& ctx, const status& st, int exit_code = 1) {
  sync_msg m;
  m.kind = sync_msg::error;
  m.exit_code = exit_code;
  std::snprintf(m.code, sizeof(m.code), "%s", st.code().c_str());
  std::snprintf(m.text, sizeof(m.text), "%s", st.text().c_str());
  if (ctx.sync_fd >= 0)
    send_msg(ctx.sync_fd, m);
  else
    std::fprintf(stderr, "cyto-runtime: %s\n", st.render().c_str());
  ::_exit(exit_code);
}

status sys_error(const std::string& what) {
  return from_errno(errno, what);
}

status join_namespaces(const oci::config& cfg) {
  // The user namespace first: the others are then joined with its capabilities.
  auto join = [](const oci::namespace_entry& n) -> status {
    int fd = ::open(n.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return sys_error("open " + n.type + " namespace " + n.path);
    int rc = ::setns(fd, n.flag);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      errno = err;
      return sys_error("join " + n.type + " namespace " + n.path);
    }
    return {};
  };
  if (auto* u = cfg.linux.find(CLONE_NEWUSER); u && !u->path.empty()) {
    if (auto s = join(*u))
      return s;
    if (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
      return sys_error("become root in the joined user namespace");
  }
  for (auto& n : cfg.linux.namespaces)
    if (!n.path.empty() && n.flag != CLONE_NEWUSER && n.flag != CLONE_NEWPID)
      if (auto s = join(n))
        return s;
  return {};
}

} // namespace

status open_pty(int console_fd, const oci::process& p, std::string& name, int& slave) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0)
    return sys_error("open /dev/ptmx");
  char buf[64];
  if (::unlockpt(master) != 0 || ::ptsname_r(master, buf, sizeof(buf)) != 0) {
    auto s = sys_error("unlockpt/ptsname");
    ::close(master);
    return s;
  }
  name = buf;
  slave = ::open(buf, O_RDWR | O_NOCTTY);
  if (slave < 0) {
    auto s = sys_error(std::string{"open "} + buf);
    ::close(master);
    return s;
  }
  if (p.console_height || p.console_width) {
    struct winsize ws{};
    ws.ws_row = static_cast<unsigned short>(p.console_height);
    ws.ws_col = static_cast<unsigned short>(p.console_width);
    ::ioctl(slave, TIOCSWINSZ, &ws);
  }
  bool sent = send_fd(console_fd, master);
  ::close(master);
  if (!sent)
    return sys_error("send the pty master to the console socket");
  return {};
}

status make_controlling(int slave) {
  if (::setsid() < 0)
    return sys_error("setsid");
  if (::ioctl(slave, TIOCSCTTY, 0) != 0)
    return sys_error("make the pty the controlling terminal");
  for (int fd = 0; fd < 3; ++fd)
    if (::dup2(slave, fd) < 0)
      return sys_error("dup the pty onto stdio");
  if (slave > 2)
    ::close(slave);
  return {};
}

status attach_new_pty(int console_fd, const oci::process& p) {
  std::string name;
  int slave = -1;
  if (auto s = open_pty(console_fd, p, name, slave))
    return s;
  ::close(console_fd);
  return make_controlling(slave);
}

namespace {

/// A pty whose master goes to the console socket; the slave becomes stdio and the
/// controlling terminal, and /dev/console (runtime-spec: bound over an empty file).
status setup_console(const init_context& ctx, const oci::process& p) {
  std::string name;
  int slave = -1;
  if (auto s = open_pty(ctx.console_fd, p, name, slave))
    return s;
  ::close(ctx.console_fd);
  int cfd = ::open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (cfd >= 0) {
    ::close(cfd);
    if (::mount(name.c_str(), "/dev/console", nullptr, MS_BIND, nullptr) != 0)
      return sys_error("bind the pty on /dev/console");
  }
  return make_controlling(slave);
}

std::string state_json(const init_context& ctx, pid_t host_pid, const char* status_name) {
  container_state st;
  st.oci_version = oci::spec_version;
  st.id = ctx.id;
  st.status = status_name;
  st.pid = host_pid;
  st.bundle = ctx.bundle;
  st.annotations = ctx.cfg->annotations;
  return st.to_json(false);
}

} // namespace

status apply_rlimits(const oci::process& p) {
  for (auto& r : p.rlimits) {
    struct rlimit rl{r.soft, r.hard};
    if (::setrlimit(static_cast<__rlimit_resource>(r.resource), &rl) != 0)
      return sys_error("process.rlimits " + r.type);
  }
  return {};
}

result<std::string> find_program(const oci::process& p) {
  auto& name = p.args[0];
  // Like execvp: a file found without execute permission is remembered (126) and the
  // search goes on.
  bool denied = false;
  auto runnable = [&](const std::string& f) {
    struct stat st{};
    if (::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      return false;
    if ((st.st_mode & 0111) == 0) {
      denied = true;
      return false;
    }
    return true;
  };
  auto missing = [&]() -> result<std::string> {
    if (denied)
      return status{"permission_denied", "process.args[0]: \"" + name
                                           + "\" is not executable in the container"}
        .with_exit_code(126);
    return status{"not_found", "process.args[0]: executable file \"" + name
                                 + "\" not found in the container's PATH or rootfs"}
      .with_exit_code(127);
  };
  if (name.find('/') != std::string::npos)
    return runnable(name) ? result<std::string>{name} : missing();
  std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (auto& e : p.env)
    if (e.rfind("PATH=", 0) == 0)
      path = e.substr(5);
  size_t i = 0;
  while (i <= path.size()) {
    auto j = path.find(':', i);
    if (j == std::string::npos)
      j = path.size();
    auto dir = j > i ? path.substr(i, j - i) : std::string{"."};
    auto f = dir + "/" + name;
    if (runnable(f))
      return f;
    i = j + 1;
  }
  return missing();
}

status drop_privileges(const oci::process& p) {
  auto& caps = p.caps;
  // Bounding set first (needs CAP_SETPCAP, which root still has).
  if (caps) {
    for (int c = 0; c < static_cast<int>(cap_max_bits()); ++c) {
      if (std::find(caps->bounding.begin(), caps->bounding.end(), c) != caps->bounding.end())
        continue;
      if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
        return sys_error("drop " + oci::capability_name(c) + " from the bounding set");
    }
  }
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
    return sys_error("keep capabilities across setuid");
  std::vector<gid_t> groups(p.user.additional_gids.begin(), p.user.additional_gids.end());
  if (::setgroups(groups.size(), groups.data()) != 0 && !(groups.empty() && errno == EPERM))
    return sys_error("process.user.additionalGids: setgroups");
  if (::setresgid(p.user.gid, p.user.gid, p.user.gid) != 0)
    return sys_error("process.user.gid: setgid " + std::to_string(p.user.gid));
  if (::setresuid(p.user.uid, p.user.uid, p.user.uid) != 0)
    return sys_error("process.user.uid: setuid " + std::to_string(p.user.uid));
  ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  if (caps) {
    cap_t set = cap_init();
    auto put = [&](const std::vector<int>& list, cap_flag_t flag) {
      std::vector<cap_value_t> v(list.begin(), list.end());
      if (!v.empty())
        cap_set_flag(set, flag, static_cast<int>(v.size()), v.data(), CAP_SET);
    };
    put(caps->effective, CAP_EFFECTIVE);
    put(caps->permitted, CAP_PERMITTED);
    put(caps->inheritable, CAP_INHERITABLE);
    int rc = cap_set_proc(set);
    int err = errno;
    cap_free(set);
    if (rc != 0) {
      errno = err;
      return sys_error("process.capabilities: set effective/permitted/inheritable");
    }
    cap_reset_ambient();
    // The kernel raises an ambient capability only if it is permitted and inheritable;
    // others are skipped, as runc and crun do (their default specs ask for such sets).
    for (int c : caps->ambient)
      cap_set_ambient(c, CAP_SET);
  }
  return {};
}

status prepare_process(const oci::process& proc, const seccomp_filter* seccomp) {
  if (proc.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return sys_error("process.noNewPrivileges");
  // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it while root still has it.
  if (seccomp && !proc.no_new_privileges)
    if (int rc = seccomp->load(); rc != 0)
      return from_errno(-rc, "linux.seccomp: load the filter");
  if (auto s = drop_privileges(proc))
    return s;
  if (proc.user.umask)
    ::umask(*proc.user.umask);
  else
    ::umask(022);
  return {};
}

status finish_exec(const oci::process& proc, const seccomp_filter* seccomp,
                   const std::string& program) {
  // With no_new_privs the filter goes on last, so the fewest syscalls run under it.
  if (seccomp && proc.no_new_privileges)
    if (int rc = seccomp->load(); rc != 0)
      return from_errno(-rc, "linux.seccomp: load the filter");
  std::vector<char*> argv, envp;
  for (auto& a : proc.args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : proc.env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(program.c_str(), argv.data(), envp.data());
  int err = errno;
  return from_errno(err, "exec " + program).with_exit_code(err == ENOENT ? 127 : 126);
}

status exec_process(const oci::process& proc, const seccomp_filter* seccomp,
                    const std::string& program) {
  if (auto s = prepare_process(proc, seccomp))
    return s;
  return finish_exec(proc, seccomp, program);
}

void container_init(init_context& ctx) {
  auto& cfg = *ctx.cfg;
  auto& proc = *cfg.process;
  ::umask(0);
  sync_msg go;
  if (!recv_msg(ctx.sync_fd, go) || go.kind != sync_msg::go)
    ::_exit(1); // the runtime went away
  pid_t host_pid = go.pid;
  auto* userns = cfg.linux.find(CLONE_NEWUSER);
  bool in_userns = userns != nullptr;
  if (userns && userns->path.empty()
      && (::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0))
    die(ctx, sys_error("become root in the new user namespace"));
  if (auto s = join_namespaces(cfg))
    die(ctx, s);
  if (auto* cg = cfg.linux.find(CLONE_NEWCGROUP); cg && cg->path.empty()
                                                  && ::unshare(CLONE_NEWCGROUP) != 0)
    die(ctx, sys_error("unshare the cgroup namespace"));
  if (!cfg.hostname.empty() && ::sethostname(cfg.hostname.data(), cfg.hostname.size()) != 0)
    die(ctx, sys_error("hostname: sethostname"));
  if (!cfg.domainname.empty()
      && ::setdomainname(cfg.domainname.data(), cfg.domainname.size()) != 0)
    die(ctx, sys_error("domainname: setdomainname"));
  if (proc.oom_score_adj) {
    int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    auto v = std::to_string(*proc.oom_score_adj);
    if (fd < 0 || ::write(fd, v.data(), v.size()) < 0)
      die(ctx, sys_error("process.oomScoreAdj: write /proc/self/oom_score_adj"));
    ::close(fd);
  }
  auto before_pivot = [&]() -> status {
    if (ctx.runtime_hooks) {
      sync_msg m;
      m.kind = sync_msg::mounted;
      send_msg(ctx.sync_fd, m);
      sync_msg r;
      if (!recv_msg(ctx.sync_fd, r) || r.kind != sync_msg::resume)
        ::_exit(1);
    }
    auto state = state_json(ctx, host_pid, "creating");
    for (auto& h : cfg.hooks.create_container)
      if (auto s = run_hook(h, state, "createContainer"))
        return s;
    return {};
  };
  if (auto s = setup_rootfs(ctx, in_userns, before_pivot))
    die(ctx, s);
  if (auto s = finish_rootfs(ctx))
    die(ctx, s);
  if (proc.terminal) {
    if (auto s = setup_console(ctx, proc))
      die(ctx, s);
  } else {
    ::setsid();
  }
  if (auto s = apply_rlimits(proc))
    die(ctx, s);
  if (::chdir(proc.cwd.c_str()) != 0)
    die(ctx, sys_error("process.cwd: chdir " + proc.cwd));
  auto found = find_program(proc);
  if (!found)
    die(ctx, found.error(), found.error().exit_code());
  auto& program = *found;
  // Privileges are dropped (and a seccomp filter without no_new_privs loaded) before
  // `created` is reported, so everything that can fail does so at create, as the spec
  // asks; what remains after start is startContainer hooks and exec itself.
  if (auto s = prepare_process(proc, ctx.seccomp))
    die(ctx, s);
  if (ctx.fifo_fd >= 0) {
    // create: report, then block until `start` opens the fifo for reading.
    sync_msg m;
    m.kind = sync_msg::created;
    send_msg(ctx.sync_fd, m);
    ::close(ctx.sync_fd);
    ctx.sync_fd = -1;
    auto path = "/proc/self/fd/" + std::to_string(ctx.fifo_fd);
    int w = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (w < 0)
      die(ctx, sys_error("open the exec fifo"));
    if (::write(w, "0", 1) != 1)
      die(ctx, sys_error("write the exec fifo"));
    ::close(w);
    ::close(ctx.fifo_fd);
    auto state = state_json(ctx, host_pid, "running");
    for (auto& h : cfg.hooks.start_container)
      if (auto s = run_hook(h, state, "startContainer"))
        die(ctx, s);
  } else if (!cfg.hooks.start_container.empty()) {
    auto state = state_json(ctx, host_pid, "running");
    for (auto& h : cfg.hooks.start_container)
      if (auto s = run_hook(h, state, "startContainer"))
        die(ctx, s);
  }
  auto failed = finish_exec(proc, ctx.seccomp, program);
  die(ctx, failed, failed.exit_code());
}

} // namespace cyto::containers::detail
