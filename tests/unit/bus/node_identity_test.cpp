// Node identities of the federation: certificates made by deploy/make-pki (openssl CLI,
// no root needed) are loaded, sign and verify challenges; other CAs, other names, other
// verifiers and tampered signatures are refused. Also the peer address parsers.
#define BOOST_TEST_MODULE unit_bus_node_identity
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "bus/federation_actor.hpp"
#include "bus/node_identity.hpp"

using cyto::bus::node_identity;
namespace fs = std::filesystem;

namespace {

/// Two PKIs (two CAs) with nodes a and b in the first and a in the second.
struct pkis {
  fs::path dir;
  pkis() {
    char tmpl[] = "/tmp/cyto-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto make = [&](const std::string& out, const std::string& nodes) {
      auto cmd = std::string{CYTO_SOURCE_DIR} + "/deploy/make-pki " + (dir / out).string() + " "
                 + nodes + " > /dev/null";
      if (std::system(cmd.c_str()) != 0)
        throw std::runtime_error("make-pki failed: " + cmd);
    };
    make("one", "--node a --node b");
    make("two", "--node a");
  }
  ~pkis() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::unique_ptr<node_identity> load(const std::string& pki, const std::string& name,
                                      const std::string& as, std::string& why,
                                      const std::string& ca_pki = "") const {
    auto p = dir / pki;
    auto ca = dir / (ca_pki.empty() ? pki : ca_pki) / "ca.crt";
    return node_identity::load(p / "nodes" / (name + ".crt"), p / "nodes" / (name + ".key"), ca,
                               as, why);
  }
  std::string pem(const std::string& pki, const std::string& name) const {
    std::ifstream in{dir / pki / "nodes" / (name + ".crt")};
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(node_identity_suite, pkis)

BOOST_AUTO_TEST_CASE(own_certificate_loads_with_its_trust_domain) {
  std::string why;
  auto a = load("one", "a", "a", why);
  BOOST_TEST_REQUIRE(a != nullptr, why);
  BOOST_TEST(a->trust_domain() == "cyto.local");
  BOOST_TEST(a->node_spiffe_id("b") == "spiffe://cyto.local/node/b");
  BOOST_TEST(cyto::bus::spiffe_ids_of(a->cert_pem())
             == std::vector<std::string>{"spiffe://cyto.local/node/a"});
}

BOOST_AUTO_TEST_CASE(loading_refuses_a_wrong_name_a_foreign_ca_and_missing_files) {
  std::string why;
  BOOST_TEST(load("one", "a", "b", why) == nullptr);
  BOOST_TEST(why.find("is not the certificate of node b") != std::string::npos, why);
  BOOST_TEST(load("two", "a", "a", why, "one") == nullptr);
  BOOST_TEST(why.find("not valid under our CA") != std::string::npos, why);
  BOOST_TEST(node_identity::load("/nonexistent.crt", "/x.key", "/ca.crt", "a", why) == nullptr);
  BOOST_TEST(why.find("/nonexistent.crt") != std::string::npos, why);
  // A key that is not the certificate's.
  auto p = dir / "one" / "nodes";
  BOOST_TEST(node_identity::load(p / "a.crt", p / "b.key", dir / "one" / "ca.crt", "a", why)
             == nullptr);
  BOOST_TEST(why.find("does not belong") != std::string::npos, why);
}

BOOST_AUTO_TEST_CASE(a_signed_challenge_verifies_only_for_its_name_and_verifier) {
  std::string why;
  auto a = load("one", "a", "a", why);
  auto b = load("one", "b", "b", why);
  BOOST_TEST_REQUIRE((a && b));
  auto challenge = node_identity::fresh_challenge();
  BOOST_TEST(challenge.size() == 64u);
  BOOST_TEST(node_identity::fresh_challenge() != challenge);
  auto text = node_identity::proof_text(challenge, "b", "a");
  auto sig = b->sign(text);
  BOOST_TEST(!sig.empty());
  // a checks b's proof.
  BOOST_TEST(!a->verify(b->cert_pem(), "b", text, sig).has_value());
  // b's certificate does not make it node a.
  auto other = a->verify(b->cert_pem(), "a", node_identity::proof_text(challenge, "a", "a"), sig);
  BOOST_TEST_REQUIRE(other.has_value());
  BOOST_TEST(other->find("is not spiffe://cyto.local/node/a") != std::string::npos, *other);
  // The same signature for another verifier or challenge does not hold.
  BOOST_TEST(a->verify(b->cert_pem(), "b", node_identity::proof_text(challenge, "b", "c"), sig)
               .has_value());
  BOOST_TEST(a->verify(b->cert_pem(), "b", node_identity::proof_text("x", "b", "a"), sig)
               .has_value());
  auto bad = sig;
  bad[bad.size() / 2] ^= 1;
  BOOST_TEST(a->verify(b->cert_pem(), "b", text, bad).has_value());
  // Signed with a's key but presenting b's certificate.
  BOOST_TEST(a->verify(b->cert_pem(), "b", text, a->sign(text)).has_value());
}

BOOST_AUTO_TEST_CASE(certificates_of_another_ca_or_garbage_are_refused) {
  std::string why;
  auto a = load("one", "a", "a", why);
  auto foreign = load("two", "a", "a", why);
  BOOST_TEST_REQUIRE((a && foreign));
  auto text = node_identity::proof_text("c", "a", "a");
  auto err = a->verify(foreign->cert_pem(), "a", text, foreign->sign(text));
  BOOST_TEST_REQUIRE(err.has_value());
  BOOST_TEST(err->find("not valid under our CA") != std::string::npos, *err);
  err = a->verify("-----BEGIN CERTIFICATE-----\ngarbage\n", "a", text, "sig");
  BOOST_TEST_REQUIRE(err.has_value());
  BOOST_TEST(err->find("no PEM certificate") != std::string::npos, *err);
  BOOST_TEST(cyto::bus::spiffe_ids_of("nonsense").empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(peer_addresses_parse) {
  using cyto::bus::parse_host_port;
  using cyto::bus::parse_peer;
  auto p = parse_peer("b@10.0.0.2:7001");
  BOOST_TEST_REQUIRE(p.has_value());
  BOOST_TEST(p->name == "b");
  BOOST_TEST(p->host == "10.0.0.2");
  BOOST_TEST(p->port == 7001);
  auto v6 = parse_peer("c@[fd00::3]:7001");
  BOOST_TEST_REQUIRE(v6.has_value());
  BOOST_TEST(v6->host == "fd00::3");
  for (auto bad : {"10.0.0.2:7001", "@h:1", "b@h", "b@h:0", "b@h:65536", "b@:1", "a b@h:1",
                   "b@h:12x", "b@h:"})
    BOOST_TEST(!parse_peer(bad).has_value(), bad);
  BOOST_TEST(parse_host_port("0.0.0.0:7001").has_value());
  BOOST_TEST(!parse_host_port("7001").has_value());
}
