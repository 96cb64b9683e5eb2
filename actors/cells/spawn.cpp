#include "actors/cells/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus/errc.hpp"

namespace cyto::cells {

namespace {

constexpr const char* default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a child reports through the error pipe before it dies: which step failed and errno.
struct child_failure {
  int step;
  int err;
};

enum step : int { step_sync = 1, step_mount, step_proc, step_hostname, step_lo, step_groups,
                  step_gid, step_uid, step_cwd, step_stdio, step_exec };

const char* step_name(int s) {
  switch (s) {
    case step_sync: return "wait for the cgroup";
    case step_mount: return "make mounts private";
    case step_proc: return "mount /proc";
    case step_hostname: return "set the hostname";
    case step_lo: return "bring up lo";
    case step_groups: return "drop supplementary groups";
    case step_gid: return "setgid";
    case step_uid: return "setuid";
    case step_cwd: return "chdir";
    case step_stdio: return "set up stdio";
    case step_exec: return "exec";
    default: return "start";
  }
}

struct fd_pair {
  int r = -1, w = -1;
  ~fd_pair() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
};

[[noreturn]] void child_die(int err_fd, int s) {
  child_failure f{s, errno};
  [[maybe_unused]] auto n = ::write(err_fd, &f, sizeof(f));
  ::_exit(127);
}

/// Brings `lo` up in the (new) network namespace: async-signal-safe syscalls only.
bool lo_up() {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return false;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  ok = ok && ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  ::close(s);
  return ok;
}

} // namespace

caf::expected<std::string> resolve_executable(const std::string& name,
                                              const std::vector<std::string>& env) {
  if (name.empty())
    return make_error(errc::invalid_argument, "no program given");
  auto check = [](const std::string& p) -> caf::error {
    struct stat st{};
    if (::stat(p.c_str(), &st) != 0)
      return make_error(errc::not_found, "executable " + p + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
      return make_error(errc::invalid_argument, "executable " + p + ": not a regular file");
    if (::access(p.c_str(), X_OK) != 0)
      return make_error(errc::permission_denied, "executable " + p + ": " + std::strerror(errno));
    return {};
  };
  if (name.find('/') != std::string::npos) {
    if (auto err = check(name))
      return err;
    return name;
  }
  std::string path = default_path;
  for (auto& e : env)
    if (e.rfind("PATH=", 0) == 0)
      path = e.substr(5);
  std::istringstream dirs{path};
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    auto p = (dir.empty() ? std::string{"."} : dir) + "/" + name;
    if (!check(p))
      return p;
  }
  return make_error(errc::not_found, "executable '" + name + "' not found in PATH (" + path + ")");
}

caf::expected<spawned> spawn(const spawn_request& req) {
  if (req.argv.empty())
    return make_error(errc::invalid_argument, "no program given");
  auto program = resolve_executable(req.argv[0], req.env);
  if (!program)
    return program.error();

  // Everything the child touches is prepared here: after clone it may not allocate.
  std::vector<char*> argv, envp;
  for (auto& a : req.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : req.env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* cwd = req.cwd.empty() ? "/" : req.cwd.c_str();
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0)
    return make_error(errc::internal, std::string{"open /dev/null: "} + std::strerror(errno));
  int out_fd = req.stdout_fd >= 0 ? req.stdout_fd : devnull;
  int err_fd_out = req.stderr_fd >= 0 ? req.stderr_fd : devnull;

  fd_pair sync, errp;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0 || (sync.r = p[0], sync.w = p[1], ::pipe2(p, O_CLOEXEC) != 0)) {
    ::close(devnull);
    return make_error(errc::resource_exhausted, std::string{"pipe: "} + std::strerror(errno));
  }
  errp.r = p[0];
  errp.w = p[1];

  uint64_t flags = CLONE_PIDFD;
  if (req.isolate_process)
    flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
  if (req.isolate_network)
    flags |= CLONE_NEWNET;
  if (req.cgroup_fd)
    flags |= CLONE_INTO_CGROUP;
  int pidfd = -1;
  clone_args args{};
  args.flags = flags;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (req.cgroup_fd)
    args.cgroup = static_cast<uint64_t>(*req.cgroup_fd);
  bool wait_for_attach = static_cast<bool>(req.attach);

  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) {
    int err = errno;
    ::close(devnull);
    return make_error(err == EPERM ? errc::permission_denied : errc::resource_exhausted,
                      std::string{"clone3: "} + std::strerror(err));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only until exec.
    ::close(sync.w);
    ::close(errp.r);
    if (wait_for_attach) {
      char c;
      if (::read(sync.r, &c, 1) != 1)
        child_die(errp.w, step_sync);
    }
    if (req.isolate_process) {
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        child_die(errp.w, step_mount);
      if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, nullptr) != 0)
        child_die(errp.w, step_proc);
      if (!req.hostname.empty()
          && ::sethostname(req.hostname.c_str(), req.hostname.size()) != 0)
        child_die(errp.w, step_hostname);
    }
    if (req.isolate_network && !lo_up())
      child_die(errp.w, step_lo);
    if ((req.uid || req.gid) && ::setgroups(0, nullptr) != 0)
      child_die(errp.w, step_groups);
    if (req.gid && ::setgid(*req.gid) != 0)
      child_die(errp.w, step_gid);
    if (req.uid && ::setuid(*req.uid) != 0)
      child_die(errp.w, step_uid);
    if (::chdir(cwd) != 0)
      child_die(errp.w, step_cwd);
    if (::dup2(devnull, 0) < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd_out, 2) < 0)
      child_die(errp.w, step_stdio);
    ::setsid();
    // The daemon blocks and ignores signals the program must see as usual, and its
    // own descriptors must not leak into the program (the error pipe closes on exec).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
    ::execve(program->c_str(), argv.data(), envp.data());
    child_die(errp.w, step_exec);
  }

  // Parent.
  ::close(devnull);
  ::close(sync.r);
  sync.r = -1;
  ::close(errp.w);
  errp.w = -1;
  auto kill_child = [&] {
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    ::close(pidfd);
  };
  if (wait_for_attach) {
    if (auto err = req.attach(static_cast<pid_t>(pid))) {
      kill_child();
      return err;
    }
    char go = 1;
    if (::write(sync.w, &go, 1) != 1) {
      kill_child();
      return make_error(errc::internal, std::string{"release child: "} + std::strerror(errno));
    }
  }
  ::close(sync.w);
  sync.w = -1;
  // EOF on the error pipe means exec succeeded (it is close-on-exec).
  child_failure f{};
  ssize_t n;
  do {
    n = ::read(errp.r, &f, sizeof(f));
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof(f))) {
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    ::close(pidfd);
    auto code = f.err == ENOENT ? errc::not_found
                : (f.err == EACCES || f.err == EPERM) ? errc::permission_denied
                                                      : errc::internal;
    return make_error(code, std::string{step_name(f.step)} + " for " + *program + ": "
                              + std::strerror(f.err));
  }
  return spawned{static_cast<pid_t>(pid), pidfd};
}

pid_t ns_pid_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("NSpid:", 0) == 0) {
      std::istringstream ss{line.substr(6)};
      pid_t p = 0, last = 0;
      while (ss >> p)
        last = p;
      return last;
    }
  }
  return 0;
}

uint64_t start_time_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text;
  std::getline(in, text);
  auto close = text.rfind(')'); // comm may hold spaces and parentheses
  if (close == std::string::npos)
    return 0;
  std::istringstream ss{text.substr(close + 2)};
  std::string field;
  // Fields after comm start at 3 (state); starttime is field 22.
  for (int i = 3; i < 22 && ss >> field; ++i)
    ;
  uint64_t start = 0;
  ss >> start;
  return start;
}

} // namespace cyto::cells
