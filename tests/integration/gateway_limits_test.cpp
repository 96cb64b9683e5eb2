// The gateway's limits against a real cytod: calls of a client that went away are
// forgotten (Health.gateway.pendingCalls back to 0), peers announcing huge messages are
// closed before the daemon allocates for them (its RSS stays), the total memory for
// incoming messages is capped, and protocol violations are logged with the peer.
#define BOOST_TEST_MODULE integration_gateway_limits
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdint>
#include <cstring>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

constexpr uint64_t MiB = 1024 * 1024;

/// VmRSS of a process in bytes, from /proc/<pid>/status.
uint64_t rss_of(pid_t pid) {
  for (auto& line : lines_of(read_text("/proc/" + std::to_string(pid) + "/status")))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoull(line.substr(6)) * 1024; // "VmRSS:   1234 kB"
  throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
}

/// A capnp frame header: `sizes` are the segments' sizes in words.
std::string frame_header(const std::vector<uint32_t>& sizes) {
  std::vector<uint32_t> t;
  t.push_back(static_cast<uint32_t>(sizes.size() - 1));
  t.insert(t.end(), sizes.begin(), sizes.end());
  if (t.size() % 2)
    t.push_back(0);
  return std::string(reinterpret_cast<const char*>(t.data()), t.size() * 4);
}

/// Writes what it can of `data` (the daemon may close the connection meanwhile);
/// returns the bytes written.
size_t send_some(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    auto n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0)
      break;
    done += static_cast<size_t>(n);
  }
  return done;
}

/// Whether the daemon closed `fd` within `timeout` (reads EOF or a reset; the Abort
/// message it may send first is read and skipped).
bool closed_by_peer(int fd, std::chrono::milliseconds timeout) {
  auto deadline = steady::now() + timeout;
  char buf[4096];
  while (steady::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0)
      continue;
    auto n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      return true;
  }
  return false;
}

/// The gateway's figures, as Health reports them.
struct gw_stats {
  uint32_t connections, pending;
  uint64_t bytes, limit, expired;
};

gw_stats stats(kj::AsyncIoContext& io, rpc_connection& c) {
  auto disc = wait_for(io, c.node().discoveryRequest().send()).getService();
  auto resp = wait_for(io, disc.healthRequest().send());
  auto g = resp.getHealth().getGateway();
  return {g.getConnections(), g.getPendingCalls(), g.getMessageBytes(), g.getMessageLimit(),
          g.getExpiredCalls()};
}

std::string node_name_of(kj::AsyncIoContext& io, rpc_connection& c) {
  auto disc = wait_for(io, c.node().discoveryRequest().send()).getService();
  return wait_for(io, disc.discoverRequest().send()).getInfo().getNodeName();
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
    ++n;
  return n;
}

/// A cytod with a configuration file of `toml` (and debug logs).
void start_with(daemon_fixture& d, const std::string& toml) {
  auto path = d.dir() + "/cytod.toml";
  write_text(path, toml);
  d.start({"--config", path, "--log-level", "debug"});
}

} // namespace

BOOST_AUTO_TEST_CASE(a_wait_of_a_client_that_disconnects_is_forgotten) {
  daemon_fixture d{false};
  start_with(d, "");
  auto io = kj::setupAsyncIo();
  auto watcher = d.connect(io);
  BOOST_TEST(stats(io, *watcher).pending == 0u);

  auto client = d.connect(io);
  auto cells = client->node().cellsRequest().send().getService();
  {
    auto req = cells.allocateRequest();
    req.initCell().setName("waits");
    wait_for(io, req.send());
  }
  {
    auto req = cells.startRequest();
    req.setCellName("waits");
    auto x = req.initExecutable();
    x.setName("sleeper");
    auto argv = x.initArgv(2);
    argv.set(0, "/bin/sleep");
    argv.set(1, "600");
    wait_for(io, req.send());
  }
  // Two waits on an executable that runs on: they stay pending in the bridge.
  std::vector<kj::Promise<void>> waits;
  for (int i = 0; i < 2; ++i) {
    auto req = cells.waitRequest();
    req.setCellName("waits");
    req.setExecutableName("sleeper");
    waits.push_back(req.send().ignoreResult().eagerlyEvaluate([](kj::Exception&&) {}));
  }
  BOOST_TEST(pump_until(io, [&] { return stats(io, *watcher).pending == 2; }, 5s),
             "the two waits never showed as pending calls");

  // The client goes away without an answer: capnp cancels its calls, the bridge must
  // forget them.
  waits.clear();
  cells = nullptr;
  client.reset();
  gw_stats s{};
  BOOST_TEST(pump_until(io, [&] { return (s = stats(io, *watcher)).pending == 0; }, 5s),
             "pending calls after the client left: " << s.pending);
  BOOST_TEST(s.connections == 1u); // the watcher alone

  // The executable still runs (only the waits went), and a new wait still works.
  auto again = d.connect(io);
  auto cells2 = again->node().cellsRequest().send().getService();
  {
    auto req = cells2.stopRequest();
    req.setCellName("waits");
    req.setExecutableName("sleeper");
    req.setSignal(SIGKILL);
    req.setTimeoutMs(5000);
    auto st = wait_for(io, req.send()).getStatus();
    BOOST_TEST(st.getSignal() == SIGKILL);
  }
  BOOST_TEST(stats(io, *watcher).pending == 0u);
}

BOOST_AUTO_TEST_CASE(peers_announcing_huge_messages_are_closed_before_allocation) {
  daemon_fixture d{false};
  start_with(d, "");
  auto io = kj::setupAsyncIo();
  auto watcher = d.connect(io);
  auto name = node_name_of(io, *watcher);
  auto before = rss_of(d.pid());

  // 16 peers each announce a 60 MiB message (under capnp's own 64 MiB limit, so its
  // reader would allocate it) and send 8 MiB of it.
  const uint32_t words = 60 * MiB / 8;
  std::string body(8 * MiB, '\x5a');
  std::vector<int> fds;
  size_t sent = 0;
  for (int i = 0; i < 16; ++i) {
    int fd = connect_unix(d.socket_path());
    fds.push_back(fd);
    send_some(fd, frame_header({words}));
  }
  for (int fd : fds)
    sent += send_some(fd, body);
  for (int fd : fds)
    BOOST_TEST(closed_by_peer(fd, 5s), "the daemon kept a peer announcing 60 MiB");
  std::this_thread::sleep_for(200ms);
  auto after = rss_of(d.pid());
  std::printf("{\"test\":\"huge_announcements\",\"peers\":16,\"announced_mib\":60,"
              "\"sent_bytes\":%zu,\"rss_before_kib\":%llu,\"rss_after_kib\":%llu}\n",
              sent, static_cast<unsigned long long>(before / 1024),
              static_cast<unsigned long long>(after / 1024));
  BOOST_TEST(after < before + 8 * MiB, "RSS grew from " << before / 1024 << " to "
                                                        << after / 1024 << " KiB");
  for (int fd : fds)
    ::close(fd);

  // Still answers, and said why it closed them, naming each peer.
  BOOST_TEST(node_name_of(io, *watcher) == name);
  auto log = d.log();
  BOOST_TEST(count(log, "closing the connection of pid=" + std::to_string(::getpid())) == 16u,
             log);
  BOOST_TEST(contains(log, "over this connection's limit of 8388608 bytes"), log);
  BOOST_TEST(stats(io, *watcher).bytes < 4096u);
}

BOOST_AUTO_TEST_CASE(the_total_held_for_incoming_messages_is_capped) {
  daemon_fixture d{false};
  start_with(d, "[gateway]\nconnection_message_mib = 8\ntotal_message_mib = 16\n");
  auto io = kj::setupAsyncIo();
  auto watcher = d.connect(io);
  BOOST_TEST(stats(io, *watcher).limit == 16 * MiB);

  // Six peers each announce 6 MiB (within the connection limit) and send part of it:
  // two fit in the 16 MiB, the others are closed.
  const uint32_t words = 6 * MiB / 8;
  std::vector<int> fds;
  for (int i = 0; i < 6; ++i) {
    int fd = connect_unix(d.socket_path());
    fds.push_back(fd);
    send_some(fd, frame_header({words}) + std::string(MiB, '\0'));
    // One at a time, so which ones fit is known.
    std::this_thread::sleep_for(50ms);
  }
  std::vector<bool> closed;
  for (int fd : fds)
    closed.push_back(closed_by_peer(fd, 1s));
  BOOST_TEST(!closed[0]);
  BOOST_TEST(!closed[1]);
  for (size_t i = 2; i < fds.size(); ++i)
    BOOST_TEST(closed[i], "peer " << i << " was kept past the total limit");
  auto s = stats(io, *watcher);
  BOOST_TEST(s.bytes >= 12 * MiB);
  BOOST_TEST(s.bytes < 12 * MiB + 4096); // and the watcher's own few calls
  BOOST_TEST(contains(d.log(), "bytes for incoming messages"), d.log());

  // Those that hold memory give it back when they go.
  for (int fd : fds)
    ::close(fd);
  BOOST_TEST(pump_until(io, [&] { return stats(io, *watcher).bytes < 4096; }, 5s));
  BOOST_TEST(node_name_of(io, *watcher).size() > 0u);
}

BOOST_AUTO_TEST_CASE(protocol_violations_are_logged_with_the_peer) {
  daemon_fixture d{false};
  start_with(d, "");
  auto io = kj::setupAsyncIo();
  auto watcher = d.connect(io);
  auto me = "protocol violation from pid=" + std::to_string(::getpid());

  // A segment table announcing 2^32 segments.
  int fd = connect_unix(d.socket_path());
  send_some(fd, std::string("\xff\xff\xff\xff\x01\x00\x00\x00", 8));
  BOOST_TEST(closed_by_peer(fd, 5s));
  ::close(fd);
  // A well-framed message whose content is no RPC message: a root pointer far outside
  // its segment.
  fd = connect_unix(d.socket_path());
  send_some(fd, frame_header({2}) + std::string("\xfc\xff\xff\x7f\x00\x00\x01\x00", 8)
                  + std::string(8, '\0'));
  BOOST_TEST(closed_by_peer(fd, 5s));
  ::close(fd);
  BOOST_TEST(pump_until(io, [&] { return count(d.log(), me) >= 2; }, 5s), d.log());
  auto log = d.log();
  BOOST_TEST(contains(log, "segments (at most 512)"), log);
  BOOST_TEST(node_name_of(io, *watcher).size() > 0u);
  // A client that simply leaves is no violation.
  auto quiet = d.connect(io);
  node_name_of(io, *quiet);
  quiet.reset();
  std::this_thread::sleep_for(200ms);
  BOOST_TEST(count(d.log(), me) == 2u, d.log());
}
