#include "actors/images/images_actor.hpp"

#include <algorithm>
#include <climits>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <caf/all.hpp>
#include <sys/stat.h>

#include "actors/images/manifest.hpp"
#include "actors/images/puller.hpp"
#include "actors/images/reference.hpp"
#include "bus/errc.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"

namespace cyto::images {

namespace {

using self_ptr = images_private::stateful_pointer<images_state>;
using store::to_blob;
namespace fs = std::filesystem;

constexpr const char* kind_image = "image";
constexpr const char* kind_rootfs = "rootfs";
/// Schema version of kind "rootfs" rows: 2 added rootfs_info::owner.
constexpr uint32_t rootfs_row_version = 2;

/// A rootfs row as schema v1 laid it out (no owner).
struct rootfs_row_v1 {
  rootfs_info& r;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rootfs_row_v1& x) {
  return f(x.r.id, x.r.image, x.r.manifest_digest, x.r.target, x.r.lower_dirs, x.r.upper_dir,
           x.r.work_dir);
}

caf::expected<std::vector<char>> rootfs_v1_to_v2(const std::vector<char>& blob) {
  rootfs_info r;
  rootfs_row_v1 old{r};
  if (!store::from_blob(blob, old))
    return make_error(errc::internal, "not a schema v1 rootfs row");
  return to_blob(r);
}

uint32_t in_use(const images_state& st, const std::string& name) {
  return static_cast<uint32_t>(std::count_if(st.rootfs.begin(), st.rootfs.end(),
                                             [&](auto& r) { return r.second.image == name; }));
}

image_info with_use(const images_state& st, image_info x) {
  x.in_use = in_use(st, x.name);
  return x;
}

/// By exact name, by a reference that normalizes to a name, or by (a prefix of at
/// least 6 hex digits of) its digest or manifest digest.
image_info* find_image(images_state& st, const std::string& text) {
  if (auto i = st.images.find(text); i != st.images.end())
    return &i->second;
  if (auto ref = parse_reference(text, st.config.registry.default_registry)) {
    if (auto i = st.images.find(ref->name()); i != st.images.end())
      return &i->second;
  }
  auto hex = text.rfind("sha256:", 0) == 0 ? text.substr(7) : text;
  if (hex.size() >= 6 && hex.find_first_not_of("0123456789abcdef") == std::string::npos) {
    for (auto& [name, img] : st.images)
      if (img.digest.compare(7, hex.size(), hex) == 0
          || img.manifest_digest.compare(7, hex.size(), hex) == 0)
        return &img;
  }
  return nullptr;
}

caf::error not_found(const std::string& text) {
  return make_error(errc::not_found, "image " + text + ": no such image in the store");
}

/// Deletes every blob and snapshot that no image and no rootfs refers to.
prune_report collect_garbage(images_state& st) {
  std::set<std::string> blobs, snaps;
  for (auto& [name, img] : st.images) {
    blobs.insert({img.digest, img.manifest_digest, img.config_digest});
    for (auto& l : img.layers) {
      blobs.insert(l.digest);
      snaps.insert(l.chain_id);
    }
  }
  for (auto& [id, r] : st.rootfs)
    for (auto& dir : r.lower_dirs)
      snaps.insert("sha256:" + dir.substr(dir.rfind('/') + 1));
  prune_report out;
  for (auto& d : st.store->list())
    if (!blobs.count(d)) {
      out.bytes += st.store->remove(d);
      ++out.blobs;
    }
  for (auto& c : st.snapshots->list())
    if (!snaps.count(c)) {
      out.bytes += st.snapshots->remove(c);
      ++out.snapshots;
    }
  return out;
}

bool valid_rootfs_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || !std::isalnum(static_cast<unsigned char>(id[0])))
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string rootfs_dir(const images_state& st, const std::string& id) {
  return st.root + "/rootfs/" + id;
}

/// Brings rootfs records and the mounts back in line after a (re)start.
void reconcile_rootfs(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  auto rows = st.db->load_all<rootfs_info>(kind_rootfs, dropped);
  for (auto& key : dropped)
    st.log->error("images.db: unreadable record of rootfs {}; quarantined (cyto health)", key);
  if (!rows) {
    st.log->error("read rootfs records: {}", render(rows.error()));
    return;
  }
  for (auto& [r, info] : *rows) {
    if (r.state != "ready") {
      // A crash between the record and the mount, or in an unmount: undo what may exist.
      unmount(info.target);
      remove_tree(rootfs_dir(st, info.id));
      st.db->erase(kind_rootfs, r.key);
      st.log->warn("cleaned up half-made rootfs {}", info.id);
      continue;
    }
    if (!is_mounted(info.target)) {
      if (auto err = mount_overlay(info.lower_dirs, info.upper_dir, info.work_dir, info.target))
        st.log->error("re-mount rootfs {} on {}: {}", info.id, info.target, render(err));
      else
        st.log->info("re-mounted rootfs {} on {}", info.id, info.target);
    }
    st.rootfs[info.id] = std::move(info);
  }
}

void load_images(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  auto rows = st.db->load_all<image_info>(kind_image, dropped);
  for (auto& key : dropped)
    st.log->error("images.db: unreadable record of image {}; quarantined (cyto health)", key);
  if (!rows) {
    st.log->error("read image records: {}", render(rows.error()));
    return;
  }
  for (auto& [r, img] : *rows)
    st.images[img.name] = std::move(img);
}

/// Runs `work` on a thread of its own; its answer comes back as a done message, sent as
/// the actor itself (internal: the handlers accept it from nobody else).
template <class Work>
void start_job(self_ptr self, Work work,
               std::function<void(caf::expected<std::vector<image_info>>)> deliver) {
  auto& st = self->state;
  auto id = st.next_job++;
  auto handle = caf::actor_cast<images_private>(self);
  auto& job = st.jobs[id];
  job.deliver = std::move(deliver);
  job.thread = std::thread([id, handle, work = std::move(work)]() mutable {
    caf::expected<std::vector<image_info>> result = work();
    if (result)
      caf::send_as(handle, handle, done_atom::value, id, std::move(*result));
    else
      caf::send_as(handle, handle, done_atom::value, id, std::move(result.error()));
  });
}

std::unique_ptr<job_context> make_context(self_ptr self, uint64_t watch,
                                          image_progress_sink_actor sink) {
  auto& st = self->state;
  auto shutdown = st.shutdown;
  auto topics = st.config.topics;
  return std::make_unique<job_context>(job_context{
    *st.store, *st.snapshots, st.config.registry, [shutdown] { return shutdown->load(); },
    [watch, sink, topics](const image_progress& p) {
      auto x = p;
      x.watch = watch;
      if (sink)
        caf::anon_send(sink, x);
      if (topics)
        caf::anon_send(topics, publish_atom::value, std::string{topic::image_progress},
                       caf::make_message(std::move(x)));
    }});
}

void finish_job(self_ptr self, uint64_t id, caf::expected<std::vector<image_info>> result) {
  auto& st = self->state;
  auto i = st.jobs.find(id);
  if (i == st.jobs.end())
    return;
  auto job = std::move(i->second);
  st.jobs.erase(i);
  job.thread.join();
  if (result) {
    for (auto& img : *result) {
      auto blob = to_blob(img);
      if (auto err = st.db->put({kind_image, img.name, "ready", blob})) {
        st.log->error("record image {}: {}", img.name, render(err));
        result = err;
        break;
      }
      st.log->info("image {} stored: {} ({} layers, {} bytes)", img.name, img.manifest_digest,
                   img.layers.size(), img.size);
      st.images[img.name] = img;
      img = with_use(st, img);
    }
  } else {
    st.log->warn("pull/import failed: {}", render(result.error()));
  }
  job.deliver(std::move(result));
}

caf::result<void> remove_image(self_ptr self, const std::string& text, bool force) {
  auto& st = self->state;
  auto* img = find_image(st, text);
  if (!img)
    return not_found(text);
  auto name = img->name;
  if (auto n = in_use(st, name); n > 0 && !force) {
    std::string users;
    for (auto& [id, r] : st.rootfs)
      if (r.image == name)
        users += (users.empty() ? "" : ", ") + id;
    return make_error(errc::failed_precondition,
                      "image " + name + " is in use by rootfs " + users
                        + " (unmount them first, or force)");
  }
  if (auto err = st.db->erase(kind_image, name))
    return err;
  st.images.erase(name);
  if (st.jobs.empty()) {
    auto freed = collect_garbage(st);
    st.log->info("image {} removed; freed {} blobs, {} snapshots, {} bytes", name, freed.blobs,
                 freed.snapshots, freed.bytes);
  } else {
    st.log->info("image {} removed; its blobs stay until prune (a pull is running)", name);
  }
  return caf::unit;
}

/// `path` (absolute, no "..") is `dir` or below it.
bool inside(const std::string& path, const std::string& dir) {
  return path == dir || path.rfind(dir + "/", 0) == 0;
}

caf::result<rootfs_info> mount_rootfs(self_ptr self, const std::string& image,
                                      const std::string& id, const std::string& target,
                                      const std::string& owner, bool anywhere) {
  auto& st = self->state;
  if (!valid_rootfs_id(id))
    return make_error(errc::invalid_argument,
                      "rootfs id '" + id + "': 1-128 of [A-Za-z0-9_.-], starting alphanumeric");
  if (target.empty() || target.front() != '/' || target.find("/../") != std::string::npos
      || (target.size() >= 3 && target.compare(target.size() - 3, 3, "/..") == 0))
    return make_error(errc::invalid_argument,
                      "rootfs target '" + target + "': must be an absolute path without '..'");
  // A mount over /etc (or any dir of the host) is a host change: only inside cyto's
  // state dir, unless the gateway let root over the unix socket ask for it.
  auto state_dir = fs::path{st.config.state_dir}.lexically_normal().string();
  if (!anywhere && !inside(fs::path{target}.lexically_normal().string(), state_dir))
    return make_error(errc::permission_denied,
                      "rootfs target " + target + " is outside cyto's state dir " + state_dir
                        + " (root over the unix socket may ask for it: outsideStateDir)");
  if (st.rootfs.count(id))
    return make_error(errc::already_exists, "rootfs " + id + " is mounted on "
                                              + st.rootfs[id].target);
  auto* img = find_image(st, image);
  if (!img)
    return not_found(image);
  if (img->layers.empty())
    return make_error(errc::unsupported, "image " + img->name + " has no layers");
  rootfs_info info;
  info.id = id;
  info.image = img->name;
  info.manifest_digest = img->manifest_digest;
  info.target = target;
  info.owner = owner;
  for (auto it = img->layers.rbegin(); it != img->layers.rend(); ++it) {
    if (!st.snapshots->has(it->chain_id))
      return make_error(errc::failed_precondition,
                        "image " + img->name + ": snapshot " + it->chain_id
                          + " is missing; pull the image again");
    info.lower_dirs.push_back(st.snapshots->path(it->chain_id));
  }
  auto dir = rootfs_dir(st, id);
  info.upper_dir = dir + "/upper";
  info.work_dir = dir + "/work";
  if (auto err = st.db->put({kind_rootfs, id, "mounting", to_blob(info)}))
    return err;
  auto undo = [&](caf::error err) -> caf::result<rootfs_info> {
    remove_tree(dir);
    st.db->erase(kind_rootfs, id);
    return err;
  };
  std::error_code ec;
  fs::create_directories(info.upper_dir, ec);
  if (!ec)
    fs::create_directories(info.work_dir, ec);
  if (ec)
    return undo(make_error(errc::unavailable, "create " + dir + ": " + ec.message()));
  struct stat tst{};
  bool made_target = false;
  if (::stat(target.c_str(), &tst) != 0) {
    if (::mkdir(target.c_str(), 0755) != 0)
      return undo(make_error(errno == ENOENT ? errc::not_found : errc::unavailable,
                             "create rootfs target " + target + ": " + std::strerror(errno)));
    made_target = true;
  } else if (!S_ISDIR(tst.st_mode)) {
    return undo(make_error(errc::invalid_argument, "rootfs target " + target
                                                     + " is not a directory"));
  }
  if (!anywhere) {
    // Inside by name but not through a symlink out of it.
    char real[PATH_MAX], real_state[PATH_MAX];
    if (!::realpath(target.c_str(), real) || !::realpath(state_dir.c_str(), real_state)
        || !inside(real, real_state)) {
      if (made_target)
        ::rmdir(target.c_str());
      return undo(make_error(errc::permission_denied,
                             "rootfs target " + target + " leads outside cyto's state dir "
                               + state_dir));
    }
  }
  if (auto err = mount_overlay(info.lower_dirs, info.upper_dir, info.work_dir, target))
    return undo(std::move(err));
  if (auto err = st.db->set_state(kind_rootfs, id, "ready")) {
    unmount(target);
    return undo(std::move(err));
  }
  st.rootfs[id] = info;
  st.log->info("rootfs {} of {} mounted on {} ({} layers)", id, info.image, target,
               info.lower_dirs.size());
  return info;
}

caf::result<void> unmount_rootfs(self_ptr self, const std::string& id, const std::string& owner) {
  auto& st = self->state;
  auto i = st.rootfs.find(id);
  if (i == st.rootfs.end())
    return make_error(errc::not_found, "rootfs " + id + ": not mounted by cytod");
  auto& mine = i->second.owner;
  bool root_api = owner == "api:uid:0" && mine.rfind("api:", 0) == 0;
  if (!mine.empty() && mine != owner && !root_api)
    return make_error(errc::permission_denied,
                      "rootfs " + id + " belongs to " + mine
                        + (mine.rfind("api:", 0) == 0 ? "" : "; remove what uses it instead"));
  // Marked first: a crash from here on is finished at the next start (reconcile_rootfs
  // undoes any record that is not "ready"), never a record of a mount that is gone.
  if (auto err = st.db->set_state(kind_rootfs, id, "unmounting"))
    return err;
  if (auto err = unmount(i->second.target)) {
    st.db->set_state(kind_rootfs, id, "ready");
    return err;
  }
  remove_tree(rootfs_dir(st, id));
  if (auto err = st.db->erase(kind_rootfs, id))
    st.log->error("erase rootfs record {}: {}", id, render(err));
  st.log->info("rootfs {} unmounted from {}", id, i->second.target);
  st.rootfs.erase(i);
  return caf::unit;
}

} // namespace

std::string images_config::validate() const {
  if (state_dir.empty() || state_dir.front() != '/')
    return "state_dir must be an absolute path";
  if (registry.default_registry.empty())
    return "images.default_registry must not be empty";
  if (registry.parallel_layers == 0 || registry.parallel_layers > 64)
    return "images.parallel_layers must be 1..64";
  return {};
}

images_state::~images_state() {
  shutdown->store(true);
  for (auto& [id, job] : jobs)
    if (job.thread.joinable())
      job.thread.join();
}

images_private::behavior_type images(self_ptr self, images_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("images");
  st.root = st.config.state_dir + "/images";
  auto fail = [&](caf::error cause) -> images_private::behavior_type {
    st.log->error("images unavailable: {}", render(cause));
    auto why = make_error(errc::unavailable, "images: " + context_of(cause));
    return {
      [why](pull_atom, std::string&, std::string&, uint64_t,
            image_progress_sink_actor&) -> caf::result<image_info> { return why; },
      [why](list_atom) -> caf::result<std::vector<image_info>> { return why; },
      [why](get_atom, std::string&) -> caf::result<image_info> { return why; },
      [why](delete_atom, std::string&, bool) -> caf::result<void> { return why; },
      [why](import_atom, std::string&, std::string&) -> caf::result<std::vector<image_info>> {
        return why;
      },
      [why](prune_atom) -> caf::result<prune_report> { return why; },
      [why](mount_atom, std::string&, std::string&, std::string&, std::string&,
            bool) -> caf::result<rootfs_info> { return why; },
      [why](unmount_atom, std::string&, std::string&) -> caf::result<void> { return why; },
      [why](list_atom, mount_atom) -> caf::result<std::vector<rootfs_info>> { return why; },
      [](done_atom, uint64_t, std::vector<image_info>&) {},
      [](done_atom, uint64_t, caf::error&) {},
    };
  };
  auto store = content_store::open(st.root);
  if (!store)
    return fail(store.error());
  st.store = std::move(*store);
  auto snaps = snapshot_store::open(st.root + "/snapshots");
  if (!snaps)
    return fail(snaps.error());
  st.snapshots = std::move(*snaps);
  auto db = store::state_db::open(st.root + "/images.db");
  if (!db)
    return fail(db.error());
  st.db = std::move(*db);
  st.db->declare(kind_rootfs, rootfs_row_version, {{1, rootfs_v1_to_v2}});
  load_images(self);
  reconcile_rootfs(self);
  st.log->info("images ready: {} images, {} rootfs mounted, store {}", st.images.size(),
               st.rootfs.size(), st.root);
  return {
    [self](pull_atom, std::string& ref_text, std::string& platform_text, uint64_t watch,
           image_progress_sink_actor& sink) -> caf::result<image_info> {
      auto& st = self->state;
      auto ref = parse_reference(ref_text, st.config.registry.default_registry);
      if (!ref)
        return ref.error();
      auto want = parse_platform(platform_text);
      if (!want)
        return want.error();
      auto rp = self->make_response_promise<image_info>();
      auto ctx = make_context(self, watch, sink);
      st.log->info("pull {} for {}", ref->name(), want->str());
      start_job(
        self,
        [ctx = std::move(ctx), ref = *ref, want = *want]() mutable
        -> caf::expected<std::vector<image_info>> {
          auto img = pull_image(*ctx, ref, want);
          if (!img)
            return img.error();
          return std::vector<image_info>{std::move(*img)};
        },
        [rp](caf::expected<std::vector<image_info>> r) mutable {
          if (r)
            rp.deliver(std::move(r->front()));
          else
            rp.deliver(std::move(r.error()));
        });
      return rp;
    },
    [self](list_atom) {
      auto& st = self->state;
      std::vector<image_info> out;
      for (auto& [name, img] : st.images)
        out.push_back(with_use(st, img));
      return out;
    },
    [self](get_atom, std::string& text) -> caf::result<image_info> {
      auto& st = self->state;
      if (text.empty())
        return make_error(errc::invalid_argument, "give an image reference or id");
      if (auto* img = find_image(st, text))
        return with_use(st, *img);
      return not_found(text);
    },
    [self](delete_atom, std::string& text, bool force) -> caf::result<void> {
      return remove_image(self, text, force);
    },
    [self](import_atom, std::string& path, std::string& name)
      -> caf::result<std::vector<image_info>> {
      auto& st = self->state;
      if (!name.empty()) {
        auto ref = parse_reference(name, st.config.registry.default_registry);
        if (!ref)
          return ref.error();
      }
      auto rp = self->make_response_promise<std::vector<image_info>>();
      auto ctx = make_context(self, 0, image_progress_sink_actor{});
      st.log->info("import {}", path);
      start_job(
        self,
        [ctx = std::move(ctx), path, name]() mutable {
          return import_images(*ctx, path, name, platform{"linux", "amd64", ""});
        },
        [rp](caf::expected<std::vector<image_info>> r) mutable {
          if (r)
            rp.deliver(std::move(*r));
          else
            rp.deliver(std::move(r.error()));
        });
      return rp;
    },
    [self](prune_atom) -> caf::result<prune_report> {
      auto& st = self->state;
      if (!st.jobs.empty())
        return make_error(errc::failed_precondition,
                          "a pull or import is running; prune once it has ended");
      auto r = collect_garbage(st);
      st.log->info("prune: removed {} blobs, {} snapshots, {} bytes", r.blobs, r.snapshots,
                   r.bytes);
      return r;
    },
    [self](mount_atom, std::string& image, std::string& id, std::string& target,
           std::string& owner, bool anywhere) -> caf::result<rootfs_info> {
      return mount_rootfs(self, image, id, target, owner, anywhere);
    },
    [self](unmount_atom, std::string& id, std::string& owner) -> caf::result<void> {
      return unmount_rootfs(self, id, owner);
    },
    [self](list_atom, mount_atom) {
      std::vector<rootfs_info> out;
      for (auto& [id, r] : self->state.rootfs)
        out.push_back(r);
      return out;
    },
    bus::internal(self,
                  [self](done_atom, uint64_t id, std::vector<image_info>& imgs) {
                    finish_job(self, id, std::move(imgs));
                  }),
    bus::internal(self,
                  [self](done_atom, uint64_t id, caf::error& err) {
                    finish_job(self, id, std::move(err));
                  }),
  };
}

} // namespace cyto::images
