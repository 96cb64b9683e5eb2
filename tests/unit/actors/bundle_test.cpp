// The bundle a container gets from its image config and the user's spec (no root):
// the merge of entrypoint/cmd/env/user/workdir, capabilities, namespaces and the /etc
// files; every config.json made here is also accepted by the runtime's own parser.
#define BOOST_TEST_MODULE unit_actors_bundle
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/containers/bundle.hpp"
#include "actors/containers/oci_spec.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::containers;
using nlohmann::json;

namespace {

const char* busybox_config = R"({"architecture":"amd64","os":"linux","config":{
  "Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C"],
  "Cmd":["sh"],"WorkingDir":"/"}})";

/// A scratch rootfs with /etc/passwd and /etc/group.
struct rootfs_dir {
  rootfs_dir() {
    char tmpl[] = "/tmp/cyto-bundle-test-XXXXXX";
    path = ::mkdtemp(tmpl);
    std::filesystem::create_directories(path + "/rootfs/etc");
    std::ofstream{path + "/rootfs/etc/passwd"} << "root:x:0:0:root:/root:/bin/sh\n"
                                                  "app:x:1000:1001::/home/app:/bin/sh\n"
                                                  "nobody:x:65534:65534::/:/bin/false\n";
    std::ofstream{path + "/rootfs/etc/group"} << "root:x:0:\nstaff:x:50:\napp:x:1001:\n";
  }
  ~rootfs_dir() {
    std::filesystem::remove_all(path);
  }
  std::string path;
};

struct made {
  bundle_files files;
  json config;
};

made make(const container_spec& spec, const rootfs_dir& dir, const char* image = busybox_config,
          std::map<std::string, std::string> join = {}) {
  bundle_request req;
  req.spec = spec;
  auto img = parse_image_config(image);
  BOOST_REQUIRE(img);
  req.image = *img;
  req.rootfs = dir.path + "/rootfs";
  req.hostname = spec.hostname.empty() ? spec.name : spec.hostname;
  req.join = std::move(join);
  req.host_resolv_conf = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example\n";
  auto files = make_bundle(req, dir.path);
  BOOST_REQUIRE_MESSAGE(static_cast<bool>(files), (files ? std::string{} : render(files.error())));
  // The runtime accepts what we make.
  auto parsed = oci::parse_config(files->config_json, dir.path);
  BOOST_REQUIRE_MESSAGE(parsed.ok(), (parsed.ok() ? std::string{} : parsed.error().render()));
  return {*files, json::parse(files->config_json)};
}

caf::error refused(const container_spec& spec, const rootfs_dir& dir,
                   const char* image = busybox_config) {
  bundle_request req;
  req.spec = spec;
  req.image = *parse_image_config(image);
  req.rootfs = dir.path + "/rootfs";
  req.hostname = "x";
  auto files = make_bundle(req, dir.path);
  BOOST_REQUIRE(!files);
  BOOST_CHECK_EQUAL(to_string(code_of(files.error())), "invalid_argument");
  return files.error();
}

container_spec spec_named(const std::string& name) {
  container_spec s;
  s.name = name;
  s.image = "demo";
  return s;
}

std::vector<std::string> strings(const json& j) {
  return j.get<std::vector<std::string>>();
}

} // namespace

BOOST_AUTO_TEST_CASE(image_cmd_runs_when_no_args_are_given) {
  rootfs_dir d;
  auto m = make(spec_named("web"), d);
  BOOST_CHECK_EQUAL(m.config["process"]["args"], json::array({"sh"}));
  BOOST_CHECK_EQUAL(m.config["process"]["cwd"], "/");
  BOOST_CHECK_EQUAL(m.config["hostname"], "web");
  BOOST_CHECK_EQUAL(m.config["root"]["path"], "rootfs");
  BOOST_CHECK_EQUAL(m.config["root"]["readonly"], false);
}

BOOST_AUTO_TEST_CASE(args_replace_cmd_and_keep_the_entrypoint) {
  rootfs_dir d;
  const char* img = R"({"config":{"Entrypoint":["/bin/tini","--"],"Cmd":["serve"]}})";
  auto s = spec_named("a");
  s.args = {"echo", "hi"};
  BOOST_CHECK_EQUAL(make(s, d, img).config["process"]["args"],
                    json::array({"/bin/tini", "--", "echo", "hi"}));
  // A user entrypoint drops the image's cmd (docker's rule).
  auto e = spec_named("b");
  e.entrypoint = {"/bin/env"};
  BOOST_CHECK_EQUAL(make(e, d, img).config["process"]["args"], json::array({"/bin/env"}));
  BOOST_CHECK((make(e, d, img).files.command == std::vector<std::string>{"/bin/env"}));
}

BOOST_AUTO_TEST_CASE(no_command_anywhere_is_refused) {
  rootfs_dir d;
  auto err = refused(spec_named("a"), d, R"({"config":{}})");
  BOOST_CHECK(context_of(err).find("no command") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(env_overrides_by_key_and_keeps_image_order) {
  rootfs_dir d;
  auto s = spec_named("a");
  s.env = {"LANG=de_DE", "FOO=bar=baz"};
  auto env = strings(make(s, d).config["process"]["env"]);
  BOOST_CHECK_EQUAL(env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  BOOST_CHECK_EQUAL(env[1], "LANG=de_DE");
  BOOST_CHECK(std::find(env.begin(), env.end(), "FOO=bar=baz") != env.end());
  BOOST_CHECK(std::find(env.begin(), env.end(), "HOME=/root") != env.end());
  s.env = {"NOEQUALS"};
  refused(s, d);
  s.env = {"=x"};
  refused(s, d);
}

BOOST_AUTO_TEST_CASE(env_without_path_gets_the_default_path) {
  rootfs_dir d;
  auto env =
      strings(make(spec_named("a"), d, R"({"config":{"Cmd":["sh"]}})").config["process"]["env"]);
  BOOST_CHECK_EQUAL(env[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

BOOST_AUTO_TEST_CASE(user_names_resolve_in_the_image_and_numbers_pass) {
  rootfs_dir d;
  auto s = spec_named("a");
  s.user = "app";
  auto u = make(s, d).config["process"]["user"];
  BOOST_CHECK_EQUAL(u["uid"], 1000);
  BOOST_CHECK_EQUAL(u["gid"], 1001);
  s.user = "app:staff";
  BOOST_CHECK_EQUAL(make(s, d).config["process"]["user"]["gid"], 50);
  s.user = "4242:4343";
  u = make(s, d).config["process"]["user"];
  BOOST_CHECK_EQUAL(u["uid"], 4242);
  BOOST_CHECK_EQUAL(u["gid"], 4343);
  s.user = "nosuchuser";
  refused(s, d);
  s.user = "app:nosuchgroup";
  refused(s, d);
  // The image's User applies when the spec has none.
  auto img = make(spec_named("b"), d, R"({"config":{"Cmd":["sh"],"User":"nobody"}})");
  BOOST_CHECK_EQUAL(img.config["process"]["user"]["uid"], 65534);
}

BOOST_AUTO_TEST_CASE(passwd_through_a_symlink_is_not_read) {
  rootfs_dir d;
  std::filesystem::remove(d.path + "/rootfs/etc/passwd");
  std::ofstream{d.path + "/host-passwd"} << "secret:x:7:7::/:/bin/sh\n";
  std::filesystem::create_symlink(d.path + "/host-passwd", d.path + "/rootfs/etc/passwd");
  auto s = spec_named("a");
  s.user = "secret";
  refused(s, d);
}

BOOST_AUTO_TEST_CASE(workdir_override_and_relative_workdir) {
  rootfs_dir d;
  auto s = spec_named("a");
  s.workdir = "/tmp";
  BOOST_CHECK_EQUAL(make(s, d).config["process"]["cwd"], "/tmp");
  s.workdir = "tmp";
  refused(s, d);
}

BOOST_AUTO_TEST_CASE(default_caps_are_podmans_and_cap_add_extends_them) {
  rootfs_dir d;
  auto m = make(spec_named("a"), d);
  auto eff = strings(m.config["process"]["capabilities"]["effective"]);
  BOOST_CHECK_EQUAL(eff.size(), default_capabilities().size());
  BOOST_CHECK(std::find(eff.begin(), eff.end(), "CAP_NET_BIND_SERVICE") != eff.end());
  BOOST_CHECK(std::find(eff.begin(), eff.end(), "CAP_SYS_ADMIN") == eff.end());
  BOOST_CHECK(m.config["process"]["capabilities"]["ambient"].empty());
  auto s = spec_named("b");
  s.cap_add = {"net_admin", "CAP_SYS_PTRACE"};
  auto bnd = strings(make(s, d).config["process"]["capabilities"]["bounding"]);
  BOOST_CHECK(std::find(bnd.begin(), bnd.end(), "CAP_NET_ADMIN") != bnd.end());
  BOOST_CHECK(std::find(bnd.begin(), bnd.end(), "CAP_SYS_PTRACE") != bnd.end());
  s.cap_add = {"CAP_WIZARDRY"};
  refused(s, d);
  // A non-root user keeps the bounding set but has no effective capabilities.
  auto u = spec_named("c");
  u.user = "1000";
  auto nr = make(u, d).config["process"]["capabilities"];
  BOOST_CHECK(nr["effective"].empty());
  BOOST_CHECK(!nr["bounding"].empty());
}

BOOST_AUTO_TEST_CASE(namespaces_are_new_unless_joined) {
  rootfs_dir d;
  auto ns = make(spec_named("a"), d).config["linux"]["namespaces"];
  std::set<std::string> types;
  for (auto& n : ns) {
    types.insert(n["type"]);
    BOOST_CHECK(!n.contains("path"));
  }
  BOOST_CHECK((types == std::set<std::string>{"pid", "mount", "ipc", "uts", "network"}));
  // In a pod: net, ipc and uts are the pause process's.
  auto self_ns = "/proc/" + std::to_string(::getpid()) + "/ns/";
  auto m = make(spec_named("b"), d, busybox_config,
                {{"network", self_ns + "net"}, {"ipc", self_ns + "ipc"}, {"uts", self_ns + "uts"}});
  for (auto& n : m.config["linux"]["namespaces"]) {
    if (n["type"] == "pid" || n["type"] == "mount")
      BOOST_CHECK(!n.contains("path"));
    else
      BOOST_CHECK_EQUAL(n["path"],
                        self_ns + (n["type"] == "network" ? "net" : std::string{n["type"]}));
  }
  // The pod's uts namespace has its hostname already; /etc/hostname still names it.
  BOOST_CHECK(!m.config.contains("hostname"));
  int hostname_binds = 0;
  for (auto& mt : m.config["mounts"])
    hostname_binds += mt["destination"] == "/etc/hostname";
  BOOST_CHECK_EQUAL(hostname_binds, 1);
}

BOOST_AUTO_TEST_CASE(etc_files_are_bound_from_the_bundle) {
  rootfs_dir d;
  auto m = make(spec_named("web"), d);
  std::map<std::string, std::string> binds;
  for (auto& mt : m.config["mounts"])
    if (mt["type"] == "bind")
      binds[mt["destination"]] = mt["source"];
  BOOST_CHECK_EQUAL(binds["/etc/hosts"], d.path + "/hosts");
  BOOST_CHECK_EQUAL(binds["/etc/resolv.conf"], d.path + "/resolv.conf");
  BOOST_CHECK_EQUAL(binds["/etc/hostname"], d.path + "/hostname");
  BOOST_CHECK_EQUAL(m.files.hostname, "web\n");
  BOOST_CHECK(m.files.hosts.find("127.0.1.1\tweb") != std::string::npos);
  // Loopback resolvers of the host are unreachable from the container: dropped.
  BOOST_CHECK(m.files.resolv_conf.find("127.0.0.53") == std::string::npos);
  BOOST_CHECK(m.files.resolv_conf.find("nameserver 10.0.0.2") != std::string::npos);
  BOOST_CHECK(!write_bundle(m.files, d.path));
  std::ifstream in{d.path + "/config.json"};
  BOOST_CHECK_EQUAL(json::parse(in), m.config);
}

BOOST_AUTO_TEST_CASE(network_attachment_fills_hosts_and_resolv_conf) {
  rootfs_dir d;
  bundle_request req;
  req.spec = spec_named("db");
  req.image = *parse_image_config(busybox_config);
  req.rootfs = d.path + "/rootfs";
  req.hostname = "db";
  req.netns_path = "/proc/self/ns/net";
  req.ips = {"10.88.0.5/16"};
  req.dns_servers = {"10.88.0.1"};
  req.dns_search = {"cyto.internal"};
  auto f = make_bundle(req, d.path);
  BOOST_REQUIRE(f);
  BOOST_CHECK(f->hosts.find("10.88.0.5\tdb\n") != std::string::npos);
  BOOST_CHECK_EQUAL(f->resolv_conf, "search cyto.internal\nnameserver 10.88.0.1\n");
  auto config = json::parse(f->config_json);
  int network_ns = 0;
  for (auto& n : config["linux"]["namespaces"])
    if (n["type"] == "network") {
      ++network_ns;
      BOOST_CHECK_EQUAL(n["path"], "/proc/self/ns/net");
    }
  BOOST_CHECK_EQUAL(network_ns, 1);
}

BOOST_AUTO_TEST_CASE(read_only_rootfs_keeps_a_writable_tmp) {
  rootfs_dir d;
  auto s = spec_named("a");
  s.read_only = true;
  auto m = make(s, d);
  BOOST_CHECK_EQUAL(m.config["root"]["readonly"], true);
  bool tmp = false;
  for (auto& mt : m.config["mounts"])
    tmp = tmp || (mt["destination"] == "/tmp" && mt["type"] == "tmpfs");
  BOOST_CHECK(tmp);
  auto writable = make(spec_named("b"), d);
  for (auto& mt : writable.config["mounts"])
    BOOST_CHECK(mt["destination"] != "/tmp");
}

BOOST_AUTO_TEST_CASE(masked_and_readonly_paths_like_podman) {
  rootfs_dir d;
  auto l = make(spec_named("a"), d).config["linux"];
  auto masked = strings(l["maskedPaths"]);
  auto ro = strings(l["readonlyPaths"]);
  BOOST_CHECK(std::find(masked.begin(), masked.end(), "/proc/kcore") != masked.end());
  BOOST_CHECK(std::find(ro.begin(), ro.end(), "/proc/sys") != ro.end());
  // The cell holds the limits: no cgroupsPath, no resources in the bundle.
  BOOST_CHECK(!l.contains("cgroupsPath"));
  BOOST_CHECK(!l.contains("resources"));
}

BOOST_AUTO_TEST_CASE(malformed_image_config_is_refused) {
  BOOST_CHECK(!parse_image_config("{nope"));
  BOOST_CHECK(!parse_image_config("[1]"));
  BOOST_CHECK(parse_image_config("{}"));
}

BOOST_AUTO_TEST_CASE(user_mounts_land_in_config_json_after_cyto_s_own) {
  rootfs_dir d;
  auto s = spec_named("m");
  s.read_only = true; // cyto's /tmp tmpfs, which a --tmpfs /tmp replaces
  s.mounts = {{"volume", "data", "/srv/data/", false, 0},
              {"bind", d.path, "/srv", true, 0},
              {"tmpfs", "", "/tmp", false, 8 << 20},
              {"tmpfs", "0700", "/private", true, 0}};
  bundle_request req;
  req.spec = s;
  req.image = *parse_image_config(busybox_config);
  req.rootfs = d.path + "/rootfs";
  req.hostname = "m";
  req.volume_paths = {{"data", "/var/lib/cyto/volumes/data/_data"}};
  auto files = make_bundle(req, d.path);
  BOOST_REQUIRE_MESSAGE(static_cast<bool>(files), (files ? std::string{} : render(files.error())));
  BOOST_REQUIRE(oci::parse_config(files->config_json, d.path).ok());
  auto mounts = json::parse(files->config_json)["mounts"];
  std::vector<json> user;
  size_t tmps = 0;
  for (auto& m : mounts) {
    tmps += m["destination"] == "/tmp" ? 1 : 0;
    auto dest = m["destination"].get<std::string>();
    if (dest.rfind("/srv", 0) == 0 || dest == "/private" || dest == "/tmp")
      user.push_back(m);
  }
  BOOST_CHECK_EQUAL(tmps, 1u); // the user's, not cyto's as well
  BOOST_REQUIRE_EQUAL(user.size(), 4u);
  // Parents first (/srv before /srv/data), each target canonical.
  BOOST_CHECK_EQUAL(user[0]["destination"], "/srv");
  BOOST_CHECK_EQUAL(user[0]["source"], d.path);
  BOOST_CHECK(strings(user[0]["options"]) == (std::vector<std::string>{"rbind", "rprivate", "ro"}));
  BOOST_CHECK_EQUAL(user[1]["destination"], "/tmp");
  BOOST_CHECK(strings(user[1]["options"])
              == (std::vector<std::string>{"nosuid", "nodev", "mode=1777", "size=8388608"}));
  BOOST_CHECK_EQUAL(user[2]["destination"], "/private");
  BOOST_CHECK(strings(user[2]["options"])
              == (std::vector<std::string>{"nosuid", "nodev", "mode=0700", "ro"}));
  BOOST_CHECK_EQUAL(user[3]["destination"], "/srv/data");
  BOOST_CHECK_EQUAL(user[3]["source"], "/var/lib/cyto/volumes/data/_data");
  BOOST_CHECK(strings(user[3]["options"]) == (std::vector<std::string>{"rbind", "rprivate", "rw"}));
  // An unclaimed volume is a bug of the caller, not the user's.
  req.volume_paths.clear();
  auto unclaimed = make_bundle(req, d.path);
  BOOST_REQUIRE(!unclaimed);
  BOOST_CHECK_EQUAL(to_string(code_of(unclaimed.error())), "internal");
}

BOOST_AUTO_TEST_CASE(bad_mounts_are_refused_with_the_reason) {
  rootfs_dir d;
  auto refuse = [&](container_mount m, const std::string& code, const std::string& says) {
    auto err = check_mounts({m});
    BOOST_REQUIRE_MESSAGE(err, m.kind << " " << m.source << ":" << m.target << " was accepted");
    BOOST_CHECK_EQUAL(to_string(code_of(err)), code);
    BOOST_CHECK_MESSAGE(context_of(err).find(says) != std::string::npos, render(err));
  };
  refuse({"bind", d.path, "rel", false, 0}, "invalid_argument", "absolute path");
  refuse({"bind", d.path, "/a/../b", false, 0}, "invalid_argument", "'..'");
  refuse({"bind", d.path, "//./", false, 0}, "invalid_argument", "not a mount");
  refuse({"bind", d.path, "/sys/kernel", false, 0}, "invalid_argument", "/sys");
  refuse({"bind", d.path, "/dev", false, 0}, "invalid_argument", "/dev");
  refuse({"bind", "relative/src", "/x", false, 0}, "invalid_argument", "absolute host path");
  refuse({"bind", d.path + "/nowhere", "/x", false, 0}, "not_found", "No such file");
  refuse({"bind", d.path, "/x", false, 4096}, "invalid_argument", "tmpfs mounts only");
  refuse({"volume", "", "/x", false, 0}, "invalid_argument", "names no volume");
  refuse({"tmpfs", "999", "/x", false, 0}, "invalid_argument", "mode '999'");
  refuse({"tmpfs", "17777", "/x", false, 0}, "invalid_argument", "octal");
  refuse({"nfs", "", "/x", false, 0}, "invalid_argument", "kind 'nfs'");
  auto dup = check_mounts({{"tmpfs", "", "/x", false, 0}, {"bind", d.path, "/x/", false, 0}});
  BOOST_REQUIRE(dup);
  BOOST_CHECK(context_of(dup).find("two mounts on /x") != std::string::npos);
  BOOST_CHECK(!check_mounts({{"bind", d.path, "/dev/shm/x", false, 0},
                             {"tmpfs", "1777", "/run", false, 0},
                             {"volume", "v", "/v", true, 0}}));
}
