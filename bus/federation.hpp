#pragma once
// Messages of the federation: how nodes prove who they are, offer their services to each
// other, and how this node reports its members. Everything here crosses nodes (inspect()).

#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/node_id.hpp>

namespace cyto {

/// One service a node offers to its peers: its registry name and actor.
struct service_handle {
  std::string name;
  caf::strong_actor_ptr handle;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, service_handle& x) {
  return f(caf::meta::type_name("service_handle"), x.name, x.handle);
}

/// What a node sends to prove its identity and join: its certificate, a signature with
/// its node key over the challenge the other side gave it (see node_identity), a fresh
/// challenge for the other side, and the services it offers.
struct node_proof {
  /// The node name it claims; its certificate must say spiffe://<td>/node/<name>.
  std::string name;
  /// Where it listens for federation ("host:port"), empty if it does not.
  std::string address;
  /// Its node certificate, PEM.
  std::string cert_pem;
  /// The other side's challenge this proof answers...
  std::string answers;
  /// ... and the signature (DER) over it (see node_identity::proof_text).
  std::string signature;
  /// A fresh challenge for the other side to sign in its answer (empty in an answer).
  std::string challenge;
  /// Its services, by registry name.
  std::vector<service_handle> services;
  /// Its federation door (liveness pings go there).
  caf::actor door;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_proof& x) {
  return f(caf::meta::type_name("node_proof"), x.name, x.address, x.cert_pem, x.answers, x.signature,
           x.challenge, x.services, x.door);
}

/// Liveness of a member node.
enum class node_state : uint8_t { up = 0, down = 1 };

/// One node as this node sees it.
struct node_status {
  std::string name;
  /// "host:port" of its federation listener (as configured or as it announced).
  std::string address;
  node_state state = node_state::down;
  /// This node itself.
  bool local = false;
  /// Wall-clock time (unix nanos) of the last answer to a ping; 0 = never.
  int64_t last_heartbeat_nanos = 0;
  /// Round trip of the last ping, nanoseconds.
  int64_t rtt_nanos = 0;
  /// Why it is down (last error), empty when up.
  std::string detail;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_status& x) {
  return f(caf::meta::type_name("node_status"), x.name, x.address, x.state, x.local,
           x.last_heartbeat_nanos, x.rtt_nanos, x.detail);
}

/// Told to subscribers (the gateway) when a member goes up or down, so that calls to a
/// node that is down fail at once instead of waiting on a dead connection.
struct node_event {
  std::string name;
  /// The CAF node behind it (actor handles of this node carry it).
  caf::node_id node;
  bool up = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_event& x) {
  return f(caf::meta::type_name("node_event"), x.name, x.node, x.up);
}

} // namespace cyto
