#include "services/init_mode.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/magic.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "bus/logging.hpp"

namespace cyto::services {

namespace {

using clock = std::chrono::steady_clock;

std::shared_ptr<spdlog::logger> init_log() {
  return log::get("init");
}

struct api_mount {
  const char* target;
  const char* type;
  const char* source;
  unsigned long flags;
  const char* data;
  long magic; // the file system already there when init is re-run or inherited
};

// /dev first: the others' mount points may live on the initramfs, /dev/pts on /dev.
constexpr api_mount api_mounts[] = {
  {"/dev", "devtmpfs", "devtmpfs", MS_NOSUID, "mode=0755", TMPFS_MAGIC},
  {"/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, PROC_SUPER_MAGIC},
  {"/sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr, SYSFS_MAGIC},
  {"/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666",
   DEVPTS_SUPER_MAGIC},
  {"/dev/shm", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC},
  {"/run", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", TMPFS_MAGIC},
  {"/tmp", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", TMPFS_MAGIC},
  {"/sys/fs/cgroup", "cgroup2", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate",
   CGROUP2_SUPER_MAGIC},
};

bool mounted_as(const char* path, long magic) {
  struct statfs st{};
  if (::statfs(path, &st) != 0)
    return false;
  if (static_cast<long>(st.f_type) != magic)
    return false;
  // The initramfs itself is a tmpfs (or ramfs): only a mount point of its own counts.
  struct stat here{}, parent{};
  auto up = std::filesystem::path{path}.parent_path().string();
  return ::stat(path, &here) == 0 && ::stat(up.c_str(), &parent) == 0
         && here.st_dev != parent.st_dev;
}

void mount_api_filesystems() {
  for (auto& m : api_mounts) {
    if (mounted_as(m.target, m.magic))
      continue;
    ::mkdir(m.target, 0755);
    if (::mount(m.source, m.target, m.type, m.flags, m.data) != 0)
      init_log()->error("mount {} on {}: {}", m.type, m.target, std::strerror(errno));
  }
}

/// Loads the listed modules with finit_module. A module whose dependency failed to load
/// first is retried after the others (the list may be out of order).
void load_modules(const std::string& list) {
  std::ifstream in{list};
  if (!in) {
    init_log()->info("no module list {}: loading none", list);
    return;
  }
  std::vector<std::string> todo;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#')
      todo.push_back(line);
  std::map<std::string, std::string> errors;
  for (bool progress = true; progress && !todo.empty();) {
    progress = false;
    std::vector<std::string> again;
    for (auto& path : todo) {
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        errors[path] = std::string{"open: "} + std::strerror(errno);
        continue;
      }
      long rc = ::syscall(SYS_finit_module, fd, "", 0);
      int err = errno;
      ::close(fd);
      if (rc == 0 || err == EEXIST) {
        progress = true;
        errors.erase(path);
      } else {
        errors[path] = std::strerror(err);
        again.push_back(path);
      }
    }
    todo = std::move(again);
  }
  for (auto& [path, why] : errors)
    init_log()->error("load module {}: {}", path, why);
}

/// The kernel's `ip=<client>:<server>:<gw>:<netmask>:<host>:<device>:<autoconf>` from
/// /proc/cmdline (what the host's cytod gives a VM on a network). The guest kernel has no
/// IP autoconfiguration of its own for it (virtio_net is a module, loaded above), so init
/// applies the static address: lo and the device up, address, netmask, default route.
void configure_network() {
  std::ifstream in{"/proc/cmdline"};
  std::string word, param;
  while (in >> word)
    if (word.rfind("ip=", 0) == 0)
      param = word.substr(3);
  if (param.empty())
    return;
  std::vector<std::string> f;
  size_t start = 0;
  while (true) {
    auto colon = param.find(':', start);
    f.push_back(param.substr(start, colon == std::string::npos ? colon : colon - start));
    if (colon == std::string::npos)
      break;
    start = colon + 1;
  }
  f.resize(7);
  auto dev = f[5].empty() ? std::string{"eth0"} : f[5];
  in_addr addr{}, gw{}, mask{};
  if (::inet_pton(AF_INET, f[0].c_str(), &addr) != 1 ||
      (!f[3].empty() && ::inet_pton(AF_INET, f[3].c_str(), &mask) != 1) ||
      (!f[2].empty() && ::inet_pton(AF_INET, f[2].c_str(), &gw) != 1)) {
    init_log()->error("ip={}: not client::gateway:netmask::device:off", param);
    return;
  }
  if (dev.size() >= IFNAMSIZ) {
    init_log()->error("ip={}: interface name {} is too long", param, dev);
    return;
  }
  // The driver may still be probing the device.
  auto deadline = clock::now() + std::chrono::seconds{5};
  while (::if_nametoindex(dev.c_str()) == 0 && clock::now() < deadline)
    ::usleep(20000);
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    init_log()->error("ip=: socket: {}", std::strerror(errno));
    return;
  }
  auto fail = [&](const char* what) {
    init_log()->error("ip={}: {} {}: {}", param, what, dev, std::strerror(errno));
    ::close(fd);
  };
  auto up = [&](const std::string& name) {
    ifreq r{};
    std::strncpy(r.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (::ioctl(fd, SIOCGIFFLAGS, &r) != 0)
      return false;
    r.ifr_flags |= IFF_UP;
    return ::ioctl(fd, SIOCSIFFLAGS, &r) == 0;
  };
  up("lo");
  auto set_addr = [&](unsigned long req, in_addr a) {
    ifreq r{};
    std::strncpy(r.ifr_name, dev.c_str(), IFNAMSIZ - 1);
    auto* sin = reinterpret_cast<sockaddr_in*>(&r.ifr_addr);
    sin->sin_family = AF_INET;
    sin->sin_addr = a;
    return ::ioctl(fd, req, &r) == 0;
  };
  if (!set_addr(SIOCSIFADDR, addr))
    return fail("set the address of");
  if (mask.s_addr && !set_addr(SIOCSIFNETMASK, mask))
    return fail("set the netmask of");
  if (!up(dev))
    return fail("set up");
  if (gw.s_addr) {
    rtentry rt{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
    auto* gate = reinterpret_cast<sockaddr_in*>(&rt.rt_gateway);
    auto* genmask = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
    dst->sin_family = gate->sin_family = genmask->sin_family = AF_INET;
    gate->sin_addr = gw;
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    if (::ioctl(fd, SIOCADDRT, &rt) != 0 && errno != EEXIST)
      return fail("add the default route on");
  }
  ::close(fd);
  init_log()->info("network: {} {} netmask {} gateway {}", dev, f[0], f[3].empty() ? "-" : f[3],
                 f[2].empty() ? "-" : f[2]);
}

void set_hostname() {
  std::ifstream in{"/etc/hostname"};
  std::string name;
  if (std::getline(in, name) && !name.empty())
    ::sethostname(name.c_str(), name.size());
}

/// The ACPI power button (and any key device) as evdev nodes; opened as they appear.
class power_keys {
public:
  ~power_keys() {
    for (auto& [path, fd] : fds_)
      ::close(fd);
  }

  void rescan() {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator{"/dev/input", ec}) {
      auto path = e.path().string();
      if (e.path().filename().string().rfind("event", 0) != 0 || fds_.count(path))
        continue;
      int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0)
        continue;
      unsigned long keys[KEY_MAX / (8 * sizeof(long)) + 1] = {};
      if (::ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(keys)), keys) < 0
          || !(keys[KEY_POWER / (8 * sizeof(long))] & (1UL << (KEY_POWER % (8 * sizeof(long)))))) {
        ::close(fd);
        fds_[path] = -1; // not a power key: do not look again
        continue;
      }
      init_log()->info("power button: {}", path);
      fds_[path] = fd;
    }
  }

  void add_to(std::vector<pollfd>& out) const {
    for (auto& [path, fd] : fds_)
      if (fd >= 0)
        out.push_back({fd, POLLIN, 0});
  }

  /// Drains `fd`; true if the power key went down.
  static bool pressed(int fd) {
    input_event ev[16];
    bool down = false;
    for (ssize_t n; (n = ::read(fd, ev, sizeof(ev))) > 0;)
      for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(input_event); ++i)
        down |= ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1;
    return down;
  }

private:
  std::map<std::string, int> fds_;
};

enum class ending { none, poweroff, reboot };

/// Reaps every child that has exited; returns whether `daemon` was one of them.
bool reap(pid_t daemon, int& daemon_status) {
  bool gone = false;
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0)
      return gone;
    if (pid == daemon) {
      gone = true;
      daemon_status = status;
    }
  }
}

/// Terminates everything left, syncs and ends the machine. Never returns.
[[noreturn]] void end_machine(ending how) {
  ::kill(-1, SIGTERM);
  auto deadline = clock::now() + std::chrono::seconds(3);
  int ignored = 0;
  while (clock::now() < deadline) {
    reap(-1, ignored);
    if (::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD)
      break;
    ::usleep(50'000);
  }
  ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0) {
  }
  ::sync();
  init_log()->info("{}", how == ending::reboot ? "rebooting" : "powering off");
  spdlog::shutdown();
  ::reboot(how == ending::reboot ? RB_AUTOBOOT : RB_POWER_OFF);
  std::_Exit(0); // reboot() failed (no CAP_SYS_BOOT, or in a pid namespace it returned)
}

void noop(int) {
}

[[noreturn]] void supervise(pid_t daemon, int sfd, const init_options& opt) {
  power_keys keys;
  keys.rescan();
  ending how = ending::none;
  std::optional<clock::time_point> kill_at;
  for (;;) {
    std::vector<pollfd> fds{{sfd, POLLIN, 0}};
    keys.add_to(fds);
    ::poll(fds.data(), fds.size(), 1000);
    bool stop = false;
    for (size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents & POLLIN && power_keys::pressed(fds[i].fd)) {
        init_log()->info("power button pressed");
        stop = true;
      }
    signalfd_siginfo si{};
    while (::read(sfd, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
      if (si.ssi_signo == SIGCHLD)
        continue;
      init_log()->info("signal {} received", strsignal(static_cast<int>(si.ssi_signo)));
      if (si.ssi_signo == SIGINT)
        how = ending::reboot;
      stop = true;
    }
    if (stop && !kill_at) {
      if (how == ending::none)
        how = ending::poweroff;
      init_log()->info("stopping cytod (pid {})", daemon);
      ::kill(daemon, SIGTERM);
      kill_at = clock::now() + std::chrono::seconds(opt.stop_timeout_s);
    }
    if (kill_at && clock::now() >= *kill_at) {
      init_log()->error("cytod did not stop within {} s: killing it", opt.stop_timeout_s);
      ::kill(daemon, SIGKILL);
      kill_at = clock::now() + std::chrono::hours(1);
    }
    int status = 0;
    if (reap(daemon, status)) {
      if (WIFEXITED(status))
        init_log()->info("cytod exited with {}", WEXITSTATUS(status));
      else
        init_log()->error("cytod was killed by signal {}", WTERMSIG(status));
      end_machine(how == ending::none ? ending::poweroff : how);
    }
    keys.rescan();
  }
}

} // namespace

bool init_mode_wanted(bool flag) {
  return flag || ::getpid() == 1;
}

int become_init(const init_options& opt) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
    "%Y-%m-%dT%H:%M:%S.%fZ %l %n: %v", spdlog::pattern_time_type::utc));
  log::init({sink}, spdlog::level::info);
  if (::getpid() != 1) {
    // Mounting over /tmp and powering the machine off are for a guest's init only.
    init_log()->error("--init: cytod is pid {}, not 1; init mode is for a VM's /init", ::getpid());
    return 2;
  }
  mount_api_filesystems();
  load_modules(opt.modules_file);
  set_hostname();
  configure_network();
  ::reboot(RB_DISABLE_CAD); // Ctrl-Alt-Del becomes SIGINT to us

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGHUP, SIGUSR1, SIGUSR2}) {
    sigaddset(&mask, s);
    std::signal(s, noop); // PID 1 gets only signals it handles
  }
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) {
    init_log()->critical("signalfd: {}", std::strerror(errno));
    end_machine(ending::poweroff);
  }

  pid_t daemon = ::fork();
  if (daemon < 0) {
    init_log()->critical("fork the daemon: {}", std::strerror(errno));
    end_machine(ending::poweroff);
  }
  if (daemon == 0) {
    ::close(sfd);
    for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGHUP, SIGUSR1, SIGUSR2})
      std::signal(s, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    ::setsid();
    return 0;
  }
  init_log()->info("init: cytod runs as pid {}", daemon);
  supervise(daemon, sfd, opt);
}

} // namespace cyto::services
