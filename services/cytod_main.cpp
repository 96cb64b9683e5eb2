// cytod: the composition root. Reads the config, starts the actor system, spawns the
// actors, registers them on the bus and hands the registry to the gateway.

#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <systemd/sd-daemon.h>

#include "actors/cells/cells_actor.hpp"
#include "actors/containers/containers_actor.hpp"
#include "actors/images/images_actor.hpp"
#include "actors/network/network_actor.hpp"
#include "actors/volumes/volumes_actor.hpp"
#include "actors/vms/vms_actor.hpp"
#include "actors/node/host_features.hpp"
#include "actors/node/node_actor.hpp"
#include "actors/observe/log_sink.hpp"
#include "actors/observe/observe_actor.hpp"
#include "bus/errc.hpp"
#include "bus/federation_actor.hpp"
#include "bus/logging.hpp"
#include "bus/registry.hpp"
#include "bus/topics.hpp"
#include "bus/types.hpp"
#include "cyto/version.hpp"
#include "services/config.hpp"
#include "services/gateway.hpp"
#include "services/init_mode.hpp"
#include "services/metrics.hpp"
#include "services/socket_activation.hpp"
#include "services/watchdog.hpp"

namespace {

using namespace cyto;

constexpr int exit_config = 2;
constexpr int exit_runtime = 1;

/// Routes kj's own log lines into spdlog.
class kj_log_bridge final : public kj::ExceptionCallback {
public:
  void logMessage(kj::LogSeverity severity, const char* file, int line, int depth,
                  kj::String&& text) override {
    auto lvl = severity == kj::LogSeverity::ERROR || severity == kj::LogSeverity::FATAL
                 ? spdlog::level::err
                 : severity == kj::LogSeverity::WARNING ? spdlog::level::warn
                                                        : spdlog::level::debug;
    log::get("kj")->log(lvl, "{}:{}: {}", file, line, text.cStr());
  }
};

/// Holds an exclusive lock on <state_dir>/cytod.lock for the daemon's lifetime.
struct state_lock {
  int fd = -1;
  ~state_lock() {
    if (fd >= 0)
      ::close(fd);
  }
};

std::optional<std::string> lock_state_dir(const std::string& dir, state_lock& lock) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return "create state dir " + dir + ": " + ec.message();
  ::chmod(dir.c_str(), 0700);
  auto path = dir + "/cytod.lock";
  lock.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock.fd < 0)
    return "open " + path + ": " + std::strerror(errno);
  // A cytod killed in the middle of a spawn leaves a child that holds the lock (a copy of
  // its fds) until its exec moments later: a restart right after the crash waits for it.
  for (int tries = 0; ::flock(lock.fd, LOCK_EX | LOCK_NB) != 0; ++tries) {
    if (errno != EWOULDBLOCK)
      return "lock " + path + ": " + std::strerror(errno);
    if (tries == 100)
      return "another cytod uses the state dir " + dir;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::nullopt;
}

std::optional<gid_t> lookup_group(const std::string& name) {
  if (name.empty())
    return std::nullopt;
  if (auto* g = ::getgrnam(name.c_str()))
    return g->gr_gid;
  return std::nullopt;
}

/// cyto-runtime next to this cytod (the default of containers.runtime_path).
std::string runtime_next_to_self() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string{} : (self.parent_path() / "cyto-runtime").string();
}

std::string host_name() {
  char buf[256] = {};
  ::gethostname(buf, sizeof(buf) - 1);
  return buf;
}

template <class Handle>
void register_actor(caf::scoped_actor& self, const registry_actor& registry, const char* name,
                    const Handle& handle) {
  self->request(registry, caf::infinite, put_atom::value, std::string{name},
                caf::actor_cast<caf::strong_actor_ptr>(handle))
    .receive([] {},
             [name](caf::error& err) {
               throw std::runtime_error(std::string{"register "} + name + ": " + render(err));
             });
}

/// Opens the kernel event probes (eBPF) for the observe actor; without them the daemon
/// runs on and says why (discover, observe status).
void open_event_probe(observe::observe_config& cfg) {
  std::string why;
  // At most one ring wakeup per millisecond: at high event rates the kernel's cost per
  // event drops several-fold; the reader polls again within poll_again_ms() so a lone
  // event still arrives within about a millisecond.
  ebpf::probe_options options;
  options.wakeup_interval_us = 1000;
  cfg.probe = ebpf::probe::open(why, options);
  if (!cfg.probe)
    cfg.probe_error = why.empty() ? "the eBPF probe could not be opened" : why;
}

/// Every client connection, cell output file and pidfd is a descriptor: take up to 64k of
/// the hard limit instead of the usual soft 1024 (the gateway still caps connections, and
/// backs off instead of stopping when accept runs out anyway).
void raise_nofile_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return;
  auto want = std::min<rlim_t>(lim.rlim_max, 65536);
  if (lim.rlim_cur < want) {
    lim.rlim_cur = want;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

/// How long a stopping daemon lets open connections finish their calls (new peers wait in
/// the socket's backlog meanwhile, for the next daemon when the socket is inherited).
constexpr auto drain_timeout = 5 * kj::SECONDS;

/// Sends STATUS= (and optionally a state such as READY=1) to systemd, if it listens.
void notify(const char* state, const std::string& status) {
  auto text = std::string{state} + (state[0] ? "\n" : "") + "STATUS=" + status;
  ::sd_notify(0, text.c_str());
}

int run(services::daemon_config cfg, std::unique_ptr<services::tcp_gateway> tcp,
        services::activation activated) {
  // Pipelined calls allocate and free capnp messages in bursts; glibc's default trims
  // the heap after each burst and faults it back in on the next (brk, memset, page
  // faults were ~15% of the gateway thread under load). Keep a few MiB instead.
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
  ::mallopt(M_TOP_PAD, 4 << 20);
  ::mallopt(M_MMAP_THRESHOLD, 4 << 20);
  // Signals are taken by the kj loop; they must be blocked before any thread exists.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  std::signal(SIGPIPE, SIG_IGN);
  raise_nofile_limit();

  auto stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  stderr_sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
    "%Y-%m-%dT%H:%M:%S.%fZ %l %n: %v", spdlog::pattern_time_type::utc));
  auto level = log::to_spdlog(*log::parse_level(cfg.log_level));
  log::init({stderr_sink}, level);
  auto main_log = log::get("cytod");

  state_lock lock;
  if (auto err = lock_state_dir(cfg.state_dir, lock)) {
    main_log->error("{}", *err);
    return exit_runtime;
  }
  kj::AutoCloseFd listen_fd{activated.fd};
  if (listen_fd == nullptr
      && services::probe_socket(cfg.socket_path) == services::socket_probe::live) {
    main_log->error("another daemon is listening on {}", cfg.socket_path);
    return exit_runtime;
  }
  // Bound before any actor starts, so that a port in use stops cytod at once.
  kj::AutoCloseFd metrics_fd;
  if (!cfg.metrics_listen.empty()) {
    try {
      metrics_fd = kj::AutoCloseFd{services::listen_metrics_socket(cfg.metrics_listen)};
    } catch (const std::exception& e) {
      main_log->error("{}", e.what());
      return exit_config;
    }
  }

  auto self_name = cfg.node_name.empty() ? host_name() : cfg.node_name;
  bus::federation_config fed_cfg;
  fed_cfg.node_name = self_name;
  fed_cfg.listen = cfg.federation_listen;
  for (auto& p : cfg.federation_peers)
    fed_cfg.peers.push_back(*bus::parse_peer(p)); // validate() checked them
  fed_cfg.cert_file = cfg.federation_cert;
  fed_cfg.key_file = cfg.federation_key;
  fed_cfg.ca_file = cfg.federation_ca;
  if (auto bad = fed_cfg.validate(); !bad.empty()) {
    main_log->error("{}", bad);
    return exit_config;
  }

  caf::actor_system_config sys_cfg;
  bus::add_types(sys_cfg);
  if (fed_cfg.enabled())
    bus::configure_federation(sys_cfg, fed_cfg);
  sys_cfg.set("scheduler.policy",
              cfg.scheduler_policy == "sharing" ? caf::atom("sharing") : caf::atom("stealing"));
  if (cfg.scheduler_threads > 0)
    sys_cfg.set("scheduler.max-threads", static_cast<size_t>(cfg.scheduler_threads));
  caf::actor_system sys{sys_cfg};

  auto registry = sys.spawn(bus::registry);
  topic_actor topics = sys.spawn(bus::topics, bus::topics_config{});
  auto bus_sink = std::make_shared<observe::bus_log_sink>(topics);
  bus_sink->set_level(level);
  log::init({stderr_sink, bus_sink}, level);

  node::node_config node_cfg{self_name,
                             cyto::version, node::detect_host_features(), registry};
  if (auto bad = node_cfg.validate(); !bad.empty()) {
    main_log->error("node: {}", bad);
    return exit_config;
  }
  cells::cells_config cells_cfg;
  cells_cfg.cgroup_root = cfg.cgroup_root;
  cells_cfg.mode = node_cfg.features.cgroups;
  cells_cfg.state_dir = cfg.state_dir;
  cells_cfg.topics = topics;
  if (auto bad = cells_cfg.validate(); !bad.empty()) {
    main_log->error("cells: {}", bad);
    return exit_config;
  }
  images::images_config images_cfg;
  images_cfg.state_dir = cfg.state_dir;
  images_cfg.registry.default_registry = cfg.default_registry;
  images_cfg.registry.insecure = cfg.insecure_registries;
  images_cfg.registry.ca_files = cfg.registry_ca;
  images_cfg.registry.credentials_file = cfg.registry_credentials;
  images_cfg.registry.parallel_layers = cfg.parallel_layers;
  images_cfg.topics = topics;
  if (auto bad = images_cfg.validate(); !bad.empty()) {
    main_log->error("images: {}", bad);
    return exit_config;
  }
  network::network_config network_cfg;
  network_cfg.state_dir = cfg.state_dir;
  network_cfg.plugin_dirs = cfg.cni_path;
  network_cfg.subnet_pool = cfg.subnet_pool;
  network_cfg.subnet_size = cfg.subnet_size;
  network_cfg.default_network = cfg.default_network;
  network_cfg.default_subnet = cfg.default_subnet;
  if (auto bad = network_cfg.validate(); !bad.empty()) {
    main_log->error("network: {}", bad);
    return exit_config;
  }
  // CNI plugins and netns mounts block: a thread of its own.
  auto network_actor = sys.spawn<caf::detached>(network::network, network_cfg);
  cells_cfg.network = network_actor;
  // Blocking kernel work (clone, cgroupfs, SQLite) runs on a thread of its own.
  cyto::cells_actor cells_actor = sys.spawn<caf::detached>(cells::cells, cells_cfg);
  observe::observe_config observe_cfg;
  observe_cfg.log_history = cfg.log_history;
  observe_cfg.topics = topics;
  observe_cfg.cells = cells_actor;
  observe_cfg.cgroup_root = cfg.cgroup_root;
  open_event_probe(observe_cfg);
  if (auto bad = observe_cfg.validate(); !bad.empty()) {
    main_log->error("observe: {}", bad);
    caf::anon_send_exit(cells_actor, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(network_actor, caf::exit_reason::user_shutdown);
    return exit_config;
  }
  cyto::observe_actor observe_actor = sys.spawn(observe::observe, observe_cfg);
  // Removal, prune and mounts block on the disk: a thread of its own (pulls get more).
  cyto::images_actor images_actor = sys.spawn<caf::detached>(images::images, images_cfg);
  node_cfg.cells = cells_actor;
  node_cfg.state_dbs = {cfg.state_dir + "/state.db", cfg.state_dir + "/images/images.db"};
  auto node_actor = sys.spawn(node::node, node_cfg);
  volumes::volumes_config volumes_cfg;
  volumes_cfg.state_dir = cfg.state_dir;
  cyto::volumes_actor volumes_handle;
  if (auto bad = volumes_cfg.validate(); !bad.empty())
    main_log->error("volumes: {}; volumes are unavailable", bad);
  else // Removing a volume deletes its data: a thread of its own.
    volumes_handle = sys.spawn<caf::detached>(volumes::volumes, volumes_cfg);
  containers::containers_config containers_cfg;
  containers_cfg.state_dir = cfg.state_dir;
  containers_cfg.runtime_path = cfg.runtime_path.empty() ? runtime_next_to_self() : cfg.runtime_path;
  containers_cfg.demo_image = cfg.demo_image;
  containers_cfg.default_seccomp = cfg.default_seccomp;
  containers_cfg.default_network = services::containers_default_network(cfg);
  containers_cfg.cells = cells_actor;
  containers_cfg.images = images_actor;
  containers_cfg.registry = registry;
  containers_cfg.network = network_actor;
  containers_cfg.volumes = volumes_handle;
  containers_cfg.observe = observe_actor;
  main_log->info("containers: runtime {}, demo image {}, default network {}",
                 containers_cfg.runtime_path,
                 containers_cfg.demo_image.empty() ? "(none)" : containers_cfg.demo_image,
                 containers_cfg.default_network.empty() ? "none" : containers_cfg.default_network);
  cyto::containers_actor containers_handle;
  if (auto bad = containers_cfg.validate(); !bad.empty())
    main_log->error("containers: {}; containers are unavailable", bad);
  else // Bundles, the demo import and re-adoption touch the disk: a thread of its own.
    containers_handle = sys.spawn<caf::detached>(containers::containers, containers_cfg);

  fed_cfg.registry = registry;
  cyto::federation_actor federation_actor = sys.spawn(bus::federation, fed_cfg);
  vms::vms_config vms_cfg;
  vms_cfg.state_dir = cfg.state_dir;
  vms_cfg.qemu = cfg.qemu;
  vms_cfg.cells = cells_actor;
  vms_cfg.network = network_actor;
  vms_cfg.images = images_actor;
  vms_cfg.image_kernel = cfg.vm_image_kernel;
  vms_cfg.image_initrd = cfg.vm_image_initrd;
  vms_cfg.mke2fs = cfg.mke2fs;
  vms_cfg.qemu_img = cfg.qemu_img;
  cyto::vms_actor vms_handle;
  if (auto bad = vms_cfg.validate(); !bad.empty())
    main_log->error("vms: {}; VMs are unavailable", bad);
  else // state.db and re-adoption touch the disk: a thread of its own.
    vms_handle = sys.spawn<caf::detached>(vms::vms, vms_cfg);

  int rc = 0;
  {
    caf::scoped_actor self{sys};
    try {
      register_actor(self, registry, service_name::federation, federation_actor);
      register_actor(self, registry, service_name::topics, topics);
      register_actor(self, registry, service_name::observe, observe_actor);
      register_actor(self, registry, service_name::node, node_actor);
      register_actor(self, registry, service_name::cells, cells_actor);
      register_actor(self, registry, service_name::images, images_actor);
      register_actor(self, registry, service_name::network, network_actor);
      if (volumes_handle) {
        register_actor(self, registry, service_name::volumes, volumes_handle);
        self->request(volumes_handle, caf::infinite, list_atom::value)
          .receive([](std::vector<volume_info>&) {},
                   [&](caf::error& err) { main_log->warn("volumes: {}", render(err)); });
      }
      if (containers_handle) {
        register_actor(self, registry, service_name::containers, containers_handle);
        // Answers once the demo image is in and its records are read.
        self->request(containers_handle, caf::infinite, list_atom::value)
          .receive([](std::vector<container_info>&) {},
                   [&](caf::error& err) { main_log->warn("containers: {}", render(err)); });
      }
      if (vms_handle) {
        register_actor(self, registry, service_name::vms, vms_handle);
        self->request(vms_handle, caf::infinite, list_atom::value)
          .receive([](std::vector<vm_info>&) {},
                   [&](caf::error& err) { main_log->warn("vms: {}", render(err)); });
      }
      // Ready means ready: the cells actor has set up its cgroups and re-adopted its
      // workloads (it answers only after its start-up work).
      self->request(cells_actor, caf::infinite, list_atom::value)
        .receive([](std::vector<cell_info>&) {},
                 [&](caf::error& err) { main_log->warn("cells: {}", render(err)); });
      self->request(network_actor, caf::infinite, list_atom::value)
        .receive([](std::vector<network_info>&) {},
                 [&](caf::error& err) { main_log->warn("network: {}", render(err)); });
      self->request(images_actor, caf::infinite, list_atom::value)
        .receive([](std::vector<image_info>&) {},
                 [&](caf::error& err) { main_log->warn("images: {}", render(err)); });
      if (!fed_cfg.listen.empty()) {
        auto port = bus::publish_door(sys, federation_actor, fed_cfg);
        if (!port)
          throw std::runtime_error(render(port.error()));
        main_log->info("federation: listening on {} (port {}) as {}", fed_cfg.listen, *port,
                       fed_cfg.identity->node_spiffe_id(self_name));
      }
    } catch (const std::exception& e) {
      main_log->error("{}", e.what());
      rc = exit_runtime;
    }
  }

  if (rc == 0) {
    kj_log_bridge kj_logs;
    auto io = kj::setupAsyncIo();
    services::gateway_config gw_cfg{cfg.socket_path, lookup_group(cfg.socket_group),
                                    std::move(tcp), cfg.state_dir + "/vms"};
    gw_cfg.call_deadline = cfg.gateway_call_deadline * kj::SECONDS;
    gw_cfg.connection_message_bytes = size_t{cfg.gateway_connection_message_mib} << 20;
    gw_cfg.total_message_bytes = size_t{cfg.gateway_total_message_mib} << 20;
    gw_cfg.listen_fd = listen_fd.release();
    services::gateway gw{io, sys, registry, std::move(gw_cfg)};
    kj::Maybe<kj::Own<services::guest_channel>> channel;
    kj::Maybe<kj::Own<services::metrics_server>> metrics;
    // The watchdog's own bridge: it proves the bus answers, apart from client traffic.
    services::bridge ops_bridge{sys, io.unixEventPort};
    kj::Maybe<kj::Own<services::watchdog>> dog;
    try {
      gw.listen();
      if (metrics_fd != nullptr) {
        services::metrics_sources sources{node_actor,   cells_actor,   containers_handle,
                                          vms_handle,   images_actor,  topics,
                                          observe_actor, nullptr};
        sources.gateway = [&gw](services::metrics_snapshot& s) {
          s.connections_open = gw.connections();
          s.connections_accepted = gw.connections_accepted();
          s.calls = gw.bus_totals();
        };
        metrics = kj::heap<services::metrics_server>(io, sys, metrics_fd.release(),
                                                     std::move(sources));
        main_log->info("metrics: serving GET /metrics on {}", cfg.metrics_listen);
      }
      if (!cfg.channel_port.empty()) {
        auto& ch = channel.emplace(kj::heap<services::guest_channel>(
          io, cfg.channel_port, [&gw](kj::AsyncIoStream& s) { return gw.serve(s); }));
        ch->start();
      }
      main_log->info("cytod {} ready: node={} socket={} state={} pid={}", cyto::version,
                     node_cfg.node_name, cfg.socket_path, cfg.state_dir, ::getpid());
      notify("READY=1", "serving on " + cfg.socket_path
                          + (activated.fd >= 0 ? " (socket activated)" : ""));
      if (auto every = services::watchdog::interval_from_environment(); every > 0 * kj::SECONDS) {
        dog = kj::heap<services::watchdog>(ops_bridge, io.provider->getTimer(), node_actor, every);
        main_log->info("watchdog: asking the node actor every {} ms", every / kj::MILLISECONDS);
      }
      auto sig = io.unixEventPort.onSignal(SIGTERM)
                   .exclusiveJoin(io.unixEventPort.onSignal(SIGINT))
                   .wait(io.waitScope);
      main_log->info("signal {} received, shutting down", sig.si_signo);
      // The host's channel into a guest goes at once, as before: it never ends by itself.
      channel = nullptr;
      // New peers wait in the backlog; the ones connected finish their calls first.
      gw.stop_accepting().wait(io.waitScope);
      notify("STOPPING=1", "draining " + std::to_string(gw.connections()) + " connections");
      auto& timer = io.provider->getTimer();
      auto deadline = timer.now() + drain_timeout;
      while (gw.connections() > 0 && timer.now() < deadline)
        timer.afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
      if (gw.connections() > 0)
        main_log->info("closing {} connections still open", gw.connections());
      dog = nullptr;
    } catch (const std::exception& e) {
      main_log->error("{}", e.what());
      rc = exit_runtime;
    }
    channel = nullptr;
    metrics = nullptr;
    gw.close();
  }

  // Actors first, then the sink that holds the topic handle, then the system.
  bus_sink->detach();
  for (auto& a : {caf::actor_cast<caf::actor>(vms_handle),
                  caf::actor_cast<caf::actor>(containers_handle),
                  caf::actor_cast<caf::actor>(volumes_handle),
                  caf::actor_cast<caf::actor>(cells_actor), caf::actor_cast<caf::actor>(images_actor),
                  caf::actor_cast<caf::actor>(network_actor),
                  caf::actor_cast<caf::actor>(node_actor),
                  caf::actor_cast<caf::actor>(federation_actor),
                  caf::actor_cast<caf::actor>(observe_actor),
                  caf::actor_cast<caf::actor>(topics), caf::actor_cast<caf::actor>(registry)})
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  log::init({stderr_sink}, level);
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  cyto::services::daemon_config cfg;
  CLI::App app{"cytod: the cyto node daemon (cells, containers, images, VMs, observability)"};
  std::string config_path;
  std::optional<std::string> socket, state_dir, log_level, node_name, policy, cgroup_root;
  std::optional<uint32_t> threads;
  std::optional<std::string> default_registry, registry_credentials;
  std::vector<std::string> insecure_registries, cni_path;
  std::optional<std::string> tcp, tls_cert, tls_key, tls_ca, gateway_policy;
  std::optional<std::string> fed_listen, fed_cert, fed_key, fed_ca;
  std::vector<std::string> fed_peers;
  std::optional<std::string> subnet_pool, channel_port, qemu;
  std::optional<std::string> vm_image_kernel, vm_image_initrd, mke2fs, qemu_img;
  std::optional<std::string> metrics_listen, default_network;
  bool init_flag = false;
  app.add_flag("--init", init_flag,
               "run as a VM's init (automatic as PID 1): mount /proc /sys /dev /run /tmp and "
               "cgroup2, load /etc/cyto/modules, reap orphans, power off when stopped, and "
               "serve the host on the virtio-serial port org.cyto.channel.0");
  app.add_option("--channel-port", channel_port,
                 "also serve on this virtio-serial port (channel.port; init mode: "
                 "org.cyto.channel.0)");
  app.add_option("--config", config_path,
                 std::string{"TOML configuration file (default "} + services::default_config_path
                   + " if it exists)");
  app.add_option("--socket", socket, "unix socket to listen on (socket.path)");
  app.add_option("--state-dir", state_dir, "state directory (state_dir)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical (log_level)");
  app.add_option("--node-name", node_name, "this node's name (node_name; default: host name)");
  app.add_option("--cgroup-root", cgroup_root,
                 "cgroup subtree cytod owns under each hierarchy (cgroup.root, default cyto)");
  app.add_option("--scheduler", policy, "CAF scheduler policy: sharing|stealing (scheduler.policy)");
  app.add_option("--threads", threads, "CAF worker threads, 0 = one per core (scheduler.threads)");
  app.add_option("--default-registry", default_registry,
                 "registry for short image names (images.default_registry, default docker.io)");
  app.add_option("--insecure-registry", insecure_registries,
                 "host:port spoken to over plain HTTP; repeat (images.insecure_registries)");
  app.add_option("--registry-credentials", registry_credentials,
                 "docker-style config.json with registry auths (images.credentials_file)");
  app.add_option("--cni-path", cni_path,
                 "directory of CNI plugin binaries; repeat (network.cni_path)");
  app.add_option("--subnet-pool", subnet_pool,
                 "pool of subnets for networks made without one (network.subnet_pool)");
  app.add_option("--default-network", default_network,
                 "network of containers and pods made without --network; none: lo only "
                 "(containers.default_network, default network.default_name)");
  app.add_option("--tcp", tcp,
                 "host:port of the mutual-TLS TCP gateway (gateway.tcp; default: off)");
  app.add_option("--tls-cert", tls_cert, "the TCP gateway's certificate, PEM (gateway.tls_cert)");
  app.add_option("--tls-key", tls_key, "its private key, PEM (gateway.tls_key)");
  app.add_option("--tls-ca", tls_ca,
                 "the CA client certificates must come from, PEM (gateway.tls_ca)");
  app.add_option("--gateway-policy", gateway_policy,
                 "TOML: which SPIFFE ID may call which service.verb over TCP (gateway.policy)");
  app.add_option("--federation-listen", fed_listen,
                 "host:port where other nodes join this one, TLS (federation.listen)");
  app.add_option("--peer", fed_peers,
                 "node to join, name@host:port; repeat (federation.peers)");
  app.add_option("--federation-cert", fed_cert,
                 "this node's certificate, SPIFFE ID spiffe://TD/node/NAME (federation.cert)");
  app.add_option("--federation-key", fed_key, "this node's key (federation.key)");
  app.add_option("--federation-ca", fed_ca, "the federation's CA certificate (federation.ca)");
  app.add_option("--qemu", qemu,
                 "QEMU binary VMs run, a path or a name in PATH (vms.qemu, default "
                 "qemu-system-x86_64)");
  app.add_option("--vm-image-kernel", vm_image_kernel,
                 "kernel of VMs booted from an image (vms.image_kernel, default "
                 "STATE_DIR/vms/boot/vmlinuz, made by deploy/make-vm-boot)");
  app.add_option("--vm-image-initrd", vm_image_initrd,
                 "initramfs of VMs booted from an image (vms.image_initrd, default "
                 "STATE_DIR/vms/boot/initramfs.cpio, made by deploy/make-vm-boot)");
  app.add_option("--mke2fs", mke2fs, "mke2fs for image VMs' root disks (vms.mke2fs)");
  app.add_option("--qemu-img", qemu_img, "qemu-img for image VMs' overlays (vms.qemu_img)");
  app.add_option("--metrics-listen", metrics_listen,
                 "host:port of the Prometheus endpoint, GET /metrics (metrics.listen; default: "
                 "off)");
  app.set_version_flag("--version", std::string{cyto::version} + " (" + cyto::git_revision + ")");
  // As PID 1 the kernel hands us the command line words it does not know: not ours.
  if (::getpid() == 1)
    app.allow_extras();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_config;
  }
  // Before any thread exists: it unsets LISTEN_* (setenv is not thread-safe).
  auto activated = services::take_activation_socket();
  if (activated.error) {
    std::fprintf(stderr, "cytod: %s\n", activated.error->c_str());
    return exit_config;
  }
  bool init = services::init_mode_wanted(init_flag);
  if (init) {
    if (int rc = services::become_init(services::init_options{}); rc != 0)
      return rc;
    cfg.channel_port = "org.cyto.channel.0"; // the file or the flag may still change it
  }
  std::string file = config_path;
  if (file.empty() && std::filesystem::exists(services::default_config_path))
    file = services::default_config_path;
  if (!file.empty()) {
    if (auto err = services::apply_toml_file(file, cfg)) {
      std::fprintf(stderr, "cytod: config %s\n", err->c_str());
      return exit_config;
    }
  }
  if (socket) cfg.socket_path = *socket;
  if (state_dir) cfg.state_dir = *state_dir;
  if (log_level) cfg.log_level = *log_level;
  if (node_name) cfg.node_name = *node_name;
  if (policy) cfg.scheduler_policy = *policy;
  if (cgroup_root) cfg.cgroup_root = *cgroup_root;
  if (threads) cfg.scheduler_threads = *threads;
  if (default_registry) cfg.default_registry = *default_registry;
  if (registry_credentials) cfg.registry_credentials = *registry_credentials;
  for (auto& r : insecure_registries) cfg.insecure_registries.push_back(r);
  if (!cni_path.empty()) cfg.cni_path = cni_path;
  if (subnet_pool) cfg.subnet_pool = *subnet_pool;
  if (default_network) cfg.containers_default_network = *default_network;
  if (tcp) cfg.gateway_tcp = *tcp;
  if (tls_cert) cfg.gateway_tls_cert = *tls_cert;
  if (tls_key) cfg.gateway_tls_key = *tls_key;
  if (tls_ca) cfg.gateway_tls_ca = *tls_ca;
  if (gateway_policy) cfg.gateway_policy = *gateway_policy;
  if (fed_listen) cfg.federation_listen = *fed_listen;
  if (!fed_peers.empty()) cfg.federation_peers = fed_peers;
  if (fed_cert) cfg.federation_cert = *fed_cert;
  if (fed_key) cfg.federation_key = *fed_key;
  if (fed_ca) cfg.federation_ca = *fed_ca;
  if (channel_port) cfg.channel_port = *channel_port;
  if (qemu) cfg.qemu = *qemu;
  if (vm_image_kernel) cfg.vm_image_kernel = *vm_image_kernel;
  if (vm_image_initrd) cfg.vm_image_initrd = *vm_image_initrd;
  if (mke2fs) cfg.mke2fs = *mke2fs;
  if (qemu_img) cfg.qemu_img = *qemu_img;
  if (metrics_listen) cfg.metrics_listen = *metrics_listen;
  if (auto err = services::validate(cfg)) {
    std::fprintf(stderr, "cytod: config %s\n", err->c_str());
    return exit_config;
  }
  // Bad certificates or policy stop cytod here, before anything starts.
  std::unique_ptr<services::tcp_gateway> tcp_gateway;
  if (!cfg.gateway_tcp.empty()) {
    try {
      tcp_gateway = services::load_tcp_gateway(
        cfg.gateway_tcp, {cfg.gateway_tls_cert, cfg.gateway_tls_key, cfg.gateway_tls_ca},
        cfg.gateway_policy);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cytod: config %s\n", e.what());
      return exit_config;
    }
  }
  // An inherited socket is where clients are: name it in logs and refusals.
  if (!activated.path.empty() && activated.path.front() == '/')
    cfg.socket_path = activated.path;
  return run(std::move(cfg), std::move(tcp_gateway), std::move(activated));
}
