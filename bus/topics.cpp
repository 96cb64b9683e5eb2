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
    self->send(sub.who, topic_batch{id, sub.topic, std::move(b.items), b.dropped});
  }
}

} // namespace

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
      auto& st = self->state;
      if (topic.empty() || !who)
        return make_error(errc::invalid_argument, "topics: empty topic name or subscriber");
      if (capacity == 0 || capacity > st.config.max_capacity)
        return make_error(errc::invalid_argument,
                          "topics: queue capacity " + std::to_string(capacity)
                            + " outside 1.." + std::to_string(st.config.max_capacity));
      auto id = st.next_id++;
      self->monitor(who);
      st.by_topic[topic].push_back(id);
      st.subscriptions.emplace(
        id, topics_state::subscription{std::move(topic), std::move(who),
                                       outbox<caf::message>{capacity, credit}});
      return id;
    },
    [self](unsub_atom, uint64_t id) { remove_subscription(self, id); },
    [self](publish_atom, const std::string& topic, caf::message& event) {
      auto& st = self->state;
      ++st.stats.published;
      auto i = st.by_topic.find(topic);
      if (i == st.by_topic.end())
        return;
      for (auto id : i->second) {
        auto& box = st.subscriptions.at(id).box;
        auto before = box.total_dropped();
        box.push(event); // caf::message is copy-on-write: subscribers share the payload
        st.stats.dropped += box.total_dropped() - before;
      }
      schedule_flush(self);
    },
    [self](demand_atom, uint64_t id, uint32_t n) {
      if (grant_credit(self->state.subscriptions, id, n))
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
