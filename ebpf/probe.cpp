// The loader: opens the generated skeleton, sizes the ring buffer, loads and
// attaches the programs, and decodes ring buffer records into probe::event.
#include "ebpf/probe.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <vector>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bus/logging.hpp"
#include "ebpf/events.h"
#include "events.skel.h"

namespace cyto::ebpf {

namespace {

constexpr const char* btf_path = "/sys/kernel/btf/vmlinux";
constexpr const char* tracefs_path = "/sys/kernel/tracing";

std::shared_ptr<spdlog::logger> logger() {
  return cyto::log::get("ebpf");
}

// libbpf's first warning since the last reset (verifier output, missing BTF
// types, ...), for `why`.
std::mutex last_warning_mtx;
std::string last_warning;

int print_libbpf(enum libbpf_print_level level, const char* fmt, va_list ap) {
  char buf[1024];
  int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
  if (n < 0)
    return 0;
  std::string_view line{buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1)};
  while (!line.empty() && line.back() == '\n')
    line.remove_suffix(1);
  logger()->debug("libbpf: {}", line);
  // The first warning since the last reset names the cause; later ones (such
  // as "failed to load BPF skeleton") only repeat that something failed.
  if (level == LIBBPF_WARN) {
    if (line.substr(0, 8) == "libbpf: ")
      line.remove_prefix(8);
    std::lock_guard guard{last_warning_mtx};
    if (last_warning.empty())
      last_warning = line;
  }
  return n;
}

void route_libbpf_logs() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(print_libbpf); });
}

std::string take_last_warning() {
  std::lock_guard guard{last_warning_mtx};
  return std::exchange(last_warning, {});
}

// "what: strerror (libbpf: its first complaint)". EPERM says it all: libbpf's
// own words then are about RLIMIT_MEMLOCK and CONFIG_BPF_SYSCALL, misleading.
std::string failure(const std::string& what, int err) {
  err = err < 0 ? -err : err;
  auto w = take_last_warning();
  if (err == EPERM)
    return what + ": bpf(): EPERM (needs root, or CAP_BPF with CAP_PERFMON)";
  std::string text = what + ": " + std::strerror(err);
  if (!w.empty())
    text += " (libbpf: " + w + ")";
  return text;
}

bool tracefs_mounted() {
  std::ifstream in{"/proc/mounts"};
  std::string dev, dir, type;
  std::string rest;
  while (in >> dev >> dir >> type) {
    std::getline(in, rest);
    if (dir == tracefs_path && type == "tracefs")
      return true;
  }
  return false;
}

// The programs are tp_btf and need no tracefs, but bpftool, perf and the
// classic tracepoints do, and the issue asks the daemon to provide it.
void ensure_tracefs() {
  if (tracefs_mounted())
    return;
  if (::mount("nodev", tracefs_path, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0)
    logger()->info("mounted tracefs at {}", tracefs_path);
  else
    logger()->warn("mount tracefs at {}: {} (the event programs do not need it)", tracefs_path,
                   std::strerror(errno));
}

void copy_str(char* dst, size_t cap, const char* src, size_t src_cap) {
  size_t n = strnlen(src, std::min(cap - 1, src_cap));
  std::memcpy(dst, src, n);
  dst[n] = 0;
}

class bpf_probe final : public probe {
public:
  bpf_probe(cyto_events* skel, std::uint32_t wakeup_interval_us)
      : skel_{skel}, interval_{std::chrono::microseconds(wakeup_interval_us)} {}
  ~bpf_probe() override {
    ring_buffer__free(rb_);
    cyto_events::destroy(skel_);
  }
  bpf_probe(const bpf_probe&) = delete;
  bpf_probe& operator=(const bpf_probe&) = delete;

  // The ring buffer's callback context is the probe, so it is set after construction.
  void set_ring(ring_buffer* rb) {
    rb_ = rb;
  }

  int fd() const override {
    return ring_buffer__epoll_fd(rb_);
  }

  int poll(int timeout_ms, const std::function<void(const event&)>& fn) override {
    fn_ = &fn;
    int n = timeout_ms == 0 ? consume() : wait_and_consume(timeout_ms);
    fn_ = nullptr;
    return n;
  }

  int poll_again_ms() const override {
    if (interval_.count() == 0 || steady::now() >= last_found_ + 2 * interval_)
      return -1;
    // Re-check one interval on; twice without finding anything and a record
    // can no longer have been committed without a wakeup (events.bpf.c).
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(interval_).count();
    return static_cast<int>(std::max<std::int64_t>(ms, 1));
  }

  probe_counters counters() const override {
    probe_counters c;
    c.submitted = sum_counter(CYTO_CNT_SUBMITTED);
    c.ringbuf_lost = sum_counter(CYTO_CNT_LOST);
    c.consumed = consumed_;
    return c;
  }

  std::vector<program_stats> stats() const override {
    std::vector<program_stats> out;
    bpf_program* prog = nullptr;
    bpf_object__for_each_program(prog, skel_->obj) {
      bpf_prog_info info{};
      __u32 len = sizeof(info);
      program_stats s;
      s.name = bpf_program__name(prog);
      if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0) {
        s.run_time_ns = info.run_time_ns;
        s.run_cnt = info.run_cnt;
      }
      out.push_back(std::move(s));
    }
    return out;
  }

  // ring_buffer_sample_fn: `ctx` is the probe.
  static int on_sample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<bpf_probe*>(ctx);
    cyto_event raw{};
    std::memcpy(&raw, data, std::min(size, sizeof(raw)));
    event e;
    e.kind = static_cast<event_kind>(raw.kind);
    e.timestamp_ns = raw.timestamp_ns;
    e.pid = raw.pid;
    e.tgid = raw.tgid;
    e.cgroup_id = raw.cgroup_id;
    e.pids_cgroup_id = raw.pids_cgroup_id;
    copy_str(e.comm, sizeof(e.comm), raw.comm, sizeof(raw.comm));
    e.signo = raw.signo;
    e.signal_result = raw.signal_result;
    e.sender_pid = raw.sender_pid;
    e.sender_tgid = raw.sender_tgid;
    copy_str(e.sender_comm, sizeof(e.sender_comm), raw.sender_comm, sizeof(raw.sender_comm));
    e.exit_status = raw.exit_status;
    e.ns_pid = raw.ns_pid;
    e.ns_tgid = raw.ns_tgid;
    if (size > CYTO_EVENT_SHORT_SIZE)
      copy_str(e.filename, sizeof(e.filename), raw.filename, sizeof(raw.filename));
    ++self->consumed_;
    if (self->fn_)
      (*self->fn_)(e);
    return 0;
  }

private:
  using steady = std::chrono::steady_clock;

  int consume() {
    int n = ring_buffer__consume(rb_);
    if (n > 0)
      last_found_ = steady::now();
    return n;
  }

  // Waits up to timeout_ms (-1: for ever) for records, re-checking without a
  // wakeup as poll_again_ms() says.
  int wait_and_consume(int timeout_ms) {
    auto deadline = steady::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int wait = poll_again_ms();
      if (timeout_ms >= 0) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - steady::now()).count();
        left = std::max<std::int64_t>(left, 0);
        wait = wait < 0 ? static_cast<int>(left) : std::min(wait, static_cast<int>(left));
      }
      int n = ring_buffer__poll(rb_, wait);
      if (n == -EINTR)
        n = 0;
      if (n < 0)
        return n;
      if (n == 0)
        n = ring_buffer__consume(rb_);
      if (n > 0) {
        last_found_ = steady::now();
        return n;
      }
      if (timeout_ms >= 0 && steady::now() >= deadline)
        return 0;
    }
  }

  std::uint64_t sum_counter(std::uint32_t key) const {
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0)
      return 0;
    std::vector<std::uint64_t> per_cpu(static_cast<size_t>(ncpu));
    if (bpf_map__lookup_elem(skel_->maps.counters, &key, sizeof(key), per_cpu.data(),
                             per_cpu.size() * sizeof(std::uint64_t), 0) != 0)
      return 0;
    std::uint64_t sum = 0;
    for (auto v : per_cpu)
      sum += v;
    return sum;
  }

  cyto_events* skel_;
  ring_buffer* rb_ = nullptr;
  const std::function<void(const event&)>* fn_ = nullptr;
  std::uint64_t consumed_ = 0;
  std::chrono::microseconds interval_;
  steady::time_point last_found_{};
};

bool is_power_of_two(std::uint32_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

} // namespace

std::unique_ptr<probe> probe::open(std::string& why) {
  return open(why, probe_options{});
}

namespace {

// BTF, tracefs and the log route: what open() and supported() check first.
bool preflight(std::string& why) {
  route_libbpf_logs();
  struct stat st {};
  if (::stat(btf_path, &st) != 0) {
    why = std::string{"BTF missing at "} + btf_path + " (kernel without CONFIG_DEBUG_INFO_BTF)";
    return false;
  }
  ensure_tracefs();
  take_last_warning();
  return true;
}

// Opens and loads the skeleton (nothing attached); nullptr with `why` set.
// RLIMIT_MEMLOCK: kernels before 5.11 charge BPF memory to it. libbpf 1.x
// (strict mode, its default) raises it itself only on those kernels; on newer
// ones memory is charged to the memory cgroup and the limit stays as is, so
// the processes the daemon spawns do not inherit a raised limit.
cyto_events* load(const probe_options& options, std::string& why) {
  cyto_events* skel = cyto_events::open();
  if (!skel) {
    why = failure("open BPF object", errno);
    return nullptr;
  }
  if (int err = bpf_map__set_max_entries(skel->maps.events, options.ringbuf_bytes); err != 0) {
    why = failure("size ring buffer", err);
    cyto_events::destroy(skel);
    return nullptr;
  }
  skel->rodata->wakeup_interval_ns = std::uint64_t{options.wakeup_interval_us} * 1000;
  if (int err = cyto_events::load(skel); err != 0) {
    why = failure("load BPF programs", err);
    cyto_events::destroy(skel);
    return nullptr;
  }
  return skel;
}

} // namespace

bool probe::supported(std::string& why) {
  if (!preflight(why))
    return false;
  probe_options small;
  small.ringbuf_bytes = 1u << 16;
  cyto_events* skel = load(small, why);
  if (!skel)
    return false;
  cyto_events::destroy(skel);
  return true;
}

std::unique_ptr<probe> probe::open(std::string& why, const probe_options& options) {
  auto page = static_cast<std::uint32_t>(sysconf(_SC_PAGESIZE));
  if (!is_power_of_two(options.ringbuf_bytes) || options.ringbuf_bytes < page) {
    why = "ring buffer size " + std::to_string(options.ringbuf_bytes) +
          " is not a power of two of at least one page";
    return nullptr;
  }
  if (!preflight(why))
    return nullptr;
  cyto_events* skel = load(options, why);
  if (!skel)
    return nullptr;
  if (int err = cyto_events::attach(skel); err != 0) {
    why = failure("attach BPF programs", err);
    cyto_events::destroy(skel);
    return nullptr;
  }
  auto p = std::make_unique<bpf_probe>(skel, options.wakeup_interval_us);
  ring_buffer* rb =
      ring_buffer__new(bpf_map__fd(skel->maps.events), &bpf_probe::on_sample, p.get(), nullptr);
  if (!rb) {
    why = failure("open ring buffer", errno);
    return nullptr; // p's destructor frees the skeleton
  }
  p->set_ring(rb);
  logger()->debug("probe loaded: ring buffer {} bytes, wakeup interval {} us",
                  options.ringbuf_bytes, options.wakeup_interval_us);
  return p;
}

} // namespace cyto::ebpf
