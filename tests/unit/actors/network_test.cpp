#define BOOST_TEST_MODULE unit_actors_network
#include <boost/test/unit_test.hpp>

#include "actors/network/cni.hpp"
#include "actors/network/subnet.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::network;

namespace {

/// The snake_case code of an error, printable in test messages.
std::string code(const caf::error& e) {
  return std::string{to_string(code_of(e))};
}

} // namespace

BOOST_AUTO_TEST_CASE(subnets_parse_in_cidr_form_only) {
  auto s = parse_subnet("10.88.0.0/16");
  BOOST_REQUIRE(s);
  BOOST_TEST(s->str() == "10.88.0.0/16");
  BOOST_TEST(ipv4_text(s->last()) == "10.88.255.255");
  for (auto* bad : {"10.88.0.0", "10.88.0.0/", "10.88.0.0/33", "10.88.0.0/7", "10.88.0.0/31",
                    "10.88.0.1/16", "10.88/16", "010.88.0.0/16", "x/16", "10.88.0.0/1a"})
    BOOST_TEST(code(parse_subnet(bad).error()) == "invalid_argument", bad);
}

BOOST_AUTO_TEST_CASE(overlap_is_symmetric_and_exact) {
  auto a = *parse_subnet("10.1.0.0/16"), b = *parse_subnet("10.1.200.0/24"),
       c = *parse_subnet("10.2.0.0/24");
  BOOST_TEST(a.overlaps(b));
  BOOST_TEST(b.overlaps(a));
  BOOST_TEST(!a.overlaps(c));
  BOOST_TEST(!c.overlaps(a));
}

BOOST_AUTO_TEST_CASE(pool_hands_out_the_first_free_subnet) {
  auto pool = *parse_subnet("10.89.0.0/22");
  std::vector<ipv4_net> used{*parse_subnet("10.89.0.0/24"), *parse_subnet("10.89.1.128/25")};
  auto p = pick_subnet(pool, 24, used);
  BOOST_REQUIRE(p);
  BOOST_TEST(p->str() == "10.89.2.0/24");
  used.push_back(*p);
  used.push_back(*parse_subnet("10.89.3.0/24"));
  BOOST_TEST(code(pick_subnet(pool, 24, used).error()) == "resource_exhausted");
}

BOOST_AUTO_TEST_CASE(a_missing_plugin_names_the_package) {
  auto r = find_plugin("bridge", {"/nonexistent-cni-dir"});
  BOOST_REQUIRE(!r);
  BOOST_TEST(code(r.error()) == "unavailable");
  BOOST_TEST(context_of(r.error()).find(plugins_package) != std::string::npos);
  BOOST_TEST(code(find_plugin("../bin/sh", {"/usr/lib/cni"}).error()) == "invalid_argument");
}

BOOST_AUTO_TEST_CASE(results_give_addresses_mac_and_dns) {
  auto result = nlohmann::json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cyto-x", "mac": "aa:aa:aa:aa:aa:aa"},
                   {"name": "veth1", "mac": "bb:bb:bb:bb:bb:bb"},
                   {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/run/netns/x"}],
    "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2}],
    "dns": {"nameservers": ["10.88.0.1"], "search": ["cyto.local"]}})");
  net_attachment a;
  a.ifname = "eth0";
  BOOST_TEST(!read_result(result, a));
  BOOST_TEST(a.ips == std::vector<std::string>{"10.88.0.5/16"});
  BOOST_TEST(a.gateway == "10.88.0.1");
  BOOST_TEST(a.mac == "cc:cc:cc:cc:cc:cc");
  BOOST_TEST(a.dns_servers == std::vector<std::string>{"10.88.0.1"});
  BOOST_TEST(a.dns_search == std::vector<std::string>{"cyto.local"});
}

// Seen writing tests/fuzz/cni_result_fuzz.cpp: a plugin's result of another shape
// threw nlohmann type errors out of the network actor's handler, killing the actor.
BOOST_AUTO_TEST_CASE(results_of_another_shape_are_errors_not_exceptions) {
  for (auto* text : {R"([1, 2])", R"({"ips": 5})", R"({"ips": [{"address": 5}]})",
                     R"({"ips": [{"address": "10.0.0.2/24", "interface": -1}]})",
                     R"({"ips": [{"interface": 0}], "interfaces": [{"mac": 7}]})",
                     R"({"interfaces": [3]})", R"({"dns": {"nameservers": [1]}})",
                     R"({"dns": {"search": "x"}})"}) {
    net_attachment a;
    caf::error err;
    BOOST_CHECK_NO_THROW(err = read_result(nlohmann::json::parse(text), a));
    BOOST_TEST(code(err) == "internal", text);
  }
}
