// cyto image pull|ls|inspect|rm|import|prune|mount|unmount|mounts
#include <cstdio>
#include <map>
#include <vector>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/images.capnp.h"

namespace cyto::cli {

namespace cmd_image_impl {

constexpr const char* phase_names[] = {"waiting", "downloading", "verifying",
                                       "extracting", "done", "exists"};

const char* phase_name(schema::LayerPhase p) {
  auto i = static_cast<size_t>(p);
  return i < std::size(phase_names) ? phase_names[i] : "unknown";
}

std::string short_digest(const std::string& d) {
  return d.rfind("sha256:", 0) == 0 ? d.substr(7, 12) : d;
}

schema::Images::Client images(client& c) {
  return wait(c, c.node().imagesRequest().send()).getService();
}

/// Prints pull progress: a bar per blob redrawn in place on a terminal, one line per
/// phase change otherwise (and JSON lines with --json).
class progress_printer final : public schema::PullSink::Server {
public:
  progress_printer(bool json, bool tty, FILE* out = stdout) : json_(json), tty_(tty), out_(out) {
  }

  kj::Promise<void> progress(ProgressContext context) override {
    auto l = context.getParams().getLayer();
    std::string digest = l.getDigest().cStr();
    auto phase = l.getPhase();
    if (json_) {
      print_json({{"digest", digest}, {"phase", phase_name(phase)}, {"current", l.getCurrent()},
                  {"total", l.getTotal()}});
      return kj::READY_NOW;
    }
    auto it = rows_.find(digest);
    bool changed = it == rows_.end() || it->second.phase != phase;
    if (it == rows_.end()) {
      order_.push_back(digest);
      it = rows_.emplace(digest, row{}).first;
    }
    it->second = {phase, l.getCurrent(), l.getTotal()};
    if (tty_) {
      redraw();
    } else if (changed) {
      std::fprintf(out_, "%s %s %s\n", short_digest(digest).c_str(), phase_name(phase),
                  human_size(l.getTotal()).c_str());
      std::fflush(out_);
    }
    return kj::READY_NOW;
  }

private:
  struct row {
    schema::LayerPhase phase = schema::LayerPhase::WAITING;
    uint64_t current = 0;
    uint64_t total = 0;
  };

  void redraw() {
    if (drawn_ > 0)
      std::fprintf(out_, "\x1b[%zuA", drawn_);
    for (auto& d : order_) {
      auto& r = rows_[d];
      constexpr int width = 30;
      int filled = r.total ? static_cast<int>(width * std::min(r.current, r.total) / r.total) : 0;
      if (r.phase == schema::LayerPhase::DONE || r.phase == schema::LayerPhase::EXISTS
          || r.phase == schema::LayerPhase::EXTRACTING)
        filled = width;
      std::string bar(static_cast<size_t>(filled), '=');
      bar.resize(width, ' ');
      std::fprintf(out_, "\x1b[2K%s [%s] %-11s %s/%s\n", short_digest(d).c_str(), bar.c_str(),
                  phase_name(r.phase), human_size(r.current).c_str(),
                  human_size(r.total).c_str());
    }
    drawn_ = order_.size();
    std::fflush(out_);
  }

  bool json_;
  bool tty_;
  std::vector<std::string> order_;
  std::map<std::string, row> rows_;
  size_t drawn_ = 0;
  FILE* out_;
};

nlohmann::json image_json(schema::Image::Reader x, bool with_config) {
  nlohmann::json layers = nlohmann::json::array();
  for (auto l : x.getLayers())
    layers.push_back({{"digest", l.getDigest().cStr()},
                      {"mediaType", l.getMediaType().cStr()},
                      {"size", l.getSize()},
                      {"diffId", l.getDiffId().cStr()},
                      {"chainId", l.getChainId().cStr()}});
  nlohmann::json j = {{"name", x.getName().cStr()},
                      {"digest", x.getDigest().cStr()},
                      {"manifestDigest", x.getManifestDigest().cStr()},
                      {"mediaType", x.getMediaType().cStr()},
                      {"configDigest", x.getConfigDigest().cStr()},
                      {"os", x.getOs().cStr()},
                      {"architecture", x.getArchitecture().cStr()},
                      {"variant", x.getVariant().cStr()},
                      {"created", x.getCreated().cStr()},
                      {"size", x.getSize()},
                      {"layers", layers},
                      {"pulled", iso_time(x.getPulledUnixNanos())},
                      {"inUse", x.getInUse()}};
  if (with_config) {
    try {
      j["config"] = nlohmann::json::parse(x.getConfig().cStr());
    } catch (const nlohmann::json::exception&) {
      j["config"] = x.getConfig().cStr();
    }
  }
  return j;
}

nlohmann::json rootfs_json(schema::Rootfs::Reader r) {
  nlohmann::json lowers = nlohmann::json::array();
  for (auto l : r.getLowerDirs())
    lowers.push_back(l.cStr());
  return {{"id", r.getId().cStr()},         {"image", r.getImage().cStr()},
          {"manifestDigest", r.getManifestDigest().cStr()},
          {"target", r.getTarget().cStr()}, {"lowerDirs", lowers},
          {"upperDir", r.getUpperDir().cStr()}, {"workDir", r.getWorkDir().cStr()}};
}

struct pull_flags {
  std::string ref, platform;
};

int pull(const global_options& g, const pull_flags& f) {
  client c{g};
  auto req = images(c).pullRequest();
  req.setRef(f.ref);
  req.setPlatform(f.platform);
  req.setSink(kj::heap<progress_printer>(g.json, !g.json && ::isatty(1)));
  auto resp = wait(c, req.send());
  auto img = resp.getImage();
  if (g.json)
    print_json(image_json(img, false));
  else
    std::printf("pulled %s %s (%s, %zu layers)\n", img.getName().cStr(),
                img.getDigest().cStr(), human_size(img.getSize()).c_str(),
                static_cast<size_t>(img.getLayers().size()));
  return 0;
}

} // namespace cmd_image_impl

schema::PullSink::Client pull_progress_to_stderr() {
  return kj::heap<cmd_image_impl::progress_printer>(false, ::isatty(2) == 1, stderr);
}

void pull_for_run(client& c, const std::string& ref) {
  using namespace cmd_image_impl;
  auto req = images(c).pullRequest();
  req.setRef(ref);
  req.setSink(pull_progress_to_stderr());
  auto img = wait(c, req.send()).getImage();
  std::fprintf(stderr, "pulled %s %s\n", img.getName().cStr(), img.getDigest().cStr());
}

namespace cmd_image_impl {

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, images(c).listRequest().send());
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto img : resp.getImages())
      out.push_back(image_json(img, false));
    print_json(out);
    return 0;
  }
  if (resp.getImages().size() == 0) {
    std::printf("no images\n");
    return 0;
  }
  std::printf("%-50s %-14s %-12s %-10s %s\n", "NAME", "DIGEST", "PLATFORM", "SIZE", "IN USE");
  for (auto img : resp.getImages()) {
    std::string plat = std::string{img.getOs().cStr()} + "/" + img.getArchitecture().cStr();
    std::printf("%-50s %-14s %-12s %-10s %u\n", img.getName().cStr(),
                short_digest(img.getDigest().cStr()).c_str(), plat.c_str(),
                human_size(img.getSize()).c_str(), img.getInUse());
  }
  return 0;
}

int inspect(const global_options& g, const std::string& ref) {
  client c{g};
  auto req = images(c).inspectRequest();
  req.setRef(ref);
  auto resp = wait(c, req.send());
  auto j = image_json(resp.getImage(), true);
  std::printf("%s\n", g.json ? j.dump().c_str() : j.dump(2).c_str());
  return 0;
}

int remove(const global_options& g, const std::vector<std::string>& refs, bool force) {
  client c{g};
  auto svc = images(c);
  for (auto& r : refs) {
    auto req = svc.removeRequest();
    req.setRef(r);
    req.setForce(force);
    wait(c, req.send());
    if (g.json)
      print_json({{"removed", r}});
    else
      std::printf("removed %s\n", r.c_str());
  }
  return 0;
}

int import_images(const global_options& g, const std::string& path, const std::string& name) {
  client c{g};
  auto req = images(c).importRequest();
  // The daemon opens the path: make a relative one absolute here.
  std::string abs = path;
  if (!abs.empty() && abs.front() != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof(cwd)))
      abs = std::string{cwd} + "/" + abs;
  }
  req.setPath(abs);
  req.setName(name);
  auto resp = wait(c, req.send());
  for (auto img : resp.getImages()) {
    if (g.json)
      print_json(image_json(img, false));
    else
      std::printf("imported %s %s\n", img.getName().cStr(), img.getDigest().cStr());
  }
  return 0;
}

int prune(const global_options& g) {
  client c{g};
  auto resp = wait(c, images(c).pruneRequest().send());
  auto r = resp.getReport();
  if (g.json)
    print_json({{"blobs", r.getBlobs()}, {"snapshots", r.getSnapshots()}, {"bytes", r.getBytes()}});
  else
    std::printf("removed %u blobs and %u snapshots, %s freed\n", r.getBlobs(), r.getSnapshots(),
                human_size(r.getBytes()).c_str());
  return 0;
}

struct mount_flags {
  std::string ref, id, target;
  bool outside = false;
};

int mount(const global_options& g, const mount_flags& f) {
  client c{g};
  auto req = images(c).mountRequest();
  req.setRef(f.ref);
  req.setId(f.id);
  req.setTarget(f.target);
  req.setOutsideStateDir(f.outside);
  auto resp = wait(c, req.send());
  if (g.json)
    print_json(rootfs_json(resp.getRootfs()));
  else
    std::printf("mounted %s as %s on %s\n", resp.getRootfs().getImage().cStr(), f.id.c_str(),
                resp.getRootfs().getTarget().cStr());
  return 0;
}

int unmount(const global_options& g, const std::string& id) {
  client c{g};
  auto req = images(c).unmountRequest();
  req.setId(id);
  wait(c, req.send());
  if (g.json)
    print_json({{"unmounted", id}});
  else
    std::printf("unmounted %s\n", id.c_str());
  return 0;
}

int mounts(const global_options& g) {
  client c{g};
  auto resp = wait(c, images(c).mountsRequest().send());
  if (g.json) {
    nlohmann::json out = nlohmann::json::array();
    for (auto r : resp.getRootfs())
      out.push_back(rootfs_json(r));
    print_json(out);
    return 0;
  }
  if (resp.getRootfs().size() == 0)
    std::printf("no root file systems mounted\n");
  for (auto r : resp.getRootfs())
    std::printf("%-20s %-50s %s\n", r.getId().cStr(), r.getImage().cStr(), r.getTarget().cStr());
  return 0;
}

} // namespace cmd_image_impl

void add_image_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_image_impl;
  auto* image = app.add_subcommand("image", "images: pull, import, list, remove, prune, mount");
  image->require_subcommand(1);

  static pull_flags pf;
  auto* pl = image->add_subcommand("pull", "pull an image: [REGISTRY/]REPO[:TAG][@sha256:...]");
  pl->add_option("ref", pf.ref, "image reference")->required();
  pl->add_option("--platform", pf.platform, "os/arch[/variant] to pick from an index")
    ->default_str("linux/amd64");
  pl->callback([&] { run = [&] { return pull(g, pf); }; });

  auto* ls = image->add_subcommand("ls", "list images");
  ls->callback([&] { run = [&] { return list(g); }; });

  static std::string inspect_ref;
  auto* in = image->add_subcommand("inspect", "show one image in full, config included (JSON)");
  in->add_option("ref", inspect_ref, "name, short name or digest")->required();
  in->callback([&] { run = [&] { return inspect(g, inspect_ref); }; });

  static std::vector<std::string> rm_refs;
  static bool rm_force = false;
  auto* rm = image->add_subcommand("rm", "remove images (and blobs and snapshots only they used)");
  rm->add_option("ref", rm_refs, "name, short name or digest")->required();
  rm->add_flag("-f,--force", rm_force, "remove even while a rootfs uses it");
  rm->callback([&] { run = [&] { return remove(g, rm_refs, rm_force); }; });

  static std::string import_path, import_name;
  auto* im = image->add_subcommand("import", "import an OCI layout directory or oci-archive tar");
  im->add_option("path", import_path, "path on the daemon's host")->required();
  im->add_option("--name", import_name, "name for the image (the layout must hold one)");
  im->callback([&] { run = [&] { return import_images(g, import_path, import_name); }; });

  auto* pr = image->add_subcommand("prune", "remove blobs and snapshots no image uses");
  pr->callback([&] { run = [&] { return prune(g); }; });

  static mount_flags mf;
  auto* mt = image->add_subcommand("mount", "mount a root file system of an image (overlayfs)");
  mt->add_option("ref", mf.ref, "image")->required();
  mt->add_option("id", mf.id, "owner id (e.g. a container id)")->required();
  mt->add_option("target", mf.target,
                 "directory to mount on (made if missing), inside cytod's state dir")
      ->required();
  mt->add_flag("--outside-state-dir", mf.outside,
               "allow a target outside the state dir (root over the unix socket only)");
  mt->callback([&] { run = [&] { return mount(g, mf); }; });

  static std::string unmount_id;
  auto* um = image->add_subcommand("unmount", "unmount a root file system and delete its changes");
  um->add_option("id", unmount_id, "owner id")->required();
  um->callback([&] { run = [&] { return unmount(g, unmount_id); }; });

  auto* ms = image->add_subcommand("mounts", "list mounted root file systems");
  ms->callback([&] { run = [&] { return mounts(g); }; });

  for (auto* sub : {pl, ls, in, rm, im, pr, mt, um, ms}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  }
}

} // namespace cyto::cli
