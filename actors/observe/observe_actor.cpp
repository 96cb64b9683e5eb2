#include "actors/observe/observe_actor.hpp"

#include <caf/all.hpp>

#include "bus/errc.hpp"
#include "bus/logging.hpp"

namespace cyto::observe {

namespace {

using self_ptr = observe_actor::stateful_pointer<observe_state>;

// The topic may queue this many entries for us; we grant it credit as we go.
constexpr uint32_t topic_capacity = 8192;
constexpr uint32_t topic_credit = 4096;

void schedule_flush(self_ptr self) {
  if (!self->state.flush_scheduled) {
    self->state.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

void flush(self_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  for (auto i = st.subscriptions.begin(); i != st.subscriptions.end();) {
    auto& [id, sub] = *i;
    bool ended = false;
    while (sub.box.ready() && !ended) {
      auto b = sub.box.take(st.config.max_batch);
      // A history-only subscription ends with the batch that drains it.
      ended = !sub.follow && sub.box.size() == 0;
      self->send(sub.sink, log_batch{id, std::move(b.items), b.dropped, ended});
    }
    if (!ended && !sub.follow && sub.box.size() == 0) {
      // Nothing (left) to send: end it. This goes out after the subscribe answer,
      // so the gateway already knows the subscription when the end arrives.
      self->send(sub.sink, log_batch{id, {}, 0, true});
      ended = true;
    }
    i = ended ? st.subscriptions.erase(i) : std::next(i);
  }
}

} // namespace

std::string observe_config::validate() const {
  if (!topics)
    return "no topic actor";
  if (queue_capacity == 0 || max_batch == 0)
    return "queue capacity and batch size must be positive";
  return {};
}

observe_actor::behavior_type observe(self_ptr self, observe_config config) {
  self->state.config = std::move(config);
  self->state.log = log::get("observe");
  self->request(self->state.config.topics, caf::infinite, subscribe_atom::value,
                std::string{topic::daemon_log}, caf::actor_cast<topic_subscriber_actor>(self),
                topic_capacity, topic_credit)
    .then([](uint64_t) {},
          [self](caf::error& err) {
            self->state.log->error("cannot subscribe to {}: {}", topic::daemon_log, render(err));
          });
  self->set_down_handler([self](const caf::down_msg& msg) {
    auto& subs = self->state.subscriptions;
    for (auto i = subs.begin(); i != subs.end();)
      i = i->second.sink.address() == msg.source ? subs.erase(i) : std::next(i);
  });
  return {
    [self](topic_batch& batch) {
      auto& st = self->state;
      st.stats.log_entries_dropped += batch.dropped;
      for (auto& ev : batch.events) {
        if (!ev.match_elements<log_entry>())
          continue;
        const auto& e = ev.get_as<log_entry>(0);
        ++st.stats.log_entries_seen;
        for (auto& [id, sub] : st.subscriptions)
          if (sub.follow && e.level >= sub.level)
            sub.box.push(e);
        st.history.push_back(e);
        if (st.history.size() > st.config.log_history)
          st.history.pop_front();
      }
      self->send(st.config.topics, demand_atom::value, batch.subscription,
                 static_cast<uint32_t>(batch.events.size()));
      if (!st.subscriptions.empty())
        schedule_flush(self);
    },
    [self](subscribe_atom, logs_atom, log_level level, bool follow, uint32_t tail,
           log_sink_actor& sink) -> caf::result<uint64_t> {
      auto& st = self->state;
      if (!sink)
        return make_error(errc::invalid_argument, "observe: no log sink");
      auto id = st.next_id++;
      observe_state::log_subscription sub{
        level, follow, sink,
        outbox<log_entry>{std::max<size_t>(st.config.queue_capacity, tail),
                          st.config.initial_credit}};
      // The newest `tail` entries at `level` or above, oldest first.
      std::vector<const log_entry*> recent;
      for (auto i = st.history.rbegin(); i != st.history.rend() && recent.size() < tail; ++i)
        if (i->level >= level)
          recent.push_back(&*i);
      for (auto i = recent.rbegin(); i != recent.rend(); ++i)
        sub.box.push(**i);
      self->monitor(sink);
      st.subscriptions.emplace(id, std::move(sub));
      schedule_flush(self);
      return id;
    },
    [self](demand_atom, uint64_t id, uint32_t n) {
      if (grant_credit(self->state.subscriptions, id, n))
        schedule_flush(self);
    },
    [self](unsub_atom, uint64_t id) { self->state.subscriptions.erase(id); },
    [self](flush_atom) { flush(self); },
    [self](get_atom, stats_atom) {
      auto s = self->state.stats;
      s.log_subscribers = self->state.subscriptions.size();
      return s;
    },
  };
}

} // namespace cyto::observe
