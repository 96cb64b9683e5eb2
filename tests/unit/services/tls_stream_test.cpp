// The OpenSSL stream adapter over an in-process kj pipe: the handshake and both SPIFFE
// IDs, a megabyte each way at once, end of stream, refusals (another CA, no handshake in
// time). Certificates come from deploy/make-pki (the openssl CLI) in a temporary dir.
#define BOOST_TEST_MODULE unit_services_tls_stream
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <kj/async-io.h>

#include "services/tls_stream.hpp"

using namespace cyto::services;

namespace {

struct keys {
  std::string dir;
  keys() {
    char tmpl[] = "/tmp/cyto-test-tls-XXXXXX";
    BOOST_REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    auto pki = std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki ";
    BOOST_REQUIRE(std::system((pki + dir + "/pki --node n1 --user u >/dev/null").c_str()) == 0);
    BOOST_REQUIRE(std::system((pki + dir + "/other --user u >/dev/null").c_str()) == 0);
  }
  ~keys() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  tls_files node() const {
    return {dir + "/pki/nodes/n1.crt", dir + "/pki/nodes/n1.key", dir + "/pki/ca.crt"};
  }
  tls_files user(const std::string& ca = "pki") const {
    return {dir + "/" + ca + "/users/u.crt", dir + "/" + ca + "/users/u.key",
            dir + "/pki/ca.crt"};
  }
};

struct pair_fixture {
  keys k;
  kj::AsyncIoContext io = kj::setupAsyncIo();
  tls_context server{tls_context::side::server, k.node()};
  kj::Own<tls_stream> s, c;

  /// Both handshakes over one in-process pipe; returns the server side's failure, if any.
  std::string connect(tls_context& client) {
    auto pipe = io.provider->newTwoWayPipe();
    auto& timer = io.provider->getTimer();
    auto cp = client.wrap(kj::mv(pipe.ends[1]), timer, 5 * kj::SECONDS).eagerlyEvaluate(nullptr);
    try {
      s = server.wrap(kj::mv(pipe.ends[0]), timer, 5 * kj::SECONDS).wait(io.waitScope);
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
    c = cp.wait(io.waitScope);
    return {};
  }
};

std::vector<kj::byte> random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng{seed};
  std::vector<kj::byte> v(n);
  for (auto& b : v)
    b = static_cast<kj::byte>(rng());
  return v;
}

/// Writes `data` in uneven pieces (single writes and gathered ones).
kj::Promise<void> send(kj::AsyncIoStream& out, const std::vector<kj::byte>& data, size_t at = 0) {
  if (at >= data.size())
    return kj::READY_NOW;
  size_t n = std::min<size_t>(data.size() - at, 1 + (at * 7919) % 40000);
  if (n > 3 && at % 2 == 0) {
    auto pieces = kj::heapArray<kj::ArrayPtr<const kj::byte>>(2);
    pieces[0] = kj::arrayPtr(data.data() + at, n / 3);
    pieces[1] = kj::arrayPtr(data.data() + at + n / 3, n - n / 3);
    auto p = out.write(pieces);
    return p.attach(kj::mv(pieces)).then([&out, &data, at, n] { return send(out, data, at + n); });
  }
  return out.write(data.data() + at, n).then([&out, &data, at, n] { return send(out, data, at + n); });
}

} // namespace

BOOST_FIXTURE_TEST_CASE(handshake_gives_each_side_the_other_spiffe_id, pair_fixture) {
  tls_context client{tls_context::side::client, k.user()};
  BOOST_REQUIRE_EQUAL(connect(client), "");
  BOOST_TEST(s->peer_id() == "spiffe://cyto.local/user/u");
  BOOST_TEST(c->peer_id() == "spiffe://cyto.local/node/n1");
}

BOOST_FIXTURE_TEST_CASE(a_megabyte_each_way_at_once_arrives_intact_then_eof, pair_fixture) {
  tls_context client{tls_context::side::client, k.user()};
  BOOST_REQUIRE_EQUAL(connect(client), "");
  auto up = random_bytes(1 << 20, 1), down = random_bytes(1 << 20, 2);
  std::vector<kj::byte> got_up(up.size()), got_down(down.size());
  auto w1 = send(*c, up).then([this] { c->shutdownWrite(); });
  auto w2 = send(*s, down);
  auto r1 = s->read(got_up.data(), got_up.size());
  auto r2 = c->read(got_down.data(), got_down.size());
  w1.wait(io.waitScope);
  w2.wait(io.waitScope);
  r1.wait(io.waitScope);
  r2.wait(io.waitScope);
  BOOST_TEST((got_up == up));
  BOOST_TEST((got_down == down));
  kj::byte one;
  BOOST_TEST(s->tryRead(&one, 1, 1).wait(io.waitScope) == 0u); // close_notify: end of stream
}

BOOST_FIXTURE_TEST_CASE(a_client_of_another_ca_is_refused_by_the_server, pair_fixture) {
  tls_context client{tls_context::side::client, k.user("other")};
  auto why = connect(client);
  BOOST_TEST(why.find("TLS handshake failed: certificate verify failed") != std::string::npos, why);
}

BOOST_FIXTURE_TEST_CASE(a_silent_peer_times_out, pair_fixture) {
  auto pipe = io.provider->newTwoWayPipe();
  auto p = server.wrap(kj::mv(pipe.ends[0]), io.provider->getTimer(), 1 * kj::SECONDS);
  try {
    p.wait(io.waitScope);
    BOOST_FAIL("the handshake did not time out");
  } catch (const kj::Exception& e) {
    BOOST_TEST(std::string{e.getDescription().cStr()} == "TLS handshake timed out after 1 s");
  }
}

BOOST_AUTO_TEST_CASE(bad_files_are_named) {
  keys k;
  auto f = k.node();
  f.cert = k.dir + "/nope.crt";
  try {
    tls_context ctx{tls_context::side::server, f};
    BOOST_FAIL("a missing certificate was accepted");
  } catch (const std::runtime_error& e) {
    BOOST_TEST(std::string{e.what()}.find("cannot load the certificate " + f.cert) == 0, e.what());
  }
  f = k.node();
  f.ca = k.dir + "/pki/nodes/n1.key";
  BOOST_CHECK_THROW((tls_context{tls_context::side::server, f}), std::runtime_error);
}
