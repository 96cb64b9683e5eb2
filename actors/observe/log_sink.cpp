#include "actors/observe/log_sink.hpp"

#include <caf/all.hpp>

#include "bus/logging.hpp"

namespace cyto::observe {

bus_log_sink::bus_log_sink(topic_actor topics) : topics_(std::move(topics)) {}

void bus_log_sink::detach() {
  std::lock_guard guard{mutex_};
  topics_ = nullptr;
}

void bus_log_sink::sink_it_(const spdlog::details::log_msg& msg) {
  if (!topics_)
    return;
  log_entry e;
  e.unix_nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch()).count();
  e.level = log::from_spdlog(msg.level);
  e.logger.assign(msg.logger_name.data(), msg.logger_name.size());
  e.message.assign(msg.payload.data(), msg.payload.size());
  e.seq = ++seq_;
  caf::anon_send(topics_, publish_atom::value, std::string{topic::daemon_log},
                 caf::make_message(std::move(e)));
}

void bus_log_sink::flush_() {}

} // namespace cyto::observe
