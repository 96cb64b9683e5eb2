// ebpf_bench: the eBPF stage of the event pipeline (root), as JSON on stdout.
//
//  ring_buffer: a child sends itself an ignored signal at increasing paced rates
//    (and then as fast as it can); the probe's poll() consumes in this process.
//    Per step: signals sent, events delivered by poll() (filtered to the child),
//    delivered/s, ring buffer loss, the ring size.
//  kernel_cost: with kernel.bpf_stats_enabled=1 (restored afterwards, also on
//    SIGINT/SIGTERM), run signals, fork+exec+exit, and read each program's
//    run_time_ns / run_cnt.
//
//   ebpf_bench [--seconds S] [--quick]
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ebpf/probe.hpp"

using cyto::ebpf::event;
using cyto::ebpf::event_kind;
using cyto::ebpf::probe;
using cyto::ebpf::probe_options;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

namespace {

constexpr const char* stats_sysctl = "/proc/sys/kernel/bpf_stats_enabled";
// The value to restore; empty while untouched. Written from a signal handler.
char saved_stats[8] = {};

void note(const std::string& text) {
  std::fprintf(stderr, "[ebpf_bench] %s\n", text.c_str());
}

void restore_stats() {
  if (saved_stats[0] == 0)
    return;
  int fd = ::open(stats_sysctl, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)!::write(fd, saved_stats, std::strlen(saved_stats));
    ::close(fd);
  }
  saved_stats[0] = 0;
}

void on_fatal_signal(int sig) {
  restore_stats();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool enable_stats() {
  std::ifstream in{stats_sysctl};
  std::string old;
  if (!(in >> old) || old.size() >= sizeof(saved_stats))
    return false;
  std::snprintf(saved_stats, sizeof(saved_stats), "%s", old.c_str());
  std::ofstream out{stats_sysctl};
  out << "1";
  out.flush();
  return static_cast<bool>(out);
}

double secs(steady::time_point a, steady::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The generator: sends itself SIGUSR2 (ignored) `rate` times a second (0: as
// fast as it can) for `seconds`, after a byte on `go`; writes the count sent
// to `done` and exits.
[[noreturn]] void generate(int go, int done, double rate, double seconds) {
  std::signal(SIGUSR2, SIG_IGN);
  char c;
  if (::read(go, &c, 1) != 1)
    _exit(1);
  pid_t self = getpid();
  auto start = steady::now();
  auto end =
      start + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(seconds));
  std::uint64_t sent = 0;
  for (;;) {
    for (int i = 0; i < 64; ++i)
      ::kill(self, SIGUSR2);
    sent += 64;
    auto now = steady::now();
    if (now >= end)
      break;
    if (rate > 0) {
      auto due = start + std::chrono::duration_cast<steady::duration>(
                             std::chrono::duration<double>(static_cast<double>(sent) / rate));
      if (due > now)
        std::this_thread::sleep_until(due);
    }
  }
  (void)!::write(done, &sent, sizeof(sent));
  _exit(0);
}

// One step: `generators` children each send `rate` signals/s (0: flat out).
json ring_step(probe& p, const probe_options& o, double rate, int generators, double seconds) {
  int go[2], done[2];
  if (::pipe(go) != 0 || ::pipe(done) != 0) {
    std::perror("pipe");
    std::exit(1);
  }
  std::vector<pid_t> children;
  for (int g = 0; g < generators; ++g) {
    pid_t child = fork();
    if (child == 0) {
      close(go[1]);
      close(done[0]);
      generate(go[0], done[1], rate, seconds);
    }
    children.push_back(child);
  }
  close(go[0]);
  close(done[1]);
  // Drain what other processes left in the ring before the step starts.
  p.poll(0, [](const event&) {});
  auto before = p.counters();
  std::uint64_t delivered = 0;
  auto ours = [&](std::uint32_t tgid) {
    for (auto c : children)
      if (static_cast<std::uint32_t>(c) == tgid)
        return true;
    return false;
  };
  auto count = [&](const event& e) {
    if (e.kind == event_kind::signal && e.signo == SIGUSR2 && ours(e.sender_tgid))
      ++delivered;
  };
  auto t0 = steady::now();
  (void)!::write(go[1], std::string(static_cast<size_t>(generators), 'x').data(),
                 static_cast<size_t>(generators));
  close(go[1]);
  auto last = t0;
  int running = generators;
  std::uint64_t sent = 0;
  int idle_polls = 0;
  while (running > 0 || idle_polls < 3) {
    std::uint64_t had = delivered;
    int n = p.poll(20, count);
    if (n < 0) {
      note("poll: " + std::string{std::strerror(-n)});
      break;
    }
    if (delivered != had)
      last = steady::now();
    if (running > 0) {
      int status = 0;
      while (running > 0 && waitpid(-1, &status, WNOHANG) > 0) {
        --running;
        std::uint64_t one = 0;
        (void)!::read(done[0], &one, sizeof(one));
        sent += one;
      }
    } else {
      idle_polls = n == 0 ? idle_polls + 1 : 0;
    }
  }
  close(done[0]);
  auto after = p.counters();
  double active = secs(t0, last);
  json j;
  j["ringbuf_bytes"] = o.ringbuf_bytes;
  j["wakeup_interval_us"] = o.wakeup_interval_us;
  j["generators"] = generators;
  j["offered_rate"] = rate > 0 ? json(rate * generators) : json("max");
  j["sent"] = sent;
  j["send_rate"] = static_cast<double>(sent) / seconds;
  j["delivered"] = delivered;
  j["delivered_per_s"] = active > 0 ? static_cast<double>(delivered) / active : 0.0;
  // Loss is counted for the whole ring (all processes); ours is `missing`.
  j["ringbuf_lost"] = after.ringbuf_lost - before.ringbuf_lost;
  j["missing"] = sent - delivered;
  note("ring " + std::to_string(o.ringbuf_bytes) + " wakeup " +
       std::to_string(o.wakeup_interval_us) + "us x" + std::to_string(generators) + " rate " +
       (rate > 0 ? std::to_string(static_cast<int>(rate)) : "max") + ": sent " +
       std::to_string(sent) + " delivered " + std::to_string(delivered) + " lost " +
       std::to_string(after.ringbuf_lost - before.ringbuf_lost));
  return j;
}

std::unique_ptr<probe> open_probe(const probe_options& o) {
  std::string why;
  auto p = probe::open(why, o);
  if (!p) {
    note("SKIP: probe::open: " + why);
    std::exit(77);
  }
  return p;
}

void fork_exec_true(int n) {
  for (int i = 0; i < n; ++i) {
    pid_t c = fork();
    if (c == 0) {
      execl("/bin/true", "true", nullptr);
      _exit(127);
    }
    int st;
    waitpid(c, &st, 0);
  }
}

void self_signals(std::uint64_t n) {
  auto old = std::signal(SIGUSR2, SIG_IGN);
  for (std::uint64_t i = 0; i < n; ++i)
    ::kill(getpid(), SIGUSR2);
  std::signal(SIGUSR2, old);
}

json kernel_cost(const probe_options& o, bool quick) {
  if (!enable_stats()) {
    note("cannot enable " + std::string{stats_sysctl});
    return json{{"error", "cannot enable kernel.bpf_stats_enabled"}};
  }
  note(std::string{"kernel.bpf_stats_enabled=1 (was "} + saved_stats + ")");
  auto p = open_probe(o);
  std::atomic<bool> stop{false};
  std::thread drain{[&] {
    while (!stop)
      p->poll(50, [](const event&) {});
  }};
  self_signals(quick ? 20000 : 200000);
  fork_exec_true(quick ? 50 : 300);
  stop = true;
  drain.join();
  json progs = json::array();
  for (auto& s : p->stats()) {
    json j{{"name", s.name}, {"run_cnt", s.run_cnt}, {"run_time_ns", s.run_time_ns}};
    j["ns_per_run"] =
        s.run_cnt ? json(static_cast<double>(s.run_time_ns) / static_cast<double>(s.run_cnt))
                  : json(nullptr);
    j["wakeup_interval_us"] = o.wakeup_interval_us;
    progs.push_back(j);
  }
  p.reset();
  restore_stats();
  return progs;
}

} // namespace

int main(int argc, char** argv) {
  double seconds = 1.0;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--seconds" && i + 1 < argc)
      seconds = std::atof(argv[++i]);
    else if (a == "--quick")
      quick = true, seconds = 0.3;
    else {
      std::fprintf(stderr, "usage: ebpf_bench [--seconds S] [--quick]\n");
      return 2;
    }
  }
  if (geteuid() != 0) {
    note("SKIP: needs root (loads BPF programs)");
    return 77;
  }
  std::signal(SIGINT, on_fatal_signal);
  std::signal(SIGTERM, on_fatal_signal);
  std::atexit(restore_stats);

  json out;
  out["bench"] = "ebpf_bench";
  out["cpus"] = std::thread::hardware_concurrency();
  out["seconds_per_step"] = seconds;
  out["record_bytes_in_ring"] = 96;

  json steps = json::array();
  json cost = json::array();
  for (std::uint32_t wakeup : {0u, 1000u}) {
    probe_options o;
    o.wakeup_interval_us = wakeup;
    {
      auto p = open_probe(o);
      for (double rate : {50e3, 100e3, 200e3, 400e3, 0.0})
        steps.push_back(ring_step(*p, o, rate, 1, seconds));
      steps.push_back(ring_step(*p, o, 0.0, 2, seconds));
    }
    for (auto& c : kernel_cost(o, quick))
      cost.push_back(c);
  }
  for (std::uint32_t ring : {256u << 10, 1u << 20}) {
    probe_options o;
    o.ringbuf_bytes = ring;
    o.wakeup_interval_us = 1000;
    auto p = open_probe(o);
    steps.push_back(ring_step(*p, o, 0.0, 2, seconds));
  }
  out["ring_buffer"] = steps;
  out["kernel_cost"] = cost;
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
