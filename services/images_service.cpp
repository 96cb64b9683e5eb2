#include "services/images_service.hpp"
#include "services/cancellable.hpp"

#include <caf/all.hpp>

namespace cyto::services {

namespace {

void to_capnp(const image_info& x, schema::Image::Builder out) {
  out.setName(x.name);
  out.setDigest(x.digest);
  out.setManifestDigest(x.manifest_digest);
  out.setMediaType(x.media_type);
  out.setConfigDigest(x.config_digest);
  out.setOs(x.os);
  out.setArchitecture(x.architecture);
  out.setVariant(x.variant);
  out.setCreated(x.created);
  out.setSize(x.size);
  auto layers = out.initLayers(x.layers.size());
  for (uint i = 0; i < x.layers.size(); ++i) {
    auto& l = x.layers[i];
    auto o = layers[i];
    o.setDigest(l.digest);
    o.setMediaType(l.media_type);
    o.setSize(l.size);
    o.setDiffId(l.diff_id);
    o.setChainId(l.chain_id);
  }
  out.setConfig(x.config_json);
  out.setPulledUnixNanos(x.pulled_unix_nanos);
  out.setInUse(x.in_use);
}

void to_capnp(const rootfs_info& x, schema::Rootfs::Builder out) {
  out.setId(x.id);
  out.setImage(x.image);
  out.setManifestDigest(x.manifest_digest);
  out.setTarget(x.target);
  auto lowers = out.initLowerDirs(x.lower_dirs.size());
  for (uint i = 0; i < x.lower_dirs.size(); ++i)
    lowers.set(i, x.lower_dirs[i]);
  out.setUpperDir(x.upper_dir);
  out.setWorkDir(x.work_dir);
}

class images_service final : public cancellable<schema::Images::Server> {
public:
  images_service(bridge& br, progress_router& router, images_actor images,
                 gateway_caller caller)
    : bridge_(br), router_(router), images_(std::move(images)), caller_(std::move(caller)) {
  }

  kj::Promise<void> pull(PullContext context) override {
    auto p = context.getParams();
    uint64_t watch = 0;
    if (p.hasSink())
      watch = router_.add(p.getSink());
    auto sink = watch ? caf::actor_cast<image_progress_sink_actor>(bridge_.handle())
                      : image_progress_sink_actor{};
    return bridge_
      .request(bridge::infinite, images_, pull_atom::value, std::string{p.getRef()}, std::string{p.getPlatform()},
               watch, sink)
      .then([this, context, watch](image_info img) mutable -> kj::Promise<void> {
        to_capnp(img, context.getResults().initImage());
        // Answer after the last progress call reached the client.
        return watch ? router_.finish(watch) : kj::Promise<void>(kj::READY_NOW);
      })
      .attach(kj::defer([this, watch] {
        if (watch)
          router_.remove(watch);
      }));
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(images_, list_atom::value)
      .then([context](std::vector<image_info> all) mutable {
        auto out = context.getResults().initImages(all.size());
        for (uint i = 0; i < all.size(); ++i)
          to_capnp(all[i], out[i]);
      });
  }

  kj::Promise<void> inspect(InspectContext context) override {
    return bridge_.request(images_, get_atom::value, std::string{context.getParams().getRef()})
      .then([context](image_info img) mutable { to_capnp(img, context.getResults().initImage()); });
  }

  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return bridge_.request(images_, delete_atom::value, std::string{p.getRef()}, p.getForce());
  }

  kj::Promise<void> import(ImportContext context) override {
    auto p = context.getParams();
    return bridge_
      .request(bridge::infinite, images_, import_atom::value, std::string{p.getPath()}, std::string{p.getName()})
      .then([context](std::vector<image_info> all) mutable {
        auto out = context.getResults().initImages(all.size());
        for (uint i = 0; i < all.size(); ++i)
          to_capnp(all[i], out[i]);
      });
  }

  kj::Promise<void> prune(PruneContext context) override {
    return bridge_.request(bridge::infinite, images_, prune_atom::value)
      .then([context](prune_report r) mutable {
        auto out = context.getResults().initReport();
        out.setBlobs(r.blobs);
        out.setSnapshots(r.snapshots);
        out.setBytes(r.bytes);
      });
  }

  kj::Promise<void> mount(MountContext context) override {
    auto p = context.getParams();
    if (p.getOutsideStateDir() && !caller_.local_root)
      return to_exception(errc::permission_denied,
                          "only root over the unix socket may mount outside cyto's state dir");
    return bridge_
      .request(bridge::infinite, images_, mount_atom::value, std::string{p.getRef()}, std::string{p.getId()},
               std::string{p.getTarget()}, caller_.owner, p.getOutsideStateDir())
      .then([context](rootfs_info r) mutable { to_capnp(r, context.getResults().initRootfs()); });
  }

  kj::Promise<void> unmount(UnmountContext context) override {
    return bridge_.request(images_, unmount_atom::value, std::string{context.getParams().getId()},
                           caller_.owner);
  }

  kj::Promise<void> mounts(MountsContext context) override {
    return bridge_.request(images_, list_atom::value, mount_atom::value)
      .then([context](std::vector<rootfs_info> all) mutable {
        auto out = context.getResults().initRootfs(all.size());
        for (uint i = 0; i < all.size(); ++i)
          to_capnp(all[i], out[i]);
      });
  }

private:
  bridge& bridge_;
  progress_router& router_;
  images_actor images_;
  gateway_caller caller_;
};

} // namespace

bool progress_router::route(caf::message& msg) {
  if (!msg.match_elements<image_progress>())
    return false;
  auto& p = msg.get_as<image_progress>(0);
  auto i = sinks_.find(p.watch);
  if (i == sinks_.end())
    return true; // the pull ended or its client left
  auto req = i->second->sink.progressRequest();
  auto l = req.initLayer();
  l.setDigest(p.digest);
  l.setPhase(static_cast<schema::LayerPhase>(p.phase));
  l.setCurrent(p.current);
  l.setTotal(p.total);
  // Streaming calls are flow-controlled by capnp; a client that fails just loses progress.
  i->second->last = i->second->last.then([req = kj::mv(req)]() mutable {
    return req.send().catch_([](kj::Exception&&) {});
  }).eagerlyEvaluate(nullptr);
  return true;
}

uint64_t progress_router::add(schema::PullSink::Client sink) {
  auto id = next_++;
  sinks_.emplace(id, kj::heap<stream>(stream{kj::mv(sink)}));
  return id;
}

kj::Promise<void> progress_router::finish(uint64_t watch) {
  auto i = sinks_.find(watch);
  if (i == sinks_.end())
    return kj::READY_NOW;
  auto s = kj::mv(i->second);
  sinks_.erase(i);
  auto last = kj::mv(s->last);
  return last.attach(kj::mv(s));
}

void progress_router::remove(uint64_t watch) {
  sinks_.erase(watch);
}

kj::Own<schema::Images::Server> new_images_service(bridge& br, progress_router& router,
                                                   images_actor images, gateway_caller caller) {
  return kj::heap<images_service>(br, router, std::move(images), std::move(caller));
}

} // namespace cyto::services
