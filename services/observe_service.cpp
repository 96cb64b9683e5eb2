#include "services/observe_service.hpp"

#include <caf/all.hpp>
#include <kj/vector.h>

#include "bus/logging.hpp"

namespace cyto::services {

/// One daemonLogs call: a subscription on the observe actor whose batches are written
/// to the client's LogSink. Credit goes back to the observe actor only when the sink's
/// stream calls have been accepted, so a slow client makes the observe actor queue and
/// then drop (counted) for this stream alone.
class log_stream final : private kj::TaskSet::ErrorHandler {
public:
  log_stream(bridge& br, log_router& router, observe_actor observe, schema::LogSink::Client sink)
    : bridge_(br), router_(router), observe_(std::move(observe)), sink_(kj::mv(sink)),
      tasks_(*this) {
  }

  ~log_stream() noexcept(false) {
    if (ticket_ != 0)
      bridge_.cancel(ticket_);
    if (subscription_ != 0) {
      router_.remove(subscription_);
      caf::anon_send(observe_, unsub_atom::value, subscription_);
    }
  }

  kj::Promise<void> start(log_level level, bool follow, uint32_t tail) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    done_ = kj::mv(paf.fulfiller);
    ticket_ = bridge_.request_then(
      observe_,
      [this](uint64_t id) {
        ticket_ = 0;
        subscription_ = id;
        router_.add(id, this);
      },
      [this](const caf::error& err) {
        ticket_ = 0;
        done_->reject(to_exception(err));
      },
      subscribe_atom::value, logs_atom::value, level, follow, tail,
      caf::actor_cast<log_sink_actor>(bridge_.handle()));
    return kj::mv(paf.promise);
  }

  void on_batch(log_batch& batch) {
    kj::Vector<kj::Promise<void>> writes(batch.entries.size() + 1);
    if (batch.dropped > 0) {
      auto req = sink_.droppedRequest();
      req.setCount(batch.dropped);
      writes.add(req.send());
    }
    for (auto& e : batch.entries) {
      auto req = sink_.lineRequest();
      auto out = req.initEntry();
      out.setUnixNanos(e.unix_nanos);
      out.setLevel(static_cast<schema::LogLevel>(e.level));
      out.setLogger(e.logger);
      out.setMessage(e.message);
      out.setSeq(e.seq);
      writes.add(req.send());
    }
    auto n = static_cast<uint32_t>(batch.entries.size());
    bool end = batch.end;
    tasks_.add(kj::joinPromises(writes.releaseAsArray()).then([this, n, end] {
      if (end) {
        router_.remove(subscription_);
        subscription_ = 0; // the observe actor forgot it already
        done_->fulfill();
      } else if (n > 0) {
        caf::anon_send(observe_, demand_atom::value, subscription_, n);
      }
    }));
  }

private:
  void taskFailed(kj::Exception&& e) override {
    done_->reject(kj::mv(e));
  }

  bridge& bridge_;
  log_router& router_;
  observe_actor observe_;
  schema::LogSink::Client sink_;
  uint64_t ticket_ = 0;
  uint64_t subscription_ = 0;
  kj::Own<kj::PromiseFulfiller<void>> done_;
  kj::TaskSet tasks_;
};

log_router::log_router(bridge& br) : bridge_(br) {
}

bool log_router::route(const caf::strong_actor_ptr& sender, caf::message& msg) {
  if (!msg.match_elements<log_batch>())
    return false;
  auto& batch = msg.get_mutable_as<log_batch>(0);
  auto i = streams_.find(batch.subscription);
  if (i != streams_.end()) {
    i->second->on_batch(batch);
  } else if (!batch.end && sender) {
    // The stream is gone (client left): make sure its subscription ends too.
    caf::anon_send(caf::actor_cast<observe_actor>(sender), unsub_atom::value, batch.subscription);
  }
  return true;
}

void log_router::add(uint64_t subscription, log_stream* stream) {
  streams_[subscription] = stream;
}

void log_router::remove(uint64_t subscription) {
  streams_.erase(subscription);
}

namespace {

class observe_service final : public schema::Observe::Server {
public:
  observe_service(bridge& br, log_router& router, observe_actor observe)
    : bridge_(br), router_(router), observe_(std::move(observe)) {
  }

  kj::Promise<void> daemonLogs(DaemonLogsContext context) override {
    auto params = context.getParams();
    auto level = static_cast<uint16_t>(params.getLevel());
    if (level > static_cast<uint16_t>(log_level::critical))
      fail(errc::invalid_argument, "level: unknown log level " + std::to_string(level));
    if (params.getTail() > max_tail)
      fail(errc::invalid_argument,
           "tail: at most " + std::to_string(max_tail) + " entries, asked for "
             + std::to_string(params.getTail()));
    auto stream = kj::heap<log_stream>(bridge_, router_, observe_, params.getSink());
    auto done = stream->start(static_cast<log_level>(level), params.getFollow(), params.getTail());
    return done.attach(kj::mv(stream));
  }

private:
  static constexpr uint32_t max_tail = 1'000'000;
  bridge& bridge_;
  log_router& router_;
  observe_actor observe_;
};

} // namespace

kj::Own<schema::Observe::Server> new_observe_service(bridge& br, log_router& router,
                                                     observe_actor observe) {
  return kj::heap<observe_service>(br, router, std::move(observe));
}

} // namespace cyto::services
