#pragma once
// An spdlog sink that publishes every daemon log entry on the bus topic "daemon.log".

#include <atomic>
#include <mutex>

#include <spdlog/sinks/base_sink.h>

#include "bus/interfaces.hpp"

namespace cyto::observe {

class bus_log_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  explicit bus_log_sink(topic_actor topics);

  /// Stops publishing and drops the topic handle (call before the actor system stops).
  void detach();

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

private:
  topic_actor topics_; // guarded by base_sink's mutex
  uint64_t seq_ = 0;
};

} // namespace cyto::observe
