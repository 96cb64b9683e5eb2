// The eBPF probe against the real kernel (root): events for children this test
// forks — a signal, an exec, exits by code and by SIGKILL, a multi-threaded exit,
// an OOM kill in a memory cgroup — and the cgroup id on the unified hierarchy.
// The host runs other processes, so every check filters to our own children.
#define BOOST_TEST_MODULE integration_ebpf_probe
#include <boost/test/unit_test.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ebpf/probe.hpp"

using namespace cyto::ebpf;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<probe> the_probe;

struct probe_required {
  probe_required() {
    if (::geteuid() != 0) {
      std::printf("SKIP: the eBPF probe needs root\n");
      std::exit(77);
    }
    if (!fs::exists("/sys/kernel/btf/vmlinux")) {
      std::printf("SKIP: no kernel BTF at /sys/kernel/btf/vmlinux\n");
      std::exit(77);
    }
    std::string why;
    the_probe = probe::open(why);
    if (!the_probe && why.rfind("built without eBPF programs", 0) == 0) {
      std::printf("SKIP: %s\n", why.c_str());
      std::exit(77);
    }
    // BTF is here, so the probe must open: a failure is a bug, not a skip.
    if (!the_probe) {
      std::printf("FAIL: probe::open: %s\n", why.c_str());
      std::exit(1);
    }
  }
  ~probe_required() {
    the_probe.reset();
  }
};

BOOST_TEST_GLOBAL_FIXTURE(probe_required);

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out{path};
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

// Polls the probe until `done(events)` holds or `limit` passes, keeping the
// events `keep` selects. Returns what it kept.
std::vector<event> collect(const std::function<bool(const event&)>& keep,
                           const std::function<bool(const std::vector<event>&)>& done,
                           std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  std::vector<event> kept;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done(kept) && std::chrono::steady_clock::now() < deadline) {
    int n = the_probe->poll(100, [&](const event& e) {
      if (keep(e))
        kept.push_back(e);
    });
    BOOST_REQUIRE_MESSAGE(n >= 0, "poll: " << std::strerror(-n));
  }
  return kept;
}

auto about(pid_t tgid) {
  return [tgid](const event& e) { return e.tgid == static_cast<std::uint32_t>(tgid); };
}

auto has(event_kind k) {
  return [k](const std::vector<event>& v) {
    for (auto& e : v)
      if (e.kind == k)
        return true;
    return false;
  };
}

const event* first(const std::vector<event>& v, event_kind k) {
  for (auto& e : v)
    if (e.kind == k)
      return &e;
  return nullptr;
}

int count(const std::vector<event>& v, event_kind k) {
  int n = 0;
  for (auto& e : v)
    n += e.kind == k;
  return n;
}

// A child that waits (SIGUSR1 blocked, so a signal stays pending) until killed.
pid_t fork_sleeper() {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, &old);
  pid_t pid = fork();
  if (pid == 0) {
    for (;;)
      pause();
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  BOOST_REQUIRE_MESSAGE(pid > 0, "fork: " << std::strerror(errno));
  return pid;
}

int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Kills and reaps a child on scope exit (also when a check fails).
struct child_guard {
  pid_t pid;
  bool reaped = false;
  explicit child_guard(pid_t p) : pid{p} {}
  int wait() {
    reaped = true;
    return reap(pid);
  }
  ~child_guard() {
    if (!reaped) {
      kill(pid, SIGKILL);
      reap(pid);
    }
  }
};

std::uint64_t handle_id(const std::string& dir) {
  struct {
    file_handle fh;
    unsigned char bytes[64];
  } h{};
  h.fh.handle_bytes = sizeof(h.bytes);
  int mount_id = 0;
  if (name_to_handle_at(AT_FDCWD, dir.c_str(), &h.fh, &mount_id, 0) != 0 ||
      h.fh.handle_bytes < sizeof(std::uint64_t))
    return 0;
  std::uint64_t id = 0;
  std::memcpy(&id, h.fh.f_handle, sizeof(id));
  return id;
}

// Where the unified (cgroup2) hierarchy is mounted: /sys/fs/cgroup/unified on
// hybrid hosts, /sys/fs/cgroup on unified ones; empty when absent.
std::string unified_mount() {
  std::ifstream in{"/proc/mounts"};
  std::string dev, dir, type, rest;
  while (in >> dev >> dir >> type) {
    std::getline(in, rest);
    if (type == "cgroup2")
      return dir;
  }
  return {};
}

// A cgroup directory made for one test and removed afterwards, also on failure.
struct scoped_cgroup {
  std::string path;
  explicit scoped_cgroup(std::string p) : path{std::move(p)} {
    BOOST_REQUIRE_MESSAGE(::mkdir(path.c_str(), 0755) == 0,
                          "mkdir " << path << ": " << std::strerror(errno));
  }
  ~scoped_cgroup() {
    if (::rmdir(path.c_str()) != 0)
      BOOST_TEST_MESSAGE("rmdir " << path << ": " << std::strerror(errno));
  }
};

void move_to(const std::string& cgroup, pid_t pid) {
  BOOST_REQUIRE_MESSAGE(write_file(cgroup + "/cgroup.procs", std::to_string(pid)),
                        "move " << pid << " into " << cgroup);
}

} // namespace

BOOST_AUTO_TEST_CASE(signal_event_names_target_sender_and_signal) {
  pid_t child = fork_sleeper();
  child_guard guard{child};
  BOOST_REQUIRE(kill(child, SIGUSR1) == 0);
  auto evs = collect(
      [child](const event& e) {
        return e.kind == event_kind::signal && e.tgid == static_cast<std::uint32_t>(child) &&
               e.signo == SIGUSR1;
      },
      has(event_kind::signal));
  auto* e = first(evs, event_kind::signal);
  BOOST_REQUIRE_MESSAGE(e, "no SIGUSR1 event for child " << child);
  BOOST_TEST(e->pid == static_cast<std::uint32_t>(child));
  BOOST_TEST(e->ns_pid == e->pid, "host pid namespace: the same ids");
  BOOST_TEST(e->ns_tgid == e->tgid);
  BOOST_TEST(e->sender_pid == static_cast<std::uint32_t>(gettid()));
  BOOST_TEST(e->sender_tgid == static_cast<std::uint32_t>(getpid()));
  BOOST_TEST(e->signal_result == 0, "delivered (queued as pending)");
  auto comm = trim(slurp("/proc/self/comm"));
  BOOST_TEST(std::string{e->comm} == comm);
  BOOST_TEST(std::string{e->sender_comm} == comm);
  BOOST_TEST(e->timestamp_ns > 0u);
  if (!unified_mount().empty())
    BOOST_TEST(e->cgroup_id != 0u);
  BOOST_TEST(evs.size() == 1u, "one event per kill()");
}

BOOST_AUTO_TEST_CASE(exec_event_has_filename_and_new_comm) {
  pid_t child = fork();
  if (child == 0) {
    execl("/bin/true", "true", nullptr);
    _exit(127);
  }
  BOOST_REQUIRE(child > 0);
  child_guard guard{child};
  auto evs = collect(about(child), has(event_kind::exit));
  guard.wait();
  auto* e = first(evs, event_kind::exec);
  BOOST_REQUIRE_MESSAGE(e, "no exec event for child " << child);
  BOOST_TEST(std::string{e->filename} == "/bin/true");
  BOOST_TEST(std::string{e->comm} == "true");
  BOOST_TEST(e->pid == static_cast<std::uint32_t>(child));
  auto* x = first(evs, event_kind::exit);
  BOOST_REQUIRE(x);
  BOOST_TEST(x->exit_status == 0);
  BOOST_TEST(x->timestamp_ns >= e->timestamp_ns);
}

BOOST_AUTO_TEST_CASE(exit_event_carries_exit_code) {
  pid_t child = fork();
  if (child == 0)
    _exit(7);
  BOOST_REQUIRE(child > 0);
  child_guard guard{child};
  auto evs = collect(about(child), has(event_kind::exit));
  int status = guard.wait();
  auto* e = first(evs, event_kind::exit);
  BOOST_REQUIRE_MESSAGE(e, "no exit event for child " << child);
  BOOST_TEST(e->exit_status == 7 << 8);
  BOOST_TEST(e->exit_status == status, "same as waitpid's status");
  BOOST_TEST(WIFEXITED(e->exit_status));
  BOOST_TEST(WEXITSTATUS(e->exit_status) == 7);
}

BOOST_AUTO_TEST_CASE(exit_event_carries_killing_signal) {
  pid_t child = fork_sleeper();
  child_guard guard{child};
  BOOST_REQUIRE(kill(child, SIGKILL) == 0);
  auto evs = collect(about(child), has(event_kind::exit));
  int status = guard.wait();
  auto* e = first(evs, event_kind::exit);
  BOOST_REQUIRE_MESSAGE(e, "no exit event for child " << child);
  BOOST_TEST(WIFSIGNALED(e->exit_status));
  BOOST_TEST(WTERMSIG(e->exit_status) == SIGKILL);
  BOOST_TEST(e->exit_status == status, "same as waitpid's status");
  auto* s = first(evs, event_kind::signal);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->signo == SIGKILL);
}

// A process that is pid 1 of its own pid namespace: host ids in pid/tgid,
// 1 in ns_pid/ns_tgid, on its exit event too (after which /proc has nothing).
BOOST_AUTO_TEST_CASE(exit_event_carries_pid_namespace_ids) {
  int report[2];
  BOOST_REQUIRE(pipe(report) == 0);
  pid_t middle = fork();
  if (middle == 0) {
    close(report[0]);
    if (unshare(CLONE_NEWPID) != 0)
      _exit(100);
    pid_t inner = fork(); // pid 1 of the new namespace
    if (inner == 0)
      _exit(5);
    if (write(report[1], &inner, sizeof(inner)) != sizeof(inner))
      _exit(101);
    int st = 0;
    waitpid(inner, &st, 0);
    _exit(0);
  }
  BOOST_REQUIRE(middle > 0);
  close(report[1]);
  child_guard guard{middle};
  pid_t inner = 0;
  BOOST_REQUIRE(read(report[0], &inner, sizeof(inner)) == sizeof(inner));
  close(report[0]);
  auto evs = collect(about(inner), has(event_kind::exit));
  BOOST_TEST(guard.wait() == 0);
  auto* e = first(evs, event_kind::exit);
  BOOST_REQUIRE_MESSAGE(e, "no exit event for " << inner);
  BOOST_TEST(e->pid == static_cast<std::uint32_t>(inner));
  BOOST_TEST(e->ns_pid == 1u);
  BOOST_TEST(e->ns_tgid == 1u);
  BOOST_TEST(e->exit_status == 5 << 8);
}

BOOST_AUTO_TEST_CASE(multi_threaded_process_exits_once) {
  pid_t child = fork();
  if (child == 0) {
    // Four threads that never return; the main thread exits the whole group.
    for (int i = 0; i < 4; ++i) {
      pthread_t t;
      pthread_create(
          &t, nullptr,
          [](void*) -> void* {
            for (;;)
              pause();
          },
          nullptr);
    }
    usleep(50 * 1000);
    _exit(3);
  }
  BOOST_REQUIRE(child > 0);
  child_guard guard{child};
  auto evs = collect(about(child), has(event_kind::exit));
  int status = guard.wait();
  // Give a (wrong) exit event per thread time to arrive.
  auto more = collect(
      about(child), [](auto&) { return false; }, std::chrono::milliseconds(300));
  evs.insert(evs.end(), more.begin(), more.end());
  BOOST_TEST(count(evs, event_kind::exit) == 1, "one exit event for a process of 5 threads");
  auto* e = first(evs, event_kind::exit);
  BOOST_REQUIRE(e);
  BOOST_TEST(e->exit_status == status);
  BOOST_TEST(status == 3 << 8);
}

// A child allocating past a small memory limit is OOM-killed: one OOM event
// for it, then its exit by SIGKILL. Uses the memory controller wherever this
// host has it (v1 on hybrid hosts, the unified hierarchy otherwise).
/// Where the memory controller is: the v1 hierarchy, or the unified one; "" if nowhere.
std::string memory_base() {
  if (fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    return "/sys/fs/cgroup/memory";
  if (auto u = unified_mount();
      !u.empty() && slurp(u + "/cgroup.subtree_control").find("memory") != std::string::npos)
    return u;
  return {};
}

boost::test_tools::assertion_result have_memory_controller(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r{!memory_base().empty()};
  r.message() << "no memory controller on this host";
  return r;
}

boost::test_tools::assertion_result have_cgroup2(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r{!unified_mount().empty()};
  r.message() << "no cgroup2 mount";
  return r;
}

BOOST_AUTO_TEST_CASE(oom_kill_gives_oom_event,
                     *boost::unit_test::precondition(have_memory_controller)) {
  std::string base = memory_base();
  bool v1 = base == "/sys/fs/cgroup/memory";
  scoped_cgroup cg{base + "/cyto-test-ebpf-" + std::to_string(getpid())};
  constexpr const char* limit = "33554432"; // 32 MiB
  if (v1) {
    BOOST_REQUIRE(write_file(cg.path + "/memory.limit_in_bytes", limit));
    write_file(cg.path + "/memory.swappiness", "0");
    BOOST_REQUIRE(write_file(cg.path + "/memory.oom_control", "0")); // OOM killer on
  } else {
    BOOST_REQUIRE(write_file(cg.path + "/memory.max", limit));
    write_file(cg.path + "/memory.swap.max", "0");
  }
  int go[2];
  BOOST_REQUIRE(pipe(go) == 0);
  pid_t child = fork();
  if (child == 0) {
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 1)
      _exit(100);
    // Touch 512 MiB, far past the limit.
    for (int i = 0; i < 512; ++i) {
      auto* p = static_cast<char*>(malloc(1 << 20));
      if (!p)
        _exit(101);
      std::memset(p, 1, 1 << 20);
    }
    _exit(102);
  }
  BOOST_REQUIRE(child > 0);
  close(go[0]);
  child_guard guard{child};
  move_to(cg.path, child);
  BOOST_REQUIRE(write(go[1], "x", 1) == 1);
  close(go[1]);
  auto evs = collect(about(child),
                     [](auto& v) { return has(event_kind::oom)(v) && has(event_kind::exit)(v); });
  int status = guard.wait();
  BOOST_TEST_REQUIRE(WIFSIGNALED(status), "child status " << status << ", expected OOM kill");
  BOOST_TEST(WTERMSIG(status) == SIGKILL);
  BOOST_TEST(count(evs, event_kind::oom) == 1);
  auto* o = first(evs, event_kind::oom);
  BOOST_REQUIRE_MESSAGE(o, "no OOM event for child " << child);
  BOOST_TEST(o->pid == static_cast<std::uint32_t>(child));
  auto* x = first(evs, event_kind::exit);
  BOOST_REQUIRE(x);
  BOOST_TEST(x->exit_status == status);
  BOOST_TEST(x->timestamp_ns >= o->timestamp_ns);
}

// The event's cgroup id is the inode number (and file handle) of the task's
// directory on the unified hierarchy: how the observe side maps events to a
// cell's tracking directory there, also on hybrid hosts.
BOOST_AUTO_TEST_CASE(cgroup_id_is_the_unified_directory_inode,
                     *boost::unit_test::precondition(have_cgroup2)) {
  auto unified = unified_mount();
  scoped_cgroup cg{unified + "/cyto-test-ebpf-" + std::to_string(getpid())};
  struct stat st {};
  BOOST_REQUIRE(::stat(cg.path.c_str(), &st) == 0);
  BOOST_TEST(handle_id(cg.path) == st.st_ino, "file handle id == inode on cgroupfs");

  pid_t child = fork_sleeper();
  child_guard guard{child};
  move_to(cg.path, child);
  BOOST_REQUIRE(kill(child, SIGUSR1) == 0);
  BOOST_REQUIRE(kill(child, SIGKILL) == 0);
  auto evs = collect(about(child), has(event_kind::exit));
  guard.wait();
  BOOST_REQUIRE(first(evs, event_kind::signal));
  BOOST_REQUIRE(first(evs, event_kind::exit));
  for (auto& e : evs)
    BOOST_TEST(e.cgroup_id == st.st_ino, "event kind " << int(e.kind) << " cgroup id");

  // Our own process: its unified cgroup from /proc/self/cgroup ("0::/path").
  auto self = slurp("/proc/self/cgroup");
  auto at = self.find("0::");
  BOOST_REQUIRE(at != std::string::npos);
  auto rel = trim(self.substr(at + 3, self.find('\n', at) - at - 3));
  struct stat own {};
  BOOST_REQUIRE(::stat((unified + rel).c_str(), &own) == 0);
  pid_t sleeper = fork_sleeper();
  child_guard g2{sleeper};
  BOOST_REQUIRE(kill(sleeper, SIGUSR1) == 0);
  auto mine = collect(about(sleeper), has(event_kind::signal));
  auto* s = first(mine, event_kind::signal);
  BOOST_REQUIRE(s);
  BOOST_TEST(s->cgroup_id == own.st_ino, "a child in our own cgroup " << rel);
}

BOOST_AUTO_TEST_CASE(counters_count_submitted_and_consumed) {
  auto before = the_probe->counters();
  pid_t child = fork();
  if (child == 0)
    _exit(0);
  child_guard guard{child};
  collect(about(child), has(event_kind::exit));
  guard.wait();
  auto after = the_probe->counters();
  BOOST_TEST(after.submitted > before.submitted);
  BOOST_TEST(after.consumed > before.consumed);
  BOOST_TEST(after.consumed <= after.submitted);
  BOOST_TEST(after.ringbuf_lost == 0u, "8 MiB ring, polled: nothing lost");
}

// With wakeups batched the kernel wakes fd() at most once per interval; a
// signal sent right after a burst gets no wakeup of its own and must still
// arrive, both through poll() with a timeout and through a caller's own
// epoll on fd() that honours poll_again_ms().
BOOST_AUTO_TEST_CASE(batched_wakeups_still_deliver_a_lone_event) {
  std::string why;
  probe_options o;
  o.wakeup_interval_us = 200'000;
  auto b = probe::open(why, o);
  BOOST_REQUIRE_MESSAGE(b, why);
  BOOST_TEST(b->poll_again_ms() == -1, "nothing consumed yet");
  pid_t child = fork_sleeper();
  child_guard guard{child};
  auto ours = [child](const event& e) {
    return e.kind == event_kind::signal && e.tgid == static_cast<std::uint32_t>(child);
  };

  // Through poll(timeout): a burst, then one more inside the same interval.
  for (int i = 0; i < 100; ++i)
    kill(child, SIGUSR1);
  int got = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got < 100 && std::chrono::steady_clock::now() < deadline)
    b->poll(100, [&](const event& e) { got += ours(e); });
  BOOST_REQUIRE(got == 100);
  BOOST_TEST(b->poll_again_ms() == 200, "a re-check is due after consuming");
  kill(child, SIGUSR1);
  int lone = 0;
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (lone == 0 && std::chrono::steady_clock::now() < deadline)
    b->poll(1000, [&](const event& e) { lone += ours(e); });
  BOOST_TEST(lone == 1, "the lone signal through poll(timeout)");

  // Through the caller's epoll on fd(): wait poll_again_ms(), then poll(0).
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  BOOST_REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, b->fd(), &ev) == 0);
  // The first may wake fd(); the second, sent while we wait on fd() after
  // consuming the first, falls inside the same interval: no wakeup of its own.
  int seen = 0;
  // Found only after fd() stayed quiet and no re-check was due. On a busy host
  // other processes' events cause wakeups too, so this catches a broken
  // re-check only on a quiet one; poll_again_ms() is checked directly above.
  bool stranded = false;
  for (int want : {1, 2}) {
    std::thread late;
    if (want == 1)
      kill(child, SIGUSR1);
    else
      late = std::thread{[child] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        kill(child, SIGUSR1);
      }};
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (seen < want && std::chrono::steady_clock::now() < deadline) {
      int wait = b->poll_again_ms();
      bool fd_only = wait < 0;
      epoll_event out{};
      int r = epoll_wait(ep, &out, 1, fd_only ? 2000 : wait);
      int n = b->poll(0, [&](const event& e) { seen += ours(e); });
      stranded = stranded || (fd_only && r == 0 && n > 0);
    }
    if (late.joinable())
      late.join();
  }
  close(ep);
  BOOST_TEST(!stranded, "an event waited without a wakeup or a due re-check");
  BOOST_TEST(seen == 2, "both signals through fd() and poll_again_ms()");
}

// An unprivileged caller gets a clear reason, from both open() and supported().
BOOST_AUTO_TEST_CASE(without_privileges_the_reason_is_eperm) {
  int out[2];
  BOOST_REQUIRE(pipe(out) == 0);
  pid_t child = fork();
  if (child == 0) {
    close(out[0]);
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(100);
    std::string why, why2;
    bool opened = probe::open(why) != nullptr;
    bool supported = probe::supported(why2);
    std::string text = why + "\n" + why2;
    (void)!write(out[1], text.data(), text.size());
    _exit(opened || supported ? 1 : 0);
  }
  BOOST_REQUIRE(child > 0);
  close(out[1]);
  child_guard guard{child};
  std::string text;
  char buf[512];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;)
    text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = guard.wait();
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0, "neither open() nor supported() may succeed unprivileged");
  BOOST_TEST(text == "load BPF programs: bpf(): EPERM (needs root, or CAP_BPF with CAP_PERFMON)\n"
                     "load BPF programs: bpf(): EPERM (needs root, or CAP_BPF with CAP_PERFMON)");
}

BOOST_AUTO_TEST_CASE(bad_ring_buffer_size_is_refused) {
  std::string why;
  probe_options o;
  o.ringbuf_bytes = 12345;
  BOOST_TEST(!probe::open(why, o));
  BOOST_TEST(why.find("power of two") != std::string::npos, why);
}
