// Crash consistency: cytod is killed with SIGKILL at random moments of `run`, `rm`, an
// image pull, network verbs (an attach, a create, a remove) and `cell free`, then started
// again on the same state dir. After each restart nothing may be orphaned and everything
// listed must be real: cgroups, mounts, netns files, IPAM leases, veths and bridges,
// blobs, snapshots, bundle and runtime dirs, log dirs and processes are compared with
// what the daemon lists, and what it lists must be removable. A second case fills the
// state dir (a small tmpfs) with a pull. Needs root (exits 77 otherwise).
//
// The whole test process enters a network namespace of its own first, so the registry,
// cytod, the CNI plugins and every bridge and veth live there; the host's network is never
// touched. The kill moments come from a seeded RNG: CYTO_CRASH_SEED=<n> replays a run,
// CYTO_CRASH_ROUNDS=<n> changes the number of rounds.
#define BOOST_TEST_MODULE integration_crash
#include <boost/test/unit_test.hpp>

#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#include "schema/containers.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/netns_fixture.hpp"
#include "tests/integration/registry_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// -- the world: a netns this process lives in, a registry, images built once -------------

struct world {
  test_netns ns;
  temp_dir work;
  std::unique_ptr<registry_fixture> registry;
  /// demo + a 6 MiB random layer (crash rounds pull it); demo + 20 MiB random (does not fit
  /// the disk-full test's tmpfs); demo + 64 MiB of zeros (its blob fits, its snapshot not);
  /// demo + 64 KiB random (fits).
  std::string big, huge, bomb, small;

  world() {
    enter_netns();
    registry = std::make_unique<registry_fixture>();
    auto w = work.path();
    sh("cp -a " + std::string{CYTO_DEMO_IMAGE_DIR} + " " + w + "/layout && cd " + w +
           " && mkdir big huge bomb small"
           " && head -c 6291456 /dev/urandom > big/data"
           " && head -c 20971520 /dev/urandom > huge/data"
           " && head -c 67108864 /dev/zero > bomb/data"
           " && head -c 65536 /dev/urandom > small/data"
           " && for t in big huge bomb small; do umoci tag --image layout:latest $t"
           " && umoci insert --image layout:$t $t /$t || exit 1; done",
       120s);
    for (auto* t : {"big", "huge", "bomb", "small"})
      registry->push(w + "/layout", t, std::string{"test/"} + t, "1");
    big = registry->host() + "/test/big:1";
    huge = registry->host() + "/test/huge:1";
    bomb = registry->host() + "/test/bomb:1";
    small = registry->host() + "/test/small:1";
  }

  /// Before any thread exists: children (registry, skopeo, cytod, CNI plugins) inherit it.
  void enter_netns() {
    int fd = ::open(ns.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0)
      throw std::runtime_error("enter " + ns.path() + ": " + std::strerror(errno));
    ::close(fd);
  }
};

using world_fixture = suite_world<world>;
BOOST_TEST_GLOBAL_FIXTURE(world_fixture);

world& W() {
  return world_fixture::get();
}

// -- talking to the daemon --------------------------------------------------------------

std::vector<std::string> cli_argv(const daemon_fixture& d, const std::vector<std::string>& args) {
  std::vector<std::string> argv{cli_path, "--socket", d.socket_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string joined(const std::vector<std::string>& v, const char* sep = " ") {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string tail(const std::string& text, size_t n = 4000) {
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

/// `cyto args...`; a call that hangs fails with the daemon's log.
process_result cli(const daemon_fixture& d, const std::vector<std::string>& args,
                   std::chrono::milliseconds t = 30s) {
  try {
    return run_process(cli_argv(d, args), t);
  } catch (const std::exception& e) {
    throw std::runtime_error("cyto " + joined(args) + ": " + e.what() + "\ncytod log:\n" +
                             tail(d.log()));
  }
}

/// What the daemon lists.
struct listing {
  std::map<std::string, json> containers; // by name
  std::map<std::string, json> cells;      // by name, every level
  std::map<std::string, json> networks;   // by name, with attachments
  std::map<std::string, json> pods;       // by name
  std::map<std::string, json> mounts;     // rootfs by id
  std::set<std::string> images;
  std::vector<json> attachments;
};

/// The daemon's listings, or nullopt (with the reason in `why`) if a call failed.
std::optional<listing> list_all(const daemon_fixture& d, std::string& why) {
  listing out;
  auto get = [&](std::vector<std::string> args) -> std::optional<json> {
    args.push_back("--json");
    auto r = cli(d, args);
    if (r.code() != 0) {
      why = "cyto " + joined(args) + ": " + describe_status(r.status) + ": " + r.err;
      return std::nullopt;
    }
    auto j = json::parse(r.out, nullptr, false);
    if (j.is_discarded()) {
      why = "cyto " + joined(args) + " printed no JSON: " + r.out;
      return std::nullopt;
    }
    return j;
  };
  auto ps = get({"ps", "-a"});
  auto cells = get({"cell", "ls"});
  auto nets = get({"network", "ls"});
  auto pods = get({"pod", "ls"});
  auto mounts = get({"image", "mounts"});
  auto images = get({"image", "ls"});
  if (!ps || !cells || !nets || !pods || !mounts || !images)
    return std::nullopt;
  for (auto& c : *ps)
    out.containers[c["name"]] = c;
  std::function<void(const json&)> walk = [&](const json& c) {
    out.cells[c["name"]] = c;
    for (auto& k : c["children"])
      walk(k);
  };
  for (auto& c : *cells)
    walk(c);
  for (auto& n : *nets) {
    out.networks[n["name"]] = n;
    for (auto& a : n["attachments"])
      out.attachments.push_back(a);
  }
  for (auto& p : *pods)
    out.pods[p["name"]] = p;
  for (auto& m : *mounts)
    out.mounts[m["id"]] = m;
  for (auto& i : *images)
    out.images.insert(i["name"].get<std::string>());
  return out;
}

// -- what the kernel and the state dir hold ------------------------------------------------

std::vector<std::string> dir_names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{dir, ec})
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

/// Mount points of this mount namespace (octal escapes of mountinfo undone).
std::vector<std::string> mount_points() {
  std::vector<std::string> out;
  for (auto& line : lines_of(read_text("/proc/self/mountinfo"))) {
    auto f = split(line, ' ');
    if (f.size() < 5)
      continue;
    std::string p;
    for (size_t i = 0; i < f[4].size(); ++i) {
      if (f[4][i] == '\\' && i + 3 < f[4].size()) {
        p += static_cast<char>(std::stoi(f[4].substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        p += f[4][i];
      }
    }
    out.push_back(p);
  }
  return out;
}

bool is_mount_point(const std::string& path) {
  auto all = mount_points();
  return std::find(all.begin(), all.end(), path) != all.end();
}

std::string addr_of(const std::string& cidr) {
  return cidr.substr(0, cidr.find('/'));
}

std::vector<std::string> link_names(const std::string& type) {
  std::vector<std::string> out;
  for (auto& line : lines_of(W().ns.ip({"-o", "link", "show", "type", type}))) {
    auto f = split(line, ' ');
    if (f.size() > 1)
      out.push_back(f[1].substr(0, f[1].find_first_of("@:")));
  }
  return out;
}

/// The cell a process is in (below the daemon's cgroup root), or "" if none.
std::string cell_of_pid(pid_t pid, const std::string& root) {
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/cgroup"))) {
    auto at = line.find("/" + root + "/");
    if (at == std::string::npos)
      continue;
    auto rel = line.substr(at + root.size() + 2);
    auto leaf = rel.find("/_");
    if (leaf != std::string::npos && (leaf + 2 == rel.size() || rel[leaf + 2] == '/'))
      rel = rel.substr(0, leaf);
    if (rel == "_")
      rel.clear();
    return rel;
  }
  return {};
}

/// Blobs whose content was hashed already (name and size), so a round hashes only new ones.
std::set<std::pair<std::string, uintmax_t>> verified_blobs;

/// Everything orphaned or listed but not real, one line each (empty: consistent).
std::vector<std::string> problems(const daemon_fixture& d) {
  std::vector<std::string> out;
  std::string why;
  auto l = list_all(d, why);
  if (!l)
    return {"listing failed: " + why};
  auto state = d.state_dir();
  auto root = d.cgroup_root();

  // cgroups: each directory below the root (process leaves aside) is a listed cell.
  std::set<std::string> cgroup_cells;
  for (auto& h : dir_names("/sys/fs/cgroup")) {
    auto top = "/sys/fs/cgroup/" + h + "/" + root;
    std::error_code ec;
    if (!fs::is_directory(top, ec))
      continue;
    for (auto it = fs::recursive_directory_iterator{top, ec};
         !ec && it != fs::recursive_directory_iterator{}; it.increment(ec)) {
      if (!it->is_directory(ec))
        continue;
      auto rel = it->path().string().substr(top.size() + 1);
      if (it->path().filename() == "_") {
        it.disable_recursion_pending();
        continue;
      }
      cgroup_cells.insert(rel);
      if (!l->cells.count(rel))
        out.push_back("cgroup " + h + "/" + root + "/" + rel + " is no listed cell (pids: " +
                      joined(lines_of(read_text(it->path().string() + "/cgroup.procs")), ",") +
                      ")");
    }
  }
  for (auto& [name, c] : l->cells) {
    if (!cgroup_cells.count(name))
      out.push_back("cell " + name + " is listed but has no cgroup");
    for (auto& e : c["executables"]) {
      if (e["status"]["exited"].get<bool>())
        continue;
      auto pid = e["pid"].get<pid_t>();
      if (::kill(pid, 0) != 0 || cell_of_pid(pid, root) != name)
        out.push_back("executable " + name + "/" + e["name"].get<std::string>() + " pid " +
                      std::to_string(pid) + " is listed running but is not in its cell");
    }
  }

  // Processes that belong to this daemon's state dir are cytod itself or in a listed cell.
  for (auto& p : dir_names("/proc")) {
    if (p.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto pid = static_cast<pid_t>(std::stol(p));
    if (pid == d.pid() || pid == ::getpid())
      continue;
    auto cmdline = read_text("/proc/" + p + "/cmdline");
    auto environ = read_text("/proc/" + p + "/environ");
    if (!contains(cmdline, d.dir()) && !contains(environ, d.dir()))
      continue;
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    auto cell = cell_of_pid(pid, root);
    if (cell.empty() || !l->cells.count(cell))
      out.push_back("process " + p + " (" + cmdline + ") is in no listed cell");
  }

  // Containers: their cell, bundle and (created or running) process exist.
  std::set<std::string> container_ids;
  for (auto& [name, c] : l->containers) {
    std::string id = c["id"], st = c["state"], cell = c["cell"];
    container_ids.insert(id);
    if (!l->cells.count(cell))
      out.push_back("container " + name + " is listed but its cell " + cell + " is not");
    if (!fs::is_directory(state + "/bundles/" + id))
      out.push_back("container " + name + " is listed but its bundle dir is gone");
    if ((st == "running" || st == "created") && ::kill(c["pid"].get<pid_t>(), 0) != 0)
      out.push_back("container " + name + " is listed " + st + " but pid " +
                    std::to_string(c["pid"].get<int>()) + " is gone");
  }
  for (auto& [name, c] : l->cells) {
    for (auto* top : {"containers/", "pods/"}) {
      if (name.rfind(top, 0) != 0)
        continue;
      auto rest = name.substr(std::strlen(top));
      bool owned = false;
      if (std::string{top} == "containers/")
        owned = l->containers.count(rest) && l->containers[rest]["cell"] == name;
      else
        owned = l->pods.count(rest.substr(0, rest.find('/'))) &&
                (rest.find('/') == std::string::npos ||
                 l->containers.count(rest.substr(rest.find('/') + 1)));
      if (!owned)
        out.push_back("cell " + name + " belongs to no listed container or pod");
    }
  }
  for (auto* sub : {"/bundles", "/runtime"})
    for (auto& id : dir_names(state + sub))
      if (!container_ids.count(id))
        out.push_back(std::string{sub}.substr(1) + " dir " + id + " has no listed container");

  // Mounts under the state dir: listed rootfs (of listed containers) and netns files of
  // listed attachments; and each of those is mounted.
  std::set<std::string> allowed;
  for (auto& [id, m] : l->mounts) {
    allowed.insert(m["target"].get<std::string>());
    if (!container_ids.count(id))
      out.push_back("rootfs " + id + " is mounted for no listed container");
    if (!is_mount_point(m["target"]))
      out.push_back("rootfs " + id + " is listed but " + m["target"].get<std::string>() +
                    " is not mounted");
  }
  std::map<std::string, std::set<std::string>> ips_of_network;
  std::set<std::string> netns_paths;
  for (auto& a : l->attachments) {
    std::string owner = a["owner"], netns = a["netns"];
    netns_paths.insert(netns);
    allowed.insert(netns);
    for (auto& ip : a["ips"])
      ips_of_network[a["network"]].insert(addr_of(ip));
    if (a["netnsOwned"].get<bool>() && !is_mount_point(netns))
      out.push_back("attachment of " + owner + " is listed but its netns " + netns +
                    " is not mounted");
    auto kind = owner.substr(0, owner.find('/')), name = owner.substr(owner.find('/') + 1);
    bool real = kind == "cell"  ? l->cells.count(name) > 0
                : kind == "pod" ? l->pods.count(name) > 0
                : kind == "container"
                    ? l->containers.count(name) > 0 && l->containers[name]["state"] != "stopped"
                    : false;
    if (!real)
      out.push_back("attachment of " + owner + " (" + netns + ") has no listed owner");
  }
  for (auto& c : l->containers)
    for (auto& ip : c.second["ips"])
      if (c.second["state"] != "stopped" && !ips_of_network[c.second["network"]].count(addr_of(ip)))
        out.push_back("container " + c.first + " lists address " + ip.get<std::string>() +
                      " that no attachment holds");
  for (auto& mp : mount_points())
    if (mp.rfind(state + "/", 0) == 0 && !allowed.count(mp))
      out.push_back("mount " + mp + " is owned by nothing listed");
  for (auto& f : dir_names(state + "/netns"))
    if (!netns_paths.count(state + "/netns/" + f))
      out.push_back("netns file " + f + " has no listed attachment");

  for (auto& f : dir_names(state + "/network"))
    if (f.size() > 9 && f.compare(f.size() - 9, 9, ".conflist") == 0 &&
        !l->networks.count(f.substr(0, f.size() - 9)))
      out.push_back("conflist " + f + " of no listed network");

  // IPAM leases (host-local's data dir, <state>/network/ipam/<network>/<address>).
  for (auto& net : dir_names(state + "/network/ipam")) {
    std::set<std::string> leased;
    for (auto& f : dir_names(state + "/network/ipam/" + net))
      if (f.find_first_not_of("0123456789.") == std::string::npos)
        leased.insert(f);
    if (!l->networks.count(net) && !leased.empty())
      out.push_back("leases of " + net + ", which is no listed network");
    for (auto& ip : leased)
      if (!ips_of_network[net].count(ip))
        out.push_back("lease " + net + "/" + ip + " belongs to no listed attachment");
    for (auto& ip : ips_of_network[net])
      if (!leased.count(ip))
        out.push_back("address " + ip + " of network " + net + " is listed but not leased");
  }

  // Links of the netns: one host-side veth per attachment, bridges only of listed networks.
  auto veths = link_names("veth");
  if (veths.size() != l->attachments.size())
    out.push_back(std::to_string(veths.size()) + " veths (" + joined(veths) + ") for " +
                  std::to_string(l->attachments.size()) + " attachments");
  std::set<std::string> bridges;
  for (auto& [name, n] : l->networks)
    bridges.insert(n["bridge"].get<std::string>());
  for (auto& b : link_names("bridge"))
    if (b.rfind("cyto-", 0) == 0 && !bridges.count(b))
      out.push_back("bridge " + b + " belongs to no listed network");

  // iptables rules the plugins made (masquerade per attachment, the firewall's accepts):
  // only for listed attachments' addresses and CNI container ids (their netns files' names).
  std::set<std::string> all_ips, cni_ids;
  for (auto& [net, ips] : ips_of_network)
    all_ips.insert(ips.begin(), ips.end());
  for (auto& n : netns_paths)
    cni_ids.insert(n.substr(n.rfind('/') + 1));
  for (auto& rule : lines_of(run_process({"/usr/sbin/iptables-save"}).out)) {
    if (rule.rfind("-A ", 0) != 0)
      continue;
    auto f = split(rule, ' ');
    for (size_t i = 0; i + 1 < f.size(); ++i)
      if ((f[i] == "-s" || f[i] == "-d") && f[i + 1].size() > 3 &&
          f[i + 1].compare(f[i + 1].size() - 3, 3, "/32") == 0 && !all_ips.count(addr_of(f[i + 1])))
        out.push_back("iptables rule for no listed attachment: " + rule);
    auto id = rule.find("id: \\\"");
    if (id != std::string::npos) {
      auto from = id + 6, to = rule.find('\\', from);
      if (!cni_ids.count(rule.substr(from, to - from)))
        out.push_back("iptables rule of no listed attachment: " + rule);
    }
  }

  // The image store: blobs hash to their names; no ingest files, no half-made snapshots.
  auto images = state + "/images";
  for (auto& b : dir_names(images + "/blobs/sha256")) {
    auto path = images + "/blobs/sha256/" + b;
    std::error_code ec;
    auto key = std::make_pair(b, fs::file_size(path, ec));
    if (verified_blobs.count(key))
      continue;
    auto sum = run_process({"/usr/bin/sha256sum", path}).out.substr(0, 64);
    if (sum != b)
      out.push_back("blob " + b + " holds content of digest " + sum);
    else
      verified_blobs.insert(key);
  }
  for (auto& f : dir_names(images + "/ingest"))
    out.push_back("ingest file " + f + " left");
  for (auto& s : dir_names(images + "/snapshots"))
    if (s.size() != 64 || s.find_first_not_of("0123456789abcdef") != std::string::npos)
      out.push_back("snapshot dir " + s + " is half-made");
  for (auto& r : dir_names(images + "/rootfs"))
    if (!l->mounts.count(r))
      out.push_back("rootfs dir " + r + " has no listed mount");

  // Output files only of listed cells.
  std::error_code ec;
  auto logs = state + "/logs";
  for (auto it = fs::recursive_directory_iterator{logs, ec};
       !ec && it != fs::recursive_directory_iterator{}; it.increment(ec))
    if (it->is_regular_file(ec)) {
      auto cell = it->path().parent_path().string().substr(logs.size() + 1);
      if (!l->cells.count(cell))
        out.push_back("output file " + it->path().filename().string() + " of " + cell +
                      ", which is no listed cell");
    }
  return out;
}

/// Waits (bounded) until problems() finds nothing: a restarted daemon undoes half-made
/// things asynchronously. Returns what was still wrong at the deadline.
std::vector<std::string> settled(const daemon_fixture& d, std::chrono::milliseconds t = 10s) {
  auto deadline = steady::now() + t;
  while (true) {
    auto p = problems(d);
    if (p.empty() || steady::now() >= deadline)
      return p;
    std::this_thread::sleep_for(100ms);
  }
}

/// Removes everything the daemon lists (the demo image and the default network stay);
/// each removal must succeed. Returns what failed.
std::vector<std::string> remove_everything(const daemon_fixture& d) {
  std::vector<std::string> out;
  std::string why;
  auto l = list_all(d, why);
  if (!l)
    return {"listing failed: " + why};
  auto must = [&](std::vector<std::string> args) {
    auto r = cli(d, args);
    if (r.code() != 0)
      out.push_back("cyto " + joined(args) + ": " + describe_status(r.status) + ": " + r.err);
  };
  for (auto& [name, p] : l->pods)
    must({"pod", "rm", "-f", name});
  for (auto& [name, c] : l->containers)
    if (c["pod"].get<std::string>().empty())
      must({"rm", "-f", name});
  if (auto again = list_all(d, why)) {
    for (auto& [name, c] : again->cells)
      if (name.find('/') == std::string::npos)
        must({"cell", "free", "-r", "-f", name});
  }
  for (auto& [name, n] : l->networks)
    if (!n["default"].get<bool>())
      must({"network", "rm", name});
  for (auto& i : l->images)
    if (i != "demo" && !contains(i, "/demo"))
      must({"image", "rm", i});
  return out;
}

std::string show(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines)
    out += "\n  " + l;
  return out;
}

uint64_t env_number(const char* name, uint64_t otherwise) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoull(v) : otherwise;
}

} // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(kill_9_at_random_moments_leaves_nothing_orphaned) {
  auto seed = env_number("CYTO_CRASH_SEED", std::random_device{}());
  auto rounds = env_number("CYTO_CRASH_ROUNDS", 100);
  std::printf("crash test: seed %llu, %llu rounds (replay: CYTO_CRASH_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(rounds),
              static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  BOOST_TEST_MESSAGE("seed " << seed);
  std::mt19937_64 rng{seed};
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>{lo, hi}(rng); };

  daemon_fixture d{false};
  int failures = 0;
  // A failed run keeps the daemon's whole log (the messages carry only its tail).
  struct keep_log {
    const daemon_fixture& d;
    const int& failures;
    uint64_t seed;
    ~keep_log() {
      if (failures == 0 && !std::uncaught_exceptions())
        return;
      auto path = "/tmp/cyto-crash-test-" + std::to_string(seed) + ".log";
      std::error_code ec;
      fs::copy_file(d.log_path(), path, fs::copy_options::overwrite_existing, ec);
      std::printf("crash test: cytod's log is in %s\n", path.c_str());
    }
  } keep{d, failures, seed};
  std::vector<std::string> args{"--insecure-registry", W().registry->host()};
  d.start(args, 30s);
  // The demo image is imported at the first start.
  BOOST_TEST_REQUIRE(settled(d, 30s).empty());
  auto started = steady::now();
  std::map<std::string, int> kills, cut, duration_ms;
  int serial = 0;
  auto next = [&](const char* prefix) { return prefix + std::to_string(++serial); };
  auto must = [&](std::vector<std::string> a) {
    auto r = cli(d, a);
    BOOST_REQUIRE_MESSAGE(r.code() == 0, "cyto " << joined(a) << ": " << r.err << "\nlog:\n"
                                                 << tail(d.log()));
    return r;
  };

  for (uint64_t round = 1; round <= rounds; ++round) {
    static const char* verbs[] = {"run", "rm", "pull", "network", "free"};
    std::string verb = verbs[uniform(0, 4)];
    std::vector<std::string> argv;
    bool on_network = false; // the container or cell of the verb is attached
    if (verb == "run") {
      argv = {"run", "-d", "--name", next("c")};
      if ((on_network = uniform(0, 1)))
        argv.insert(argv.end(), {"--network", "cyto"});
      argv.insert(argv.end(), {"demo", "sleep", "600"});
    } else if (verb == "rm") {
      auto name = next("r");
      std::vector<std::string> run{"run", "-d", "--name", name};
      if ((on_network = uniform(0, 1)))
        run.insert(run.end(), {"--network", "cyto"});
      run.insert(run.end(), {"demo", "sleep", "600"});
      must(run);
      argv = {"rm", "-f", name};
    } else if (verb == "pull") {
      cli(d, {"image", "rm", W().big}); // so the blobs are fetched again
      argv = {"image", "pull", W().big};
    } else if (verb == "network") {
      switch (uniform(0, 2)) {
      case 0:
        argv = {"cell", "allocate", next("n"), "--network", "cyto"};
        on_network = true;
        break;
      case 1:
        argv = {"network", "create", next("net"), "--subnet",
                "10.77." + std::to_string(serial % 250) + ".0/24"};
        break;
      default: {
        auto name = next("net");
        must({"network", "create", name, "--subnet",
              "10.77." + std::to_string(serial % 250) + ".0/24"});
        auto cell = next("n");
        must({"cell", "allocate", cell, "--network", name}); // the bridge exists now
        must({"cell", "free", cell});
        argv = {"network", "rm", name};
      }
      }
    } else {
      auto cell = next("f");
      std::vector<std::string> alloc{"cell", "allocate", cell};
      if ((on_network = uniform(0, 1)))
        alloc.insert(alloc.end(), {"--network", "cyto"});
      must(alloc);
      must({"cell", "start", cell, "--name", "s", "--", busybox_path, "sleep", "600"});
      argv = {"cell", "free", "-f", cell};
    }
    // The first time a kind of verb comes up it runs to the end: how long it takes is
    // where the kill moments are drawn from (a little beyond it, so some kills come after).
    auto kind = argv[0] + (argv[0] == "run" || argv[0] == "rm" ? "" : " " + argv[1]) +
                (on_network ? " (on a network)" : "");
    if (!duration_ms.count(kind)) {
      auto t0 = steady::now();
      must(argv);
      duration_ms[kind] = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0).count());
      continue;
    }
    int delay = uniform(0, std::max(10, duration_ms[kind] * 5 / 4));
    child_process verb_proc{cli_argv(d, argv)};
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    d.stop(SIGKILL);
    verb_proc.wait(30s);
    ++kills[verb];
    if (verb_proc.status() != 0)
      ++cut[verb];
    std::string what = "round " + std::to_string(round) + " (seed " + std::to_string(seed) +
                       "): kill -9 " + std::to_string(delay) + " ms into `cyto " + joined(argv) +
                       "` (it " + describe_status(*verb_proc.status()) + ")";
    d.start(args, 30s);
    auto p = settled(d);
    if (!p.empty()) {
      ++failures;
      BOOST_ERROR(what << ", after the restart:" << show(p) << "\ncytod log:\n" << tail(d.log()));
    }
    // Now and then (and before the state grows large) everything listed must go cleanly.
    std::string why;
    auto l = list_all(d, why);
    if (round % 5 == 0 || (l && l->containers.size() + l->cells.size() > 12)) {
      auto r = remove_everything(d);
      auto after = settled(d);
      if (!r.empty() || !after.empty()) {
        ++failures;
        BOOST_ERROR(what << ", removing everything:" << show(r) << show(after) << "\ncytod log:\n"
                         << tail(d.log()));
      }
    }
    if (failures >= 3)
      break;
  }

  auto r = remove_everything(d);
  BOOST_TEST(r.empty(), show(r));
  auto p = settled(d);
  BOOST_TEST(p.empty(), show(p));
  std::string why;
  auto l = list_all(d, why);
  BOOST_TEST_REQUIRE(static_cast<bool>(l), why);
  BOOST_TEST(l->containers.empty());
  BOOST_TEST(l->attachments.empty());
  for (auto& [name, c] : l->cells)
    BOOST_TEST(false, "cell " << name << " is left");
  BOOST_TEST(l->images.size() == 1u,
             joined(std::vector<std::string>(l->images.begin(), l->images.end())));
  BOOST_TEST(dir_names(d.state_dir() + "/netns").empty());
  BOOST_TEST(dir_names(d.state_dir() + "/bundles").empty());
  BOOST_TEST(link_names("veth").empty());
  std::string counts, durations;
  for (auto& [v, n] : kills)
    counts += " " + v + "=" + std::to_string(n) + " (" + std::to_string(cut[v]) + " cut short)";
  for (auto& [k, ms] : duration_ms)
    durations += " '" + k + "' " + std::to_string(ms) + " ms;";
  std::printf("crash test: %d failures; kills:%s; %.1f s; verbs took:%s\n", failures,
              counts.c_str(), std::chrono::duration<double>(steady::now() - started).count(),
              durations.c_str());
}

BOOST_AUTO_TEST_CASE(a_pull_that_fills_the_disk_fails_cleanly_and_the_daemon_serves_on) {
  daemon_fixture d{false};
  auto state = d.state_dir();
  fs::create_directories(state);
  BOOST_TEST_REQUIRE(
      ::mount("tmpfs", state.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755") == 0,
      std::strerror(errno));
  // Before the daemon fixture cleans up: cytod stops, then the tmpfs goes.
  struct unmount_at_end {
    daemon_fixture& d;
    ~unmount_at_end() {
      try {
        if (d.running())
          d.stop(SIGKILL);
      } catch (...) {
      }
      d.remove_cgroup_root();
      d.unmount_state_mounts();
      ::umount2(d.state_dir().c_str(), MNT_DETACH);
    }
  } guard{d};
  d.start({"--insecure-registry", W().registry->host()}, 30s);
  BOOST_TEST_REQUIRE(settled(d, 30s).empty());
  auto blobs = [&] { return dir_names(state + "/images/blobs/sha256"); };
  auto snapshots = [&] { return dir_names(state + "/images/snapshots"); };
  auto before_blobs = blobs();
  auto before_snaps = snapshots();
  struct statfs sfs {};
  ::statfs(state.c_str(), &sfs);
  std::printf("disk full test: %llu KiB free on the state dir\n",
              static_cast<unsigned long long>(sfs.f_bavail * sfs.f_bsize / 1024));

  // A layer blob larger than the space left, then a layer whose blob fits but whose
  // unpacked file does not.
  for (auto& ref : {W().huge, W().bomb}) {
    auto r = cli(d, {"image", "pull", ref});
    BOOST_TEST_MESSAGE(ref << ": " << r.err);
    BOOST_TEST(r.code() != 0, ref);
    BOOST_TEST(contains(r.err, "cyto.resource_exhausted: "), ref << ": " << r.err);
    BOOST_TEST(dir_names(state + "/images/ingest").empty(), ref);
    auto v = settled(d, 3s);
    BOOST_TEST(v.empty(), ref << show(v));
    // Only whole, verified blobs may have been added (its manifest and config, the base
    // layer's blob is the demo image's); no snapshot of the refused layer.
    for (auto& s : snapshots())
      BOOST_TEST(std::count(before_snaps.begin(), before_snaps.end(), s) == 1, ref << ": " << s);
    auto ls = cli(d, {"image", "ls"});
    BOOST_TEST(ls.code() == 0, ls.err);
    BOOST_TEST(!contains(ls.out, ref), ls.out);
  }
  // No inodes left (the tmpfs's limit lowered to what is in use): the blob's temp file
  // cannot be made, and that is resource_exhausted too.
  auto remount = [&](const std::string& opts) {
    return ::mount("tmpfs", state.c_str(), "tmpfs", MS_REMOUNT | MS_NOSUID | MS_NODEV,
                   opts.c_str());
  };
  ::statfs(state.c_str(), &sfs);
  auto used = sfs.f_files - sfs.f_ffree;
  BOOST_TEST_REQUIRE(remount("size=16m,nr_inodes=" + std::to_string(used)) == 0,
                     std::strerror(errno));
  auto no_inodes = cli(d, {"image", "pull", W().small});
  BOOST_TEST_MESSAGE("no inodes: " << no_inodes.err);
  BOOST_TEST(contains(no_inodes.err, "cyto.resource_exhausted: "), no_inodes.err);
  BOOST_TEST_REQUIRE(remount("size=16m,nr_inodes=" + std::to_string(used + 100000)) == 0,
                     std::strerror(errno));
  BOOST_TEST(dir_names(state + "/images/ingest").empty());
  BOOST_TEST(!contains(cli(d, {"image", "ls"}).out, W().small));
  BOOST_TEST(cli(d, {"discover"}).code() == 0);
  // The refused pulls' manifests and configs are garbage: prune frees them, and a small
  // image pulls (and runs) in what is left.
  BOOST_TEST(cli(d, {"image", "prune"}).code() == 0);
  BOOST_TEST(blobs() == before_blobs);
  auto small = cli(d, {"image", "pull", W().small});
  BOOST_TEST(small.code() == 0, small.err << tail(d.log()));
  auto ran = cli(d, {"run", "--rm", W().small, "sh", "-c", "wc -c < /small/data"});
  BOOST_TEST(ran.code() == 0, ran.err);
  BOOST_TEST(ran.out == "65536\n");
  BOOST_TEST(cli(d, {"image", "rm", W().small}).code() == 0);
  auto v = settled(d, 5s);
  BOOST_TEST(v.empty(), show(v));
  BOOST_TEST(d.running());
}

// Found by the rounds above: cytod killed between a container's create and its start, or
// after its shim started it but before cytod recorded that. The restarted daemon lists it
// as created or running, as it is; `rm -f` ends it (an abort, a kill) and removes it.
BOOST_AUTO_TEST_CASE(a_container_killed_around_its_start_is_listed_as_it_is_and_removed) {
  daemon_fixture d{false};
  d.start({}, 30s);
  struct variant {
    std::string network;
    bool started;
  };
  for (auto [network, started] : {variant{"", false}, variant{"cyto", false}, variant{"", true}}) {
    auto name =
        std::string{"c-"} + (network.empty() ? "lo" : network) + (started ? "-started" : "");
    {
      kj::AsyncIoContext io = kj::setupAsyncIo();
      auto conn = d.connect(io);
      auto svc = wait_for(io, conn->node().containersRequest().send()).getService();
      auto create = svc.createRequest();
      auto spec = create.initSpec();
      spec.setName(name);
      spec.setImage("demo");
      spec.setNetwork(network);
      auto args = spec.initArgs(2);
      args.set(0, "sleep");
      args.set(1, "600");
      wait_for(io, create.send(), 30 * kj::SECONDS);
    }
    auto ps = json::parse(cli(d, {"ps", "-a", "--json"}).out);
    BOOST_TEST_REQUIRE(ps.size() == 1u, ps.dump());
    std::string why;
    auto l = list_all(d, why);
    BOOST_TEST_REQUIRE(static_cast<bool>(l), why);
    // The shim is the executable of the container's cell.
    auto shim = l->cells[ps[0]["cell"]]["executables"].at(0)["pid"].get<pid_t>();
    std::string bundle = ps[0]["bundle"];
    d.stop(SIGKILL);
    if (started) {
      // What cytod's start does: SIGUSR1 to the shim, which starts the container.
      BOOST_TEST_REQUIRE(shim > 0);
      BOOST_TEST_REQUIRE(::kill(shim, SIGUSR1) == 0);
      auto deadline = steady::now() + 10s;
      while (!fs::exists(bundle + "/started.json") && steady::now() < deadline)
        std::this_thread::sleep_for(10ms);
      BOOST_TEST_REQUIRE(fs::exists(bundle + "/started.json"));
    }
    for (int i = 0; i < 2; ++i) {
      d.start({}, 30s);
      auto p = settled(d);
      BOOST_TEST(p.empty(), show(p));
      ps = json::parse(cli(d, {"ps", "-a", "--json"}).out);
      BOOST_TEST_REQUIRE(ps.size() == 1u, ps.dump());
      BOOST_TEST(ps[0]["state"] == (started ? "running" : "created"), name);
      if (i == 0)
        d.stop(SIGKILL);
    }
    auto rm = cli(d, {"rm", "-f", name}, 15s);
    BOOST_TEST(rm.code() == 0, name << ": " << rm.err << tail(d.log()));
    auto p = settled(d);
    BOOST_TEST(p.empty(), show(p));
    BOOST_TEST(json::parse(cli(d, {"ps", "-a", "--json"}).out).empty());
  }
}
