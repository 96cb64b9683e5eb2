#pragma once
// The table of contents of cyto: every typed actor interface in one place.
// One line of comment per handler. Message structs live in bus/messages.hpp.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "bus/atoms.hpp"
#include "bus/cells.hpp"
#include "bus/containers.hpp"
#include "bus/federation.hpp"
#include "bus/images.hpp"
#include "bus/messages.hpp"
#include "bus/network.hpp"
#include "bus/observe.hpp"
#include "bus/vms.hpp"
#include "bus/volumes.hpp"

namespace cyto {

// Only public verbs are listed here: what the registry, the gateway, other actors and
// other nodes may send. Messages an actor sends itself (timers, its watcher threads and
// workers) are in a `<name>_private` extension next to its implementation (e.g.
// cells::cells_private in actors/cells/cells_actor.hpp), which it is spawned as; their
// handlers also drop such messages from anyone else at run time (bus/internal.hpp).

// -- bus ---------------------------------------------------------------------

/// Name -> actor handle, local ("cells") or of another node ("b/cells", put there by the
/// federation actor). Registered actors are monitored: one that terminates is removed
/// and, if it is local and was not deleted first, reported by `health`.
using registry_actor = caf::typed_actor<
  /// Registers `handle` under `name`; already_exists if the name is taken.
  caf::reacts_to<put_atom, std::string, caf::strong_actor_ptr>,
  /// Looks up a name; not_found if nobody registered it.
  caf::replies_to<get_atom, std::string>::with<caf::strong_actor_ptr>,
  /// Removes a name (a no-op for unknown names).
  caf::reacts_to<delete_atom, std::string>,
  /// Lists registered names, sorted.
  caf::replies_to<list_atom>::with<std::vector<std::string>>,
  /// Lists problems: registered actors that terminated without being deleted.
  caf::replies_to<health_atom>::with<std::vector<std::string>>,
  /// This node's own services (names without a "node/" prefix) with their handles.
  caf::replies_to<get_atom, list_atom>::with<std::vector<service_handle>>>;

/// Receives the batches of a topic subscription; grants credit back with `demand`.
using topic_subscriber_actor = caf::typed_actor<
  /// A batch of events (and a count of events dropped just before them).
  caf::reacts_to<topic_batch>>;

/// Publish/subscribe by topic name. Each subscriber has a bounded queue and credit:
/// the topic sends at most as many events as the subscriber granted, queues up to
/// `capacity` more and then drops the oldest, counting them. A publisher never waits
/// (unless it asks for a receipt and waits for that).
using topic_actor = caf::typed_actor<
  /// Subscribes `who` to a topic with a queue of `capacity` events and
  /// `credit` events of initial demand; returns the subscription id.
  caf::replies_to<subscribe_atom, std::string, topic_subscriber_actor, uint32_t,
                  uint32_t>::with<uint64_t>,
  /// Ends a subscription (a no-op for unknown ids).
  caf::reacts_to<unsub_atom, uint64_t>,
  /// As subscribe, for a local subscriber that acknowledges: a receipted publish (below)
  /// is answered only once this subscriber has granted credit again after it (it has
  /// consumed it), not when it was sent. Flow control for the whole path of a stream.
  caf::replies_to<subscribe_atom, ack_atom, std::string, topic_subscriber_actor, uint32_t,
                  uint32_t>::with<uint64_t>,
  /// Publishes one event (any inspectable message) to a topic.
  caf::reacts_to<publish_atom, std::string, caf::message>,
  /// Publishes one event with a receipt: answers once no subscriber holds it any more
  /// (sent to each, consumed by each acknowledging one, or dropped). A publisher that waits
  /// for it before publishing more has a bounded amount in flight.
  caf::replies_to<publish_atom, ack_atom, std::string, caf::message>::with<void>,
  /// Grants a subscription credit for `n` more events.
  caf::reacts_to<demand_atom, uint64_t, uint32_t>,
  /// Counters: topics, subscribers, published, delivered, dropped.
  caf::replies_to<get_atom, stats_atom>::with<topic_stats>>;

// -- node --------------------------------------------------------------------

/// Identity, uptime and host features of this node.
using node_actor = caf::typed_actor<
  /// Who this node is and what the host supports.
  caf::replies_to<discover_atom>::with<node_info>,
  /// Whether every registered actor is alive.
  caf::replies_to<health_atom>::with<health_report>>;

// -- cells -------------------------------------------------------------------

/// Owns every cgroup and process the daemon starts: cells (nestable, limited cgroups)
/// and executables in them. Everything is recorded in state.db and re-adopted on restart.
/// Publishes "process.started", "process.exited" and "process.output" (stdout and stderr
/// in runs of lines, receipted, then an end marker).
using cells_actor = caf::typed_actor<
  /// Makes a cell ("parent/child" for nested ones) with its limits.
  caf::replies_to<allocate_atom, cell_spec>::with<cell_info>,
  /// Removes a cell: `recursive` also its children, `force` kills its processes first.
  caf::reacts_to<free_atom, std::string, bool, bool>,
  /// Starts an executable in a cell; answers once it runs (exec succeeded).
  caf::replies_to<start_atom, executable_spec>::with<executable_info>,
  /// The same; `keep_output` appends its output to the files of the executable's previous
  /// run of that name instead of starting them afresh (a restarted container's log).
  caf::replies_to<start_atom, executable_spec, bool>::with<executable_info>,
  /// Signals an executable (0 = SIGTERM), SIGKILL after `timeout_ms`; answers on exit.
  caf::replies_to<stop_atom, std::string, std::string, int32_t, uint32_t>::with<exit_status>,
  /// Every cell, parents before children.
  caf::replies_to<list_atom>::with<std::vector<cell_info>>,
  /// One cell.
  caf::replies_to<get_atom, std::string>::with<cell_info>,
  /// Answers when the executable has exited (at once if it has).
  caf::replies_to<wait_atom, std::string, std::string>::with<exit_status>,
  /// Usage counters of one cell (its children included), or of every cell for "".
  caf::replies_to<stats_atom, std::string>::with<std::vector<cell_usage>>,
  /// Stray cgroups under the root (not in state.db, holding processes), one line each.
  caf::replies_to<health_atom>::with<std::vector<std::string>>>;

// -- images ------------------------------------------------------------------

/// Receives the progress of one pull (the gateway, for a client's progress sink).
using image_progress_sink_actor = caf::typed_actor<
  /// One blob's phase and bytes.
  caf::reacts_to<image_progress>>;

/// Owns the content store (<state>/images/blobs), the layer snapshots and the image
/// records (images.db). Pulls and imports run on worker threads; progress goes to the
/// caller's sink and to topic "image.progress".
using images_actor = caf::typed_actor<
  /// Pulls `ref` for `platform` ("" = linux/amd64); progress goes to `sink` tagged `watch`.
  caf::replies_to<pull_atom, std::string, std::string, uint64_t,
                  image_progress_sink_actor>::with<image_info>,
  /// Every image, by name.
  caf::replies_to<list_atom>::with<std::vector<image_info>>,
  /// One image by name, short name or digest.
  caf::replies_to<get_atom, std::string>::with<image_info>,
  /// Removes an image record (and what only it used); refused while a rootfs uses it
  /// unless `force`.
  caf::reacts_to<delete_atom, std::string, bool>,
  /// Imports an OCI layout directory or oci-archive tar; `name` renames a single image.
  caf::replies_to<import_atom, std::string, std::string>::with<std::vector<image_info>>,
  /// Removes every blob and snapshot no image and no rootfs refers to.
  caf::replies_to<prune_atom>::with<prune_report>,
  /// Mounts a rootfs `id` of image `image` on dir `target` (made if missing) for `owner`
  /// (see rootfs_info::owner). `target` must be inside the state dir unless `anywhere`
  /// (the gateway allows that to root over the unix socket only).
  caf::replies_to<mount_atom, std::string, std::string, std::string, std::string,
                  bool>::with<rootfs_info>,
  /// Unmounts and deletes rootfs `id` (its upper dir with it), if `owner` may.
  caf::reacts_to<unmount_atom, std::string, std::string>,
  /// Every prepared rootfs.
  caf::replies_to<list_atom, mount_atom>::with<std::vector<rootfs_info>>>;

// -- network -----------------------------------------------------------------

/// Owns CNI networks (conflists under <state>/network/), named netns files
/// (<state>/netns/) and attachments (state.db). Plugins run on worker threads.
using network_actor = caf::typed_actor<
  /// Makes a network (conflist written, nothing in the kernel until the first attach).
  caf::replies_to<create_atom, network_spec>::with<network_info>,
  /// Removes a network; refused (failed_precondition) while anything is attached.
  caf::reacts_to<delete_atom, std::string>,
  /// Every network, by name, with its attachments.
  caf::replies_to<list_atom>::with<std::vector<network_info>>,
  /// One network by name.
  caf::replies_to<get_atom, std::string>::with<network_info>,
  /// Connects a workload (CNI ADD); nothing is left on error.
  caf::replies_to<attach_atom, attach_request>::with<net_attachment>,
  /// Makes a tap device on the network's bridge (in the daemon's netns) with an address
  /// from the network's IPAM, for a VM; nothing is left on error. detach releases it.
  caf::replies_to<attach_atom, tap_request>::with<net_attachment>,
  /// Disconnects a workload (CNI DEL) and removes its netns if the actor made it;
  /// a no-op for an owner with no attachment.
  caf::reacts_to<detach_atom, std::string>,
  /// Runs CNI CHECK for an owner's attachment.
  caf::replies_to<check_atom, std::string>::with<net_attachment>>;

// -- volumes -----------------------------------------------------------------

/// Owns named volumes (<state>/volumes/<name>/_data, records in state.db) and the claims
/// containers hold on them. A claim is kept in its volume's record, so it survives a
/// restart; the containers actor trims the claims of containers it no longer has.
using volumes_actor = caf::typed_actor<
  /// Makes a volume ("": a generated name); already_exists if it exists.
  caf::replies_to<create_atom, std::string>::with<volume_info>,
  /// Removes a volume with its data; refused (failed_precondition) while a container
  /// uses it. `force` only makes a missing volume no error.
  caf::reacts_to<delete_atom, std::string, bool>,
  /// Every volume, by name.
  caf::replies_to<list_atom>::with<std::vector<volume_info>>,
  /// One volume.
  caf::replies_to<get_atom, std::string>::with<volume_info>,
  /// Claims a volume for a container, making it when missing; answers the volume and
  /// whether this claim made it.
  caf::replies_to<attach_atom, volume_claim>::with<volume_info, bool>,
  /// Releases every claim of container `id` (a no-op when it holds none).
  caf::reacts_to<detach_atom, std::string>,
  /// Releases the claims of every container whose id is not in the list.
  caf::reacts_to<trim_atom, std::vector<std::string>>>;

// -- containers --------------------------------------------------------------

/// Receives an output subscription's lines; grants credit with observe's `demand`.
using output_sink_actor = caf::typed_actor<caf::reacts_to<output_batch>>;

/// Owns OCI containers and pods. A container is a cell (cells actor) with a rootfs
/// (images actor) whose `cyto-runtime shim` runs as an executable of that cell; the
/// actor and the shim talk through files in the bundle dir. Records live in state.db
/// and are re-adopted on restart (containers outlive the daemon).
/// One copy to or from a container's root file system (cyto cp): a detached helper of the
/// containers actor that spools the tar in a temporary file. Quits once done, on an
/// error, or after two idle minutes (a client that went away).
using copy_stream_actor = caf::typed_actor<
  /// Checks the container's path and, out of it, writes the whole tar into the spool.
  caf::reacts_to<start_atom>,
  /// Out: the next bytes of the tar (empty: the end).
  caf::replies_to<get_atom>::with<std::string>,
  /// In: the next bytes of the tar.
  caf::reacts_to<put_atom, std::string>,
  /// In: the end of the tar; answers once every entry is in place (checked whole first).
  caf::reacts_to<done_atom>>;

using containers_actor = caf::typed_actor<
  /// Makes a container (cell, rootfs, bundle, process waiting for start); nothing is
  /// left on error.
  caf::replies_to<create_atom, container_spec>::with<container_info>,
  /// Lets a created container run its program (a stopped one is made created again
  /// first, see init_atom); answers once it runs or, with `wait`, once it has stopped
  /// (before an auto-remove).
  caf::replies_to<start_atom, std::string, bool>::with<container_info>,
  /// Makes a stopped container created again (podman's init): the same id, rootfs and
  /// bundle, its network attached again, a new process waiting for start, its log kept.
  caf::replies_to<init_atom, std::string>::with<container_info>,
  /// create + start in one call (`wait` as for start).
  caf::replies_to<run_atom, container_spec, bool>::with<container_info>,
  /// The one-call run: pulls the image as the options say (progress to the sink), creates,
  /// streams the output (both streams, from the first line) to the output sink as
  /// output_batch tagged with options.output_watch (credit: `demand`/`unsub` with that
  /// id to the batches' sender), starts and answers as start does. Nothing is left when it
  /// fails.
  caf::replies_to<run_atom, container_spec, run_options, output_sink_actor,
                  image_progress_sink_actor>::with<container_info>,
  /// Signals the container's process (0 = SIGTERM), SIGKILL after `timeout_ms`
  /// (0 = never); answers once it stopped.
  caf::replies_to<stop_atom, std::string, int32_t, uint32_t>::with<container_info>,
  /// Sends one signal to the container's process; answers at once.
  caf::reacts_to<kill_atom, std::string, int32_t>,
  /// Removes a container (cell, rootfs, bundle, record); `force` kills a running one.
  caf::reacts_to<delete_atom, std::string, bool>,
  /// Every container, by name.
  caf::replies_to<list_atom>::with<std::vector<container_info>>,
  /// One container by name or id (prefix of at least 4 hex digits).
  caf::replies_to<get_atom, std::string>::with<container_info>,
  /// Starts another process in a running container, as an executable of its cell.
  caf::replies_to<exec_atom, exec_spec>::with<exec_info>,
  /// Answers once the container has stopped (at once if it has).
  caf::replies_to<wait_atom, std::string>::with<container_info>,
  /// Makes a pod: its cell and the pause process that holds its namespaces.
  caf::replies_to<create_atom, pod_spec>::with<pod_info>,
  /// Stops a pod's containers (SIGTERM, SIGKILL after `timeout_ms`), then its pause process.
  caf::replies_to<stop_atom, pod_atom, std::string, uint32_t>::with<pod_info>,
  /// Removes a pod; refused while containers run in it unless `force`.
  caf::reacts_to<delete_atom, pod_atom, std::string, bool>,
  /// Every pod, by name.
  caf::replies_to<list_atom, pod_atom>::with<std::vector<pod_info>>,
  /// The attach socket (bundle/attach.sock, served by the shim: see
  /// actors/containers/attach.hpp) of a created or running container made with -t or -i,
  /// or (non-empty second argument) of its exec -i/-t process of that executable name;
  /// failed_precondition when it has stopped or has neither.
  caf::replies_to<attach_atom, std::string, std::string>::with<std::string>,
  /// cyto cp out of a container: a copy_stream_actor whose get_atom answers the tar of
  /// `path` (second string) in its root file system; the path's errors come first.
  caf::replies_to<copy_atom, get_atom, std::string, std::string>::with<copy_stream_actor>,
  /// cyto cp into a container: a copy_stream_actor that takes the tar for `path` (the
  /// second string) with put_atom; the third says what it holds (file, directory,
  /// contents, archive: see schema/containers.capnp copyIn).
  caf::replies_to<copy_atom, put_atom, std::string, std::string, std::string>::with<
      copy_stream_actor>>;

/// A blocking helper the containers actor spawns detached for one wait: answers the
/// content of a file once it appears (inotify), or fails when process `pid` exits
/// first or `timeout_ms` passes.
using file_waiter_actor = caf::typed_actor<
  /// Waits for `path` while `pid` lives; answers the file's content.
  caf::replies_to<wait_atom, std::string, uint32_t, uint32_t>::with<std::string>>;

// -- vms -------------------------------------------------------------------

/// Owns virtual machines: one QEMU per VM, run as the executable "qemu" of the VM's cell
/// (vms/<name>) through the cells actor, driven over QMP by a qmp_session_actor. Records
/// live in state.db before QEMU exists; running VMs are re-adopted after a restart.
using vms_actor = caf::typed_actor<
  /// Checks a spec and makes the VM's record, directory and cell; QEMU does not run yet.
  caf::replies_to<allocate_atom, vm_spec>::with<vm_info>,
  /// Starts QEMU; answers once QMP answers and the guest runs (QEMU's stderr on failure).
  caf::replies_to<start_atom, std::string>::with<vm_info>,
  /// ACPI power button, then QMP quit after `timeout_ms`; answers once QEMU ended.
  caf::replies_to<stop_atom, std::string, uint32_t>::with<vm_info>,
  /// SIGKILL to QEMU; answers once it ended.
  caf::replies_to<kill_atom, std::string>::with<vm_info>,
  /// Stops the guest's CPUs (QMP stop).
  caf::replies_to<pause_atom, std::string>::with<vm_info>,
  /// Lets a paused guest run again (QMP cont).
  caf::replies_to<resume_atom, std::string>::with<vm_info>,
  /// Removes a VM (cell, directory, record); a running one only with `force` (killed).
  caf::reacts_to<free_atom, std::string, bool>,
  /// Every VM, by name.
  caf::replies_to<list_atom>::with<std::vector<vm_info>>,
  /// One VM.
  caf::replies_to<get_atom, std::string>::with<vm_info>>;

/// One QMP connection to one QEMU, on a thread of its own (detached) plus a reader
/// thread; events go to the vms actor as qmp_event (an internal message of vms_private).
using qmp_session_actor = caf::typed_actor<
  /// Connects to the socket at `path` while process `pid` lives (at most `timeout_ms`)
  /// and negotiates; answers QEMU's version.
  caf::replies_to<start_atom, std::string, uint32_t, uint32_t>::with<std::string>,
  /// Runs a command with arguments (JSON text, "" for none); answers the return value
  /// as JSON text, or the error QEMU gave.
  caf::replies_to<exec_atom, std::string, std::string>::with<std::string>>;

/// Builds one image root disk on a thread of its own (detached), then quits.
using disk_builder_actor = caf::typed_actor<
  /// mke2fs `mke2fs` makes an ext4 of directory `root` at `disk` (temp file + rename);
  /// answers `disk`.
  caf::replies_to<create_atom, std::string, std::string, std::string>::with<std::string>>;

// -- observe -----------------------------------------------------------------

/// Receives a log subscription's batches; grants credit with observe's `demand`.
using log_sink_actor = caf::typed_actor<
  /// Entries for one subscription, in order.
  caf::reacts_to<log_batch>>;

/// Receives a stats subscription's samples; grants credit with observe's `demand`.
using stats_sink_actor = caf::typed_actor<caf::reacts_to<stats_batch>>;

/// Receives an event subscription's events; grants credit with observe's `demand`.
using event_sink_actor = caf::typed_actor<caf::reacts_to<event_batch>>;

/// Observability fan-out: the daemon's own log, cgroup stats of cells, executables'
/// output, kernel events (signals, exec, exit, OOM kills). Every subscription has a
/// bounded queue and credit; ids are unique across kinds.
using observe_actor = topic_subscriber_actor::extend<
  /// Subscribes `sink` to daemon logs at `level` or above: up to `tail` recent
  /// entries, then new ones if `follow`. Returns the subscription id.
  caf::replies_to<subscribe_atom, logs_atom, log_level, bool, uint32_t,
                  log_sink_actor>::with<uint64_t>,
  /// Samples a cell's usage (every cell for "") every `interval_ms` (10..3600000) into
  /// `sink`, the first sample at once. not_found for a missing cell.
  caf::replies_to<subscribe_atom, stats_atom, std::string, uint64_t,
                  stats_sink_actor>::with<uint64_t>,
  /// Streams an executable's output (cell, executable, output_streams mask, follow,
  /// from_start, filter): the lines in its files, then (if `follow`) new lines until it
  /// exits; only those the filter lets through.
  caf::replies_to<subscribe_atom, output_atom, std::string, std::string, uint8_t, bool, bool,
                  output_filter, output_sink_actor>::with<uint64_t>,
  /// Streams kernel events matching `filter` into `sink`. not_found for a missing cell.
  caf::replies_to<subscribe_atom, events_atom, event_filter, event_sink_actor>::with<uint64_t>,
  /// Grants any subscription credit for `n` more items.
  caf::reacts_to<demand_atom, uint64_t, uint32_t>,
  /// Ends any subscription (a no-op for unknown ids).
  caf::reacts_to<unsub_atom, uint64_t>,
  /// Counters: subscribers of each kind, entries and events seen, delivered, lost.
  caf::replies_to<get_atom, stats_atom>::with<observe_stats>>;

// -- federation --------------------------------------------------------------

/// What a node publishes on its federation port (CAF middleman over TLS): all another
/// node may call before it has proven who it is.
using federation_door_actor = caf::typed_actor<
  /// A fresh single-use challenge for a node about to join.
  caf::replies_to<challenge_atom>::with<std::string>,
  /// A node proves who it is (signed challenge, certificate) and offers its services;
  /// answers with our own proof (over the proof's challenge) and services.
  /// permission_denied if the proof does not hold.
  caf::replies_to<join_atom, node_proof>::with<node_proof>,
  /// Liveness and round-trip time: answers its argument.
  caf::replies_to<ping_atom, int64_t>::with<int64_t>>;

/// Membership and liveness of the federation. Dials the configured peers (and again,
/// with backoff, when they go away), admits nodes that prove who they are, puts their
/// services into the registry as "<node>/<service>", pings members and marks a member
/// down when its connection ends or its pings go unanswered.
using federation_actor = federation_door_actor::extend<
  /// Every node: this one first, then the members by name.
  caf::replies_to<list_atom>::with<std::vector<node_status>>,
  /// One node by name; not_found if the federation has none of that name.
  caf::replies_to<get_atom, std::string>::with<node_status>,
  /// The door to publish on the federation port (see publish_door).
  caf::replies_to<get_atom, join_atom>::with<federation_door_actor>,
  /// Sends `listener` a node_event for each member now and on every change.
  caf::reacts_to<subscribe_atom, caf::actor>>;

// -- registry names ------------------------------------------------------------

/// Names under which cytod_main registers the actors.
namespace service_name {
inline constexpr const char* topics = "topics";
inline constexpr const char* node = "node";
inline constexpr const char* observe = "observe";
inline constexpr const char* cells = "cells";
inline constexpr const char* images = "images";
inline constexpr const char* network = "network";
inline constexpr const char* containers = "containers";
inline constexpr const char* federation = "federation";
inline constexpr const char* vms = "vms";
inline constexpr const char* volumes = "volumes";
} // namespace service_name

} // namespace cyto
