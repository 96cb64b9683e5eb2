// vm_bench: VM costs, printed as one JSON object.
//   boot: `cyto vm run --rm` to the guest's marker line vs bare qemu-system-x86_64 with
//         the same arguments (qemu_args(), the function cytod uses), paired runs
//   qmp:  QMP command latency (query-status) on one running QEMU, p50/p99
//   rss:  cytod's RSS growth per running VM (QEMU's own memory is in its cell)
// Needs root, QEMU and deploy/fetch-guest-kernel; never asserts on time.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "actors/vms/qemu_args.hpp"
#include "actors/vms/qmp.hpp"
#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;

namespace {

constexpr int boot_runs = 5;
constexpr int qmp_calls = 300;
constexpr int rss_vms = 3;

double ms_since(steady::time_point t) {
  return std::chrono::duration<double, std::milli>(steady::now() - t).count();
}

double pct(std::vector<double> xs, double p) {
  std::sort(xs.begin(), xs.end());
  return xs.empty() ? 0 : xs[std::min(xs.size() - 1, static_cast<size_t>(p * xs.size()))];
}

uint64_t rss_kib(pid_t pid) {
  for (auto& l : lines_of(read_text("/proc/" + std::to_string(pid) + "/status")))
    if (l.rfind("VmRSS:", 0) == 0)
      return std::stoull(l.substr(6));
  return 0;
}

[[noreturn]] void skip(const std::string& why) {
  std::printf("{\"skipped\": \"%s\"}\n", why.c_str());
  std::exit(77);
}

} // namespace

int main() {
  if (::geteuid() != 0)
    skip("needs root");
  auto k = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/fetch-guest-kernel", "--modules"},
                       120s);
  if (k.code() != 0)
    skip("no guest kernel");
  auto paths = lines_of(k.out);
  temp_dir work;
  auto initrd = work / "initrd.cpio.gz";
  if (run_process({std::string{CYTO_SOURCE_DIR} + "/tests/integration/make-guest-initrd", initrd,
                   paths.at(1)},
                  60s)
          .code() != 0)
    skip("cannot make the initramfs");
  daemon_fixture d{false};
  d.start({}, 30s);
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {cli_path, "--socket", d.socket_path()});
    return args;
  };

  cyto::vm_spec spec;
  spec.name = "bench";
  spec.kernel = paths.at(0);
  spec.initrd = initrd;
  spec.cmdline = "quiet panic=-1";
  cyto::vms::qemu_launch how;
  how.qemu = "/usr/bin/qemu-system-x86_64";
  how.accel = "tcg";
  how.tb_size_mib = 256; // as cytod gives it under TCG
  how.machine = "microvm";
  how.qmp_path = work / "qmp.sock";
  how.channel_path = work / "channel.sock";
  how.init_args = {"true"};
  auto bare_argv = cyto::vms::qemu_args(spec, how);

  std::vector<double> bare, cyto_run;
  for (int i = 0; i < boot_runs; ++i) {
    ::unlink(how.qmp_path.c_str());
    ::unlink(how.channel_path.c_str());
    auto t0 = steady::now();
    child_process q{bare_argv};
    if (q.read_until([](const std::string& o) { return contains(o, "CYTO-EXIT=0"); }, 120s))
      bare.push_back(ms_since(t0));
    q.kill_and_wait(SIGKILL, 10s);
    t0 = steady::now();
    child_process c{cli({"vm", "run", "--rm", "--name", "bench" + std::to_string(i), "--kernel",
                         spec.kernel, "--initrd", initrd, "--cmdline", spec.cmdline, "--",
                         "true"})};
    if (c.read_until([](const std::string& o) { return contains(o, "CYTO-EXIT=0"); }, 120s))
      cyto_run.push_back(ms_since(t0));
    c.wait(60s);
  }

  // QMP latency on one idle guest started by hand.
  std::vector<double> lat;
  {
    ::unlink(how.qmp_path.c_str());
    ::unlink(how.channel_path.c_str());
    auto idle = how;
    idle.init_args.clear();
    child_process q{cyto::vms::qemu_args(spec, idle)};
    auto c = cyto::vms::qmp_client::connect(how.qmp_path, 10s, [] { return true; });
    if (c) {
      for (int i = 0; i < qmp_calls; ++i) {
        auto t0 = steady::now();
        if (!c->execute("query-status"))
          break;
        lat.push_back(std::chrono::duration<double, std::micro>(steady::now() - t0).count());
      }
    }
    q.kill_and_wait(SIGKILL, 10s);
  }

  // cytod's RSS per running VM.
  auto before = rss_kib(d.pid());
  for (int i = 0; i < rss_vms; ++i) {
    auto n = "rss" + std::to_string(i);
    run_process(cli({"vm", "create", n, "--kernel", spec.kernel, "--initrd", initrd, "--cmdline",
                     spec.cmdline}));
    run_process(cli({"vm", "start", n}), 60s);
  }
  std::this_thread::sleep_for(2s);
  auto after = rss_kib(d.pid());
  uint64_t qemu_rss = 0;
  auto ls = json::parse(run_process(cli({"vm", "ls", "--json"})).out, nullptr, false);
  int running = 0;
  if (ls.is_array())
    for (auto& v : ls)
      if (v["state"] == "running") {
        ++running;
        qemu_rss += rss_kib(v["pid"].get<pid_t>());
      }
  for (int i = 0; i < rss_vms; ++i)
    run_process(cli({"vm", "rm", "-f", "rss" + std::to_string(i)}), 60s);

  auto med = [](const std::vector<double>& xs) { return pct(xs, 0.5); };
  json out{{"bench", "vm_bench"},
           {"accel", "tcg"},
           {"machine", "microvm"},
           {"boot_to_marker_ms",
            {{"bare_qemu", bare},
             {"cyto_vm_run", cyto_run},
             {"bare_median", med(bare)},
             {"cyto_median", med(cyto_run)},
             {"ratio", med(bare) > 0 ? med(cyto_run) / med(bare) : 0},
             {"target_ratio", 1.05}}},
           {"qmp_query_status_us",
            {{"calls", lat.size()}, {"p50", pct(lat, 0.5)}, {"p99", pct(lat, 0.99)}}},
           {"cytod_rss",
            {{"vms_running", running},
             {"before_kib", before},
             {"after_kib", after},
             {"per_vm_kib", running ? (static_cast<double>(after) - before) / running : 0},
             {"qemu_rss_per_vm_kib", running ? static_cast<double>(qemu_rss) / running : 0},
             {"target_per_vm_kib", 1024}}},
           {"kvm_boot", "skipped: no hardware KVM on this host (kvm_pvm)"}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
