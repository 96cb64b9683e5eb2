#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "actors/store/state_db.hpp"
#include "bus/interfaces.hpp"

namespace cyto::containers {

/// The containers actor as it is spawned: containers_actor (what everyone else holds)
/// and the messages only it sends itself (see bus/internal.hpp).
using containers_private = containers_actor::extend<
  /// The stop timeout of run `run` of container `id` ran out.
  caf::reacts_to<tick_atom, std::string, uint64_t>,
  /// The restart policy's backoff after run `run` of container `id` is over: start it again.
  caf::reacts_to<start_atom, std::string, uint64_t>>;

/// What the containers actor is told at spawn.
struct containers_config {
  /// state.db, bundles/<id>/ and runtime/ live here.
  std::string state_dir;
  /// The `cyto-runtime` binary whose shim, exec and idle verbs the actor starts.
  std::string runtime_path;
  /// An OCI layout imported as image "demo" on start when missing (empty: none).
  std::string demo_image;
  /// Containers without a seccomp profile of their own get the default one.
  bool default_seccomp = true;
  /// The network of containers and pods created without --network
  /// (containers.default_network); "" or "none": they get none (lo only).
  std::string default_network;
  cells_actor cells;
  images_actor images;
  /// Where the network actor is looked up when a container asks for a network.
  registry_actor registry;
  /// The network actor itself (as the cells actor gets it): the removals that start-up
  /// finishes run before the registry knows it, and skipped the detach then (an orphaned
  /// lease, veth and netns). Unset: looked up in the registry.
  network_actor network;
  /// Claims the named volumes containers mount (-v NAME:/path). Unset: such mounts are
  /// refused (unavailable).
  volumes_actor volumes;
  /// Where a run's output is followed from. Unset: looked up in the registry.
  observe_actor observe;

  /// Empty when usable; otherwise what is wrong.
  std::string validate() const;
};

struct containers_state {
  static constexpr const char* name = "containers";

  struct container {
    container_info info;
    /// Of the container's process, to tell it from a reuse of its pid.
    uint64_t start_time = 0;
    /// pidfd of the container's process (-1 when not running or not adopted).
    int pidfd = -1;
    /// The shim's host pid (the cell executable).
    uint32_t shim_pid = 0;
    /// Checked before signalling shim_pid (0: unknown, from a schema v1 row).
    uint64_t shim_start_time = 0;
    bool net_attached = false;
    /// A start in flight: told of started.json (or the exit).
    std::vector<std::function<void(caf::expected<container_info>)>> starting;
    /// Answered when it stops.
    std::vector<caf::typed_response_promise<container_info>> waiters;
    /// Starts that wait for the end (`cyto run`): answered when it stops or, with
    /// auto-remove, once it is removed (so `run --rm` returns when nothing is left).
    std::vector<caf::typed_response_promise<container_info>> runners;
    /// Internal continuations run when it stops, after the waiters.
    std::vector<std::function<void()>> on_exit;
    uint32_t next_exec = 1;
    bool removing = false;
    /// Stopped by a user (stop, kill, pod stop): the restart policy leaves it stopped.
    bool stopped_by_user = false;
    /// Its process was told to start (the restart policy applies to its exit).
    bool start_requested = false;
    /// Being made created again (init_atom); refuses another start meanwhile.
    bool recreating = false;
    /// Counts the processes made for it in this daemon: timers of an earlier run (stop
    /// timeout, restart backoff) are ignored.
    uint64_t run = 0;
    /// The restart policy's current backoff (0: none yet).
    uint32_t backoff_ms = 0;
  };

  struct pod {
    pod_info info;
    bool net_attached = false;
  };

  ~containers_state();

  containers_config config;
  std::unique_ptr<store::state_db> db;
  std::map<std::string, container> containers;
  std::map<std::string, pod> pods;
  /// Names being created (not yet in `containers`), so a duplicate is refused at once.
  std::map<std::string, std::string> reserved;
  std::shared_ptr<spdlog::logger> log;
};

/// The containers actor. Spawn it, then hand out the containers_actor it converts to.
containers_private::behavior_type
containers(containers_private::stateful_pointer<containers_state> self, containers_config config);

} // namespace cyto::containers
