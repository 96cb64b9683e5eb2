// The host <-> guest channel handshake (services/vm_channel) over a socketpair, which,
// like a virtio-serial port, is one byte stream a new session inherits junk on.
#define BOOST_TEST_MODULE unit_services_vm_channel
#include <boost/test/unit_test.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include "schema/node.capnp.h"
#include "services/vm_channel.hpp"
#include "services/vm_links.hpp"

using namespace cyto::services;

namespace {

struct pair_fixture {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  int fds[2] = {-1, -1};
  kj::Own<channel_stream> guest, host;

  pair_fixture() {
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    guest = wrap(fds[0]);
    host = wrap(fds[1]);
  }

  kj::Own<channel_stream> wrap(int fd) {
    return kj::heap<channel_stream>(io.lowLevelProvider->wrapSocketFd(
      fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
  }

  kj::Timer& timer() {
    return io.provider->getTimer();
  }

  void handshake() {
    auto g = channel_accept(*guest, timer());
    auto h = channel_connect(*host, timer(), 5 * kj::SECONDS);
    timer().timeoutAfter(10 * kj::SECONDS, kj::joinPromises(kj::arr(kj::mv(g), kj::mv(h))))
      .wait(io.waitScope);
  }

  static std::string read_exactly(kj::AsyncIoContext& io, channel_stream& s, size_t n) {
    std::string out(n, '\0');
    s.read(out.data(), n).wait(io.waitScope);
    return out;
  }
};

/// A Node whose services() names one service: enough to see a capnp call go through.
class tiny_node final : public cyto::schema::Node::Server {
public:
  explicit tiny_node(std::string name) : name_(std::move(name)) {
  }
  kj::Promise<void> services(ServicesContext context) override {
    context.getResults().initNames(1).set(0, name_);
    return kj::READY_NOW;
  }

private:
  std::string name_;
};

/// The guest's side of capnp sessions on one stream, one after another (as guest_channel).
struct guest_server {
  guest_server(kj::AsyncIoContext& io, channel_stream& s) : io_(io), stream_(s) {
  }

  kj::Promise<void> run() {
    return channel_accept(stream_, io_.provider->getTimer())
      .then([this] {
        ++sessions;
        network_ = kj::heap<capnp::TwoPartyVatNetwork>(stream_, capnp::rpc::twoparty::Side::SERVER);
        rpc_ = kj::heap(capnp::makeRpcServer(
          *network_, kj::heap<tiny_node>("session-" + std::to_string(sessions))));
        return network_->onDisconnect();
      })
      .then([this] {
        return kj::evalLater([this] {
          rpc_ = nullptr;
          network_ = nullptr;
          return run();
        });
      });
  }

  int sessions = 0;

private:
  kj::AsyncIoContext& io_;
  channel_stream& stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
};

/// A host's capnp session on a channel stream, after the handshake.
struct host_session {
  explicit host_session(channel_stream& s)
    : net(s, capnp::rpc::twoparty::Side::CLIENT), rpc(capnp::makeRpcClient(net)) {
  }
  cyto::schema::Node::Client node() {
    capnp::MallocMessageBuilder vat;
    auto id = vat.initRoot<capnp::rpc::twoparty::VatId>();
    id.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(id).castAs<cyto::schema::Node>();
  }
  capnp::TwoPartyVatNetwork net;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

std::string first_service(kj::AsyncIoContext& io, cyto::schema::Node::Client node) {
  auto resp = io.provider->getTimer()
                .timeoutAfter(10 * kj::SECONDS, node.servicesRequest().send())
                .wait(io.waitScope);
  return resp.getNames()[0].cStr();
}

} // namespace

BOOST_FIXTURE_TEST_CASE(handshake_skips_junk_both_ways_and_leaves_the_stream_clean,
                        pair_fixture) {
  // Leftovers of an old session in both directions, including a frame-like prefix.
  const char junk[] = "\xff\xff" "cyREDY" "old capnp bytes \x01\x02\x03";
  BOOST_REQUIRE(::write(fds[0], junk, sizeof(junk)) == static_cast<ssize_t>(sizeof(junk)));
  BOOST_REQUIRE(::write(fds[1], junk, sizeof(junk)) == static_cast<ssize_t>(sizeof(junk)));
  handshake();
  // What follows the handshake arrives byte for byte, both ways.
  host->write("payload", 7).wait(io.waitScope);
  BOOST_TEST(read_exactly(io, *guest, 7) == "payload");
  guest->write("reply", 5).wait(io.waitScope);
  BOOST_TEST(read_exactly(io, *host, 5) == "reply");
}

BOOST_FIXTURE_TEST_CASE(a_new_host_mid_session_resyncs_the_guest, pair_fixture) {
  guest_server server{io, *guest};
  auto serving = server.run().eagerlyEvaluate([](kj::Exception&& e) {
    BOOST_ERROR("guest server failed: " << e.getDescription().cStr());
  });

  // First host: a capnp session, then it vanishes without a word (like kill -9 of the
  // host cytod while QEMU keeps the port).
  {
    BOOST_REQUIRE_NO_THROW(channel_connect(*host, timer(), 5 * kj::SECONDS).wait(io.waitScope));
    host_session first{*host};
    BOOST_TEST(first_service(io, first.node()) == "session-1");
  }
  // Second host on the same stream: its HELLO lands inside the guest's capnp session,
  // the guest's reader fails, ends that session and handshakes with the newcomer.
  auto second = wrap(::dup(fds[1]));
  BOOST_REQUIRE_NO_THROW(channel_connect(*second, timer(), 5 * kj::SECONDS).wait(io.waitScope));
  host_session next{*second};
  BOOST_TEST(first_service(io, next.node()) == "session-2");
  BOOST_TEST(server.sessions == 2);
}

BOOST_FIXTURE_TEST_CASE(a_waiting_guest_breaks_a_stale_host_session, pair_fixture) {
  handshake();
  host_session session{*host};
  // A call in flight: the host reads the stream, waiting for its answer.
  auto call = session.node().servicesRequest().send();
  // The guest's cytod restarted: it waits for a HELLO and says WAIT once a second,
  // which the host's capnp reader cannot take.
  auto waiting = channel_accept(*guest, timer()).eagerlyEvaluate(nullptr);
  bool ended = false;
  auto done = session.net.onDisconnect().then([&] { ended = true; });
  timer().timeoutAfter(5 * kj::SECONDS, kj::mv(done)).wait(io.waitScope);
  BOOST_TEST(ended);
}

BOOST_FIXTURE_TEST_CASE(host_gives_up_when_no_guest_answers, pair_fixture) {
  auto t0 = std::chrono::steady_clock::now();
  BOOST_CHECK_THROW(channel_connect(*host, timer(), 300 * kj::MILLISECONDS).wait(io.waitScope),
                    kj::Exception);
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)));
}

BOOST_FIXTURE_TEST_CASE(host_sees_the_channel_close, pair_fixture) {
  guest = nullptr; // closes fds[0]
  try {
    channel_connect(*host, timer(), 5 * kj::SECONDS).wait(io.waitScope);
    BOOST_ERROR("connect succeeded on a closed channel");
  } catch (const kj::Exception& e) {
    BOOST_TEST((e.getType() == kj::Exception::Type::DISCONNECTED));
  }
}

BOOST_AUTO_TEST_CASE(links_say_unavailable_when_nothing_listens) {
  auto io = kj::setupAsyncIo();
  vm_links links{io, 300 * kj::MILLISECONDS};
  auto dir = std::filesystem::temp_directory_path() / ("cyto-test-links-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "channel.sock").string();
  try {
    links.node("g", path).wait(io.waitScope);
    BOOST_ERROR("node() succeeded without a channel");
  } catch (const kj::Exception& e) {
    std::string text = e.getDescription().cStr();
    BOOST_TEST(text.rfind("cyto.unavailable: VM g: channel " + path, 0) == 0, text);
  }
  BOOST_TEST(links.size() == 0u); // a failed link is not kept
  std::filesystem::remove_all(dir);
}
