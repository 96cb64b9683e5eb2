// Integration tests of the mutual-TLS TCP gateway: certificates made by deploy/make-pki
// in a temporary directory, a real cytod listening on 127.0.0.1:<free port>, the real
// cyto CLI with --connect. Allowed identities run verbs, forbidden verbs are refused with
// cyto.permission_denied naming identity and verb, clients without a certificate, with
// an expired one, one from another CA or one without a SPIFFE ID are refused at the
// handshake, garbage on the port leaves cytod serving, bad gateway config stops cytod.
// Only loopback traffic. Needs root (exits 77 = skipped otherwise).
#define BOOST_TEST_MODULE integration_gateway_tls
#include <boost/test/unit_test.hpp>

#include <random>

#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "tests/integration/daemon_fixture.hpp"

using namespace cyto::test;
using nlohmann::json;

BOOST_TEST_GLOBAL_FIXTURE(root_required);

namespace {

const std::string make_pki = std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki";

std::string show(const process_result& r) {
  return describe_status(r.status) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

void must(const std::vector<std::string>& argv) {
  auto r = run_process(argv, 30s);
  if (r.code() != 0)
    throw std::runtime_error(argv.front() + " failed: " + show(r));
}

/// A loopback port nothing listens on right now.
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error(std::string{"free port: "} + std::strerror(errno));
  ::close(fd);
  return ntohs(a.sin_port);
}

/// A blocking TCP connection to 127.0.0.1:port.
int connect_tcp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0)
    throw std::runtime_error(std::string{"connect 127.0.0.1: "} + std::strerror(errno));
  timeval tv{20, 0}; // reads below never hang the test
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

/// Reads until EOF (or error); returns how long that took, or nullopt on a read timeout.
std::optional<std::chrono::milliseconds> wait_closed(int fd) {
  auto t0 = steady::now();
  char buf[4096];
  while (true) {
    auto n = ::read(fd, buf, sizeof(buf));
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
      return std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - t0);
    if (n < 0 && errno == EAGAIN)
      return std::nullopt;
  }
}

/// The PKI of a test: make-pki's CA with node "n1" and users admin and ci, a second CA
/// ("other"), and certificates made by hand to be refused.
struct pki {
  temp_dir dir;

  pki() {
    must({make_pki, dir / "pki", "--node", "n1", "--user", "admin", "--user", "ci"});
    must({make_pki, dir / "other", "--node", "n1", "--user", "admin"});
    // Signed by our CA but already expired (notAfter a day before notBefore).
    leaf("expired", "subjectAltName=URI:spiffe://cyto.local/user/admin\n"
                    "extendedKeyUsage=clientAuth\n",
         "-1");
    // Signed by our CA, valid, but with no SPIFFE ID (CN only).
    leaf("nospiffe", "extendedKeyUsage=clientAuth\n", "30");
    write_text(dir / "policy.toml", R"(
[allow]
"spiffe://cyto.local/user/admin" = ["*"]
"spiffe://cyto.local/user/ci" = ["containers.run", "containers.list", "discovery.*"]
)");
  }

  void leaf(const std::string& name, const std::string& ext, const std::string& days) {
    auto base = dir / name;
    write_text(base + ".ext", ext);
    must({"/usr/bin/openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
          "ec_paramgen_curve:P-256", "-out", base + ".key"});
    must({"/usr/bin/openssl", "req", "-new", "-key", base + ".key", "-subj", "/CN=" + name,
          "-out", base + ".csr"});
    must({"/usr/bin/openssl", "x509", "-req", "-in", base + ".csr", "-CA", ca(), "-CAkey",
          dir / "pki/ca.key", "-set_serial", "77", "-days", days, "-extfile", base + ".ext",
          "-out", base + ".crt"});
  }

  std::string ca() const {
    return dir / "pki/ca.crt";
  }
  std::string policy() const {
    return dir / "policy.toml";
  }
  std::vector<std::string> gateway_flags(uint16_t port) const {
    return {"--tcp",     "127.0.0.1:" + std::to_string(port),
            "--tls-cert", dir / "pki/nodes/n1.crt",
            "--tls-key",  dir / "pki/nodes/n1.key",
            "--tls-ca",   ca(),
            "--gateway-policy", policy()};
  }
};

/// cytod with its TCP gateway on a free loopback port.
struct tls_daemon {
  pki keys;
  uint16_t port = free_port();
  daemon_fixture d{false};

  tls_daemon() {
    d.start(keys.gateway_flags(port));
  }

  /// `cyto --connect 127.0.0.1:port --cert C --key K --ca CA args...`
  process_result cli_as(const std::string& cert, const std::string& key,
                        std::vector<std::string> args, const std::string& ca = {}) {
    std::vector<std::string> argv{cli_path,
                                  "--connect", "127.0.0.1:" + std::to_string(port),
                                  "--cert", cert, "--key", key, "--ca", ca.empty() ? keys.ca() : ca};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, 20s);
  }
  process_result cli_user(const std::string& user, std::vector<std::string> args) {
    return cli_as(keys.dir / ("pki/users/" + user + ".crt"),
                  keys.dir / ("pki/users/" + user + ".key"), std::move(args));
  }

  bool discover_works() {
    auto r = cli_user("admin", {"--json", "discover"});
    return r.code() == 0 && json::parse(r.out).at("nodeName") == d.node_name();
  }

  /// Waits (bounded) for `text` in cytod's log.
  bool logged(const std::string& text) {
    auto deadline = steady::now() + 5s;
    while (steady::now() < deadline) {
      if (contains(d.log(), text))
        return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(an_allowed_identity_runs_discover_and_a_forbidden_verb_is_refused) {
  tls_daemon t;
  auto r = t.cli_user("ci", {"--json", "discover"});
  BOOST_REQUIRE_MESSAGE(r.code() == 0, show(r) + t.d.log());
  BOOST_TEST(json::parse(r.out).at("nodeName").get<std::string>() == t.d.node_name());
  BOOST_TEST(t.logged("connected as spiffe://cyto.local/user/ci"));

  // Global options after the verb work too; `containers.list` is allowed.
  r = t.cli_user("ci", {"ps", "--json"});
  BOOST_TEST(r.code() == 0, show(r));

  // cells.list and cells.free are not ci's.
  r = t.cli_user("ci", {"cell", "ls"});
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(contains(r.err, "cyto.permission_denied: spiffe://cyto.local/user/ci may not cells.list"),
             r.err);
  r = t.cli_user("ci", {"cell", "free", "web"});
  BOOST_TEST(contains(r.err, "cyto.permission_denied: spiffe://cyto.local/user/ci may not cells.free"),
             r.err);
  r = t.cli_user("ci", {"network", "ls"});
  BOOST_TEST(contains(r.err, "may not network.list"), r.err);
  BOOST_TEST(t.logged("refused: spiffe://cyto.local/user/ci may not cells.free"));

  // admin may do everything; the refused calls left nothing behind and cytod serves on.
  r = t.cli_user("admin", {"--json", "cell", "ls"});
  BOOST_TEST(r.code() == 0, show(r));
  r = t.cli_user("admin", {"cell", "allocate", "tls-web"});
  BOOST_TEST(r.code() == 0, show(r));
  r = t.cli_user("ci", {"cell", "free", "tls-web", "--force"});
  BOOST_TEST(contains(r.err, "may not cells.free"), r.err);
  r = t.cli_user("admin", {"cell", "free", "tls-web"});
  BOOST_TEST(r.code() == 0, show(r));

  // Streams (the daemon log to a client's sink) and a container's whole life go through
  // the gateway too.
  r = t.cli_user("admin", {"logs", "--daemon", "--tail", "50"});
  BOOST_TEST(r.code() == 0, show(r));
  BOOST_TEST(contains(r.out, "connected as spiffe://cyto.local/user/admin"), r.out);
  r = t.cli_user("admin", {"run", "--rm", "demo", "echo", "hello-over-tls"});
  BOOST_TEST(r.code() == 0, show(r) + t.d.log());
  BOOST_TEST(contains(r.out, "hello-over-tls"), r.out);

  // The unix socket keeps its own (SO_PEERCRED) rule: root may call anything there.
  r = run_process({cli_path, "--socket", t.d.socket_path(), "cell", "ls"});
  BOOST_TEST(r.code() == 0, show(r));
}

BOOST_AUTO_TEST_CASE(no_expired_foreign_or_id_less_client_certificates_pass_the_handshake) {
  tls_daemon t;
  auto& k = t.keys;

  // No client certificate at all (openssl s_client offers none).
  auto r = run_process({"/usr/bin/openssl", "s_client", "-connect",
                        "127.0.0.1:" + std::to_string(t.port), "-CAfile", k.ca()},
                       20s);
  BOOST_TEST(t.logged("TLS handshake failed: peer did not return a certificate"),
             show(r) + t.d.log());

  // Expired, though signed by our CA.
  r = t.cli_as(k.dir / "expired.crt", k.dir / "expired.key", {"discover"});
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(contains(r.err, "certificate expired"), r.err);
  BOOST_TEST(t.logged("certificate verify failed (certificate has expired)"), t.d.log());

  // From another CA (which the client trusts: the server refuses it).
  r = t.cli_as(k.dir / "other/users/admin.crt", k.dir / "other/users/admin.key", {"discover"});
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(contains(r.err, "unknown ca"), r.err);
  BOOST_TEST(t.logged("certificate verify failed (unable to get local issuer certificate)"),
             t.d.log());

  // Our CA, valid, but no SPIFFE ID to authorize.
  r = t.cli_as(k.dir / "nospiffe.crt", k.dir / "nospiffe.key", {"discover"});
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(t.logged("its certificate has no SPIFFE ID"), t.d.log());

  // The client checks the node too: a node of another CA is refused by the CLI.
  r = t.cli_as(k.dir / "pki/users/admin.crt", k.dir / "pki/users/admin.key", {"discover"},
               k.dir / "other/ca.crt");
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(contains(r.err, "TLS handshake failed: certificate verify failed"), r.err);

  // --connect without the files says what is missing.
  r = run_process({cli_path, "--connect", "127.0.0.1:" + std::to_string(t.port), "discover"});
  BOOST_TEST(r.code() == 1);
  BOOST_TEST(contains(r.err, "--connect needs --cert, --key and --ca"), r.err);

  BOOST_TEST(t.d.running());
  BOOST_TEST(t.discover_works());
}

void garbage_and_silent_peers(tls_daemon& t);

BOOST_AUTO_TEST_CASE(garbage_and_silent_peers_on_the_port_leave_cytod_serving) {
  tls_daemon t;
  try {
    garbage_and_silent_peers(t);
  } catch (const std::exception& e) {
    BOOST_FAIL(std::string{e.what()} + " (cytod " + (t.d.running() ? "running" : "gone: "
               + describe_status(t.d.exit_status().value_or(-1))) + ")\n" + t.d.log());
  }
}

void garbage_and_silent_peers(tls_daemon& t) {
  std::mt19937 rng{42};
  for (int round = 0; round < 5; ++round) {
    int fd = connect_tcp(t.port);
    std::string junk(64 * 1024, '\0');
    for (auto& c : junk)
      c = static_cast<char>(rng());
    if (round == 0)
      junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (round == 1) // a TLS record header announcing a huge handshake, then nothing more
      junk = std::string{"\x16\x03\x01\xff\xff\x01\x00\xff\xfb", 9};
    (void)!::write(fd, junk.data(), junk.size());
    if (round != 1) {
      auto closed = wait_closed(fd);
      BOOST_TEST(closed.has_value(), "cytod kept a garbage connection open (round " << round << ")");
    }
    ::close(fd);
  }
  // A peer that connects and says nothing is dropped at the handshake timeout (10 s).
  int silent = connect_tcp(t.port);
  auto closed = wait_closed(silent);
  ::close(silent);
  BOOST_REQUIRE(closed.has_value());
  BOOST_TEST(closed->count() >= 9000);
  BOOST_TEST(closed->count() <= 15000);
  BOOST_TEST(t.logged("TLS handshake timed out after 10 s"), t.d.log());

  // 64 silent peers at once fill the handshake slots: the next one is closed right away;
  // once they go, TLS clients get in again.
  std::vector<int> crowd;
  for (int i = 0; i < 64; ++i)
    crowd.push_back(connect_tcp(t.port));
  std::this_thread::sleep_for(300ms);
  int extra = connect_tcp(t.port);
  auto extra_closed = wait_closed(extra);
  ::close(extra);
  BOOST_REQUIRE(extra_closed.has_value());
  BOOST_TEST(extra_closed->count() < 5000);
  BOOST_TEST(t.logged("64 handshakes under way already"), t.d.log());
  for (int fd : crowd)
    ::close(fd);
  auto deadline = steady::now() + 5s;
  while (!t.discover_works() && steady::now() < deadline)
    std::this_thread::sleep_for(100ms);

  BOOST_TEST(t.d.running());
  BOOST_TEST(t.discover_works());
  BOOST_TEST(t.d.stop() == 0);
}

BOOST_AUTO_TEST_CASE(bad_gateway_config_stops_cytod_naming_the_key) {
  pki k;
  auto port = free_port();
  auto start = [&](std::vector<std::string> extra) {
    daemon_fixture d{false};
    auto argv = d.argv(extra);
    return run_process(argv, 20s);
  };
  auto flags = k.gateway_flags(port);

  // --tcp alone.
  auto r = start({"--tcp", "127.0.0.1:" + std::to_string(port)});
  BOOST_TEST(r.code() == 2, show(r));
  BOOST_TEST(contains(r.err, "gateway.tls_cert: needed with gateway.tcp"), r.err);

  r = start({"--tcp", "127.0.0.1:99999", "--tls-cert", "/x", "--tls-key", "/x", "--tls-ca", "/x",
             "--gateway-policy", "/x"});
  BOOST_TEST(r.code() == 2, show(r));
  BOOST_TEST(contains(r.err, "gateway.tcp: must be host:port"), r.err);

  // A certificate that is not there, a key that does not match, a bad policy.
  auto with = [&](const std::string& flag, const std::string& value) {
    auto f = flags;
    for (size_t i = 0; i + 1 < f.size(); ++i)
      if (f[i] == flag)
        f[i + 1] = value;
    return f;
  };
  r = start(with("--tls-cert", k.dir / "missing.crt"));
  BOOST_TEST(r.code() == 2, show(r));
  BOOST_TEST(contains(r.err, "cannot load the certificate " + k.dir / "missing.crt"), r.err);
  r = start(with("--tls-key", k.dir / "pki/users/ci.key"));
  BOOST_TEST(r.code() == 2, show(r));
  BOOST_TEST(contains(r.err, "key values mismatch"), r.err);
  write_text(k.dir / "bad-policy.toml", "[allow]\n\"spiffe://cyto.local/user/ci\" = [\"cells.fre\"]\n");
  r = start(with("--gateway-policy", k.dir / "bad-policy.toml"));
  BOOST_TEST(r.code() == 2, show(r));
  BOOST_TEST(contains(r.err, "gateway.policy: " + k.dir / "bad-policy.toml"), r.err);
  BOOST_TEST(contains(r.err, "'cells.fre' names no service or verb"), r.err);

  // The port is taken: cytod says so, exits 1 and removes its socket.
  int busy = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  BOOST_REQUIRE(::listen(busy, 1) == 0);
  daemon_fixture d{false};
  r = run_process(d.argv(flags), 30s);
  ::close(busy);
  BOOST_TEST(r.code() == 1, show(r));
  BOOST_TEST(contains(r.err, "gateway.tcp: listen on 127.0.0.1:" + std::to_string(port)
                               + ": Address already in use"),
             r.err);
  BOOST_TEST(!std::filesystem::exists(d.socket_path()));
}
