// The TCP gateway's access policy: SPIFFE ID matching (exact, "/*" prefix), verb
// patterns ("*", "service.*", "service.verb"), the policy file's bad inputs, and the
// schema-derived verb names the gateway checks calls against.
#define BOOST_TEST_MODULE unit_services_access_policy
#include <boost/test/unit_test.hpp>

#include "schema/cells.capnp.h"
#include "schema/containers.capnp.h"
#include "schema/node.capnp.h"
#include "services/access_policy.hpp"
#include "services/authorizer.hpp"
#include "services/config.hpp"

using namespace cyto::services;

namespace {

constexpr const char* ci = "spiffe://cyto.local/user/ci";
constexpr const char* admin = "spiffe://cyto.local/user/admin";

access_policy parsed(const std::string& text) {
  access_policy p;
  auto err = access_policy::parse(text, p, known_verb);
  if (err)
    throw std::runtime_error("policy did not parse: " + *err);
  return p;
}

bool mentions(const std::optional<std::string>& err, const std::string& what) {
  return err && err->find(what) != std::string::npos;
}

std::optional<std::string> parse_error(const std::string& text) {
  access_policy p;
  return access_policy::parse(text, p, known_verb);
}

} // namespace

BOOST_AUTO_TEST_CASE(verb_patterns_match_exactly_by_service_or_everything) {
  BOOST_TEST(verb_matches("*", "cells.free"));
  BOOST_TEST(verb_matches("containers.*", "containers.run"));
  BOOST_TEST(!verb_matches("containers.*", "cells.free"));
  BOOST_TEST(!verb_matches("containers.*", "containersx.run"));
  BOOST_TEST(verb_matches("containers.run", "containers.run"));
  BOOST_TEST(!verb_matches("containers.run", "containers.runx"));
  BOOST_TEST(!verb_matches("containers.ru", "containers.run"));
}

BOOST_AUTO_TEST_CASE(exact_ids_get_only_their_verbs) {
  auto p = parsed(R"(
[allow]
"spiffe://cyto.local/user/ci" = ["containers.run", "containers.list", "discovery.*"]
"spiffe://cyto.local/user/admin" = ["*"]
)");
  BOOST_TEST(p.allows(ci, "containers.run"));
  BOOST_TEST(p.allows(ci, "containers.list"));
  BOOST_TEST(p.allows(ci, "discovery.discover"));
  BOOST_TEST(p.allows(ci, "discovery.health"));
  BOOST_TEST(!p.allows(ci, "cells.free"));
  BOOST_TEST(!p.allows(ci, "containers.remove"));
  BOOST_TEST(p.allows(admin, "cells.free"));
  // Exact means exact: no prefix, no other trust domain, no longer path.
  BOOST_TEST(!p.allows("spiffe://cyto.local/user/c", "containers.run"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/user/ci2", "containers.run"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/user/ci/x", "containers.run"));
  BOOST_TEST(!p.allows("spiffe://other/user/ci", "containers.run"));
  BOOST_TEST(!p.allows("", "containers.run"));
}

BOOST_AUTO_TEST_CASE(prefix_ids_cover_everything_under_them_and_entries_add_up) {
  auto p = parsed(R"(
[allow]
"spiffe://cyto.local/user/*" = ["discovery.discover"]
"spiffe://cyto.local/user/ci" = ["containers.*"]
)");
  BOOST_TEST(p.allows("spiffe://cyto.local/user/anyone", "discovery.discover"));
  BOOST_TEST(p.allows(ci, "discovery.discover"));
  BOOST_TEST(p.allows(ci, "containers.run"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/user/anyone", "containers.run"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/user/", "discovery.discover"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/node/a", "discovery.discover"));
  BOOST_TEST(!p.allows("spiffe://cyto.local/userx", "discovery.discover"));
}

BOOST_AUTO_TEST_CASE(an_empty_policy_allows_nothing) {
  auto p = parsed("");
  BOOST_TEST(p.entries().empty());
  BOOST_TEST(!p.allows(admin, "discovery.discover"));
}

BOOST_AUTO_TEST_CASE(bad_policies_are_refused_with_the_place_and_reason) {
  BOOST_TEST(mentions(parse_error("[allow\n"), "line 1"));
  BOOST_TEST(mentions(parse_error("[deny]\n"), "deny: unknown key"));
  BOOST_TEST(mentions(parse_error("allow = 3\n"), "allow: expected a table"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"user/ci\" = [\"*\"]\n"), "must start with spiffe://"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://\" = [\"*\"]\n"), "trust domain"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/us*er\" = [\"*\"]\n"), "'*' may only end"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/user*\" = [\"*\"]\n"), "'*' may only end"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = \"*\"\n"), "expected an array"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = [1]\n"), "array of strings"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = [\"cells\"]\n"),
                      "'cells' is not"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = [\"cells.fre\"]\n"),
                      "'cells.fre' names no service or verb"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = [\"cels.*\"]\n"),
                      "'cels.*' names no service"));
  BOOST_TEST(mentions(parse_error("[allow]\n\"spiffe://td/u\" = [\"*.run\"]\n"), "is not"));
  // A bad policy leaves the old one alone.
  auto p = parsed("[allow]\n\"spiffe://td/u\" = [\"*\"]\n");
  BOOST_TEST(access_policy::parse("[deny]\n", p, known_verb).has_value());
  BOOST_TEST(p.allows("spiffe://td/u", "cells.free"));
  BOOST_TEST(mentions(access_policy::load("/nonexistent/policy.toml", p), "cannot read"));
}

BOOST_AUTO_TEST_CASE(verbs_come_from_the_schema_and_node_methods_are_open) {
  namespace schema = cyto::schema;
  auto cells = capnp::typeId<schema::Cells>();
  auto containers = capnp::typeId<schema::Containers>();
  BOOST_TEST(verb_of(cells, 1).value_or("") == "cells.free");
  BOOST_TEST(verb_of(containers, 2).value_or("") == "containers.run");
  BOOST_TEST(!verb_of(capnp::typeId<schema::Node>(), 3).has_value());
  BOOST_TEST(known_verb("network", "create"));
  BOOST_TEST(known_verb("pods", "*"));
  BOOST_TEST(!known_verb("node", "cells"));
}

BOOST_AUTO_TEST_CASE(gateway_config_needs_the_tls_files_and_policy_with_tcp) {
  daemon_config cfg;
  BOOST_TEST(!apply_toml(R"(
[gateway]
tcp = "127.0.0.1:7443"
tls_cert = "/p/n.crt"
tls_key = "/p/n.key"
tls_ca = "/p/ca.crt"
policy = "/p/policy.toml"
)",
                         cfg)
                .has_value());
  BOOST_TEST(cfg.gateway_tcp == "127.0.0.1:7443");
  BOOST_TEST(cfg.gateway_policy == "/p/policy.toml");
  daemon_config c2;
  BOOST_TEST(mentions(apply_toml("[gateway]\ntcp = \"127.0.0.1:7443\"\n", c2),
                      "gateway.tls_cert: needed with gateway.tcp"));
  BOOST_TEST(mentions(apply_toml("[gateway]\ntcp = \"127.0.0.1\"\n", c2), "gateway.tcp: must be"));
  BOOST_TEST(mentions(apply_toml("[gateway]\ntcp = \"h:70000\"\n", c2), "gateway.tcp: must be"));
  BOOST_TEST(mentions(apply_toml("[gateway]\ntcp = \":7443\"\n", c2), "gateway.tcp: must be"));
  BOOST_TEST(mentions(apply_toml("[gateway]\nport = 1\n", c2), "gateway.port: unknown key"));
  BOOST_TEST(c2.gateway_tcp.empty());
}
