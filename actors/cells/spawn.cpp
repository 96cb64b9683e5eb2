#include "actors/cells/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sched.h>
#include <grp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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

/// Which step of the child failed and with which errno; written by the child into the
/// parent's memory (CLONE_VM), read by the parent once the child has exec'd or died.
struct child_failure {
  int step = 0;
  int err = 0;
};

enum step : int { step_cgroup = 1, step_netns, step_mount, step_proc, step_hostname, step_lo, step_groups,
                  step_gid, step_uid, step_cwd, step_stdio, step_exec };

const char* step_name(int s) {
  switch (s) {
    case step_cgroup: return "join the cell's cgroup";
    case step_netns: return "join the cell's network namespace";
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

/// Everything the child needs, prepared by the parent: after clone the child may not
/// allocate, take locks or call glibc wrappers that touch process-wide state.
struct child_args {
  const spawn_request* req;
  const char* program;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  int devnull;
  int netns_fd;
  int out_fd;
  int err_fd;
  child_failure failure;
};

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

int child_fail(child_args* a, int s) {
  a->failure = {s, errno};
  ::_exit(127);
}

/// The child. It shares the daemon's memory until exec: raw syscalls only for anything
/// process-wide (glibc's setuid() would signal every daemon thread to change ids too).
int child_main(void* arg) {
  auto* a = static_cast<child_args*>(arg);
  const auto& req = *a->req;
  // Handlers are the daemon's: none may run here. Back to defaults, mask still full.
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler != SIG_DFL
        && (old.sa_handler != SIG_IGN || sig == SIGPIPE)) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(sig, &dfl, nullptr);
    }
  }
  for (auto& f : req.cgroup_procs) {
    int fd = ::open(f.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1)
      return child_fail(a, step_cgroup);
    ::close(fd);
  }
  if (a->netns_fd >= 0 && ::setns(a->netns_fd, CLONE_NEWNET) != 0)
    return child_fail(a, step_netns);
  if (req.isolate_process) {
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return child_fail(a, step_mount);
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, nullptr) != 0)
      return child_fail(a, step_proc);
    if (!req.hostname.empty() && ::sethostname(req.hostname.c_str(), req.hostname.size()) != 0)
      return child_fail(a, step_hostname);
  }
  if (req.isolate_network && !lo_up())
    return child_fail(a, step_lo);
  if ((req.uid || req.gid) && ::syscall(SYS_setgroups, 0, nullptr) != 0)
    return child_fail(a, step_groups);
  if (req.gid && ::syscall(SYS_setresgid, *req.gid, *req.gid, *req.gid) != 0)
    return child_fail(a, step_gid);
  if (req.uid && ::syscall(SYS_setresuid, *req.uid, *req.uid, *req.uid) != 0)
    return child_fail(a, step_uid);
  if (::chdir(a->cwd) != 0)
    return child_fail(a, step_cwd);
  if (::dup2(a->devnull, 0) < 0 || ::dup2(a->out_fd, 1) < 0 || ::dup2(a->err_fd, 2) < 0)
    return child_fail(a, step_stdio);
  ::setsid();
  // The daemon's own descriptors must not leak into the program.
  ::syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(a->program, a->argv, a->envp);
  return child_fail(a, step_exec);
}

/// The child's stack: mapped for one spawn, unmapped once the child has exec'd or died.
struct child_stack {
  static constexpr size_t size = 256 * 1024;
  void* base = MAP_FAILED;
  child_stack() {
    base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                  -1, 0);
  }
  ~child_stack() {
    if (base != MAP_FAILED)
      ::munmap(base, size);
  }
  void* top() const {
    return static_cast<char*>(base) + size;
  }
};

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

  std::vector<char*> argv, envp;
  for (auto& a : req.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : req.env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0)
    return make_error(errc::internal, std::string{"open /dev/null: "} + std::strerror(errno));
  int netns_fd = -1;
  if (!req.netns_path.empty()) {
    netns_fd = ::open(req.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
      auto err = errno;
      ::close(devnull);
      return make_error(errc::internal, "open netns " + req.netns_path + ": " + std::strerror(err));
    }
  }
  child_args args{&req,          program->c_str(),
                  argv.data(),   envp.data(),
                  req.cwd.empty() ? "/" : req.cwd.c_str(),
                  devnull,       netns_fd,
                  req.stdout_fd >= 0 ? req.stdout_fd : devnull,
                  req.stderr_fd >= 0 ? req.stderr_fd : devnull,
                  {}};
  child_stack stack;
  if (stack.base == MAP_FAILED) {
    ::close(devnull);
    if (netns_fd >= 0)
      ::close(netns_fd);
    return make_error(errc::resource_exhausted, std::string{"map a stack: "} + std::strerror(errno));
  }

  int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD;
  if (req.isolate_process)
    flags |= CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
  if (req.isolate_network)
    flags |= CLONE_NEWNET;
  int pidfd = -1;
  // No daemon signal handler may run in the child: block everything around the clone.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  // CLONE_VFORK: this returns once the child has exec'd or exited.
  pid_t pid = ::clone(child_main, stack.top(), flags, &args, &pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(devnull);
  if (netns_fd >= 0)
    ::close(netns_fd);
  if (pid < 0)
    return make_error(clone_errno == EPERM ? errc::permission_denied : errc::resource_exhausted,
                      std::string{"clone: "} + std::strerror(clone_errno));
  if (args.failure.step != 0) {
    ::waitpid(pid, nullptr, 0);
    ::close(pidfd);
    auto err = args.failure.err;
    auto code = err == ENOENT ? errc::not_found
                : (err == EACCES || err == EPERM) ? errc::permission_denied
                                                  : errc::internal;
    return make_error(code, std::string{step_name(args.failure.step)} + " for " + *program + ": "
                              + std::strerror(err));
  }
  return spawned{pid, pidfd};
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
