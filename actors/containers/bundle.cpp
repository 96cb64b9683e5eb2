#include "actors/containers/bundle.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "bus/errc.hpp"

namespace cyto::containers {

namespace {

using nlohmann::json;

caf::error bad(std::string text) {
  return make_error(errc::invalid_argument, std::move(text));
}

std::vector<std::string> strings_at(const json& j, const char* key) {
  std::vector<std::string> out;
  if (auto i = j.find(key); i != j.end() && i->is_array())
    for (auto& x : *i)
      if (x.is_string())
        out.push_back(x.get<std::string>());
  return out;
}

/// A regular file of the rootfs (never through a symlink: the rootfs is not trusted).
std::string read_rootfs_file(const std::string& rootfs, const std::string& rel) {
  auto path = rootfs + "/" + rel;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
    return {};
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return {};
  std::string out(static_cast<size_t>(st.st_size), '\0');
  auto got = ::read(fd, out.data(), out.size());
  ::close(fd);
  out.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return out;
}

std::vector<std::string> fields(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

bool numeric(const std::string& s) {
  return !s.empty() && s.size() <= 10 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// Looks `name` (or a numeric id) up in a passwd/group style file: {id, gid-field}.
bool lookup(const std::string& text, const std::string& name, uint32_t& id, uint32_t* gid) {
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    auto f = fields(line, ':');
    if (f.size() < 3 || !numeric(f[2]))
      continue;
    if (f[0] == name || (numeric(name) && f[2] == name)) {
      id = static_cast<uint32_t>(std::stoul(f[2]));
      if (gid && f.size() > 3 && numeric(f[3]))
        *gid = static_cast<uint32_t>(std::stoul(f[3]));
      return true;
    }
  }
  return false;
}

caf::expected<std::pair<uint32_t, uint32_t>> resolve_user(const std::string& user,
                                                          const std::string& rootfs) {
  if (user.empty())
    return std::pair<uint32_t, uint32_t>{0, 0};
  auto colon = user.find(':');
  auto u = user.substr(0, colon);
  auto g = colon == std::string::npos ? std::string{} : user.substr(colon + 1);
  uint32_t uid = 0, gid = 0;
  auto passwd = read_rootfs_file(rootfs, "etc/passwd");
  if (!lookup(passwd, u, uid, &gid)) {
    if (!numeric(u))
      return bad("user '" + u + "' is not in the image's /etc/passwd");
    uid = static_cast<uint32_t>(std::stoul(u));
    gid = 0;
  }
  if (!g.empty()) {
    auto group = read_rootfs_file(rootfs, "etc/group");
    if (!lookup(group, g, gid, nullptr)) {
      if (!numeric(g))
        return bad("group '" + g + "' is not in the image's /etc/group");
      gid = static_cast<uint32_t>(std::stoul(g));
    }
  }
  return std::pair<uint32_t, uint32_t>{uid, gid};
}

/// Image env with the overrides on top (by key), in order of first appearance.
/// The sysctls a container may set, as podman's --sysctl: net.* of its own netns and the
/// ipc namespace's kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.*. Anything else
/// would change the host.
bool container_sysctl(const std::string& key) {
  auto starts = [&](const char* p) { return key.rfind(p, 0) == 0; };
  return starts("net.") || starts("kernel.shm") || starts("kernel.msg") || key == "kernel.sem"
         || starts("fs.mqueue.");
}

/// cyto's defaults (ICMP echo sockets for every group, as podman and docker open them in
/// a container's netns: busybox ping works without CAP_NET_RAW) under `sysctls`
/// ("key=value", which win).
caf::expected<json> merge_sysctls(const std::vector<std::string>& sysctls, bool in_pod) {
  json out{{"net.ipv4.ping_group_range", "0 2147483647"}};
  for (auto& kv : sysctls) {
    auto eq = kv.find('=');
    auto key = kv.substr(0, eq);
    if (eq == std::string::npos || key.empty())
      return bad("sysctl '" + kv + "' is not key=value");
    bool name_ok = key.front() != '.' && key.back() != '.' && key.find("..") == std::string::npos
                   && key.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_.-")
                        == std::string::npos;
    if (!name_ok)
      return bad("sysctl '" + key + "' is not a sysctl name (lower-case words joined by dots)");
    if (!container_sysctl(key))
      return bad("sysctl '" + key + "' is not one a container may set (net.*, kernel.shm*, "
                 "kernel.msg*, kernel.sem, fs.mqueue.*): it would change the host");
    if (in_pod)
      return bad("sysctl '" + key + "': a pod's containers share its network and ipc "
                 "namespaces, so they cannot set their own");
    auto value = kv.substr(eq + 1);
    if (value.find_first_of(std::string{"\n\0", 2}) != std::string::npos)
      return bad("sysctl '" + key + "': the value must be one line");
    out[key] = value;
  }
  return out;
}

caf::expected<std::vector<std::string>> merge_env(const std::vector<std::string>& base,
                                                  const std::vector<std::string>& over) {
  std::vector<std::string> out;
  auto set = [&out](const std::string& kv) {
    auto key = kv.substr(0, kv.find('='));
    auto i = std::find_if(out.begin(), out.end(),
                          [&](auto& x) { return x.substr(0, x.find('=')) == key; });
    if (i == out.end())
      out.push_back(kv);
    else
      *i = kv;
  };
  for (auto& e : base)
    set(e);
  for (auto& e : over) {
    if (e.empty() || e.front() == '=' || e.find('=') == std::string::npos)
      return bad("environment entry '" + e + "' is not KEY=VALUE");
    set(e);
  }
  if (std::none_of(out.begin(), out.end(), [](auto& x) { return x.rfind("PATH=", 0) == 0; }))
    out.insert(out.begin(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (std::none_of(out.begin(), out.end(), [](auto& x) { return x.rfind("HOME=", 0) == 0; }))
    out.push_back("HOME=/root");
  return out;
}

std::string cap_name(std::string c) {
  std::transform(c.begin(), c.end(), c.begin(), [](unsigned char x) { return std::toupper(x); });
  if (c.rfind("CAP_", 0) != 0)
    c = "CAP_" + c;
  return c;
}

/// Known capability names (up to CAP_CHECKPOINT_RESTORE, 40).
const std::vector<std::string>& all_caps() {
  static const std::vector<std::string> names{"CAP_CHOWN",
                                              "CAP_DAC_OVERRIDE",
                                              "CAP_DAC_READ_SEARCH",
                                              "CAP_FOWNER",
                                              "CAP_FSETID",
                                              "CAP_KILL",
                                              "CAP_SETGID",
                                              "CAP_SETUID",
                                              "CAP_SETPCAP",
                                              "CAP_LINUX_IMMUTABLE",
                                              "CAP_NET_BIND_SERVICE",
                                              "CAP_NET_BROADCAST",
                                              "CAP_NET_ADMIN",
                                              "CAP_NET_RAW",
                                              "CAP_IPC_LOCK",
                                              "CAP_IPC_OWNER",
                                              "CAP_SYS_MODULE",
                                              "CAP_SYS_RAWIO",
                                              "CAP_SYS_CHROOT",
                                              "CAP_SYS_PTRACE",
                                              "CAP_SYS_PACCT",
                                              "CAP_SYS_ADMIN",
                                              "CAP_SYS_BOOT",
                                              "CAP_SYS_NICE",
                                              "CAP_SYS_RESOURCE",
                                              "CAP_SYS_TIME",
                                              "CAP_SYS_TTY_CONFIG",
                                              "CAP_MKNOD",
                                              "CAP_LEASE",
                                              "CAP_AUDIT_WRITE",
                                              "CAP_AUDIT_CONTROL",
                                              "CAP_SETFCAP",
                                              "CAP_MAC_OVERRIDE",
                                              "CAP_MAC_ADMIN",
                                              "CAP_SYSLOG",
                                              "CAP_WAKE_ALARM",
                                              "CAP_BLOCK_SUSPEND",
                                              "CAP_AUDIT_READ",
                                              "CAP_PERFMON",
                                              "CAP_BPF",
                                              "CAP_CHECKPOINT_RESTORE"};
  return names;
}

bool known_cap(const std::string& c) {
  return std::find(all_caps().begin(), all_caps().end(), c) != all_caps().end();
}

std::string hosts_file(const bundle_request& r) {
  std::string out = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  bool any = false;
  for (auto& ip : r.ips) {
    out += ip.substr(0, ip.find('/')) + "\t" + r.hostname + "\n";
    any = true;
  }
  if (!any)
    out += "127.0.1.1\t" + r.hostname + "\n";
  return out;
}

std::string resolv_file(const bundle_request& r) {
  std::string out;
  if (!r.dns_servers.empty()) {
    if (!r.dns_search.empty()) {
      out += "search";
      for (auto& s : r.dns_search)
        out += " " + s;
      out += "\n";
    }
    for (auto& s : r.dns_servers)
      out += "nameserver " + s + "\n";
    return out;
  }
  // The host's, without loopback resolvers (unreachable from another network namespace).
  std::istringstream in{r.host_resolv_conf};
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("nameserver", 0) == 0 &&
        (line.find(" 127.") != std::string::npos || line.find(" ::1") != std::string::npos))
      continue;
    out += line + "\n";
  }
  return out;
}

/// A mount target made canonical ("//data/./x/" -> "/data/x"); invalid_argument when it is
/// not absolute, has a ".." component or is "/" itself.
caf::expected<std::string> canonical_target(const std::string& target) {
  if (target.empty() || target.front() != '/')
    return bad("mount target '" + target + "' must be an absolute path in the container");
  std::string out;
  size_t i = 0;
  while (i <= target.size()) {
    auto j = target.find('/', i);
    if (j == std::string::npos)
      j = target.size();
    auto part = target.substr(i, j - i);
    if (part == "..")
      return bad("mount target '" + target + "' must not contain '..'");
    if (!part.empty() && part != ".")
      out += "/" + part;
    i = j + 1;
  }
  if (out.empty())
    return bad("mount target '" + target + "': a container's / is its image's rootfs, not a mount");
  return out;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || path.rfind(dir + "/", 0) == 0;
}

/// The tmpfs mode kept in a mount's source: "" (1777) or 1-4 octal digits.
bool octal_mode(const std::string& s) {
  return s.size() <= 4 && s.find_first_not_of("01234567") == std::string::npos;
}

/// Path depth, to mount parents before what goes inside them.
size_t depth(const std::string& path) {
  return static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
}

/// The user's mounts (-v, --tmpfs) as OCI mounts, parents first.
caf::expected<json> user_mounts(const bundle_request& req) {
  std::vector<std::pair<std::string, const container_mount*>> sorted;
  for (auto& m : req.spec.mounts) {
    auto t = canonical_target(m.target);
    if (!t)
      return t.error();
    sorted.emplace_back(*t, &m);
  }
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](auto& a, auto& b) { return depth(a.first) < depth(b.first); });
  json out = json::array();
  for (auto& [target, m] : sorted) {
    if (m->kind == "tmpfs") {
      json opts{"nosuid", "nodev", "mode=" + (m->source.empty() ? std::string{"1777"} : m->source)};
      if (m->size_bytes)
        opts.push_back("size=" + std::to_string(m->size_bytes));
      if (m->read_only)
        opts.push_back("ro");
      out.push_back({{"destination", target}, {"type", "tmpfs"}, {"source", "tmpfs"},
                     {"options", opts}});
      continue;
    }
    std::string source = m->source;
    if (m->kind == "volume") {
      auto p = req.volume_paths.find(m->source);
      if (p == req.volume_paths.end())
        return make_error(errc::internal, "volume " + m->source + " was not claimed");
      source = p->second;
    }
    out.push_back({{"destination", target},
                   {"type", "bind"},
                   {"source", source},
                   {"options", {"rbind", "rprivate", m->read_only ? "ro" : "rw"}}});
  }
  return out;
}

} // namespace

caf::error check_mounts(const std::vector<container_mount>& mounts) {
  std::vector<std::string> seen;
  for (auto& m : mounts) {
    auto t = canonical_target(m.target);
    if (!t)
      return t.error();
    if (under(*t, "/proc") || under(*t, "/sys") || *t == "/dev")
      return bad("mount target '" + m.target + "': cyto mounts /proc, /sys and /dev itself");
    if (std::find(seen.begin(), seen.end(), *t) != seen.end())
      return bad("two mounts on " + *t);
    seen.push_back(*t);
    if (m.kind != "tmpfs" && m.size_bytes != 0)
      return bad("mount on " + *t + ": a size is for tmpfs mounts only");
    if (m.kind == "bind") {
      if (m.source.empty() || m.source.front() != '/')
        return bad("bind mount source '" + m.source + "' must be an absolute host path");
      struct stat st {};
      if (::stat(m.source.c_str(), &st) != 0) {
        int err = errno;
        return make_error(err == ENOENT || err == ENOTDIR ? errc::not_found : errc::invalid_argument,
                          "bind mount source " + m.source + ": " + std::strerror(err));
      }
    } else if (m.kind == "volume") {
      if (m.source.empty())
        return bad("volume mount on " + *t + " names no volume");
    } else if (m.kind == "tmpfs") {
      if (!octal_mode(m.source))
        return bad("tmpfs on " + *t + ": mode '" + m.source + "' is not octal like 1777");
    } else {
      return bad("mount on " + *t + ": kind '" + m.kind + "' is not bind, volume or tmpfs");
    }
  }
  return {};
}

const std::vector<std::string>& default_capabilities() {
  static const std::vector<std::string> caps{"CHOWN",   "DAC_OVERRIDE",     "FOWNER",    "FSETID",
                                             "KILL",    "NET_BIND_SERVICE", "SETFCAP",   "SETGID",
                                             "SETPCAP", "SETUID",           "SYS_CHROOT"};
  return caps;
}

caf::expected<image_defaults> parse_image_config(const std::string& json_text) {
  image_defaults out;
  if (json_text.empty())
    return out;
  auto j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return bad("the image config is not a JSON object");
  auto c = j.find("config");
  if (c == j.end() || !c->is_object())
    return out;
  out.entrypoint = strings_at(*c, "Entrypoint");
  out.cmd = strings_at(*c, "Cmd");
  out.env = strings_at(*c, "Env");
  if (auto u = c->find("User"); u != c->end() && u->is_string())
    out.user = u->get<std::string>();
  if (auto w = c->find("WorkingDir"); w != c->end() && w->is_string())
    out.workdir = w->get<std::string>();
  return out;
}

caf::expected<bundle_files> make_bundle(const bundle_request& req, const std::string& bundle) {
  auto& spec = req.spec;
  auto& img = req.image;
  bundle_files out;
  // Docker's rule: an entrypoint given by the user drops the image's cmd too.
  auto entry = spec.entrypoint.empty() ? img.entrypoint : spec.entrypoint;
  auto cmd = !spec.args.empty()        ? spec.args
             : spec.entrypoint.empty() ? img.cmd
                                       : std::vector<std::string>{};
  out.command = entry;
  out.command.insert(out.command.end(), cmd.begin(), cmd.end());
  if (out.command.empty() || out.command.front().empty())
    return bad("no command: the image " + spec.image +
               " has no Entrypoint or Cmd; give one after the image name");
  auto env = merge_env(img.env, spec.env);
  if (!env)
    return env.error();
  // A terminal gets TERM=xterm unless the image or the caller say otherwise (podman's).
  if (spec.tty && std::none_of(env->begin(), env->end(),
                               [](const std::string& e) { return e.rfind("TERM=", 0) == 0; }))
    env->push_back("TERM=xterm");
  auto ids = resolve_user(spec.user.empty() ? img.user : spec.user, req.rootfs);
  if (!ids)
    return ids.error();
  auto cwd = !spec.workdir.empty() ? spec.workdir : !img.workdir.empty() ? img.workdir : "/";
  if (cwd.front() != '/')
    return bad("working directory '" + cwd + "' must be an absolute path");

  std::vector<std::string> caps;
  for (auto& c : default_capabilities())
    caps.push_back("CAP_" + c);
  for (auto& c : spec.cap_add) {
    auto name = cap_name(c);
    if (name == "CAP_ALL") {
      caps = all_caps();
      continue;
    }
    if (!known_cap(name))
      return bad("unknown capability '" + c + "'");
    if (std::find(caps.begin(), caps.end(), name) == caps.end())
      caps.push_back(name);
  }
  bool root = ids->first == 0;
  json capabilities{{"bounding", caps},
                    {"effective", root ? caps : std::vector<std::string>{}},
                    {"permitted", root ? caps : std::vector<std::string>{}},
                    {"inheritable", json::array()},
                    {"ambient", json::array()}};

  auto sysctl = merge_sysctls(spec.sysctls, !spec.pod.empty());
  if (!sysctl)
    return sysctl.error();

  json namespaces = json::array();
  for (const char* t : {"pid", "mount", "ipc", "uts", "network"}) {
    json n{{"type", t}};
    std::string type = t;
    if (auto j = req.join.find(type); j != req.join.end())
      n["path"] = j->second;
    else if (type == "network" && !req.netns_path.empty())
      n["path"] = req.netns_path;
    namespaces.push_back(std::move(n));
  }
  bool own_uts = req.join.count("uts") == 0;

  auto bind = [&](const char* dest, const char* file) {
    return json{{"destination", dest},
                {"type", "bind"},
                {"source", bundle + "/" + file},
                {"options", {"rbind", "rprivate"}}};
  };
  json mounts = json::array({
      {{"destination", "/proc"},
       {"type", "proc"},
       {"source", "proc"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/tmp"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "nodev", "mode=1777"}}},
  });
  // A read-only rootfs keeps /tmp writable (podman's --read-only-tmpfs); otherwise /tmp
  // is the image's own directory.
  if (!spec.read_only)
    mounts.erase(mounts.size() - 1);
  mounts.push_back(bind("/etc/hosts", "hosts"));
  mounts.push_back(bind("/etc/resolv.conf", "resolv.conf"));
  // A pod's members get the pod's name here (their uts namespace is the pod's).
  mounts.push_back(bind("/etc/hostname", "hostname"));
  // The user's mounts come last, and one on a path cyto mounts (/tmp, /etc/hosts...)
  // takes the place of cyto's.
  if (auto err = check_mounts(spec.mounts))
    return err;
  auto user = user_mounts(req);
  if (!user)
    return user.error();
  json all = json::array();
  for (auto& d : mounts)
    if (std::none_of(user->begin(), user->end(),
                     [&](const json& m) { return m["destination"] == d["destination"]; }))
      all.push_back(d);
  for (auto& m : *user)
    all.push_back(m);
  mounts = std::move(all);

  json process{{"terminal", spec.tty},
               {"user", {{"uid", ids->first}, {"gid", ids->second}}},
               {"args", out.command},
               {"env", *env},
               {"cwd", cwd},
               {"capabilities", capabilities},
               {"noNewPrivileges", false}};
  json linux{
      {"namespaces", namespaces},
      {"sysctl", *sysctl},
      {"maskedPaths",
       {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux",
        "/sys/dev/block"}},
      {"readonlyPaths",
       {"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };
  json config{
      {"ociVersion", "1.0.2"},
      {"root", {{"path", "rootfs"}, {"readonly", spec.read_only}}},
      {"process", process},
      {"mounts", mounts},
      {"linux", linux},
      {"annotations", {{"io.cyto.container.name", spec.name}, {"io.cyto.image", spec.image}}}};
  if (own_uts)
    config["hostname"] = req.hostname;
  out.config_json = config.dump(2) + "\n";
  out.hosts = hosts_file(req);
  out.hostname = req.hostname + "\n";
  out.resolv_conf = resolv_file(req);
  return out;
}

namespace {

using named_texts = std::initializer_list<std::pair<const char*, const std::string*>>;

/// Writes each named text into `bundle`; on error none of them is left.
caf::error write_files(named_texts files, const std::string& bundle) {
  std::vector<std::string> written;
  for (auto& [name, text] : files) {
    auto path = bundle + "/" + name;
    std::ofstream out{path, std::ios::trunc};
    out << *text;
    out.close();
    if (!out) {
      int err = errno;
      for (auto& w : written)
        ::unlink(w.c_str());
      ::unlink(path.c_str());
      return make_error(errc::unavailable, "write " + path + ": " + std::strerror(err));
    }
    written.push_back(path);
  }
  return {};
}

} // namespace

caf::error write_bundle(const bundle_files& files, const std::string& bundle) {
  return write_files({{"config.json", &files.config_json},
                      {"hosts", &files.hosts},
                      {"hostname", &files.hostname},
                      {"resolv.conf", &files.resolv_conf}},
                     bundle);
}

caf::error refresh_bundle(const bundle_request& req, const std::string& bundle) {
  auto path = bundle + "/config.json";
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  auto config = json::parse(text.str(), nullptr, false);
  if (!config.is_object() || !config.contains("linux") || !config["linux"].is_object())
    return make_error(errc::internal, path + " is not an OCI config");
  for (auto& n : config["linux"]["namespaces"]) {
    if (!n.is_object() || !n.contains("type") || !n["type"].is_string())
      continue;
    auto type = n["type"].get<std::string>();
    if (auto j = req.join.find(type); j != req.join.end())
      n["path"] = j->second;
    else if (type == "network" && !req.netns_path.empty())
      n["path"] = req.netns_path;
  }
  auto config_json = config.dump(2) + "\n";
  auto hosts = hosts_file(req);
  auto resolv = resolv_file(req);
  return write_files(
      {{"config.json", &config_json}, {"hosts", &hosts}, {"resolv.conf", &resolv}}, bundle);
}

} // namespace cyto::containers
