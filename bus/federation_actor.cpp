#include "bus/federation_actor.hpp"

#include <algorithm>
#include <cctype>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "bus/errc.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"

namespace cyto::bus {

namespace detail {
/// bus/tls_error_queue.cpp: calling it keeps that file's TLS fix linked in.
void use_tls_error_queue_fix() noexcept;
} // namespace detail

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// Challenges handed out but unused are forgotten after this long, and at most this many
/// are kept (a peer asking for more gets the oldest dropped).
constexpr auto challenge_ttl = 10s;
constexpr size_t max_challenges = 256;
/// Requests of the join handshake give up after this long.
constexpr auto handshake_timeout = 5s;

int64_t wall_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

int64_t steady_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
    .count();
}

bool valid_node_name(const std::string& name) {
  if (name.empty() || name.size() > 128)
    return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

using fed_ptr = federation_private::stateful_pointer<federation_state>;

node_status status_of(const std::string& name, const federation_member& m) {
  return {name,        m.address, m.up ? node_state::up : node_state::down, false,
          m.last_heartbeat_nanos, m.rtt_nanos, m.up ? std::string{} : m.detail};
}

void tell_listeners(fed_ptr self, const std::string& name, const federation_member& m) {
  for (auto& l : self->state.listeners)
    caf::anon_send(l, node_event{name, m.node, m.up});
}

/// Puts a member's services into the registry as "<name>/<service>".
void register_services(fed_ptr self, const std::string& name, const federation_member& m) {
  for (auto& s : m.services) {
    self->send(self->state.config.registry, delete_atom::value, name + "/" + s.name);
    self->send(self->state.config.registry, put_atom::value, name + "/" + s.name, s.handle);
  }
}

void unregister_services(fed_ptr self, const std::string& name, const federation_member& m) {
  for (auto& s : m.services)
    self->send(self->state.config.registry, delete_atom::value, name + "/" + s.name);
}

void schedule_dial(fed_ptr self, const std::string& name, federation_member& m) {
  if (!m.configured || m.dialing)
    return;
  auto& cfg = self->state.config;
  m.backoff = m.backoff.count() == 0 ? cfg.backoff_min : std::min(m.backoff * 2, cfg.backoff_max);
  self->delayed_send(self, m.backoff, dial_atom::value, name);
}

/// Marks a member down. `lost` means its connection is gone (door and services with it);
/// otherwise it only stopped answering pings and may come back on the same connection.
void mark_down(fed_ptr self, const std::string& name, std::string why, bool lost) {
  auto i = self->state.members.find(name);
  if (i == self->state.members.end())
    return;
  auto& m = i->second;
  bool was_up = m.up;
  m.up = false;
  m.detail = std::move(why);
  if (was_up) {
    unregister_services(self, name, m);
    self->state.log->warn("node {} is down: {}", name, m.detail);
    tell_listeners(self, name, m);
  }
  if (lost) {
    if (m.door)
      self->demonitor(m.door.address());
    m.door = nullptr;
    m.services.clear();
    schedule_dial(self, name, m);
  }
}

/// Admits a node whose proof held: its services enter the registry.
void admit(fed_ptr self, node_proof& p) {
  auto& m = self->state.members[p.name];
  auto door = caf::actor_cast<federation_door_actor>(p.door);
  bool same = m.up && m.door == door;
  if (m.door && m.door != door) {
    self->demonitor(m.door.address());
    if (m.up)
      unregister_services(self, p.name, m);
  }
  m.door = door;
  m.node = door.node();
  if (!m.configured && !p.address.empty())
    m.address = p.address;
  m.services = std::move(p.services);
  m.up = true;
  m.detail.clear();
  m.backoff = 0ms;
  m.last_answer = steady::now();
  m.last_heartbeat_nanos = wall_nanos();
  self->monitor(door);
  register_services(self, p.name, m);
  if (!same) {
    self->state.log->info("node {} joined ({})", p.name, m.address.empty() ? "no listener"
                                                                               : m.address);
    tell_listeners(self, p.name, m);
  }
}

/// Why a proof from a joining node does not hold, or nothing if it does.
std::optional<std::string> check_proof(fed_ptr self, const node_proof& p,
                                       const std::string& challenge) {
  auto& st = self->state;
  if (!valid_node_name(p.name))
    return "it claims an invalid node name '" + p.name + "'";
  if (p.name == st.config.node_name)
    return "it claims to be this node (" + p.name + ")";
  if (!p.door)
    return std::string{"it sent no federation door"};
  return st.config.identity->verify(
    p.cert_pem, p.name, node_identity::proof_text(challenge, p.name, st.config.node_name),
    p.signature);
}

/// Our proof for `peer`, answering its `challenge`, with our services and a fresh
/// challenge of ours (or none, in an answer).
node_proof own_proof(fed_ptr self, const std::string& peer, const std::string& challenge,
                     std::vector<service_handle> services, std::string ours) {
  auto& st = self->state;
  auto& id = *st.config.identity;
  return {st.config.node_name,
          st.listen_address,
          id.cert_pem(),
          challenge,
          id.sign(node_identity::proof_text(challenge, st.config.node_name, peer)),
          std::move(ours),
          std::move(services),
          caf::actor_cast<caf::actor>(st.door)};
}

/// The join handshake with the door of configured peer `name`, which we dialed.
void join_peer(fed_ptr self, const std::string& name, federation_door_actor door) {
  auto failed = [self, name](std::string why) {
    auto& m = self->state.members[name];
    m.dialing = false;
    m.detail = why;
    self->state.log->warn("joining node {} failed: {}", name, why);
    schedule_dial(self, name, m);
  };
  self->request(door, handshake_timeout, challenge_atom::value)
    .then(
      [self, name, door, failed](std::string& theirs) {
        self->request(self->state.config.registry, handshake_timeout, get_atom::value,
                      list_atom::value)
          .then(
            [self, name, door, failed, theirs](std::vector<service_handle>& mine) {
              auto ours = node_identity::fresh_challenge();
              auto proof = own_proof(self, name, theirs, std::move(mine), ours);
              self->request(door, handshake_timeout, join_atom::value, std::move(proof))
                .then(
                  [self, name, failed, ours](node_proof& answer) {
                    if (answer.name != name)
                      return failed("it says it is node '" + answer.name + "', not " + name);
                    if (auto bad = check_proof(self, answer, ours))
                      return failed("refused: " + *bad);
                    self->state.members[name].dialing = false;
                    admit(self, answer);
                  },
                  [failed](caf::error& err) { failed(render(err)); });
            },
            [failed](caf::error& err) { failed(render(err)); });
      },
      [failed](caf::error& err) { failed(render(err)); });
}

/// The published door: answers pings itself, hands challenges and joins to `fed`.
federation_door_actor::behavior_type door(federation_door_actor::pointer self,
                                          federation_actor fed) {
  return {
    [self, fed](challenge_atom a) { return self->delegate(fed, a); },
    [self, fed](join_atom a, node_proof& p) { return self->delegate(fed, a, std::move(p)); },
    [](ping_atom, int64_t x) { return x; },
  };
}

} // namespace

std::optional<std::pair<std::string, uint16_t>> parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return std::nullopt;
  auto host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host.empty())
    return std::nullopt;
  auto port_text = text.substr(colon + 1);
  if (port_text.size() > 5
      || !std::all_of(port_text.begin(), port_text.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  auto port = std::stoul(port_text);
  if (port == 0 || port > 65535)
    return std::nullopt;
  return std::make_pair(host, static_cast<uint16_t>(port));
}

std::optional<federation_peer> parse_peer(const std::string& text) {
  auto at = text.find('@');
  if (at == std::string::npos)
    return std::nullopt;
  auto name = text.substr(0, at);
  auto hp = parse_host_port(text.substr(at + 1));
  if (!valid_node_name(name) || !hp)
    return std::nullopt;
  return federation_peer{name, hp->first, hp->second};
}

std::string federation_config::validate() {
  if (!enabled())
    return {};
  if (!listen.empty() && !parse_host_port(listen))
    return "federation.listen: expected host:port, got '" + listen + "'";
  for (auto& p : peers)
    if (p.name == node_name)
      return "federation.peers: " + p.name + " is this node's own name";
  if (cert_file.empty() || key_file.empty() || ca_file.empty())
    return "federation.cert, federation.key and federation.ca are required with "
           "federation.listen or federation.peers";
  if (heartbeat.count() <= 0 || connection_timeout <= heartbeat)
    return "federation: the connection timeout must be longer than the heartbeat";
  std::string why;
  auto id = node_identity::load(cert_file, key_file, ca_file, node_name, why);
  if (!id)
    return "federation: " + why;
  identity = std::move(id);
  return {};
}

void configure_federation(caf::actor_system_config& cfg, const federation_config& fed) {
  detail::use_tls_error_queue_fix();
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = fed.cert_file;
  cfg.openssl_key = fed.key_file;
  cfg.openssl_cafile = fed.ca_file;
  cfg.set("middleman.heartbeat-interval", caf::timespan{fed.heartbeat});
  cfg.set("middleman.connection-timeout", caf::timespan{fed.connection_timeout});
  // Deserialize incoming messages on the multiplexer thread itself: a worker (CAF's
  // default on 2 cores: 1) adds a thread hand-off to every remote call.
  cfg.set("middleman.workers", size_t{0});
}

void add_federation_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<service_handle>("cyto.service_handle");
  cfg.add_message_type<std::vector<service_handle>>("cyto.service_handles");
  cfg.add_message_type<node_proof>("cyto.node_proof");
  cfg.add_message_type<node_state>("cyto.node_state");
  cfg.add_message_type<node_status>("cyto.node_status");
  cfg.add_message_type<std::vector<node_status>>("cyto.node_statuses");
  cfg.add_message_type<node_event>("cyto.node_event");
  cfg.add_message_type<federation_door_actor>("cyto.federation_door_actor");
}

caf::expected<uint16_t> publish_door(caf::actor_system& sys, const federation_actor& fed,
                                     const federation_config& config) {
  auto hp = parse_host_port(config.listen);
  if (!hp)
    return make_error(errc::invalid_argument, "federation.listen: " + config.listen);
  caf::scoped_actor self{sys};
  federation_door_actor d;
  caf::error err;
  self->request(fed, caf::infinite, get_atom::value, join_atom::value)
    .receive([&](federation_door_actor& x) { d = std::move(x); }, [&](caf::error& e) { err = e; });
  if (err)
    return err;
  auto host = hp->first == "0.0.0.0" || hp->first == "*" ? std::string{} : hp->first;
  auto port = caf::openssl::publish(d, hp->second, host.empty() ? nullptr : host.c_str(), true);
  if (!port)
    return make_error(errc::unavailable, "federation: cannot listen on " + config.listen + ": "
                                           + sys.render(port.error()));
  return *port;
}

federation_private::behavior_type federation(fed_ptr self, federation_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.listen_address = st.config.listen;
  st.log = log::get("federation");
  st.door = self->spawn<caf::linked>(door, federation_actor{self});
  for (auto& p : st.config.peers) {
    auto& m = st.members[p.name];
    m.configured = true;
    m.host = p.host;
    m.port = p.port;
    m.address = p.host + ":" + std::to_string(p.port);
    m.detail = "not joined yet";
    self->send(self, dial_atom::value, p.name);
  }
  if (st.config.enabled())
    self->send(self, tick_atom::value);
  self->set_down_handler([self](const caf::down_msg& msg) {
    for (auto& [name, m] : self->state.members)
      if (m.door && m.door.address() == msg.source) {
        auto why = msg.reason ? "connection lost (" + self->system().render(msg.reason) + ")"
                              : std::string{"connection closed"};
        mark_down(self, name, why, true);
        return;
      }
  });
  return {
    [self](challenge_atom) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.config.identity)
        return make_error(errc::unavailable, "federation is off on " + st.config.node_name);
      auto now = steady::now();
      for (auto i = st.challenges.begin(); i != st.challenges.end();)
        i = i->second < now ? st.challenges.erase(i) : std::next(i);
      if (st.challenges.size() >= max_challenges)
        st.challenges.erase(std::min_element(st.challenges.begin(), st.challenges.end(),
                                             [](auto& a, auto& b) { return a.second < b.second; }));
      auto c = node_identity::fresh_challenge();
      if (c.empty())
        return make_error(errc::internal, "no random bytes for a challenge");
      st.challenges.emplace(c, now + challenge_ttl);
      return c;
    },
    [self](join_atom, node_proof& p) -> caf::result<node_proof> {
      auto& st = self->state;
      if (!st.config.identity)
        return make_error(errc::unavailable, "federation is off on " + st.config.node_name);
      // Single use: a challenge is gone once a proof names it, good or bad.
      std::optional<std::string> why;
      auto c = st.challenges.find(p.answers);
      if (c == st.challenges.end() || c->second < steady::now())
        why = "it answers no challenge of ours (or an expired one)";
      else
        why = check_proof(self, p, p.answers);
      if (c != st.challenges.end())
        st.challenges.erase(c);
      if (why) {
        st.log->warn("refused node '{}': {}", p.name, *why);
        return make_error(errc::permission_denied,
                          "node " + st.config.node_name + " refused node '" + p.name + "': " + *why);
      }
      auto rp = self->make_response_promise<node_proof>();
      self->request(st.config.registry, handshake_timeout, get_atom::value, list_atom::value)
        .then(
          [self, rp, p](std::vector<service_handle>& mine) mutable {
            auto answer = own_proof(self, p.name, p.challenge, std::move(mine), {});
            admit(self, p);
            rp.deliver(std::move(answer));
          },
          [rp](caf::error& err) mutable { rp.deliver(err); });
      return rp;
    },
    [](ping_atom, int64_t x) { return x; },
    [self](list_atom) {
      auto& st = self->state;
      std::vector<node_status> out;
      out.push_back({st.config.node_name, st.listen_address, node_state::up, true, wall_nanos(),
                     0, {}});
      for (auto& [name, m] : st.members)
        out.push_back(status_of(name, m));
      return out;
    },
    [self](get_atom, const std::string& name) -> caf::result<node_status> {
      auto& st = self->state;
      if (name == st.config.node_name)
        return node_status{name, st.listen_address, node_state::up, true, wall_nanos(), 0, {}};
      auto i = st.members.find(name);
      if (i == st.members.end())
        return make_error(errc::not_found, "no node named '" + name + "' in the federation");
      return status_of(name, i->second);
    },
    [self](get_atom, join_atom) { return self->state.door; },
    [self](subscribe_atom, caf::actor& listener) {
      auto& st = self->state;
      for (auto& [name, m] : st.members)
        caf::anon_send(listener, node_event{name, m.node, m.up});
      st.listeners.push_back(std::move(listener));
    },
    internal(self, [self](dial_atom, const std::string& name) {
      auto i = self->state.members.find(name);
      if (i == self->state.members.end() || i->second.up || i->second.dialing)
        return;
      auto& m = i->second;
      m.dialing = true;
      federation_private me{self};
      // caf::openssl::remote_actor blocks until the TLS and BASP handshakes are done:
      // a thread of its own, so pings go on meanwhile. It answers as the actor itself
      // (internal: see bus/internal.hpp).
      self->spawn<caf::detached>([me, name, host = m.host, port = m.port](caf::blocking_actor* b) {
        auto door = caf::openssl::remote_actor<federation_door_actor>(b->system(), host, port);
        if (door)
          caf::send_as(me, me, dialed_atom::value, name, std::move(*door));
        else
          caf::send_as(me, me, dialed_atom::value, name, std::move(door.error()));
      });
    }),
    internal(self, [self](dialed_atom, const std::string& name, federation_door_actor& door) {
      join_peer(self, name, std::move(door));
    }),
    internal(self, [self](dialed_atom, const std::string& name, caf::error& err) {
      auto& m = self->state.members[name];
      m.dialing = false;
      m.detail = "cannot connect to " + m.address + ": " + self->system().render(err);
      self->state.log->debug("node {}: {}", name, m.detail);
      schedule_dial(self, name, m);
    }),
    internal(self, [self](tick_atom) {
      auto& st = self->state;
      auto now = steady::now();
      for (auto& [name, m] : st.members) {
        if (!m.door)
          continue;
        if (m.up && now - m.last_answer > st.config.down_after) {
          mark_down(self, name,
                    "no answer to pings for "
                      + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         now - m.last_answer)
                                         .count())
                      + " ms",
                    false);
        }
        auto door = m.door;
        self->request(door, st.config.down_after, ping_atom::value, steady_nanos())
          .then(
            [self, name = name, door](int64_t sent) {
              auto i = self->state.members.find(name);
              if (i == self->state.members.end() || i->second.door != door)
                return; // an answer from an older connection
              auto& m = i->second;
              m.rtt_nanos = steady_nanos() - sent;
              m.last_answer = steady::now();
              m.last_heartbeat_nanos = wall_nanos();
              if (!m.up && !m.services.empty()) {
                m.up = true;
                m.detail.clear();
                register_services(self, name, m);
                self->state.log->info("node {} answers again", name);
                tell_listeners(self, name, m);
              }
            },
            [](caf::error&) {}); // silence is judged by last_answer above
      }
      self->delayed_send(self, st.config.ping_interval, tick_atom::value);
    }),
  };
}

} // namespace cyto::bus
