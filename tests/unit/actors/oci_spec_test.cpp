// config.json checks of the OCI runtime (no root, nothing touches the kernel): each
// runtime-spec MUST about a field the runtime accepts, and errors that name the field.
#define BOOST_TEST_MODULE unit_actors_oci_spec
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include "actors/containers/oci_seccomp.hpp"
#include "actors/containers/oci_spec.hpp"

using namespace cyto::containers;
using nlohmann::json;

namespace {

json minimal() {
  return {{"ociVersion", "1.0.2"},
          {"root", {{"path", "rootfs"}}},
          {"process", {{"user", {{"uid", 0}, {"gid", 0}}}, {"args", {"sh"}}, {"cwd", "/"}}},
          {"linux", {{"namespaces", {{{"type", "mount"}}, {{"type", "uts"}}}}}}};
}

result<oci::config> parse(const json& j) {
  return oci::parse_config(j.dump(), "/bundle");
}

/// The config is refused with an invalid_argument error holding `what`.
void refused(const json& j, const std::string& what) {
  auto c = parse(j);
  BOOST_REQUIRE_MESSAGE(!c.ok(), "accepted: " << j.dump());
  BOOST_CHECK_EQUAL(c.error().code(), "invalid_argument");
  BOOST_CHECK_MESSAGE(c.error().text().find(what) != std::string::npos,
                      "'" << c.error().text() << "' should hold '" << what << "'");
}

} // namespace

BOOST_AUTO_TEST_CASE(minimal_config_parses_and_root_is_relative_to_the_bundle) {
  auto c = parse(minimal());
  BOOST_REQUIRE_MESSAGE(c.ok(), c.error().render());
  BOOST_CHECK_EQUAL(c->root_path, "/bundle/rootfs");
  BOOST_CHECK_EQUAL(c->process->args.at(0), "sh");
  auto j = minimal();
  j["root"]["path"] = "/abs/rootfs";
  BOOST_CHECK_EQUAL(parse(j)->root_path, "/abs/rootfs");
}

BOOST_AUTO_TEST_CASE(unknown_properties_are_ignored) {
  auto j = minimal();
  j["somethingNew"] = {{"x", 1}};
  j["process"]["futureField"] = true;
  BOOST_CHECK(parse(j).ok());
}

BOOST_AUTO_TEST_CASE(malformed_json_and_wrong_types) {
  BOOST_CHECK(!oci::parse_config("{\"ociVersion\": ", "/b").ok());
  BOOST_CHECK(oci::parse_config("{", "/b").error().text().find("malformed JSON")
              != std::string::npos);
  refused(json::array(), "must be an object");
  auto j = minimal();
  j["process"]["args"] = "sh";
  refused(j, "process.args: must be an array");
  j = minimal();
  j["process"]["user"]["uid"] = -1;
  refused(j, "process.user.uid");
}

BOOST_AUTO_TEST_CASE(oci_version_is_required_and_checked) {
  for (auto* ok : {"1.0.0", "1.0.2", "1.0.2-dev", "1.1.0", "1.1.0-rc.1", "1.2.0", "1.2.1", "1.3.0"}) {
    auto j = minimal();
    j["ociVersion"] = ok;
    BOOST_CHECK_MESSAGE(parse(j).ok(), ok);
  }
  for (auto* bad : {"2.0.0", "0.9.0", "1.4.0", "1.0", "1.3", "x"}) {
    auto j = minimal();
    j["ociVersion"] = bad;
    refused(j, "unsupported version");
  }
  auto j = minimal();
  j.erase("ociVersion");
  refused(j, "ociVersion: is required");
}

BOOST_AUTO_TEST_CASE(process_fields) {
  auto j = minimal();
  j["process"]["cwd"] = "tmp";
  refused(j, "process.cwd: must be an absolute path");
  j = minimal();
  j["process"]["args"] = json::array();
  refused(j, "process.args: needs at least one entry");
  j = minimal();
  j["process"]["env"] = {"NOEQUALS"};
  refused(j, "process.env[0]");
  j = minimal();
  j["process"]["oomScoreAdj"] = 1001;
  refused(j, "process.oomScoreAdj");
  j = minimal();
  j["process"]["apparmorProfile"] = "x";
  refused(j, "process.apparmorProfile");
}

BOOST_AUTO_TEST_CASE(rlimits_must_map_and_not_repeat) {
  auto j = minimal();
  j["process"]["rlimits"] = {{{"type", "RLIMIT_BOGUS"}, {"soft", 1}, {"hard", 1}}};
  refused(j, "unknown rlimit");
  j["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 1}, {"hard", 1}},
                             {{"type", "RLIMIT_NOFILE"}, {"soft", 1}, {"hard", 1}}};
  refused(j, "process.rlimits[1].type: duplicate rlimit");
  j["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 5}, {"hard", 1}}};
  refused(j, "soft limit above hard limit");
  j["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 5}}};
  refused(j, "process.rlimits[0].hard: is required");
}

BOOST_AUTO_TEST_CASE(capabilities_are_known_names) {
  auto j = minimal();
  j["process"]["capabilities"] = {{"bounding", {"CAP_SYS_ADMIN", "cap_chown"}}};
  auto c = parse(j);
  BOOST_REQUIRE(c.ok());
  BOOST_CHECK_EQUAL(c->process->caps->bounding.size(), 2u);
  j["process"]["capabilities"]["effective"] = {"CAP_CHOWN", "CAP_WHATEVER"};
  refused(j, "process.capabilities.effective[1]: unknown capability \"CAP_WHATEVER\"");
  j["process"]["capabilities"]["effective"] = {"12"};
  refused(j, "unknown capability");
  BOOST_CHECK_EQUAL(oci::capability_name(*oci::capability_from_name("CAP_NET_ADMIN")),
                    "CAP_NET_ADMIN");
}

BOOST_AUTO_TEST_CASE(namespaces_hostname_and_mappings) {
  auto j = minimal();
  j["linux"]["namespaces"].push_back({{"type", "mount"}});
  refused(j, "duplicate namespace");
  j = minimal();
  j["linux"]["namespaces"].push_back({{"type", "bogus"}});
  refused(j, "unknown namespace type");
  j = minimal();
  j["linux"]["namespaces"] = {{{"type", "mount"}}};
  j["hostname"] = "x";
  refused(j, "hostname: needs a uts namespace");
  j = minimal();
  j["linux"]["namespaces"] = {{{"type", "uts"}}};
  refused(j, "needs a mount namespace");
  j = minimal();
  j["linux"]["namespaces"].push_back({{"type", "net"}, {"path", "relative"}});
  refused(j, "unknown namespace type \"net\"");
  j = minimal();
  j["linux"]["namespaces"].push_back({{"type", "network"}, {"path", "relative"}});
  refused(j, "linux.namespaces[2].path: must be an absolute path");
  j = minimal();
  j["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}};
  refused(j, "mappings need a new user namespace");
  j["linux"]["namespaces"].push_back({{"type", "user"}});
  refused(j, "needs uidMappings and gidMappings");
  j["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 1000}, {"size", 0}}};
  refused(j, "linux.gidMappings[0].size: must be at least 1");
}

BOOST_AUTO_TEST_CASE(mounts_hooks_devices_annotations_sysctl) {
  auto j = minimal();
  j["mounts"] = {{{"destination", "proc"}, {"type", "proc"}}};
  refused(j, "mounts[0].destination: must be an absolute path");
  j = minimal();
  j["mounts"] = {{{"destination", "/data"}, {"type", "bind"}, {"source", "data"}}};
  BOOST_CHECK_EQUAL(parse(j)->mounts.at(0).source, "/bundle/data");
  j = minimal();
  j["hooks"] = {{"prestart", {{{"path", "hook"}}}}};
  refused(j, "hooks.prestart[0].path: must be an absolute path");
  j["hooks"] = {{"poststop", {{{"path", "/hook"}, {"timeout", 0}}}}};
  refused(j, "hooks.poststop[0].timeout");
  j = minimal();
  j["linux"]["devices"] = {{{"type", "x"}, {"path", "/dev/x"}}};
  refused(j, "linux.devices[0].type");
  j["linux"]["devices"] = {{{"type", "c"}, {"path", "/dev/x"}}};
  refused(j, "linux.devices[0].major: is required");
  j = minimal();
  j["annotations"] = {{"", "x"}};
  refused(j, "annotations");
  j = minimal();
  j["linux"]["sysctl"] = {{"vm.swappiness", "1"}};
  refused(j, "is not namespaced");
  j["linux"]["sysctl"] = {{"net.ipv4.ip_forward", "1"}};
  refused(j, "needs a network namespace");
  j["linux"]["namespaces"].push_back({{"type", "network"}});
  BOOST_CHECK(parse(j).ok());
}

BOOST_AUTO_TEST_CASE(seccomp_profiles_compile_or_name_the_bad_field) {
  auto j = minimal();
  j["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_ALLOW"},
                           {"architectures", {"SCMP_ARCH_X86_64"}},
                           {"syscalls",
                            {{{"names", {"mkdir"}},
                              {"action", "SCMP_ACT_ERRNO"},
                              {"args", {{{"index", 1}, {"value", 0}, {"op", "SCMP_CMP_EQ"}}}}}}}};
  auto c = parse(j);
  BOOST_REQUIRE(c.ok());
  BOOST_CHECK(compile_seccomp(*c->linux.seccomp).ok());
  auto bad = [&](const char* key, json value, const std::string& what) {
    auto p = *c->linux.seccomp;
    if (std::string{key} == "action")
      p.syscalls[0].action = value;
    else if (std::string{key} == "name")
      p.syscalls[0].names[0] = value;
    else if (std::string{key} == "arch")
      p.architectures[0] = value;
    else
      p.syscalls[0].args[0].op = value;
    auto r = compile_seccomp(p);
    BOOST_REQUIRE(!r.ok());
    BOOST_CHECK_MESSAGE(r.error().text().find(what) != std::string::npos, r.error().text());
  };
  bad("action", "SCMP_ACT_NOPE", "linux.seccomp.syscalls[0].action: unknown seccomp action");
  bad("name", "no_such_call", "linux.seccomp.syscalls[0].names[0]: unknown syscall");
  bad("arch", "SCMP_ARCH_VAX", "unknown architecture");
  bad("op", "SCMP_CMP_ALMOST", "unknown seccomp operator");
  BOOST_CHECK(compile_seccomp(default_seccomp_profile()).ok());
  j["linux"]["seccomp"].erase("defaultAction");
  refused(j, "linux.seccomp.defaultAction: is required");
}

// Found by fuzzing (tests/fuzz/oci_config_fuzz.cpp): a number beyond a double's range is
// nlohmann's out_of_range, which escaped parse_config and terminated the runtime.
BOOST_AUTO_TEST_CASE(numbers_beyond_a_double_are_malformed_json_not_a_crash) {
  auto r = oci::parse_config("{\"ociVersion\":3442593710371E555555}", "/b");
  BOOST_CHECK(!r.ok());
  BOOST_CHECK(r.error().text().find("malformed JSON") != std::string::npos);
}
