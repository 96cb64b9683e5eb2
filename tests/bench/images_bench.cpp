// images_bench: cytod's pull + unpack against skopeo copy + umoci unpack, from the same
// loopback docker-registry, for a small image (busybox-static, one layer) and a ~100 MB
// image of 5 layers of random (incompressible) data.
//
// Prints ONE JSON document on stdout (progress on stderr). Per image and tool: wall
// times of each run (median reported), bytes/s (compressed bytes of the image over the
// median), peak RSS; the ratio cyto / (skopeo + umoci) against the target (<= 0.5).
//   cyto:   `Images.pull` through the cyto CLI into a store that holds nothing of the
//           image (removed and pruned between runs); peak RSS is cytod's VmHWM (reset
//           with clear_refs before each run).
//   skopeo: `skopeo copy docker://... oci:DIR:tag` then `umoci unpack --image DIR:tag B`
//           into fresh dirs; peak RSS is the larger ru_maxrss of the two.
// Never fails because of a time. Usage: images_bench [--runs N] (default 3).

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "tests/bench/bench_common.hpp"
#include "tests/integration/registry_fixture.hpp"

namespace cyto::bench {
const char* const bench_name = "images_bench";
}

namespace {

namespace t = cyto::test;
namespace b = cyto::bench;
namespace fs = std::filesystem;

struct timed {
  double seconds = 0;
  long maxrss_kib = 0;
  int status = 0;
};

/// fork/exec argv, wait with rusage; output to /dev/null (stderr to `log`).
timed run_timed(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto t0 = b::steady::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    t::child_common_setup();
    int null = ::open("/dev/null", O_RDWR);
    int lf = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(lf, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int st = 0;
  rusage ru{};
  ::wait4(pid, &st, 0, &ru);
  timed out;
  out.seconds = b::seconds_between(t0, b::steady::now());
  out.maxrss_kib = ru.ru_maxrss;
  out.status = st;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    throw std::runtime_error(argv[0] + " failed (" + b::describe_status(st) + "); see " + log);
  return out;
}

uint64_t image_bytes(const std::string& layout, const std::string& tag) {
  auto idx = nlohmann::json::parse(t::read_text(layout + "/index.json"));
  for (auto& m : idx["manifests"])
    if (m["annotations"]["org.opencontainers.image.ref.name"] == tag) {
      auto man = nlohmann::json::parse(
        t::read_text(layout + "/blobs/sha256/" + m["digest"].get<std::string>().substr(7)));
      uint64_t n = man["config"]["size"].get<uint64_t>();
      for (auto& l : man["layers"])
        n += l["size"].get<uint64_t>();
      return n;
    }
  return 0;
}

b::json stats(const std::vector<timed>& runs, uint64_t bytes) {
  std::vector<double> secs;
  long rss = 0;
  for (auto& r : runs) {
    secs.push_back(r.seconds);
    rss = std::max(rss, r.maxrss_kib);
  }
  b::json j = b::json::obj();
  b::json::array list;
  for (auto x : secs)
    list.push_back(x);
  j["seconds"] = b::json{list};
  auto med = b::median(secs);
  j["median_s"] = med;
  j["bytes_per_s"] = static_cast<double>(bytes) / med;
  j["peak_rss_kib"] = rss;
  return j;
}

} // namespace

int main(int argc, char** argv) {
  int runs = 3;
  for (int i = 1; i < argc; ++i)
    if (std::string{argv[i]} == "--runs" && i + 1 < argc)
      runs = std::max(1, std::atoi(argv[++i]));
  if (::geteuid() != 0) {
    std::fprintf(stderr, "images_bench needs root (cytod mounts and chowns)\n");
    return 2;
  }
  b::json out = b::json::obj();
  out["bench"] = "images_bench";
  out["machine"] = b::machine_info_head(false);
  try {
    t::temp_dir work;
    t::registry_fixture reg;
    auto layout = work / "layout";
    b::note("building images (busybox, and 5 x 20 MiB random layers)");
    t::sh("cd " + work.path() + " && umoci init --layout layout && umoci new --image layout:small"
          " && mkdir -p r/bin && cp /bin/busybox r/bin/busybox"
          " && umoci insert --image layout:small r / >/dev/null"
          " && umoci tag --image layout:small big"
          " && for i in 1 2 3 4 5; do mkdir -p l$i && head -c 20971520 /dev/urandom > l$i/data$i"
          " && umoci insert --image layout:big l$i /d$i >/dev/null; done",
          std::chrono::seconds(300));
    reg.push(layout, "small", "bench/small", "1");
    reg.push(layout, "big", "bench/big", "1");
    t::daemon_fixture daemon{false};
    daemon.start({"--insecure-registry", reg.host()});
    out["cytod_rss_idle_kib"] = b::optional_number(b::status_field(daemon.pid(), "VmRSS"));
    b::json images = b::json::obj();
    for (std::string name : {"small", "big"}) {
      auto ref = reg.host() + "/bench/" + name + ":1";
      auto bytes = image_bytes(layout, name);
      std::vector<timed> cyto_runs, skopeo_runs, umoci_runs, pair_runs;
      for (int r = 0; r < runs; ++r) {
        // cyto: a store without the image.
        b::write_stderr(("[images_bench] " + name + " run " + std::to_string(r + 1) + "\n").c_str());
        std::ofstream{"/proc/" + std::to_string(daemon.pid()) + "/clear_refs"} << "5";
        auto c = run_timed({t::cli_path, "--socket", daemon.socket_path(), "image", "pull", ref},
                           work / "cyto.log");
        c.maxrss_kib = b::status_field(daemon.pid(), "VmHWM").value_or(0);
        cyto_runs.push_back(c);
        run_timed({t::cli_path, "--socket", daemon.socket_path(), "image", "rm", ref},
                  work / "cyto.log");
        run_timed({t::cli_path, "--socket", daemon.socket_path(), "image", "prune"},
                  work / "cyto.log");
        // skopeo copy + umoci unpack into fresh dirs.
        auto oci = work / ("oci-" + name + std::to_string(r));
        auto bundle = work / ("bundle-" + name + std::to_string(r));
        auto s = run_timed({"/usr/bin/skopeo", "copy", "--quiet", "--src-tls-verify=false",
                            "docker://" + ref, "oci:" + oci + ":t"},
                           work / "skopeo.log");
        auto u = run_timed({"/usr/bin/umoci", "unpack", "--image", oci + ":t", bundle},
                           work / "umoci.log");
        skopeo_runs.push_back(s);
        umoci_runs.push_back(u);
        pair_runs.push_back({s.seconds + u.seconds, std::max(s.maxrss_kib, u.maxrss_kib), 0});
        fs::remove_all(oci);
        fs::remove_all(bundle);
      }
      b::json j = b::json::obj();
      j["ref"] = ref;
      j["compressed_bytes"] = bytes;
      j["cyto_pull_unpack"] = stats(cyto_runs, bytes);
      j["skopeo_copy"] = stats(skopeo_runs, bytes);
      j["umoci_unpack"] = stats(umoci_runs, bytes);
      j["skopeo_plus_umoci"] = stats(pair_runs, bytes);
      std::vector<double> cs, ps;
      for (auto& x : cyto_runs)
        cs.push_back(x.seconds);
      for (auto& x : pair_runs)
        ps.push_back(x.seconds);
      auto ratio = b::median(cs) / b::median(ps);
      j["ratio_cyto_vs_skopeo_umoci"] = ratio;
      j["target_ratio"] = 0.5;
      j["meets_target"] = ratio <= 0.5;
      images[name] = j;
    }
    out["images"] = images;
    daemon.stop();
  } catch (const std::exception& e) {
    out["error"] = b::describe_exception(e);
    b::machine_info_tail(out["machine"]);
    std::printf("%s\n", out.dump().c_str());
    return 1;
  }
  b::machine_info_tail(out["machine"]);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
