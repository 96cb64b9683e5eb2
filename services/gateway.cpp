#include "services/gateway.hpp"

#include <cerrno>
#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <caf/all.hpp>
#include <kj/debug.h>

#include "bus/logging.hpp"
#include "schema/node.capnp.h"
#include "services/authorizer.hpp"
#include "services/cells_service.hpp"
#include "services/containers_service.hpp"
#include "services/discovery_service.hpp"
#include "services/images_service.hpp"
#include "services/message_stream.hpp"
#include "services/network_service.hpp"
#include "services/vms_service.hpp"
#include "services/volumes_service.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

/// Supplementary groups of a process, from /proc/<pid>/status.
std::vector<gid_t> groups_of(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  std::vector<gid_t> out;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) == 0) {
      std::istringstream ss{line.substr(7)};
      gid_t g;
      while (ss >> g)
        out.push_back(g);
    }
  }
  return out;
}

// Public service names and the registry names of the actors behind them.
constexpr std::pair<const char*, const char*> offered[] = {
  {"discovery", service_name::node},
  {"observe", service_name::observe},
  {"cells", service_name::cells},
  {"images", service_name::images},
  {"network", service_name::network},
  {"containers", service_name::containers},
  {"pods", service_name::containers},
  {"vms", service_name::vms},
  {"volumes", service_name::volumes},
};

/// How long a TCP peer has to finish its TLS handshake.
constexpr auto handshake_timeout = 10 * kj::SECONDS;
/// TLS handshakes under way at once; more connections are closed at once (a flood of
/// silent peers then costs a bounded amount of memory until they time out).
constexpr size_t max_handshakes = 64;

/// "host:port" ("[v6]:port") -> a listening socket; throws std::runtime_error.
int listen_tcp_socket(const std::string& address) {
  auto colon = address.rfind(':');
  auto host = address.substr(0, colon);
  auto port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw std::runtime_error("gateway.tcp: cannot resolve " + address + ": " + ::gai_strerror(rc));
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    throw std::runtime_error(errno_text("gateway.tcp: socket"));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc = ::bind(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0 || ::listen(fd, 128) != 0) {
    auto err = errno_text("gateway.tcp: listen on " + address);
    ::close(fd);
    throw std::runtime_error(err);
  }
  return fd;
}

/// "ip:port" of a TCP peer, for logs.
std::string peer_address(kj::AsyncIoStream& s) {
  sockaddr_storage ss{};
  uint len = sizeof(ss);
  s.getpeername(reinterpret_cast<sockaddr*>(&ss), &len);
  char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
  ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
  return std::string{host} + ":" + port;
}

} // namespace

std::unique_ptr<tcp_gateway> load_tcp_gateway(const std::string& address, const tls_files& files,
                                              const std::string& policy_path) {
  auto gw = std::make_unique<tcp_gateway>();
  gw->address = address;
  try {
    gw->tls = std::make_unique<tls_context>(tls_context::side::server, files);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string{"gateway.tls_cert/tls_key/tls_ca: "} + e.what());
  }
  if (auto err = access_policy::load(policy_path, gw->policy, known_verb))
    throw std::runtime_error("gateway.policy: " + *err);
  return gw;
}

socket_probe probe_socket(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0)
    return socket_probe::absent;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return socket_probe::stale;
  auto addr = unix_address(path);
  bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return live ? socket_probe::live : socket_probe::stale;
}

// -- per-connection pieces -------------------------------------------------------

struct gateway::connection {
  connection(kj::Own<kj::AsyncIoStream>&& s, capnp::Capability::Client bootstrap,
             message_limits limits, std::string peer)
    : stream(kj::mv(s)),
      messages(*stream, std::move(limits), std::move(peer)),
      network(messages, capnp::rpc::twoparty::Side::SERVER),
      rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {
  }
  kj::Own<kj::AsyncIoStream> stream;
  /// Reads messages within the limits (see message_stream.hpp).
  limited_message_stream messages;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

/// The bootstrap capability of an allowed peer: hands out one capability per service,
/// each backed by the actor the registry names.
class gateway::node_server final : public cancellable<schema::Node::Server> {
public:
  /// The services of `node`, another node of the federation, or of this one if empty.
  node_server(bridge& br, stream_router& router, progress_router& progress,
              registry_actor registry, vm_links& links, const std::string& vm_dir,
              gateway_caller caller, gateway_stats_fn stats, std::string node = {})
    : bridge_(br),
      router_(router),
      progress_(progress),
      registry_(std::move(registry)),
      links_(links),
      vm_dir_(vm_dir),
      caller_(std::move(caller)),
      stats_(std::move(stats)),
      node_(std::move(node)) {
    if (!node_.empty())
      caller_.local_root = false; // another node's host is not ours to mount on
  }

  kj::Promise<void> services(ServicesContext context) override {
    return bridge_.request(registry_, list_atom::value)
      .then([this, context](std::vector<std::string> names) mutable {
        std::vector<const char*> out;
        for (auto& [pub, actor] : offered)
          if (std::find(names.begin(), names.end(), registry_name(actor)) != names.end())
            out.push_back(pub);
        auto list = context.getResults().initNames(out.size());
        for (uint i = 0; i < out.size(); ++i)
          list.set(i, out[i]);
      });
  }

  kj::Promise<void> discovery(DiscoveryContext context) override {
    return lookup(service_name::node).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_discovery_service(bridge_, caf::actor_cast<node_actor>(std::move(h)), stats_));
    });
  }

  kj::Promise<void> observe(ObserveContext context) override {
    return lookup(service_name::observe).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_observe_service(bridge_, router_, caf::actor_cast<observe_actor>(std::move(h))));
    });
  }

  kj::Promise<void> cells(CellsContext context) override {
    return lookup(service_name::cells).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_cells_service(bridge_, caf::actor_cast<cells_actor>(std::move(h))));
    });
  }

  kj::Promise<void> images(ImagesContext context) override {
    return lookup(service_name::images).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_images_service(bridge_, progress_, caf::actor_cast<images_actor>(std::move(h)),
                           caller_));
    });
  }

  kj::Promise<void> network(NetworkContext context) override {
    return lookup(service_name::network).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_network_service(bridge_, caf::actor_cast<network_actor>(std::move(h))));
    });
  }

  kj::Promise<void> containers(ContainersContext context) override {
    return lookup(service_name::containers).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_containers_service(bridge_, router_, progress_,
                               caf::actor_cast<containers_actor>(std::move(h))));
    });
  }

  kj::Promise<void> pods(PodsContext context) override {
    return lookup(service_name::containers).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_pods_service(bridge_, caf::actor_cast<containers_actor>(std::move(h))));
    });
  }

  kj::Promise<void> node(NodeContext context) override {
    std::string name = context.getParams().getName();
    if (name.empty())
      fail(errc::invalid_argument, "node: the name is empty");
    // Nodes are reached from this one directly, whichever Node this is.
    return bridge_.request(registry_, get_atom::value, std::string{service_name::federation})
      .catch_([](kj::Exception&&) -> caf::strong_actor_ptr {
        fail(errc::unavailable, "the federation is not running on this node");
      })
      .then([this, name](caf::strong_actor_ptr h) {
        return bridge_.request(caf::actor_cast<federation_actor>(std::move(h)), get_atom::value,
                               std::string{name});
      })
      .then([this, context, name](node_status st) mutable {
        if (st.state != node_state::up)
          fail(errc::unavailable,
               "node " + name + " is down" + (st.detail.empty() ? "" : " (" + st.detail + ")"));
        context.getResults().setNode(kj::heap<node_server>(bridge_, router_, progress_, registry_,
                                                           links_, vm_dir_, caller_,
                                                           st.local ? stats_ : nullptr,
                                                           st.local ? std::string{} : name));
      });
  }

  kj::Promise<void> nodes(NodesContext context) override {
    return lookup(service_name::federation)
      .then([this](caf::strong_actor_ptr h) {
        return bridge_.request(caf::actor_cast<federation_actor>(std::move(h)), list_atom::value);
      })
      .then([context](std::vector<node_status> all) mutable {
        auto list = context.getResults().initNodes(all.size());
        for (uint i = 0; i < all.size(); ++i) {
          auto& n = all[i];
          auto out = list[i];
          out.setName(n.name);
          out.setAddress(n.address);
          out.setState(n.state == node_state::up ? schema::NodeState::UP
                                                 : schema::NodeState::DOWN);
          out.setLocal(n.local);
          out.setLastHeartbeatNanos(n.last_heartbeat_nanos);
          out.setRttNanos(n.rtt_nanos);
          out.setDetail(n.detail);
        }
      });
  }

  kj::Promise<void> vms(VmsContext context) override {
    return lookup(service_name::vms).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_vms_service(bridge_, router_, registry_, caf::actor_cast<vms_actor>(std::move(h))));
    });
  }

  kj::Promise<void> volumes(VolumesContext context) override {
    return lookup(service_name::volumes).then([this, context](caf::strong_actor_ptr h) mutable {
      context.getResults().setService(
        new_volumes_service(bridge_, caf::actor_cast<volumes_actor>(std::move(h))));
    });
  }

  kj::Promise<void> vm(VmContext context) override {
    std::string name = context.getParams().getName().cStr();
    if (!valid_vm_name(name))
      fail(errc::invalid_argument, "VM name '" + name + "' is not [A-Za-z0-9][A-Za-z0-9_.-]{0,62}");
    return known_vm(name)
      .then([this, name](kj::Maybe<vm_info> known) {
        std::string path;
        KJ_IF_MAYBE (info, known) {
          if (info->state != vm_state::running)
            fail(errc::unavailable, "VM '" + name + "' is not running (its cytod answers while "
                                    "it runs)");
          path = info->channel_path;
        } else {
          // Not the vms actor's: a QEMU started by hand with the same channel arguments.
          path = vm_dir_ + "/" + name + "/channel.sock";
          struct stat st{};
          if (vm_dir_.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
            fail(errc::not_found, "no VM named '" + name + "' (and no channel at " + path + ")");
        }
        return links_.node(name, path);
      })
      .then([context](schema::Node::Client node) mutable {
        context.getResults().setNode(kj::mv(node));
    });
  }

private:
  /// The registry name of service `name` of the node this Node stands for.
  std::string registry_name(const char* name) const {
    return node_.empty() ? std::string{name} : node_ + "/" + name;
  }

  static bool valid_vm_name(const std::string& n) {
    if (n.empty() || n.size() > 63 || !std::isalnum(static_cast<unsigned char>(n[0])))
      return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
  }

  /// VM `name` as the vms actor knows it; nullptr when it does not (or none runs).
  kj::Promise<kj::Maybe<vm_info>> known_vm(const std::string& name) {
    return bridge_.request(registry_, get_atom::value, std::string{service_name::vms})
      .then(
        [this, name](caf::strong_actor_ptr h) {
          return bridge_.request(caf::actor_cast<vms_actor>(std::move(h)), get_atom::value, name)
            .then([](vm_info info) { return kj::Maybe<vm_info>(kj::mv(info)); },
                  [](kj::Exception&& e) -> kj::Maybe<vm_info> {
                    if (from_exception(e).first != errc::not_found)
                      kj::throwFatalException(kj::mv(e));
                    return nullptr;
                  });
        },
        [](kj::Exception&&) { return kj::Promise<kj::Maybe<vm_info>>(nullptr); });
  }

  kj::Promise<caf::strong_actor_ptr> lookup(const char* name) {
    return bridge_.request(registry_, get_atom::value, registry_name(name))
      .catch_([this, name](kj::Exception&& e) -> caf::strong_actor_ptr {
        if (node_.empty())
          fail(errc::unavailable, std::string{"service "} + name + " is not running on this node");
        fail(errc::unavailable,
             "node " + node_ + " does not offer service " + name + " now (is it down?)");
      });
  }

  bridge& bridge_;
  stream_router& router_;
  progress_router& progress_;
  registry_actor registry_;
  vm_links& links_;
  const std::string& vm_dir_;
  gateway_caller caller_;
  /// The figures of this gateway for Health (null for another node).
  gateway_stats_fn stats_;
  /// Empty: this node.
  std::string node_;
};

/// The bootstrap capability of a refused peer: every call fails.
class gateway::denied_node final : public schema::Node::Server {
public:
  explicit denied_node(std::string why) : why_(std::move(why)) {
  }

  DispatchCallResult dispatchCall(uint64_t, uint16_t,
                                  capnp::CallContext<capnp::AnyPointer, capnp::AnyPointer>) override {
    return {kj::Promise<void>(to_exception(errc::permission_denied, why_)), false};
  }

private:
  std::string why_;
};

// -- gateway ---------------------------------------------------------------------

gateway::gateway(kj::AsyncIoContext& io, caf::actor_system& sys, registry_actor registry,
                 gateway_config cfg)
  : io_(io),
    cfg_(std::move(cfg)),
    registry_(std::move(registry)),
    budget_(std::make_shared<message_budget>(cfg_.total_message_bytes)),
    bridge_(sys, io.unixEventPort, cfg_.call_deadline),
    router_(bridge_),
    vm_links_(io),
    tasks_(std::make_unique<kj::TaskSet>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {
  bridge_.on_message([this](const caf::strong_actor_ptr& sender, caf::message& msg) {
    if (msg.match_elements<node_event>()) {
      auto& e = msg.get_as<node_event>(0);
      if (e.up)
        bridge_.node_up(e.node);
      else
        bridge_.node_down(e.node, e.name);
      return;
    }
    if (!router_.route(sender, msg) && !progress_.route(msg))
      log::get("gateway")->warn("unexpected message from the bus: {}", caf::to_string(msg));
  });
}

gateway::~gateway() noexcept(false) {
  if (cfg_.listen_fd >= 0) // never listened on
    ::close(std::exchange(cfg_.listen_fd, -1));
  close();
}

void gateway::listen() {
  auto& path = cfg_.socket_path;
  if (cfg_.listen_fd >= 0) {
    // Inherited (socket activation): bound, owned and permissioned by whoever passed it.
    int fd = std::exchange(cfg_.listen_fd, -1);
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
      throw std::runtime_error(errno_text("set the inherited socket non-blocking"));
    listener_ = io_.lowLevelProvider->wrapListenSocketFd(
      fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    start_accepting("inherited socket " + path);
    return;
  }
  auto dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    throw std::runtime_error(errno_text("create socket directory " + dir));
  switch (probe_socket(path)) {
    case socket_probe::live:
      throw std::runtime_error("another daemon is listening on " + path);
    case socket_probe::stale:
      log::get("gateway")->warn("removing stale socket {}", path);
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        throw std::runtime_error(errno_text("remove stale socket " + path));
      break;
    case socket_probe::absent:
      break;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error(errno_text("socket"));
  auto addr = unix_address(path);
  // Bind with a tight umask so the socket is never reachable with wider permissions.
  auto old_mask = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old_mask);
  if (rc != 0) {
    auto err = errno_text("bind " + path);
    ::close(fd);
    throw std::runtime_error(err);
  }
  if (::chmod(path.c_str(), 0660) != 0
      || (cfg_.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *cfg_.group) != 0)
      || ::listen(fd, 128) != 0) {
    auto err = errno_text("set up socket " + path);
    ::close(fd);
    ::unlink(path.c_str());
    throw std::runtime_error(err);
  }
  struct stat st{};
  ::stat(path.c_str(), &st);
  socket_inode_ = st.st_ino;
  listener_ = io_.lowLevelProvider->wrapListenSocketFd(
    fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  start_accepting(path);
}

void gateway::start_accepting(const std::string& what) {
  // Learn which nodes go down, so that calls to them fail at once (see bridge::node_down).
  tasks_->add(bridge_.request(registry_, get_atom::value, std::string{service_name::federation})
                .then([this](caf::strong_actor_ptr h) {
                  caf::anon_send(caf::actor_cast<federation_actor>(std::move(h)),
                                 subscribe_atom::value, bridge_.handle());
                })
                .catch_([](kj::Exception&&) {})); // no federation: nothing goes down
  accepting_ = accept_loop().eagerlyEvaluate([](kj::Exception&& e) {
    log::get("gateway")->error("accept loop ended: {}", e.getDescription().cStr());
  });
  log::get("gateway")->info("listening on {}", what);
  if (cfg_.tcp)
    listen_tcp();
}

kj::Promise<void> gateway::stop_accepting() {
  // Cancelling the accept loops at once could drop a peer whose accept(2) already ran
  // but whose continuation (the one that serves it) is still queued: it would see a
  // reset. So: from now on every loop serves what it accepted and stops; once the event
  // queue is empty (no accepted peer in flight) the loops still parked are cancelled, and
  // new peers stay in the backlog.
  draining_ = true;
  return kj::evalLast([this] {
    accepting_ = nullptr;
    tcp_accepting_ = nullptr;
  });
}

kj::Promise<void> gateway::next_accept() {
  if (draining_)
    return kj::READY_NOW;
  return accept_loop();
}

void gateway::close() {
  if (!listener_)
    return;
  accepting_ = nullptr;
  listener_ = nullptr;
  tcp_accepting_ = nullptr;
  tcp_listener_ = nullptr;
  tasks_ = nullptr; // drops every connection
  connections_ = 0;
  struct stat st{};
  // Remove the socket only if it is still ours (a newer daemon may have replaced it); an
  // inherited one (socket_inode_ 0) belongs to whoever passed it.
  if (::stat(cfg_.socket_path.c_str(), &st) == 0 && st.st_ino == socket_inode_)
    ::unlink(cfg_.socket_path.c_str());
  log::get("gateway")->info("closed {}", cfg_.socket_path);
}

bool gateway::allowed(uid_t uid, gid_t gid, pid_t pid) const {
  if (uid == 0 || uid == ::geteuid())
    return true;
  if (!cfg_.group)
    return false;
  if (gid == *cfg_.group)
    return true;
  auto groups = groups_of(pid);
  return std::find(groups.begin(), groups.end(), *cfg_.group) != groups.end();
}

kj::Promise<void> gateway::accept_loop() {
  // evalNow: accept() itself may throw (EMFILE) before it returns a promise.
  return kj::evalNow([this] { return listener_->accept(); })
      .then([this](kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<void> {
    accept_failures_ = 0;
    if (connections_ >= cfg_.max_connections) {
      log::get("gateway")->warn("refused a connection: {} open, the limit is {}", connections_,
                                cfg_.max_connections);
      return next_accept(); // `stream` is closed as it goes out of scope
    }
    ucred cred{};
    uint len = sizeof(cred);
    stream->getsockopt(SOL_SOCKET, SO_PEERCRED, &cred, &len);
    capnp::Capability::Client boot = nullptr;
    if (allowed(cred.uid, cred.gid, cred.pid)) {
      log::get("gateway")->debug("peer pid={} uid={} gid={} connected", cred.pid, cred.uid,
                                 cred.gid);
      boot = kj::heap<node_server>(bridge_, router_, progress_, registry_, vm_links_, cfg_.vm_dir,
                                   gateway_caller{"api:uid:" + std::to_string(cred.uid),
                                                  cred.uid == 0},
                                   stats_fn());
    } else {
      auto why = "uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid)
                 + ") may not use " + cfg_.socket_path + "; allowed: root"
                 + (cfg_.group ? " and group " + std::to_string(*cfg_.group) : "");
      log::get("gateway")->warn("refused peer pid={} uid={} gid={}", cred.pid, cred.uid,
                                cred.gid);
      boot = kj::heap<denied_node>(std::move(why));
    }
    tasks_->add(serve(kj::mv(stream), kj::mv(boot),
                      "pid=" + std::to_string(cred.pid) + " uid=" + std::to_string(cred.uid)));
    return next_accept();
  }, [this](kj::Exception&& e) -> kj::Promise<void> {
    return accept_backoff(accept_failures_, e).then([this] { return accept_loop(); });
  });
}

kj::Promise<void> gateway::accept_backoff(unsigned& failures_in_a_row, const kj::Exception& e) {
  // Out of descriptors (EMFILE, ENFILE) or memory: the listener itself is fine, so wait
  // and accept again instead of going deaf for good. 10 ms doubling up to 1 s.
  auto failures = failures_in_a_row++;
  if (failures == 0 || failures % 64 == 0)
    log::get("gateway")->error("accept failed ({} in a row), retrying: {}", failures + 1,
                               e.getDescription().cStr());
  auto delay = std::min<uint64_t>(1000, uint64_t{10} << std::min(failures, 7u));
  return io_.provider->getTimer().afterDelay(delay * kj::MILLISECONDS);
}

message_limits gateway::limits() const {
  return {cfg_.connection_message_bytes, budget_};
}

gateway_stats_fn gateway::stats_fn() {
  return [this](schema::GatewayStats::Builder out) {
    out.setConnections(static_cast<uint32_t>(connections_));
    out.setPendingCalls(static_cast<uint32_t>(bridge_.pending()));
    out.setMessageBytes(budget_->in_use());
    out.setMessageLimit(budget_->limit());
    out.setExpiredCalls(bridge_.expired());
  };
}

kj::Promise<void> gateway::serve(kj::Own<kj::AsyncIoStream> stream,
                                 capnp::Capability::Client boot, std::string peer) {
  auto conn = kj::heap<connection>(kj::mv(stream), kj::mv(boot), limits(), std::move(peer));
  auto done = conn->network.onDisconnect();
  ++connections_;
  ++accepted_;
  return done.attach(kj::mv(conn), kj::defer([this] { --connections_; }));
}

void gateway::listen_tcp() {
  auto& tcp = *cfg_.tcp;
  int fd = listen_tcp_socket(tcp.address);
  tcp_listener_ = io_.lowLevelProvider->wrapListenSocketFd(
    fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  tcp_accepting_ = tcp_accept_loop().eagerlyEvaluate([](kj::Exception&& e) {
    log::get("gateway")->error("TCP accept loop ended: {}", e.getDescription().cStr());
  });
  log::get("gateway")->info("listening on {} (mutual TLS, {} policy entries)", tcp.address,
                            tcp.policy.entries().size());
}

kj::Promise<void> gateway::tcp_accept_loop() {
  return kj::evalNow([this] { return tcp_listener_->accept(); })
    .then(
      [this](kj::Own<kj::AsyncIoStream>&& stream) -> kj::Promise<void> {
        tcp_accept_failures_ = 0;
        // A peer may be gone (reset) already: that ends its connection, not the loop.
        KJ_IF_MAYBE (e, kj::runCatchingExceptions([&] { admit_tcp(kj::mv(stream)); })) {
          log::get("gateway")->info("TLS peer left before its handshake: {}",
                                    e->getDescription().cStr());
        }
        return draining_ ? kj::Promise<void>(kj::READY_NOW) : tcp_accept_loop();
      },
      [this](kj::Exception&& e) -> kj::Promise<void> {
        return accept_backoff(tcp_accept_failures_, e).then([this] { return tcp_accept_loop(); });
      });
}

void gateway::admit_tcp(kj::Own<kj::AsyncIoStream> stream) {
  int one = 1;
  stream->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto peer = peer_address(*stream);
  if (handshakes_ >= max_handshakes)
    log::get("gateway")->warn("refused TLS peer {}: {} handshakes under way already", peer,
                              handshakes_);
  else if (connections_ >= cfg_.max_connections)
    log::get("gateway")->warn("refused TLS peer {}: {} connections open, the limit is {}", peer,
                              connections_, cfg_.max_connections);
  else
    tasks_->add(serve_tls(kj::mv(stream), std::move(peer)));
}

kj::Promise<void> gateway::serve_tls(kj::Own<kj::AsyncIoStream> stream, std::string peer) {
  ++handshakes_;
  return cfg_.tcp->tls->wrap(kj::mv(stream), io_.provider->getTimer(), handshake_timeout)
    .attach(kj::defer([this] { --handshakes_; }))
    .then(
      [this, peer](kj::Own<tls_stream> tls) -> kj::Promise<void> {
        auto id = tls->peer_id();
        if (id.empty()) {
          log::get("gateway")->warn("refused TLS peer {}: its certificate has no SPIFFE ID", peer);
          return kj::READY_NOW; // dropping the stream closes it
        }
        log::get("gateway")->info("TLS peer {} connected as {}", peer, id);
        capnp::Capability::Client node = kj::heap<node_server>(
          bridge_, router_, progress_, registry_, vm_links_, cfg_.vm_dir,
          gateway_caller{"api:" + id, false}, stats_fn());
        auto who = peer + " " + id;
        auto boot = authorize(kj::mv(node), std::move(id), cfg_.tcp->policy);
        return serve(kj::mv(tls), kj::mv(boot), std::move(who));
      },
      [peer](kj::Exception&& e) {
        log::get("gateway")->warn("refused TLS peer {}: {}", peer, e.getDescription().cStr());
      });
}

kj::Promise<void> gateway::serve(kj::AsyncIoStream& stream) {
  auto conn = kj::heap<connection>(
    kj::Own<kj::AsyncIoStream>(&stream, kj::NullDisposer::instance),
    kj::heap<node_server>(bridge_, router_, progress_, registry_, vm_links_, cfg_.vm_dir,
                          gateway_caller{"api:vm-host", true}, stats_fn()),
    limits(), "the VM host (guest channel)");
  auto done = conn->network.onDisconnect();
  ++connections_;
  return done.attach(kj::mv(conn), kj::defer([this] {
    if (connections_ > 0) // close() has already counted it out
      --connections_;
  }));
}

void gateway::taskFailed(kj::Exception&& e) {
  log::get("gateway")->info("connection ended: {}", e.getDescription().cStr());
}

} // namespace cyto::services
