#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <caf/expected.hpp>
#include <spdlog/logger.h>

#include "actors/images/content_store.hpp"
#include "actors/images/registry_client.hpp"
#include "actors/images/snapshots.hpp"
#include "bus/interfaces.hpp"
#include "actors/store/state_db.hpp"

namespace cyto::images {

/// The images actor as it is spawned: images_actor (what everyone else holds) and the
/// messages only its worker threads send it, as itself (see bus/internal.hpp).
using images_private = images_actor::extend<
  /// Worker job `job` finished with images (or failed).
  caf::reacts_to<done_atom, uint64_t, std::vector<image_info>>,
  caf::reacts_to<done_atom, uint64_t, caf::error>>;

/// What the images actor is told at spawn.
struct images_config {
  /// <state_dir>/images holds blobs/, snapshots/, rootfs/ and images.db.
  std::string state_dir;
  registry_settings registry;
  /// Where "image.progress" is published.
  topic_actor topics;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct images_state {
  static constexpr const char* name = "images";

  /// A pull or import running on its own thread.
  struct job {
    std::thread thread;
    std::function<void(caf::expected<std::vector<image_info>>)> deliver;
  };

  ~images_state();

  images_config config;
  std::string root;
  std::unique_ptr<content_store> store;
  std::unique_ptr<snapshot_store> snapshots;
  std::unique_ptr<store::state_db> db;
  std::map<std::string, image_info> images;
  std::map<std::string, rootfs_info> rootfs;
  std::map<uint64_t, job> jobs;
  uint64_t next_job = 1;
  /// Set when the actor goes away: running jobs stop at their next check.
  std::shared_ptr<std::atomic<bool>> shutdown = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<spdlog::logger> log;
};

/// The images actor. Blocking work: pulls and imports on worker threads; removal,
/// prune and mounts on the actor's own (detached) thread. Spawn it, then hand out the
/// images_actor it converts to.
images_private::behavior_type images(images_private::stateful_pointer<images_state> self,
                                     images_config config);

} // namespace cyto::images
