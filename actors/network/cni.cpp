#include "actors/network/cni.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bus/errc.hpp"
#include "bus/logging.hpp"

namespace cyto::network {

namespace {

constexpr const char* cni_version = "1.0.0";
/// Longest a single plugin call may take.
constexpr std::chrono::seconds plugin_timeout{60};

struct plugin_output {
  int status = 0;
  std::string out;
  std::string err;
};

struct fd_pair {
  int r = -1, w = -1;
  ~fd_pair() {
    close_r();
    close_w();
  }
  void close_r() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
};

/// Runs one plugin binary: posix_spawn (no fork of the multi-threaded daemon), the
/// config on stdin, stdout and stderr read until EOF.
caf::expected<plugin_output> exec_plugin(const std::string& binary,
                                         const std::vector<std::string>& env,
                                         const std::string& input,
                                         std::chrono::milliseconds timeout) {
  fd_pair in, out, err;
  int p[2];
  for (auto* fp : {&in, &out, &err}) {
    if (::pipe2(p, O_CLOEXEC) != 0)
      return make_error(errc::resource_exhausted, std::string{"pipe: "} + std::strerror(errno));
    fp->r = p[0];
    fp->w = p[1];
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in.r, 0);
  posix_spawn_file_actions_adddup2(&fa, out.w, 1);
  posix_spawn_file_actions_adddup2(&fa, err.w, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv{const_cast<char*>(binary.c_str()), nullptr};
  std::vector<char*> envp;
  for (auto& e : env)
    envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, binary.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return make_error(errc::unavailable, "run CNI plugin " + binary + ": " + std::strerror(rc));
  in.close_r();
  out.close_w();
  err.close_w();
  // Configs are a few KiB, far below a pipe's buffer: written at once, then EOF.
  size_t off = 0;
  while (off < input.size()) {
    auto n = ::write(in.w, input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    off += static_cast<size_t>(n);
  }
  in.close_w();
  plugin_output res;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.r >= 0 || err.r >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      // A hung plugin (e.g. waiting on the xtables lock) must not hold the actor forever.
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR)
        ;
      return make_error(errc::timeout, "CNI plugin " + binary + " did not finish within "
                                         + std::to_string(timeout.count() / 1000)
                                         + " s; killed");
    }
    pollfd fds[2];
    int n = 0;
    if (out.r >= 0) fds[n++] = {out.r, POLLIN, 0};
    if (err.r >= 0) fds[n++] = {err.r, POLLIN, 0};
    if (::poll(fds, n, static_cast<int>(std::min<int64_t>(left.count(), 1000))) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents)
        continue;
      bool is_out = fds[i].fd == out.r;
      char buf[4096];
      auto got = ::read(fds[i].fd, buf, sizeof(buf));
      if (got > 0)
        (is_out ? res.out : res.err).append(buf, static_cast<size_t>(got));
      else if (got == 0 || errno != EINTR)
        is_out ? out.close_r() : err.close_r();
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  res.status = status;
  return res;
}

std::string plugin_type(const nlohmann::json& plugin) {
  return plugin.value("type", std::string{});
}

/// The text of a failed plugin: its CNI error object (code, msg, details) or raw output.
caf::error plugin_error(const std::string& command, const std::string& type,
                        const plugin_output& o) {
  std::string text;
  try {
    auto j = nlohmann::json::parse(o.out);
    text = j.value("msg", std::string{});
    if (auto d = j.value("details", std::string{}); !d.empty())
      text += ": " + d;
    if (j.contains("code"))
      text += " (CNI error " + std::to_string(j["code"].get<int>()) + ")";
  } catch (const std::exception&) {
  }
  if (text.empty())
    text = !o.err.empty() ? o.err : !o.out.empty() ? o.out : "no output";
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  std::string how = WIFEXITED(o.status) ? "exit code " + std::to_string(WEXITSTATUS(o.status))
                                        : "signal " + std::to_string(WTERMSIG(o.status));
  return make_error(errc::internal,
                    "CNI plugin " + type + " " + command + " failed (" + how + "): " + text);
}

std::string join_dirs(const std::vector<std::string>& dirs) {
  std::string out;
  for (auto& d : dirs)
    out += (out.empty() ? "" : ":") + d;
  return out;
}

/// One plugin invocation. `prev` (may be null) becomes prevResult.
caf::expected<nlohmann::json> invoke(const std::string& command, const nlohmann::json& conflist,
                                     const nlohmann::json& plugin, const cni_target& t,
                                     const nlohmann::json& prev,
                                     const std::string& binary_type = {}) {
  auto type = binary_type.empty() ? plugin_type(plugin) : binary_type;
  auto binary = find_plugin(type, t.plugin_dirs);
  if (!binary)
    return binary.error();
  auto conf = plugin;
  conf["cniVersion"] = conflist.value("cniVersion", cni_version);
  conf["name"] = conflist.value("name", std::string{});
  if (!prev.is_null())
    conf["prevResult"] = prev;
  auto caps = plugin.find("capabilities");
  if (caps != plugin.end() && caps->value("portMappings", false) && !t.ports.empty()) {
    auto maps = nlohmann::json::array();
    for (auto& p : t.ports) {
      nlohmann::json m{{"hostPort", p.host_port},
                       {"containerPort", p.container_port},
                       {"protocol", p.protocol}};
      if (!p.host_ip.empty())
        m["hostIP"] = p.host_ip;
      maps.push_back(m);
    }
    conf["runtimeConfig"]["portMappings"] = maps;
  }
  std::vector<std::string> env{"CNI_COMMAND=" + command,
                               "CNI_CONTAINERID=" + t.container_id,
                               "CNI_NETNS=" + t.netns,
                               "CNI_IFNAME=" + t.ifname,
                               "CNI_PATH=" + join_dirs(t.plugin_dirs),
                               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  auto t0 = std::chrono::steady_clock::now();
  auto o = exec_plugin(*binary, env, conf.dump(), plugin_timeout);
  log::get("network")->debug(
    "CNI {} {} for {}: {} us", type, command, t.container_id,
    std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
      .count());
  if (!o)
    return o.error();
  if (!WIFEXITED(o->status) || WEXITSTATUS(o->status) != 0)
    return plugin_error(command, type, *o);
  if (command != "ADD")
    return nlohmann::json{};
  try {
    return nlohmann::json::parse(o->out);
  } catch (const std::exception& e) {
    return make_error(errc::internal,
                      "CNI plugin " + type + " ADD returned no JSON result: " + e.what());
  }
}

} // namespace

caf::expected<std::string> find_plugin(const std::string& type,
                                       const std::vector<std::string>& dirs) {
  if (type.empty() || type.find('/') != std::string::npos)
    return make_error(errc::invalid_argument, "CNI plugin type '" + type + "' is not a name");
  for (auto& d : dirs) {
    auto p = d + "/" + type;
    struct stat st{};
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0)
      return p;
  }
  return make_error(errc::unavailable, "CNI plugin '" + type + "' not found in "
                                         + (dirs.empty() ? std::string{"(no CNI path)"}
                                                         : join_dirs(dirs))
                                         + "; install the Debian package " + plugins_package);
}

caf::error check_plugins(const nlohmann::json& conflist, const std::vector<std::string>& dirs) {
  for (auto& p : conflist.value("plugins", nlohmann::json::array()))
    if (auto found = find_plugin(plugin_type(p), dirs); !found)
      return found.error();
  return {};
}

caf::expected<nlohmann::json> cni_add(const nlohmann::json& conflist, const cni_target& t) {
  nlohmann::json prev;
  for (auto& p : conflist.value("plugins", nlohmann::json::array())) {
    auto r = invoke("ADD", conflist, p, t, prev);
    if (!r) {
      // The spec's rule: a failed ADD is followed by DEL of the whole list.
      cni_del(conflist, t, prev);
      return r.error();
    }
    prev = std::move(*r);
  }
  return prev;
}

caf::error cni_del(const nlohmann::json& conflist, const cni_target& t,
                   const nlohmann::json& prev_result) {
  caf::error first;
  auto plugins = conflist.value("plugins", nlohmann::json::array());
  for (auto it = plugins.rbegin(); it != plugins.rend(); ++it)
    if (auto r = invoke("DEL", conflist, *it, t, prev_result); !r && !first)
      first = r.error();
  return first;
}

caf::error cni_check(const nlohmann::json& conflist, const cni_target& t,
                     const nlohmann::json& prev_result) {
  for (auto& p : conflist.value("plugins", nlohmann::json::array()))
    if (auto r = invoke("CHECK", conflist, p, t, prev_result); !r)
      return r.error();
  return {};
}

namespace {

/// The plugin of a conflist that has the IPAM section (the bridge plugin), and its type.
caf::expected<std::pair<nlohmann::json, std::string>> ipam_plugin(const nlohmann::json& conflist) {
  for (auto& p : conflist.value("plugins", nlohmann::json::array()))
    if (auto i = p.find("ipam"); i != p.end() && i->is_object())
      return std::pair{p, i->value("type", std::string{})};
  return make_error(errc::failed_precondition,
                    "network " + conflist.value("name", std::string{}) + " has no IPAM plugin");
}

} // namespace

caf::expected<nlohmann::json> ipam_add(const nlohmann::json& conflist, const cni_target& t) {
  auto p = ipam_plugin(conflist);
  if (!p)
    return p.error();
  return invoke("ADD", conflist, p->first, t, nullptr, p->second);
}

caf::error ipam_del(const nlohmann::json& conflist, const cni_target& t) {
  auto p = ipam_plugin(conflist);
  if (!p)
    return p.error();
  if (auto r = invoke("DEL", conflist, p->first, t, nullptr, p->second); !r)
    return r.error();
  return {};
}

caf::error read_result(const nlohmann::json& result, net_attachment& out) {
  using nlohmann::json;
  auto bad = [](const std::string& what) {
    return make_error(errc::internal, "CNI result: " + what);
  };
  if (!result.is_object())
    return bad("not a JSON object");
  // A member that must be an array (absent: empty) / a string (absent: empty).
  static const json none = json::array();
  auto array_at = [](const json& o, const char* key) -> const json* {
    auto i = o.find(key);
    if (i == o.end())
      return &none;
    return i->is_array() ? &*i : nullptr;
  };
  auto text_at = [](const json& o, const char* key, std::string& into) {
    auto i = o.find(key);
    if (i == o.end())
      return true;
    if (!i->is_string())
      return false;
    into = i->get<std::string>();
    return true;
  };
  auto* ifaces = array_at(result, "interfaces");
  auto* ips = array_at(result, "ips");
  if (!ifaces || !ips)
    return bad("interfaces and ips must be arrays");
  for (auto& i : *ifaces)
    if (!i.is_object())
      return bad("an interface is not an object");
  for (size_t n = 0; n < ips->size(); ++n) {
    auto& ip = (*ips)[n];
    std::string address, gateway;
    if (!ip.is_object() || !text_at(ip, "address", address) || !text_at(ip, "gateway", gateway))
      return bad("ips[" + std::to_string(n) + "] is not {address, gateway: strings}");
    out.ips.push_back(address);
    if (out.gateway.empty())
      out.gateway = gateway;
    if (auto i = ip.find("interface"); out.mac.empty() && i != ip.end()) {
      if (!i->is_number_unsigned())
        return bad("ips[" + std::to_string(n) + "].interface is not an index");
      auto k = i->get<size_t>();
      if (k < ifaces->size() && !text_at((*ifaces)[k], "mac", out.mac))
        return bad("interfaces[" + std::to_string(k) + "].mac is not a string");
    }
  }
  if (out.mac.empty())
    for (auto& i : *ifaces) {
      std::string name, mac;
      if (i.contains("sandbox") && text_at(i, "name", name) && name == out.ifname
          && text_at(i, "mac", mac))
        out.mac = mac;
    }
  if (auto dns = result.find("dns"); dns != result.end() && dns->is_object()) {
    for (auto [key, into] : {std::pair{"nameservers", &out.dns_servers},
                             std::pair{"search", &out.dns_search}}) {
      auto* list = array_at(*dns, key);
      if (!list)
        return bad(std::string{"dns."} + key + " is not an array");
      for (auto& s : *list) {
        if (!s.is_string())
          return bad(std::string{"dns."} + key + " holds a non-string");
        into->push_back(s.get<std::string>());
      }
    }
  }
  return {};
}

} // namespace cyto::network
