// gateway_tls_bench: the mutual-TLS TCP gateway against the unix socket, on one real
// cytod (--scheduler sharing), calling Discovery.discover():
//   sequential     round trips one at a time: p50/p99/mean (us)
//   pipelined      `window` calls in flight on one connection: calls/s
//   tls_connect    TCP connect + TLS handshake + first call (ms)
// Rounds of the two transports alternate so that machine noise hits both alike. Prints
// one JSON object on stdout (progress on stderr); never asserts on time. Goal:
// TLS calls/s >= 0.7x unix. PKI made by deploy/make-pki in /tmp/cyto-test-tlsbench.*,
// removed afterwards with cytod's (empty) cgroup subtree. Needs root (cytod's cgroups).
//
//   build/gateway_tls_bench [--calls N] [--rounds N] [--window N] [--seconds S]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <nlohmann/json.hpp>

#include "schema/discovery.capnp.h"
#include "schema/node.capnp.h"
#include "services/tls_stream.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using nlohmann::json;
namespace schema = cyto::schema;
namespace svc = cyto::services;

void say(const std::string& s) {
  std::fprintf(stderr, "[gateway_tls_bench] %s\n", s.c_str());
}

int sh(const std::string& cmd) {
  return std::system(cmd.c_str());
}

uint16_t unused_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t n = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// cytod with its TCP gateway, stopped by PID (SIGTERM) when this goes away.
struct bench_daemon {
  std::string dir, sock, cgroup_root;
  uint16_t port;
  pid_t pid = -1;

  bench_daemon(const std::string& d, uint16_t p)
    : dir(d), sock(d + "/cyto.sock"), cgroup_root("cyto-test-tlsbench-" + std::to_string(::getpid())),
      port(p) {
    std::ofstream{dir + "/cytod.toml"} << "# empty: the host's /etc/cyto is not read\n";
    std::vector<std::string> args{CYTOD_PATH, "--config", dir + "/cytod.toml", "--socket", sock,
                                  "--state-dir", dir + "/state", "--node-name", "tlsbench",
                                  "--log-level", "warn", "--scheduler", "sharing",
                                  "--cgroup-root", cgroup_root,
                                  "--tcp", "127.0.0.1:" + std::to_string(port),
                                  "--tls-cert", dir + "/pki/nodes/tlsbench.crt",
                                  "--tls-key", dir + "/pki/nodes/tlsbench.key",
                                  "--tls-ca", dir + "/pki/ca.crt",
                                  "--gateway-policy", dir + "/policy.toml"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(STDERR_FILENO, STDOUT_FILENO); // stdout carries only the JSON
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto give_up = clock_type::now() + std::chrono::seconds(15);
    while (!std::filesystem::exists(sock) || !listening()) {
      int st;
      if (::waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        throw std::runtime_error("cytod exited during start-up");
      }
      if (clock_type::now() > give_up)
        throw std::runtime_error("cytod did not come up within 15 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  bool listening() const {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ::close(fd);
    return ok;
  }
  ~bench_daemon() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int st;
      ::waitpid(pid, &st, 0);
    }
    std::error_code ec;
    for (auto& h : std::filesystem::directory_iterator{"/sys/fs/cgroup", ec})
      ::rmdir((h.path() / cgroup_root).c_str());
  }
};

/// One capnp connection (unix or TLS) and its Discovery capability.
struct conn {
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  schema::Discovery::Client discovery = nullptr;

  void attach(kj::Own<kj::AsyncIoStream> s) {
    stream = kj::mv(s);
    rpc = kj::heap<capnp::TwoPartyClient>(*stream);
    discovery = rpc->bootstrap().castAs<schema::Node>().discoveryRequest().send().getService();
  }
};

kj::Own<kj::AsyncIoStream> unix_stream(kj::AsyncIoContext& io, const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
  return io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
}

kj::Own<kj::AsyncIoStream> tls_stream(kj::AsyncIoContext& io, svc::tls_context& ctx,
                                      uint16_t port) {
  auto addr = io.provider->getNetwork()
                .parseAddress(kj::str("127.0.0.1:", port))
                .wait(io.waitScope);
  auto tcp = addr->connect().wait(io.waitScope);
  int one = 1;
  tcp->setsockopt(IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return ctx.wrap(kj::mv(tcp), io.provider->getTimer(), 10 * kj::SECONDS).wait(io.waitScope);
}

void call(kj::AsyncIoContext& io, conn& c) {
  auto r = c.discovery.discoverRequest().send().wait(io.waitScope);
  if (r.getInfo().getNodeName() != "tlsbench")
    throw std::runtime_error("discover answered for another node");
}

/// Sequential round trips in microseconds.
void sequential(kj::AsyncIoContext& io, conn& c, unsigned calls, std::vector<double>& out) {
  for (unsigned i = 0; i < calls; ++i) {
    auto t0 = clock_type::now();
    call(io, c);
    out.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
}

/// One lane of the pipeline: a call, and the next one when it returns, until `end`.
kj::Promise<void> lane(conn& c, uint64_t& done, clock_type::time_point end) {
  return c.discovery.discoverRequest().send().then([&c, &done, end](auto&&) {
    ++done;
    if (clock_type::now() >= end)
      return kj::Promise<void>(kj::READY_NOW);
    return lane(c, done, end);
  });
}

double pipelined(kj::AsyncIoContext& io, conn& c, unsigned window, double seconds) {
  uint64_t done = 0;
  auto t0 = clock_type::now();
  auto end = t0 + std::chrono::duration_cast<clock_type::duration>(
                    std::chrono::duration<double>(seconds));
  auto lanes = kj::heapArrayBuilder<kj::Promise<void>>(window);
  for (unsigned i = 0; i < window; ++i)
    lanes.add(lane(c, done, end));
  kj::joinPromises(lanes.finish()).wait(io.waitScope);
  return static_cast<double>(done)
         / std::chrono::duration<double>(clock_type::now() - t0).count();
}

json stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  double sum = 0;
  for (double x : v)
    sum += x;
  return {{"samples", v.size()}, {"p50_us", at(0.5)}, {"p99_us", at(0.99)},
          {"mean_us", sum / v.size()}, {"min_us", v.front()}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  unsigned calls = 2000, rounds = 3, window = 32;
  double seconds = 1.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--calls") calls = std::stoul(argv[i + 1]);
    else if (k == "--rounds") rounds = std::stoul(argv[i + 1]);
    else if (k == "--window") window = std::stoul(argv[i + 1]);
    else if (k == "--seconds") seconds = std::stod(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--calls N] [--rounds N] [--window N] [--seconds S]\n",
                   argv[0]);
      return 2;
    }
  }
  if (::geteuid() != 0) {
    say("needs root (cytod makes its cgroup subtree)");
    return 77;
  }
  char tmpl[] = "/tmp/cyto-test-tlsbench.XXXXXX";
  if (!::mkdtemp(tmpl))
    return 1;
  std::string dir = tmpl;
  int rc = 0;
  try {
    if (sh(std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki " + dir
           + "/pki --node tlsbench --user admin >/dev/null")
        != 0)
      throw std::runtime_error("deploy/make-pki failed");
    std::ofstream{dir + "/policy.toml"} << "[allow]\n\"spiffe://cyto.local/user/admin\" = [\"*\"]\n";
    auto port = unused_port();
    bench_daemon d{dir, port};
    say("cytod up, TLS gateway on 127.0.0.1:" + std::to_string(port));

    auto io = kj::setupAsyncIo();
    svc::tls_context ctx{svc::tls_context::side::client,
                         {dir + "/pki/users/admin.crt", dir + "/pki/users/admin.key",
                          dir + "/pki/ca.crt"}};
    // Connection set-up: connect + handshake + the first discover.
    std::vector<double> connect_ms;
    for (int i = 0; i < 20; ++i) {
      auto t0 = clock_type::now();
      conn c;
      c.attach(tls_stream(io, ctx, port));
      call(io, c);
      connect_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    }

    conn unix_c, tls_c;
    unix_c.attach(unix_stream(io, d.sock));
    tls_c.attach(tls_stream(io, ctx, port));
    std::vector<double> seq_unix, seq_tls, warm;
    sequential(io, unix_c, 300, warm);
    sequential(io, tls_c, 300, warm);
    std::vector<double> pipe_unix, pipe_tls;
    for (unsigned r = 0; r < rounds; ++r) {
      say("round " + std::to_string(r + 1) + "/" + std::to_string(rounds));
      sequential(io, unix_c, calls / rounds, seq_unix);
      sequential(io, tls_c, calls / rounds, seq_tls);
      pipe_unix.push_back(pipelined(io, unix_c, window, seconds));
      pipe_tls.push_back(pipelined(io, tls_c, window, seconds));
    }
    auto su = stats(seq_unix), st = stats(seq_tls);
    double pu = median(pipe_unix), pt = median(pipe_tls);
    json out{
      {"bench", "gateway_tls_bench"},
      {"method", "Discovery.discover"},
      {"settings", {{"calls", calls}, {"rounds", rounds}, {"window", window},
                    {"pipelined_round_s", seconds}, {"scheduler", "sharing"},
                    {"tls", "TLS 1.3, EC P-256, OpenSSL memory BIOs on the kj loop"}}},
      {"unix", {{"sequential", su}, {"pipelined_calls_per_s", pu},
                {"pipelined_rounds", pipe_unix}}},
      {"tls", {{"sequential", st}, {"pipelined_calls_per_s", pt},
               {"pipelined_rounds", pipe_tls}, {"connect_handshake_first_call", stats(connect_ms)}}},
      {"ratios", {{"tls_vs_unix_pipelined_calls_per_s", pt / pu},
                  {"tls_vs_unix_sequential_p50", st["p50_us"].get<double>() / su["p50_us"].get<double>()},
                  {"goal_pipelined_calls_per_s", ">= 0.7"},
                  {"goal_met", pt / pu >= 0.7}}},
    };
    // connect stats are in ms though the keys say us: rename for clarity.
    auto& cs = out["tls"]["connect_handshake_first_call"];
    cs = json{{"samples", cs["samples"]}, {"p50_ms", cs["p50_us"]}, {"p99_ms", cs["p99_us"]},
              {"mean_ms", cs["mean_us"]}};
    std::printf("%s\n", out.dump(2).c_str());
  } catch (const std::exception& e) {
    say(std::string{"failed: "} + e.what());
    rc = 1;
  } catch (const kj::Exception& e) {
    say(std::string{"failed: "} + e.getDescription().cStr());
    rc = 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return rc;
}
