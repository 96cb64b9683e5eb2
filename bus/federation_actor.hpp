#pragma once
// The federation actor and its door (see federation_actor in bus/interfaces.hpp), and
// how the actor system is set up for it (CAF io middleman + caf::openssl, heartbeats).

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system_config.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/logger.h>

#include "bus/interfaces.hpp"
#include "bus/node_identity.hpp"

namespace cyto::bus {

/// A peer this node dials: "name@host:port".
struct federation_peer {
  std::string name;
  std::string host;
  uint16_t port = 0;
};

/// Parses "name@host:port" (host may be [v6]); nothing if malformed.
std::optional<federation_peer> parse_peer(const std::string& text);

/// Parses "host:port" (port 1..65535); nothing if malformed.
std::optional<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text);

struct federation_config {
  std::string node_name;
  /// "host:port" to publish our door on; empty: do not listen.
  std::string listen;
  std::vector<federation_peer> peers;
  /// This node's certificate and key, and the CA; required when listen or peers are set.
  std::string cert_file, key_file, ca_file;
  /// Loaded by validate() from the files above.
  std::shared_ptr<const node_identity> identity; // shared: config copies outlive main's
  registry_actor registry;
  /// CAF's BASP heartbeat and the silence after which CAF drops a connection.
  std::chrono::milliseconds heartbeat{100};
  std::chrono::milliseconds connection_timeout{500};
  /// Our own pings (rtt, last heartbeat) and the silence after which a member is down.
  std::chrono::milliseconds ping_interval{250};
  std::chrono::milliseconds down_after{1500};
  /// Redial backoff of a configured peer: first wait, doubled up to the maximum.
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{2000};

  /// Whether this node takes part in a federation at all.
  bool enabled() const {
    return !listen.empty() || !peers.empty();
  }

  /// Checks values and, when enabled, loads the identity. Empty when usable.
  std::string validate();
};

/// Loads CAF's middleman and openssl module into `cfg` and sets certificate, key, CA
/// and heartbeats from `fed` (call before the actor system exists; only if enabled()).
void configure_federation(caf::actor_system_config& cfg, const federation_config& fed);

/// Adds the federation's message types to `cfg` (bus::add_types calls it).
void add_federation_types(caf::actor_system_config& cfg);

/// A node of the federation other than this one.
struct federation_member {
  std::string address;
  /// We dial it (it is in federation.peers).
  bool configured = false;
  std::string host;
  uint16_t port = 0;
  bool up = false;
  bool dialing = false;
  std::chrono::milliseconds backoff{0};
  /// Its door while the connection lives; its CAF node.
  federation_door_actor door;
  caf::node_id node;
  /// Registry names we put for it ("b/cells", ...).
  std::vector<service_handle> services;
  int64_t last_heartbeat_nanos = 0;
  std::chrono::steady_clock::time_point last_answer;
  int64_t rtt_nanos = 0;
  std::string detail;
};

struct federation_state {
  static constexpr const char* name = "federation";
  federation_config config;
  std::string listen_address;
  std::map<std::string, federation_member> members;
  /// Challenges handed out and not used yet, with their deadline.
  std::map<std::string, std::chrono::steady_clock::time_point> challenges;
  std::vector<caf::actor> listeners;
  federation_door_actor door;
  std::shared_ptr<spdlog::logger> log;
};

/// The federation actor as it is spawned: federation_actor (what everyone else holds)
/// and the messages only it and its dialer threads send it, as itself (see
/// bus/internal.hpp).
using federation_private = federation_actor::extend<
  /// Dial the configured peer `name` now.
  caf::reacts_to<dial_atom, std::string>,
  /// The dial of `name` reached its door...
  caf::reacts_to<dialed_atom, std::string, federation_door_actor>,
  /// ... or failed.
  caf::reacts_to<dialed_atom, std::string, caf::error>,
  /// Ping every member, mark silent ones down.
  caf::reacts_to<tick_atom>>;

/// The federation actor. Publishing its door is the caller's job (publish_door). Spawn
/// it, then hand out the federation_actor it converts to.
federation_private::behavior_type
federation(federation_private::stateful_pointer<federation_state> self, federation_config config);

/// Publishes the door of `fed` on config.listen (TLS). Returns the bound port, or an
/// error saying why not.
caf::expected<uint16_t> publish_door(caf::actor_system& sys, const federation_actor& fed,
                                     const federation_config& config);

} // namespace cyto::bus
