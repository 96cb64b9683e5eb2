#pragma once
// cytod's configuration: defaults, TOML file (/etc/cyto/cytod.toml or --config), flags.

#include <cstdint>
#include <map>
#include <vector>
#include <optional>
#include <string>
#include <string_view>

namespace cyto::services {

/// The demo image layout: <dir of this executable>/../share/cyto/demo-image when it
/// exists (an installed cytod: /usr/bin -> /usr/share/cyto), else the one this build
/// made (CYTO_DEMO_IMAGE_DIR).
std::string default_demo_image();

struct daemon_config {
  /// Unix socket clients connect to.
  std::string socket_path = "/run/cyto/cyto.sock";
  /// Group allowed on the socket besides root; ignored if no such group exists.
  std::string socket_group = "cyto";
  /// Where cytod keeps its state (state.db, images/, bundles/, vms/).
  std::string state_dir = "/var/lib/cyto";
  /// trace, debug, info, warn, error, critical.
  std::string log_level = "info";
  /// This node's name; the host name when empty.
  std::string node_name;
  /// CAF scheduler: "sharing" (one shared queue) or "stealing" (work stealing).
  std::string scheduler_policy = "sharing";
  /// CAF worker threads; 0 means one per core.
  uint32_t scheduler_threads = 0;
  /// The daemon's own cgroup subtree under each hierarchy; it never writes outside it.
  std::string cgroup_root = "cyto";
  /// Recent daemon log entries kept for `cyto logs --daemon`.
  uint32_t log_history = 1000;
  /// Where short image names ("busybox") resolve (images.default_registry).
  std::string default_registry = "docker.io";
  /// Registries ("host:port") spoken to over plain HTTP (images.insecure_registries).
  std::vector<std::string> insecure_registries;
  /// A docker-style config.json with registry credentials (images.credentials_file).
  std::string registry_credentials;
  /// Registry -> PEM CA bundle for its TLS certificate (table images.ca).
  std::map<std::string, std::string> registry_ca;
  /// Layers fetched and unpacked at once per pull (images.parallel_layers).
  uint32_t parallel_layers = 4;
  /// Directories holding the CNI plugin binaries (network.cni_path).
  std::vector<std::string> cni_path{"/usr/lib/cni", "/opt/cni/bin"};
  /// Networks created without a subnet get one of this pool (network.subnet_pool)...
  std::string subnet_pool = "10.89.0.0/16";
  /// ... of this prefix length (network.subnet_size).
  uint32_t subnet_size = 24;
  /// The network used when none is named, made at start (network.default_name).
  std::string default_network = "cyto";
  /// Its subnet (network.default_subnet).
  std::string default_subnet = "10.88.0.0/16";
  /// The cyto-runtime binary (containers.runtime_path); empty: next to cytod.
  std::string runtime_path;
  /// OCI layout imported as image "demo" when missing (containers.demo_image); empty:
  /// none. Defaults to the demo image this build made.
  std::string demo_image = default_demo_image();
  /// Containers get the default seccomp profile (containers.seccomp).
  bool default_seccomp = true;
  /// The network containers and pods join when they name none
  /// (containers.default_network); unset: network.default_name; "" or "none": none,
  /// they get lo only.
  std::optional<std::string> containers_default_network;
  /// "host:port" of the mutual-TLS TCP gateway (gateway.tcp); empty: off.
  std::string gateway_tcp;
  /// Its certificate, key and the CA clients' certificates must come from
  /// (gateway.tls_cert, gateway.tls_key, gateway.tls_ca); PEM files.
  std::string gateway_tls_cert;
  std::string gateway_tls_key;
  std::string gateway_tls_ca;
  /// Which SPIFFE ID may call which service.verb over TCP (gateway.policy, TOML).
  std::string gateway_policy;
  /// Seconds a call may wait for an actor's answer (gateway.call_deadline); calls that
  /// wait by nature (wait, pull, stop with a timeout, streams) have none.
  uint32_t gateway_call_deadline = 60;
  /// MiB of incoming messages one connection may hold at once
  /// (gateway.connection_message_mib), and all connections together
  /// (gateway.total_message_mib); a message over either closes its connection.
  uint32_t gateway_connection_message_mib = 8;
  uint32_t gateway_total_message_mib = 128;
  /// "host:port" where this node accepts other nodes (federation.listen); empty: none.
  std::string federation_listen;
  /// Nodes to join, "name@host:port" (federation.peers).
  std::vector<std::string> federation_peers;
  /// This node's certificate (SPIFFE ID spiffe://<td>/node/<node_name>), its key and the
  /// federation's CA, PEM files (federation.cert, federation.key, federation.ca).
  std::string federation_cert, federation_key, federation_ca;
  /// Name of a virtio-serial port to serve the gateway on as well (channel.port): the
  /// host's way into a guest. Empty: none; in init mode "org.cyto.channel.0".
  std::string channel_port;
  /// The QEMU binary VMs run (vms.qemu): a path or a name looked up in PATH.
  std::string qemu = "qemu-system-x86_64";
  /// Kernel and initramfs of VMs booted from an image (vms.image_kernel,
  /// vms.image_initrd; deploy/make-vm-boot makes both). Empty: <state_dir>/vms/boot/
  /// vmlinuz and initramfs.cpio.
  std::string vm_image_kernel;
  std::string vm_image_initrd;
  /// Tools that make image VMs' root disks (vms.mke2fs, vms.qemu_img): paths or names.
  std::string mke2fs = "mke2fs";
  std::string qemu_img = "qemu-img";
  /// "host:port" of the Prometheus endpoint, GET /metrics (metrics.listen); empty: off.
  std::string metrics_listen;
};

/// What containers.default_network comes to: the network's name, or "" when off.
std::string containers_default_network(const daemon_config& cfg);

/// The default configuration file, read if it exists and no --config is given.
inline constexpr const char* default_config_path = "/etc/cyto/cytod.toml";

/// Applies TOML text over `cfg`. On error returns "<key>: <problem>" (or the parse
/// error with its line) and leaves `cfg` unchanged.
std::optional<std::string> apply_toml(std::string_view text, daemon_config& cfg);

/// Reads and applies a TOML file; errors name the file and the key.
std::optional<std::string> apply_toml_file(const std::string& path, daemon_config& cfg);

/// Checks values; returns "<key>: <problem>" for the first bad one.
std::optional<std::string> validate(const daemon_config& cfg);

} // namespace cyto::services
