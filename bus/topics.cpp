#include "bus/topics.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "bus/errc.hpp"
#include "bus/internal.hpp"

namespace cyto::bus {

namespace {

using self_ptr = topics_private::stateful_pointer<topics_state>;

void remove_subscription(self_ptr self, uint64_t id) {
  auto& st = self->state;
  auto i = st.subscriptions.find(id);
  if (i == st.subscriptions.end())
    return;
  auto& ids = st.by_topic[i->second.topic];
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
  if (ids.empty())
    st.by_topic.erase(i->second.topic);
  st.subscriptions.erase(i);
}

void schedule_flush(self_ptr self) {
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

void deliver(self_ptr self, uint64_t id, topics_state::subscription& sub) {
  while (sub.box.ready()) {
    auto b = sub.box.take(self->state.config.max_batch);
    self->state.stats.delivered += b.items.size();
    std::vector<caf::message> events;
    events.reserve(b.items.size());
    for (auto& q : b.items) {
      events.push_back(std::move(q.event));
      // An acknowledging subscriber holds the receipt until it grants credit again.
      if (sub.acks)
        sub.unconsumed.push_back(std::move(q.receipt));
    }
    b.items.clear(); // the receipts of everyone else go now: sent is done for them
    self->send(sub.who, topic_batch{id, sub.topic, std::move(events), b.dropped});
  }
}

caf::result<uint64_t> subscribe(self_ptr self, std::string& topic, topic_subscriber_actor& who,
                                uint32_t capacity, uint32_t credit, bool acks) {
  auto& st = self->state;
  if (topic.empty() || !who)
    return make_error(errc::invalid_argument, "topics: empty topic name or subscriber");
  if (capacity == 0 || capacity > st.config.max_capacity)
    return make_error(errc::invalid_argument,
                      "topics: queue capacity " + std::to_string(capacity) + " outside 1.."
                        + std::to_string(st.config.max_capacity));
  // One that never grants credit would hold back every receipted publisher: only actors
  // of this node (the daemon's own) may.
  if (acks && who.node() != self->node())
    return make_error(errc::permission_denied,
                      "topics: only a local subscriber may acknowledge");
  auto id = st.next_id++;
  self->monitor(who);
  st.by_topic[topic].push_back(id);
  st.subscriptions.emplace(
    id, topics_state::subscription{std::move(topic), std::move(who),
                                   outbox<topics_state::queued>{capacity, credit}, acks, {}});
  return id;
}

void publish(self_ptr self, const std::string& topic, caf::message& event,
             std::shared_ptr<topic_receipt> receipt) {
  auto& st = self->state;
  ++st.stats.published;
  auto i = st.by_topic.find(topic);
  if (i == st.by_topic.end())
    return;
  for (auto id : i->second) {
    auto& box = st.subscriptions.at(id).box;
    auto before = box.total_dropped();
    // caf::message is copy-on-write: subscribers share the payload (and the receipt)
    box.push(topics_state::queued{event, receipt});
    st.stats.dropped += box.total_dropped() - before;
  }
  schedule_flush(self);
}

} // namespace

topic_receipt::~topic_receipt() {
  if (promise.pending())
    promise.deliver(caf::unit);
}

topics_private::behavior_type topics(self_ptr self, topics_config config) {
  self->state.config = config;
  // A subscriber that terminates loses its subscriptions.
  self->set_down_handler([self](const caf::down_msg& msg) {
    std::vector<uint64_t> gone;
    for (auto& [id, sub] : self->state.subscriptions)
      if (sub.who.address() == msg.source)
        gone.push_back(id);
    for (auto id : gone)
      remove_subscription(self, id);
  });
  return {
    [self](subscribe_atom, std::string& topic, topic_subscriber_actor& who, uint32_t capacity,
           uint32_t credit) -> caf::result<uint64_t> {
      return subscribe(self, topic, who, capacity, credit, false);
    },
    [self](subscribe_atom, ack_atom, std::string& topic, topic_subscriber_actor& who,
           uint32_t capacity, uint32_t credit) -> caf::result<uint64_t> {
      return subscribe(self, topic, who, capacity, credit, true);
    },
    [self](unsub_atom, uint64_t id) { remove_subscription(self, id); },
    [self](publish_atom, const std::string& topic, caf::message& event) {
      publish(self, topic, event, nullptr);
    },
    [self](publish_atom, ack_atom, const std::string& topic,
           caf::message& event) -> caf::result<void> {
      auto rp = self->make_response_promise(); // untyped: the typed one cannot deliver void
      // Answered when the last reference goes: at once if nobody subscribes.
      publish(self, topic, event, std::make_shared<topic_receipt>(rp));
      return rp;
    },
    [self](demand_atom, uint64_t id, uint32_t n) {
      auto& subs = self->state.subscriptions;
      if (auto i = subs.find(id); i != subs.end()) {
        // Credit comes back for what was consumed, oldest first.
        auto& u = i->second.unconsumed;
        u.erase(u.begin(), u.begin() + std::min<size_t>(n, u.size()));
      }
      if (grant_credit(subs, id, n))
        schedule_flush(self);
    },
    internal(self,
             [self](flush_atom) {
               self->state.flush_scheduled = false;
               for (auto& [id, sub] : self->state.subscriptions)
                 deliver(self, id, sub);
             }),
    [self](get_atom, stats_atom) {
      auto s = self->state.stats;
      s.topics = self->state.by_topic.size();
      s.subscribers = self->state.subscriptions.size();
      return s;
    },
  };
}

} // namespace cyto::bus
