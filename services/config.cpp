#include "services/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>

#include "bus/federation_actor.hpp"

namespace cyto::services {

namespace {

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date or time";
  }
}

struct applier {
  daemon_config& cfg;
  std::optional<std::string> error;

  void str(const toml::node& n, const std::string& key, std::string& out) {
    if (auto v = n.value<std::string>())
      out = *v;
    else
      error = key + ": expected a string, got " + type_name(n.type());
  }

  void u32(const toml::node& n, const std::string& key, uint32_t& out) {
    auto v = n.value<int64_t>();
    if (!n.is_integer() || !v)
      error = key + ": expected an integer, got " + type_name(n.type());
    else if (*v < 0 || *v > UINT32_MAX)
      error = key + ": " + std::to_string(*v) + " is out of range";
    else
      out = static_cast<uint32_t>(*v);
  }

  void boolean(const toml::node& n, const std::string& key, bool& out) {
    if (auto v = n.value<bool>(); v && n.is_boolean())
      out = *v;
    else
      error = key + ": expected a boolean, got " + type_name(n.type());
  }

  void strings(const toml::node& n, const std::string& key, std::vector<std::string>& out) {
    auto arr = n.as_array();
    if (!arr) {
      error = key + ": expected an array of strings, got " + type_name(n.type());
      return;
    }
    std::vector<std::string> v;
    for (auto& x : *arr) {
      if (auto s = x.value<std::string>())
        v.push_back(*s);
      else
        error = key + ": expected an array of strings";
    }
    out = std::move(v);
  }

  void table(const toml::table& t, const std::string& prefix) {
    for (auto& [k, node] : t) {
      if (error)
        return;
      std::string key = prefix + std::string{k.str()};
      if (key == "socket" || key == "scheduler" || key == "log" || key == "cgroup"
          || key == "images" || key == "network"
          || key == "containers" || key == "gateway" || key == "federation"
          || key == "channel" || key == "vms" || key == "metrics") {
        if (auto sub = node.as_table())
          table(*sub, key + ".");
        else
          error = key + ": expected a table, got " + type_name(node.type());
      } else if (key == "socket.path") {
        str(node, key, cfg.socket_path);
      } else if (key == "socket.group") {
        str(node, key, cfg.socket_group);
      } else if (key == "state_dir") {
        str(node, key, cfg.state_dir);
      } else if (key == "log_level" || key == "log.level") {
        str(node, key, cfg.log_level);
      } else if (key == "log.history") {
        u32(node, key, cfg.log_history);
      } else if (key == "cgroup.root") {
        str(node, key, cfg.cgroup_root);
      } else if (key == "node_name") {
        str(node, key, cfg.node_name);
      } else if (key == "scheduler.policy") {
        str(node, key, cfg.scheduler_policy);
      } else if (key == "scheduler.threads") {
        u32(node, key, cfg.scheduler_threads);
      } else if (key == "images.default_registry") {
        str(node, key, cfg.default_registry);
      } else if (key == "images.credentials_file") {
        str(node, key, cfg.registry_credentials);
      } else if (key == "images.parallel_layers") {
        u32(node, key, cfg.parallel_layers);
      } else if (key == "images.insecure_registries") {
        strings(node, key, cfg.insecure_registries);
      } else if (key == "network.cni_path") {
        strings(node, key, cfg.cni_path);
      } else if (key == "network.subnet_pool") {
        str(node, key, cfg.subnet_pool);
      } else if (key == "network.subnet_size") {
        u32(node, key, cfg.subnet_size);
      } else if (key == "network.default_name") {
        str(node, key, cfg.default_network);
      } else if (key == "network.default_subnet") {
        str(node, key, cfg.default_subnet);
      } else if (key == "containers.runtime_path") {
        str(node, key, cfg.runtime_path);
      } else if (key == "containers.demo_image") {
        str(node, key, cfg.demo_image);
      } else if (key == "containers.seccomp") {
        boolean(node, key, cfg.default_seccomp);
      } else if (key == "containers.default_network") {
        std::string v;
        str(node, key, v);
        cfg.containers_default_network = v;
      } else if (key == "gateway.tcp") {
        str(node, key, cfg.gateway_tcp);
      } else if (key == "gateway.tls_cert") {
        str(node, key, cfg.gateway_tls_cert);
      } else if (key == "gateway.tls_key") {
        str(node, key, cfg.gateway_tls_key);
      } else if (key == "gateway.tls_ca") {
        str(node, key, cfg.gateway_tls_ca);
      } else if (key == "gateway.policy") {
        str(node, key, cfg.gateway_policy);
      } else if (key == "gateway.call_deadline") {
        u32(node, key, cfg.gateway_call_deadline);
      } else if (key == "gateway.connection_message_mib") {
        u32(node, key, cfg.gateway_connection_message_mib);
      } else if (key == "gateway.total_message_mib") {
        u32(node, key, cfg.gateway_total_message_mib);
      } else if (key == "federation.listen") {
        str(node, key, cfg.federation_listen);
      } else if (key == "federation.peers") {
        strings(node, key, cfg.federation_peers);
      } else if (key == "federation.cert") {
        str(node, key, cfg.federation_cert);
      } else if (key == "federation.key") {
        str(node, key, cfg.federation_key);
      } else if (key == "federation.ca") {
        str(node, key, cfg.federation_ca);
      } else if (key == "channel.port") {
        str(node, key, cfg.channel_port);
      } else if (key == "vms.qemu") {
        str(node, key, cfg.qemu);
      } else if (key == "vms.image_kernel") {
        str(node, key, cfg.vm_image_kernel);
      } else if (key == "vms.image_initrd") {
        str(node, key, cfg.vm_image_initrd);
      } else if (key == "vms.mke2fs") {
        str(node, key, cfg.mke2fs);
      } else if (key == "vms.qemu_img") {
        str(node, key, cfg.qemu_img);
      } else if (key == "metrics.listen") {
        str(node, key, cfg.metrics_listen);
      } else if (key == "images.ca") {
        if (auto sub = node.as_table()) {
          for (auto& [reg, path] : *sub) {
            std::string out;
            str(path, key + "." + std::string{reg.str()}, out);
            cfg.registry_ca[std::string{reg.str()}] = out;
          }
        } else {
          error = key + ": expected a table of registry = \"CA file\", got "
                  + type_name(node.type());
        }
      } else {
        error = key + ": unknown key";
      }
    }
  }
};

} // namespace

std::string default_demo_image() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = self.parent_path().parent_path() / "share" / "cyto" / "demo-image";
    if (std::filesystem::exists(installed / "index.json", ec))
      return installed.lexically_normal().string();
  }
#ifdef CYTO_DEMO_IMAGE_DIR
  return CYTO_DEMO_IMAGE_DIR;
#else
  return {};
#endif
}

std::string containers_default_network(const daemon_config& cfg) {
  auto v = cfg.containers_default_network.value_or(cfg.default_network);
  return v == "none" ? std::string{} : v;
}

std::optional<std::string> apply_toml(std::string_view text, daemon_config& cfg) {
  toml::table tbl;
  try {
    tbl = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream out;
    out << "line " << e.source().begin.line << ": " << e.description();
    return out.str();
  }
  auto copy = cfg;
  applier a{copy, std::nullopt};
  a.table(tbl, "");
  if (a.error)
    return a.error;
  if (auto bad = validate(copy))
    return bad;
  cfg = std::move(copy);
  return std::nullopt;
}

std::optional<std::string> apply_toml_file(const std::string& path, daemon_config& cfg) {
  // POSIX, not an ifstream: it names the errno, and a directory opens fine as a stream
  // and reads as an empty (valid) TOML file.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return path + ": cannot read the file: " + std::strerror(errno);
  std::string text;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return path + ": cannot read the file: not a regular file";
  }
  char buf[8192];
  while (true) {
    auto n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      auto err = path + ": cannot read the file: " + std::strerror(errno);
      ::close(fd);
      return err;
    }
    if (n == 0)
      break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (auto err = apply_toml(text, cfg))
    return path + ": " + *err;
  return std::nullopt;
}

std::optional<std::string> validate(const daemon_config& cfg) {
  if (cfg.socket_path.empty() || cfg.socket_path.front() != '/')
    return "socket.path: must be an absolute path, got '" + cfg.socket_path + "'";
  if (cfg.socket_path.size() >= 108)
    return "socket.path: longer than a unix socket path may be (107 bytes)";
  if (cfg.state_dir.empty() || cfg.state_dir.front() != '/')
    return "state_dir: must be an absolute path, got '" + cfg.state_dir + "'";
  static constexpr std::string_view levels[] = {"trace", "debug", "info",
                                                "warn", "error", "critical"};
  if (std::find(std::begin(levels), std::end(levels), cfg.log_level) == std::end(levels))
    return "log_level: must be one of trace, debug, info, warn, error, critical; got '"
           + cfg.log_level + "'";
  if (cfg.cgroup_root.empty() || cfg.cgroup_root.find('/') != std::string::npos
      || cfg.cgroup_root == "." || cfg.cgroup_root == "..")
    return "cgroup.root: must be one directory name, got '" + cfg.cgroup_root + "'";
  if (cfg.scheduler_policy != "sharing" && cfg.scheduler_policy != "stealing")
    return "scheduler.policy: must be sharing or stealing, got '" + cfg.scheduler_policy + "'";
  if (cfg.scheduler_threads > 256)
    return "scheduler.threads: at most 256";
  if (cfg.default_registry.empty())
    return "images.default_registry: must not be empty";
  if (cfg.parallel_layers == 0 || cfg.parallel_layers > 64)
    return "images.parallel_layers: must be 1..64";
  if (!cfg.runtime_path.empty() && cfg.runtime_path.front() != '/')
    return "containers.runtime_path: must be an absolute path, got '" + cfg.runtime_path + "'";
  if (!cfg.demo_image.empty() && cfg.demo_image.front() != '/')
    return "containers.demo_image: must be an absolute path, got '" + cfg.demo_image + "'";
  for (auto [key, value] : {std::pair{"vms.image_kernel", &cfg.vm_image_kernel},
                            std::pair{"vms.image_initrd", &cfg.vm_image_initrd}})
    if (!value->empty() && value->front() != '/')
      return std::string{key} + ": must be an absolute path, got '" + *value + "'";
  if (cfg.log_history > 1'000'000)
    return "log.history: at most 1000000 entries";
  if (cfg.gateway_call_deadline < 1 || cfg.gateway_call_deadline > 86400)
    return "gateway.call_deadline: must be 1..86400 seconds";
  if (cfg.gateway_connection_message_mib < 1 || cfg.gateway_connection_message_mib > 64)
    return "gateway.connection_message_mib: must be 1..64 (a message is at most 64 MiB)";
  if (cfg.gateway_total_message_mib < cfg.gateway_connection_message_mib
      || cfg.gateway_total_message_mib > 65536)
    return "gateway.total_message_mib: must be gateway.connection_message_mib..65536";
  if (!cfg.gateway_tcp.empty()) {
    auto colon = cfg.gateway_tcp.rfind(':');
    auto port = colon == std::string::npos ? std::string{} : cfg.gateway_tcp.substr(colon + 1);
    bool digits = !port.empty() && port.size() <= 5
                  && std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (colon == 0 || !digits || std::stoul(port) == 0 || std::stoul(port) > 65535)
      return "gateway.tcp: must be host:port (port 1..65535), got '" + cfg.gateway_tcp + "'";
    for (auto [key, value] : {std::pair{"gateway.tls_cert", &cfg.gateway_tls_cert},
                              std::pair{"gateway.tls_key", &cfg.gateway_tls_key},
                              std::pair{"gateway.tls_ca", &cfg.gateway_tls_ca},
                              std::pair{"gateway.policy", &cfg.gateway_policy}})
      if (value->empty())
        return std::string{key} + ": needed with gateway.tcp (see `make pki`)";
  }
  if (!cfg.metrics_listen.empty() && !bus::parse_host_port(cfg.metrics_listen))
    return "metrics.listen: expected host:port (e.g. 127.0.0.1:9464), got '" + cfg.metrics_listen
           + "'";
  if (!cfg.federation_listen.empty() && !bus::parse_host_port(cfg.federation_listen))
    return "federation.listen: expected host:port, got '" + cfg.federation_listen + "'";
  for (auto& p : cfg.federation_peers)
    if (!bus::parse_peer(p))
      return "federation.peers: expected name@host:port, got '" + p + "'";
  if ((!cfg.federation_listen.empty() || !cfg.federation_peers.empty())
      && (cfg.federation_cert.empty() || cfg.federation_key.empty() || cfg.federation_ca.empty()))
    return "federation: federation.cert, federation.key and federation.ca are required with "
           "federation.listen or federation.peers";
  for (char c : cfg.node_name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return "node_name: only letters, digits, '-', '_' and '.' are allowed; got '"
             + cfg.node_name + "'";
  return std::nullopt;
}

} // namespace cyto::services
