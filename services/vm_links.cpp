#include "services/vm_links.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <unistd.h>

#include <kj/debug.h>

#include "bus/logging.hpp"
#include "services/errors.hpp"

namespace cyto::services {

namespace {

std::shared_ptr<spdlog::logger> links_log() {
  return log::get("channel");
}

} // namespace

std::string find_virtio_port(const std::string& name) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator{"/sys/class/virtio-ports", ec}) {
    std::ifstream in{e.path() / "name"};
    std::string got;
    if (std::getline(in, got) && got == name)
      return "/dev/" + e.path().filename().string();
  }
  return {};
}

// -- guest ---------------------------------------------------------------------------

guest_channel::guest_channel(kj::AsyncIoContext& io, std::string port_name, serve_fn serve)
  : io_(io), port_name_(std::move(port_name)), serve_(std::move(serve)) {
}

void guest_channel::start() {
  tasks_.add(open_port(0));
}

kj::Promise<void> guest_channel::open_port(unsigned attempt) {
  auto dev = find_virtio_port(port_name_);
  int fd = dev.empty() ? -1 : ::open(dev.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    // The port shows up once virtio_console has probed it (modules load at boot).
    if (attempt == 50)
      links_log()->warn("no virtio-serial port {} yet{}; still looking", port_name_,
                     dev.empty() ? "" : " (open " + dev + ": " + std::strerror(errno) + ")");
    return io_.provider->getTimer().afterDelay(100 * kj::MILLISECONDS).then([this, attempt] {
      return open_port(attempt + 1);
    });
  }
  links_log()->info("serving the host on {} ({})", dev, port_name_);
  stream_ = kj::heap<channel_stream>(io_.lowLevelProvider->wrapSocketFd(
    fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK
          | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC));
  return sessions();
}

kj::Promise<void> guest_channel::sessions() {
  return channel_accept(*stream_, io_.provider->getTimer())
    .then([this] {
      links_log()->info("host connected on {}", port_name_);
      return serve_(*stream_);
    })
    .then([this] { links_log()->info("host session on {} ended", port_name_); },
          [this](kj::Exception&& e) {
            links_log()->info("host session on {} ended: {}", port_name_, e.getDescription().cStr());
          })
    // A later turn: the ended session's connection is gone before the next handshake reads.
    .then([this] { return kj::evalLater([this] { return sessions(); }); });
}

void guest_channel::taskFailed(kj::Exception&& e) {
  links_log()->error("channel {}: {}", port_name_, e.getDescription().cStr());
}

// -- host ----------------------------------------------------------------------------

struct vm_links::link {
  std::string vm;
  std::string path;
  kj::Own<channel_stream> stream;
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  kj::Maybe<schema::Node::Client> node;
  kj::ForkedPromise<void> ready = nullptr;
};

vm_links::vm_links(kj::AsyncIoContext& io, kj::Duration handshake_timeout)
  : io_(io), timeout_(handshake_timeout) {
}

vm_links::~vm_links() noexcept(false) = default;

kj::Promise<schema::Node::Client> vm_links::node(const std::string& vm,
                                                 const std::string& channel_path) {
  auto it = links_.find(vm);
  if (it != links_.end() && it->second->path != channel_path) {
    drop(vm, it->second.get());
    it = links_.end();
  }
  if (it == links_.end()) {
    auto l = kj::heap<link>();
    l->vm = vm;
    l->path = channel_path;
    auto* raw = l.get();
    it = links_.emplace(vm, kj::mv(l)).first;
    raw->ready = connect(*raw)
                   .catch_([this, raw](kj::Exception&& e) -> kj::Promise<void> {
                     drop(raw->vm, raw);
                     return kj::mv(e);
                   })
                   .fork();
  }
  return it->second->ready.addBranch().then([this, vm]() -> schema::Node::Client {
    auto found = links_.find(vm);
    if (found == links_.end())
      fail(errc::unavailable, "VM " + vm + ": its channel closed");
    KJ_IF_MAYBE (n, found->second->node)
      return *n;
    fail(errc::unavailable, "VM " + vm + ": its channel is not connected");
  });
}

kj::Promise<void> vm_links::connect(link& l) {
  auto what = "VM " + l.vm + ": channel " + l.path;
  return io_.provider->getNetwork()
    .parseAddress("unix:" + l.path)
    .then([](kj::Own<kj::NetworkAddress> addr) {
      auto p = addr->connect();
      return p.attach(kj::mv(addr));
    })
    .then(
      [this, &l](kj::Own<kj::AsyncIoStream> s) {
        l.stream = kj::heap<channel_stream>(kj::mv(s));
        return channel_connect(*l.stream, io_.provider->getTimer(), timeout_);
      },
      [what](kj::Exception&& e) -> kj::Promise<void> {
        fail(errc::unavailable, what + ": cannot connect (" + e.getDescription().cStr()
                                  + "); is the VM running?");
      })
    .then(
      [this, &l] {
        l.network = kj::heap<capnp::TwoPartyVatNetwork>(*l.stream,
                                                        capnp::rpc::twoparty::Side::CLIENT);
        l.rpc = kj::heap(capnp::makeRpcClient(*l.network));
        capnp::MallocMessageBuilder vat;
        auto id = vat.initRoot<capnp::rpc::twoparty::VatId>();
        id.setSide(capnp::rpc::twoparty::Side::SERVER);
        l.node = l.rpc->bootstrap(id).castAs<schema::Node>();
        links_log()->info("VM {}: connected to its cytod over {}", l.vm, l.path);
        auto* raw = &l;
        tasks_.add(l.network->onDisconnect().then([this, raw] {
          links_log()->info("VM {}: channel session ended", raw->vm);
          drop(raw->vm, raw);
        }));
      },
      [what, this](kj::Exception&& e) {
        auto text = std::string{e.getDescription().cStr()};
        if (text.rfind("cyto.", 0) == 0)
          kj::throwFatalException(kj::mv(e));
        if (e.getType() == kj::Exception::Type::DISCONNECTED)
          fail(errc::unavailable, what + ": " + text);
        fail(errc::unavailable,
             what + ": no cytod answered within "
               + std::to_string(timeout_ / kj::MILLISECONDS) + " ms (is cytod the guest's init?)");
      });
}

void vm_links::drop(const std::string& vm, const link* which) {
  auto it = links_.find(vm);
  if (it == links_.end() || it->second.get() != which)
    return;
  // Destroyed on a later turn: this may run inside one of the link's own promises.
  auto owned = kj::mv(it->second);
  links_.erase(it);
  tasks_.add(kj::evalLater([owned = kj::mv(owned)] {}));
}

void vm_links::taskFailed(kj::Exception&& e) {
  links_log()->debug("vm link: {}", e.getDescription().cStr());
}

} // namespace cyto::services
