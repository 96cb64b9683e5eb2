// Integration tests of images: a real cytod pulls from a real docker-registry on
// loopback (images built here with umoci from busybox-static, pushed with skopeo),
// through Cap'n Proto and the cyto CLI; what it claims is checked on disk, in the
// registry's access log and in a mounted overlay. Needs root (exits 77 otherwise).
#define BOOST_TEST_MODULE integration_images
#include <boost/test/unit_test.hpp>

#include <set>

#include <nlohmann/json.hpp>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "schema/images.capnp.h"
#include "schema/node.capnp.h"
#include "tests/integration/registry_fixture.hpp"
#include "tests/tar_writer.hpp"

using namespace cyto::test;
using nlohmann::json;
namespace schema = cyto::schema;
namespace fs = std::filesystem;

namespace {

std::string sha256_of_file(const std::string& path) {
  auto out = sh("sha256sum '" + path + "'");
  return "sha256:" + out.substr(0, 64);
}

std::string sha256_of(const std::string& data, const temp_dir& tmp) {
  static int n = 0;
  auto p = tmp / ("hash-" + std::to_string(++n));
  write_text(p, data);
  return sha256_of_file(p);
}

/// Adds a blob to an OCI layout; returns its digest.
std::string add_blob(const std::string& layout, const std::string& data, const temp_dir& tmp) {
  auto d = sha256_of(data, tmp);
  write_text(layout + "/blobs/sha256/" + d.substr(7), data);
  return d;
}

/// An OCI layout holding one image of one layer (`layer_type` is its media type;
/// `compressed` the blob if it is compressed). Returns the layout's path.
std::string make_layout(const temp_dir& tmp, const std::string& name, const std::string& layer,
                        const std::string& layer_type = "application/vnd.oci.image.layer.v1.tar",
                        const std::string& compressed = "") {
  auto dir = tmp / name;
  fs::create_directories(dir + "/blobs/sha256");
  write_text(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  auto diff = add_blob(dir, layer, tmp);
  auto ld = compressed.empty() ? diff : add_blob(dir, compressed, tmp);
  auto blob_size = compressed.empty() ? layer.size() : compressed.size();
  json cfg = {{"architecture", "amd64"},
              {"os", "linux"},
              {"created", "2026-01-01T00:00:00Z"},
              {"rootfs", {{"type", "layers"}, {"diff_ids", {diff}}}}};
  auto cfg_text = cfg.dump();
  auto cd = add_blob(dir, cfg_text, tmp);
  json m = {{"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
            {"config",
             {{"mediaType", "application/vnd.oci.image.config.v1+json"},
              {"digest", cd},
              {"size", cfg_text.size()}}},
            {"layers", {{{"mediaType", layer_type}, {"digest", ld}, {"size", blob_size}}}}};
  auto m_text = m.dump();
  auto md = add_blob(dir, m_text, tmp);
  json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", md},
                   {"size", m_text.size()},
                   {"annotations", {{"org.opencontainers.image.ref.name", "bad"}}}}}}};
  write_text(dir + "/index.json", index.dump());
  return dir;
}

// -- the world: one registry, one proxy, one daemon, images built once ------------------

struct world {
  temp_dir work;
  registry_fixture registry;
  registry_fixture tls_registry{true};
  test_proxy proxy{registry.port()};
  int dead_port = free_port();
  std::string layout = work / "layout";
  std::string creds = work / "auth.json";
  daemon_fixture daemon{false};
  std::string amd64_manifest, arm64_manifest;

  world() {
    // user:secret
    write_text(creds, R"({"auths":{")" + proxy.host() + R"(":{"auth":"dXNlcjpzZWNyZXQ="}}})");
    build_images();
    // The TLS registry's CA comes from the config file ([images.ca] has no flag).
    write_text(work / "cytod.toml", "[images.ca]\n\"" + tls_registry.host() + "\" = \""
                                      + tls_registry.ca_file() + "\"\n");
    daemon.start({"--config", work / "cytod.toml", "--insecure-registry", registry.host(), "--insecure-registry", proxy.host(),
                  "--insecure-registry", "127.0.0.1:" + std::to_string(dead_port),
                  "--registry-credentials", creds, "--default-registry", registry.host()});
  }

  void build_images() {
    auto w = work.path();
    sh("cd " + w + " && umoci init --layout layout && umoci new --image layout:base"
       " && mkdir -p r1/bin r1/etc r1/opq/d && cp " + busybox_path + " r1/bin/busybox"
       " && ln -s busybox r1/bin/sh && echo keep > r1/etc/keep && echo gone > r1/etc/gone"
       " && echo old > r1/opq/d/old && umoci insert --image layout:base r1 /"
       " && umoci config --image layout:base --config.cmd /bin/sh"
       // whiteout + opaque on top of base
       " && umoci tag --image layout:base wo && umoci insert --image layout:wo --whiteout /etc/gone"
       " && mkdir -p r3/d && echo new > r3/d/new"
       " && umoci insert --image layout:wo --opaque r3/d /opq/d"
       // two images sharing the base layer
       " && echo a > fa && umoci tag --image layout:base a && umoci insert --image layout:a fa /a.txt"
       " && echo b > fb && umoci tag --image layout:base b && umoci insert --image layout:b fb /b.txt"
       " && umoci config --image layout:base --tag arm --architecture arm64");
    // An index with arm64 first, then amd64.
    auto idx = json::parse(read_text(layout + "/index.json"));
    json arm, amd;
    for (auto& m : idx["manifests"]) {
      auto tag = m["annotations"]["org.opencontainers.image.ref.name"];
      if (tag == "arm")
        arm = m;
      if (tag == "base")
        amd = m;
    }
    arm64_manifest = arm["digest"];
    amd64_manifest = amd["digest"];
    arm.erase("annotations");
    amd.erase("annotations");
    arm["platform"] = {{"architecture", "arm64"}, {"os", "linux"}};
    amd["platform"] = {{"architecture", "amd64"}, {"os", "linux"}};
    json multi = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.index.v1+json"},
                  {"manifests", {arm, amd}}};
    auto text = multi.dump();
    auto d = add_blob(layout, text, work);
    idx["manifests"].push_back({{"mediaType", "application/vnd.oci.image.index.v1+json"},
                                {"digest", d},
                                {"size", text.size()},
                                {"annotations", {{"org.opencontainers.image.ref.name", "multi"}}}});
    write_text(layout + "/index.json", idx.dump());
    registry.push(layout, "base", "test/bb", "1");
    registry.push(layout, "wo", "test/wo", "1");
    registry.push(layout, "a", "test/a", "1");
    registry.push(layout, "b", "test/b", "1");
    registry.push(layout, "multi", "test/multi", "1");
    tls_registry.push(layout, "base", "test/bb", "1");
    // The same image as a Docker schema 2 manifest (skopeo converts it).
    sh("skopeo copy --quiet --format v2s2 --dest-tls-verify=false oci:" + layout
       + ":base docker://" + registry.host() + "/test/docker:1");
  }

  std::string images_dir() const {
    return daemon.state_dir() + "/images";
  }
};

using world_fixture = suite_world<world>;
BOOST_TEST_GLOBAL_FIXTURE(world_fixture);

world& W() {
  return world_fixture::get();
}

/// Records the progress a pull pushes.
class collecting_sink final : public schema::PullSink::Server {
public:
  explicit collecting_sink(std::map<std::string, std::set<int>>& seen) : seen_(seen) {
  }
  kj::Promise<void> progress(ProgressContext context) override {
    auto l = context.getParams().getLayer();
    seen_[l.getDigest().cStr()].insert(static_cast<int>(l.getPhase()));
    return kj::READY_NOW;
  }

private:
  std::map<std::string, std::set<int>>& seen_;
};

struct client {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  std::unique_ptr<rpc_connection> conn = W().daemon.connect(io);
  schema::Images::Client images =
    wait_for(io, conn->node().imagesRequest().send()).getService();

  capnp::Response<schema::Images::PullResults> pull(const std::string& ref,
                                                    std::map<std::string, std::set<int>>* seen =
                                                      nullptr,
                                                    const std::string& platform = "") {
    auto req = images.pullRequest();
    req.setRef(ref);
    req.setPlatform(platform);
    if (seen)
      req.setSink(kj::heap<collecting_sink>(*seen));
    return wait_for(io, req.send(), 60 * kj::SECONDS);
  }

  /// The "cyto.<code>: ..." text of a failing pull.
  std::string pull_error(const std::string& ref, const std::string& platform = "") {
    try {
      pull(ref, nullptr, platform);
    } catch (const kj::Exception& e) {
      return e.getDescription().cStr();
    }
    return "(no error)";
  }
};

process_result cli(std::vector<std::string> args) {
  std::vector<std::string> argv{cli_path};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--socket");
  argv.push_back(W().daemon.socket_path());
  return run_process(argv, 60s);
}

std::set<std::string> dir_names(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& e : fs::directory_iterator{dir, ec})
    out.insert(e.path().filename().string());
  return out;
}

/// Blobs, snapshots and temp files in the store now.
struct store_view {
  std::set<std::string> blobs, snapshots, ingest;
  static store_view now() {
    auto d = W().images_dir();
    return {dir_names(d + "/blobs/sha256"), dir_names(d + "/snapshots"), dir_names(d + "/ingest")};
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(pull_then_repull_fetches_no_blob) {
  client c;
  auto ref = W().registry.host() + "/test/bb:1";
  std::map<std::string, std::set<int>> seen;
  auto r = c.pull(ref, &seen);
  auto img = r.getImage();
  BOOST_TEST(std::string{img.getName()} == ref);
  BOOST_TEST(img.getLayers().size() == 1u);
  BOOST_TEST(std::string{img.getArchitecture()} == "amd64");
  BOOST_TEST(std::string{img.getManifestDigest()} == W().amd64_manifest);
  auto layer = std::string{img.getLayers()[0].getDigest()};
  // Progress: the layer was downloaded and reported done.
  BOOST_TEST(seen[layer].count(static_cast<int>(schema::LayerPhase::DOWNLOADING)) == 1u);
  BOOST_TEST(seen[layer].count(static_cast<int>(schema::LayerPhase::DONE)) == 1u);
  // The blob is in the store and hashes to its name.
  auto blob = W().images_dir() + "/blobs/sha256/" + layer.substr(7);
  BOOST_TEST(sha256_of_file(blob) == layer);
  auto gets = W().registry.blob_gets("test/bb");
  BOOST_TEST(gets >= 2); // config + layer

  // Again, through the CLI: not one blob is fetched.
  auto out = cli({"image", "pull", ref, "--json"});
  BOOST_TEST_REQUIRE(out.code() == 0, out.err);
  auto last = json::parse(lines_of(out.out).back());
  BOOST_TEST(last["manifestDigest"] == W().amd64_manifest);
  bool saw_exists = false;
  for (auto& line : lines_of(out.out)) {
    auto j = json::parse(line);
    if (j.contains("phase") && j["phase"] == "exists")
      saw_exists = true;
  }
  BOOST_TEST(saw_exists);
  BOOST_TEST(W().registry.blob_gets("test/bb") == gets);

  // Listed and inspectable by short digest; the CLI table shows it.
  auto ls = cli({"image", "ls"});
  BOOST_TEST(contains(ls.out, ref));
  auto in = cli({"image", "inspect", std::string{img.getDigest()}.substr(7, 12), "--json"});
  BOOST_TEST_REQUIRE(in.code() == 0, in.err);
  auto ij = json::parse(in.out);
  BOOST_TEST(ij["name"] == ref);
  BOOST_TEST(ij["config"]["config"]["Cmd"][0] == "/bin/sh");
  BOOST_TEST(ij["layers"][0]["size"].get<uint64_t>() == fs::file_size(blob));
}

BOOST_AUTO_TEST_CASE(merged_rootfs_has_whiteouts_and_opaque_dirs_applied_and_runs_busybox) {
  client c;
  auto ref = W().registry.host() + "/test/wo:1";
  auto resp_img = c.pull(ref);
  auto img = resp_img.getImage();
  BOOST_TEST_REQUIRE(img.getLayers().size() == 3u);
  auto target = W().daemon.state_dir() + "/rootfs-wo";
  auto m = cli({"image", "mount", ref, "ctr-wo", target, "--json"});
  BOOST_TEST_REQUIRE(m.code() == 0, m.err);
  auto mj = json::parse(m.out);
  BOOST_TEST(mj["lowerDirs"].size() == 3u);
  // The kernel's view of the merged tree.
  BOOST_TEST(fs::exists(target + "/bin/busybox"));
  BOOST_TEST(read_text(target + "/etc/keep") == "keep\n");
  BOOST_TEST(!fs::exists(target + "/etc/gone"));        // whiteout
  BOOST_TEST(!fs::exists(target + "/opq/d/old"));       // opaque dir hides the lower one
  BOOST_TEST(read_text(target + "/opq/d/new") == "new\n");
  BOOST_TEST(fs::is_symlink(target + "/bin/sh"));
  // busybox runs from the unpacked rootfs.
  auto run = run_process({"/usr/sbin/chroot", target, "/bin/sh", "-c", "echo hello from $0"});
  BOOST_TEST(run.code() == 0);
  BOOST_TEST(contains(run.out, "hello from /bin/sh"));
  // Writes land in the private upper dir, not in a snapshot.
  write_text(target + "/etc/written", "x");
  BOOST_TEST(fs::exists(std::string{mj["upperDir"]} + "/etc/written"));

  // In use: remove is refused, inspect says so.
  auto rm = cli({"image", "rm", ref});
  BOOST_TEST(rm.code() != 0);
  BOOST_TEST(contains(rm.err, "cyto.failed_precondition"), rm.err);
  BOOST_TEST(c.pull(ref).getImage().getInUse() == 1u);

  auto um = cli({"image", "unmount", "ctr-wo"});
  BOOST_TEST_REQUIRE(um.code() == 0, um.err);
  BOOST_TEST(!fs::exists(target + "/bin/busybox"));
  BOOST_TEST(!fs::exists(std::string{mj["upperDir"]}));
  auto rm2 = cli({"image", "rm", ref});
  BOOST_TEST(rm2.code() == 0, rm2.err);
  auto in = cli({"image", "inspect", ref});
  BOOST_TEST(contains(in.err, "cyto.not_found"));
}

BOOST_AUTO_TEST_CASE(two_images_sharing_a_base_layer_share_one_snapshot) {
  client c;
  auto resp_a = c.pull(W().registry.host() + "/test/a:1");
  auto a = resp_a.getImage();
  auto before = store_view::now().snapshots;
  auto resp_b = c.pull(W().registry.host() + "/test/b:1");
  auto b = resp_b.getImage();
  BOOST_TEST_REQUIRE(a.getLayers().size() == 2u);
  BOOST_TEST_REQUIRE(b.getLayers().size() == 2u);
  BOOST_TEST(std::string{a.getLayers()[0].getChainId()} == std::string{b.getLayers()[0].getChainId()});
  BOOST_TEST(std::string{a.getLayers()[1].getChainId()} != std::string{b.getLayers()[1].getChainId()});
  auto after = store_view::now().snapshots;
  // b added exactly one snapshot: its own top layer.
  BOOST_TEST(after.size() == before.size() + 1);
  BOOST_TEST(after.count(std::string{b.getLayers()[0].getChainId()}.substr(7)) == 1u);
}

BOOST_AUTO_TEST_CASE(an_index_gives_the_linux_amd64_manifest_or_the_platform_asked) {
  client c;
  auto ref = W().registry.host() + "/test/multi:1";
  auto resp_img = c.pull(ref);
  auto img = resp_img.getImage();
  BOOST_TEST(std::string{img.getManifestDigest()} == W().amd64_manifest);
  BOOST_TEST(std::string{img.getArchitecture()} == "amd64");
  BOOST_TEST(std::string{img.getMediaType()} == "application/vnd.oci.image.index.v1+json");
  auto resp_arm = c.pull(ref, nullptr, "linux/arm64");
  auto arm = resp_arm.getImage();
  BOOST_TEST(std::string{arm.getManifestDigest()} == W().arm64_manifest);
  BOOST_TEST(std::string{arm.getArchitecture()} == "arm64");
  auto err = c.pull_error(ref, "linux/s390x");
  BOOST_TEST(contains(err, "cyto.not_found"), err);
  BOOST_TEST(contains(err, "linux/arm64"), err);
}

BOOST_AUTO_TEST_CASE(import_from_an_umoci_layout_and_an_oci_archive) {
  auto out = cli({"image", "import", W().layout, "--json"});
  BOOST_TEST_REQUIRE(out.code() == 0, out.err);
  std::set<std::string> names;
  for (auto& l : lines_of(out.out))
    names.insert(json::parse(l)["name"]);
  BOOST_TEST(names.count("localhost/layout:wo") == 1u);
  BOOST_TEST(names.count("localhost/layout:multi") == 1u);
  auto m = cli({"image", "mount", "localhost/layout:wo", "imp", W().daemon.state_dir() + "/rootfs-imp"});
  BOOST_TEST_REQUIRE(m.code() == 0, m.err);
  BOOST_TEST(read_text(W().daemon.state_dir() + "/rootfs-imp/opq/d/new") == "new\n");
  BOOST_TEST(cli({"image", "unmount", "imp"}).code() == 0);

  // oci-archive: the same layout as a tar, one image renamed.
  sh("skopeo copy --quiet oci:" + W().layout + ":base oci-archive:" + W().work / "one.tar" + ":x");
  client c;
  auto req = c.images.importRequest();
  req.setPath(W().work / "one.tar");
  req.setName("archived/busybox:v1");
  auto r = wait_for(c.io, req.send(), 60 * kj::SECONDS);
  BOOST_TEST_REQUIRE(r.getImages().size() == 1u);
  BOOST_TEST(std::string{r.getImages()[0].getName()} == W().registry.host() + "/archived/busybox:v1");
  BOOST_TEST(std::string{r.getImages()[0].getManifestDigest()} == W().amd64_manifest);
}

BOOST_AUTO_TEST_CASE(bad_references_and_unreachable_or_unknown_images_are_refused_cleanly) {
  client c;
  auto before = store_view::now();
  for (auto bad : {"", "UPPER/case", "repo:", "repo@sha256:1234", "a//b", "-lead", "repo:t@g",
                   "host:99999999999/x y"}) {
    auto err = c.pull_error(bad);
    BOOST_TEST(contains(err, "cyto.invalid_argument"), bad << " -> " << err);
  }
  auto cl = cli({"image", "pull", "Bad//Name"});
  BOOST_TEST(cl.code() != 0);
  BOOST_TEST(contains(cl.err, "cyto.invalid_argument: image reference"), cl.err);

  auto nf = c.pull_error(W().registry.host() + "/test/bb:nope");
  BOOST_TEST(contains(nf, "cyto.not_found"), nf);
  auto repo_nf = c.pull_error(W().registry.host() + "/test/nothing-here:1");
  BOOST_TEST(contains(repo_nf, "cyto.not_found"), repo_nf);
  auto down = c.pull_error("127.0.0.1:" + std::to_string(W().dead_port) + "/test/bb:1");
  BOOST_TEST(contains(down, "cyto.unavailable"), down);
  // Not configured as insecure: HTTPS to a plain HTTP registry fails, never falls back.
  auto tls = c.pull_error("localhost:" + std::to_string(W().registry.port()) + "/test/bb:1");
  BOOST_TEST(contains(tls, "cyto.unavailable"), tls);
  auto after = store_view::now();
  BOOST_TEST(after.blobs == before.blobs);
  BOOST_TEST(after.ingest.empty());
}

BOOST_AUTO_TEST_CASE(a_tampered_blob_fails_the_digest_check_and_is_not_kept) {
  // Its own image (a fresh layer), so no earlier pull has the blob in the store.
  auto w = W().work.path();
  sh("cd " + w + " && mkdir -p rt && head -c 200000 /dev/urandom > rt/data"
     " && umoci tag --image layout:base tamper && umoci insert --image layout:tamper rt /t");
  W().registry.push(W().layout, "tamper", "test/tamper", "1");
  auto idx = json::parse(read_text(W().layout + "/index.json"));
  std::string mdigest;
  for (auto& m : idx["manifests"])
    if (m["annotations"]["org.opencontainers.image.ref.name"] == "tamper")
      mdigest = m["digest"];
  auto man = json::parse(read_text(W().layout + "/blobs/sha256/" + mdigest.substr(7)));
  std::string top = man["layers"][1]["digest"];
  auto file = W().registry.blob_file(top);
  BOOST_TEST_REQUIRE(fs::exists(file));
  // Flip bytes in the middle, size unchanged.
  {
    std::fstream f{file, std::ios::in | std::ios::out | std::ios::binary};
    f.seekp(static_cast<std::streamoff>(fs::file_size(file) / 2));
    f.write("TAMPERED", 8);
  }
  client c;
  auto err = c.pull_error(W().registry.host() + "/test/tamper:1");
  BOOST_TEST(contains(err, "cyto.invalid_argument"), err);
  BOOST_TEST(contains(err, "digest mismatch"), err);
  auto v = store_view::now();
  BOOST_TEST(v.blobs.count(top.substr(7)) == 0u);
  BOOST_TEST(v.ingest.empty());
  BOOST_TEST(contains(c.pull_error("test/tamper:1"), "digest mismatch")); // short name, default registry
}

BOOST_AUTO_TEST_CASE(a_connection_cut_mid_layer_keeps_nothing_and_a_retry_succeeds) {
  auto w = W().work.path();
  sh("cd " + w + " && mkdir -p rc && head -c 3000000 /dev/urandom > rc/data"
     " && umoci tag --image layout:base cut && umoci insert --image layout:cut rc /c");
  W().registry.push(W().layout, "cut", "test/cut", "1");
  client c;
  auto ref = W().proxy.host() + "/test/cut:1";
  W().proxy.cut_next_blob(1 << 20);
  auto before = store_view::now();
  auto err = c.pull_error(ref);
  BOOST_TEST(W().proxy.cut.load() == 1);
  BOOST_TEST((contains(err, "cyto.unavailable") || contains(err, "cyto.invalid_argument")), err);
  auto mid = store_view::now();
  BOOST_TEST(mid.ingest.empty());
  // Only whole, verified blobs may have been added (the config, other layers).
  for (auto& b : mid.blobs)
    if (!before.blobs.count(b))
      BOOST_TEST(sha256_of_file(W().images_dir() + "/blobs/sha256/" + b) == "sha256:" + b);
  auto resp_img = c.pull(ref);
  auto img = resp_img.getImage();
  BOOST_TEST(img.getLayers().size() == 2u);
}

BOOST_AUTO_TEST_CASE(bearer_token_auth_with_credentials_from_the_config_file) {
  client c;
  // "user:secret" base64, as in the daemon's credentials file.
  W().proxy.require_bearer("tok-42", "dXNlcjpzZWNyZXQ=");
  auto ref = W().proxy.host() + "/test/a:1";
  auto resp_img = c.pull(ref);
  auto img = resp_img.getImage();
  BOOST_TEST(std::string{img.getName()} == ref);
  BOOST_TEST(W().proxy.token_requests.load() >= 1);
  BOOST_TEST(W().proxy.unauthorized.load() >= 1);
  // Wrong credentials: the token service refuses.
  W().proxy.require_bearer("tok-43", "b3RoZXI6b3RoZXI=");
  auto err = c.pull_error(ref);
  BOOST_TEST(contains(err, "cyto.permission_denied"), err);
  W().proxy.require_bearer("", "");
}

BOOST_AUTO_TEST_CASE(hostile_layers_are_rejected_and_write_nothing_outside) {
  client c;
  auto outside = W().work / "outside";
  fs::create_directories(outside);
  auto before = store_view::now();
  struct bad_case {
    std::string name, layer, want;
  };
  std::vector<bad_case> cases = {
    {"dotdot", tar_entry("../escaped", '0', "", "x") + tar_end(), "'..'"},
    {"absolute", tar_entry("/abs-escaped", '0', "", "x") + tar_end(), "absolute"},
    {"symlink-abs",
     tar_entry("evil", '2', outside) + tar_entry("evil/pwned", '0', "", "x") + tar_end(),
     "symlink that leaves"},
    {"symlink-up",
     tar_entry("up", '2', "../../../../../../..") + tar_entry("up/" + outside.substr(1) + "/pwned2",
                                                             '0', "", "x") + tar_end(),
     "symlink that leaves"},
    {"hardlink-out", tar_entry("hl", '1', "../../etc/passwd") + tar_end(), "'..'"},
  };
  for (auto& bc : cases) {
    auto dir = make_layout(W().work, "hostile-" + bc.name, bc.layer);
    auto req = c.images.importRequest();
    req.setPath(dir);
    std::string err;
    try {
      wait_for(c.io, req.send(), 30 * kj::SECONDS);
      err = "(no error)";
    } catch (const kj::Exception& e) {
      err = e.getDescription().cStr();
    }
    BOOST_TEST(contains(err, "cyto.invalid_argument"), bc.name << ": " << err);
    BOOST_TEST(contains(err, bc.want), bc.name << ": " << err);
  }
  BOOST_TEST(dir_names(outside).empty());
  BOOST_TEST(!fs::exists(W().images_dir() + "/escaped"));
  BOOST_TEST(!fs::exists(W().images_dir() + "/snapshots/escaped"));
  BOOST_TEST(!fs::exists("/abs-escaped"));
  auto after = store_view::now();
  BOOST_TEST(after.snapshots == before.snapshots); // no snapshot, no temp dir left
  auto ls = cli({"image", "ls", "--json"});
  BOOST_TEST(!contains(ls.out, "hostile"));

  // An unsupported layer media type is named in the error.
  auto dir = make_layout(W().work, "weird", tar_end(), "application/vnd.example.weird.layer");
  auto out = cli({"image", "import", dir});
  BOOST_TEST(out.code() != 0);
  BOOST_TEST(contains(out.err, "cyto.unsupported"), out.err);
  BOOST_TEST(contains(out.err, "application/vnd.example.weird.layer"), out.err);
}

BOOST_AUTO_TEST_CASE(prune_removes_only_what_no_image_uses) {
  client c;
  auto ref = W().registry.host() + "/test/b:1";
  auto resp_img = c.pull(ref);
  auto img = resp_img.getImage();
  auto top_blob = std::string{img.getLayers()[1].getDigest()}.substr(7);
  auto top_snap = std::string{img.getLayers()[1].getChainId()}.substr(7);
  auto base_snap = std::string{img.getLayers()[0].getChainId()}.substr(7);
  // Hostile imports above left verified blobs (their configs, layers) behind: prune them.
  auto pr = cli({"image", "prune", "--json"});
  BOOST_TEST_REQUIRE(pr.code() == 0, pr.err);
  auto v = store_view::now();
  BOOST_TEST(v.blobs.count(top_blob) == 1u); // still used
  // Removing b (pulled, and imported from the layout earlier) frees its own top layer,
  // but not the base layer a still uses.
  BOOST_TEST(cli({"image", "rm", ref}).code() == 0);
  v = store_view::now();
  BOOST_TEST(v.blobs.count(top_blob) == 1u); // the imported copy still uses it
  BOOST_TEST(cli({"image", "rm", "localhost/layout:b"}).code() == 0);
  v = store_view::now();
  BOOST_TEST(v.blobs.count(top_blob) == 0u);
  BOOST_TEST(v.snapshots.count(top_snap) == 0u);
  BOOST_TEST(v.snapshots.count(base_snap) == 1u);
  auto pr2 = cli({"image", "prune", "--json"});
  BOOST_TEST(json::parse(pr2.out)["blobs"] == 0);
}

BOOST_AUTO_TEST_CASE(a_zstd_layer_keeps_links_devices_modes_owners_and_xattrs) {
  auto tar = tar_entry("data/", '5', "", "", 0755) + pax_entry("SCHILY.xattr.user.cyto", "yes")
             + tar_entry("data/file", '0', "", "payload", 04755)
             + tar_entry("data/hard", '1', "data/file") + tar_entry("data/soft", '2', "file")
             + tar_node("data/null", '3', 0666, 0, 0, 1, 3) + tar_node("data/fifo", '6', 0600, 0, 0)
             + tar_node("data/owned", '0', 0640, 1234, 5678) + tar_end();
  auto raw = W().work / "good.tar";
  write_text(raw, tar);
  sh("zstd -q -f " + raw + " -o " + raw + ".zst");
  auto dir = make_layout(W().work, "good-zstd", tar, "application/vnd.oci.image.layer.v1.tar+zstd",
                         read_text(raw + ".zst"));
  auto out = cli({"image", "import", dir, "--name", "local/good:zstd", "--json"});
  BOOST_TEST_REQUIRE(out.code() == 0, out.err);
  auto target = W().daemon.state_dir() + "/rootfs-good";
  auto m = cli({"image", "mount", "local/good:zstd", "good", target});
  BOOST_TEST_REQUIRE(m.code() == 0, m.err);
  struct stat file{}, hard{}, null{}, fifo{}, owned{};
  BOOST_TEST_REQUIRE(::lstat((target + "/data/file").c_str(), &file) == 0);
  BOOST_TEST(read_text(target + "/data/file") == "payload");
  BOOST_TEST((file.st_mode & 07777) == 04755u);
  BOOST_TEST(::lstat((target + "/data/hard").c_str(), &hard) == 0);
  BOOST_TEST(hard.st_ino == file.st_ino); // one inode, two names
  BOOST_TEST(fs::read_symlink(target + "/data/soft") == "file");
  BOOST_TEST(::lstat((target + "/data/null").c_str(), &null) == 0);
  BOOST_TEST(S_ISCHR(null.st_mode));
  BOOST_TEST(major(null.st_rdev) == 1u);
  BOOST_TEST(minor(null.st_rdev) == 3u);
  BOOST_TEST(::lstat((target + "/data/fifo").c_str(), &fifo) == 0);
  BOOST_TEST(S_ISFIFO(fifo.st_mode));
  BOOST_TEST(::lstat((target + "/data/owned").c_str(), &owned) == 0);
  BOOST_TEST(owned.st_uid == 1234u);
  BOOST_TEST(owned.st_gid == 5678u);
  char value[16] = {};
  auto n = ::getxattr((target + "/data/file").c_str(), "user.cyto", value, sizeof(value));
  BOOST_TEST(n == 3);
  BOOST_TEST(std::string(value, n > 0 ? static_cast<size_t>(n) : 0) == "yes");
  BOOST_TEST(cli({"image", "unmount", "good"}).code() == 0);
}

BOOST_AUTO_TEST_CASE(images_and_mounted_rootfs_survive_a_daemon_restart) {
  auto ref = W().registry.host() + "/test/a:1";
  {
    client c;
    c.pull(ref);
  }
  auto target = W().daemon.state_dir() + "/rootfs-restart";
  BOOST_TEST_REQUIRE(cli({"image", "mount", ref, "keep", target}).code() == 0);
  W().daemon.stop();
  BOOST_TEST(::umount2(target.c_str(), 0) == 0); // as if the host rebooted
  W().daemon.start({"--config", W().work / "cytod.toml", "--insecure-registry", W().registry.host(), "--insecure-registry",
                    W().proxy.host(), "--registry-credentials", W().creds, "--default-registry",
                    W().registry.host()});
  auto ls = cli({"image", "ls", "--json"});
  BOOST_TEST(contains(ls.out, ref));
  auto ms = cli({"image", "mounts", "--json"});
  BOOST_TEST(contains(ms.out, "\"keep\""), ms.out);
  BOOST_TEST(read_text(target + "/a.txt") == "a\n"); // mounted again at start
  auto rm = cli({"image", "rm", ref});
  BOOST_TEST(contains(rm.err, "cyto.failed_precondition"));
  BOOST_TEST(cli({"image", "unmount", "keep"}).code() == 0);
  BOOST_TEST(!fs::exists(target + "/a.txt"));
}

// Images.mount may not cover a host directory (/etc, say): targets stay inside cyto's
// state dir (by name and through symlinks) unless root over the unix socket asks with
// --outside-state-dir. Refusals leave no mount, record or directory behind.
BOOST_AUTO_TEST_CASE(mount_targets_stay_inside_the_state_dir_unless_root_asks) {
  auto ref = W().registry.host() + "/test/a:1";
  {
    client c;
    c.pull(ref);
  }
  auto outside = W().work / "host-dir";
  auto r = cli({"image", "mount", ref, "out1", outside});
  BOOST_TEST(r.code() != 0);
  BOOST_TEST(contains(r.err, "cyto.permission_denied"), r.err);
  BOOST_TEST(contains(r.err, "outside cyto's state dir"), r.err);
  BOOST_TEST(!fs::exists(outside));
  auto by_dots = cli({"image", "mount", ref, "out2", W().daemon.state_dir() + "/x/../../etc"});
  BOOST_TEST(by_dots.code() != 0);
  // Inside by name, outside through a symlink.
  auto link = W().daemon.state_dir() + "/sneaky";
  fs::create_directories(W().work / "sneaky-target");
  fs::create_symlink(W().work / "sneaky-target", link);
  auto sym = cli({"image", "mount", ref, "out3", link + "/root"});
  BOOST_TEST(sym.code() != 0);
  BOOST_TEST(contains(sym.err, "cyto.permission_denied"), sym.err);
  BOOST_TEST(!fs::exists(W().work / "sneaky-target/root"));
  fs::remove(link);
  auto ms = cli({"image", "mounts", "--json"});
  for (auto* id : {"out1", "out2", "out3"})
    BOOST_TEST(!contains(ms.out, std::string{"\""} + id + "\""), ms.out);
  // Root over the unix socket, asking for it.
  auto ok = cli({"image", "mount", "--outside-state-dir", ref, "out4", outside});
  BOOST_TEST_REQUIRE(ok.code() == 0, ok.err);
  BOOST_TEST(read_text(outside + "/a.txt") == "a\n");
  BOOST_TEST(cli({"image", "unmount", "out4"}).code() == 0);
  BOOST_TEST(!fs::exists(outside + "/a.txt"));
}

BOOST_AUTO_TEST_CASE(https_with_the_registry_ca_from_the_config_over_http2) {
  client c;
  auto ref = W().tls_registry.host() + "/test/bb:1";
  auto resp = c.pull(ref);
  BOOST_TEST(std::string{resp.getImage().getManifestDigest()} == W().amd64_manifest);
  // The registry logged the requests as HTTP/2 (curl negotiated it over TLS).
  BOOST_TEST(contains(W().tls_registry.log(), "HTTP/2.0"));
  // Same server by another name: no CA configured for it, the system CAs refuse it.
  auto err = c.pull_error("localhost:" + std::to_string(W().tls_registry.port()) + "/test/bb:1");
  BOOST_TEST(contains(err, "cyto.unavailable"), err);
}

BOOST_AUTO_TEST_CASE(basic_auth_with_credentials_from_the_config_file) {
  client c;
  W().proxy.require_basic("dXNlcjpzZWNyZXQ=");
  auto before = W().proxy.unauthorized.load();
  auto resp = c.pull(W().proxy.host() + "/test/bb:1");
  BOOST_TEST(resp.getImage().getLayers().size() == 1u);
  BOOST_TEST(W().proxy.unauthorized.load() > before); // challenged, then answered
  W().proxy.require_basic("b3RoZXI6b3RoZXI=");
  auto err = c.pull_error(W().proxy.host() + "/test/bb:1");
  BOOST_TEST(contains(err, "cyto.permission_denied"), err);
  W().proxy.require_basic("");
}

BOOST_AUTO_TEST_CASE(docker_schema2_manifests_pull_like_oci_ones) {
  client c;
  auto resp = c.pull(W().registry.host() + "/test/docker:1");
  auto img = resp.getImage();
  BOOST_TEST(std::string{img.getMediaType()}
             == "application/vnd.docker.distribution.manifest.v2+json");
  BOOST_TEST_REQUIRE(img.getLayers().size() == 1u);
  BOOST_TEST(std::string{img.getLayers()[0].getMediaType()}
             == "application/vnd.docker.image.rootfs.diff.tar.gzip");
  BOOST_TEST(std::string{img.getArchitecture()} == "amd64");
}
