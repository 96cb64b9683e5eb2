#include "services/observe_service.hpp"
#include "services/cancellable.hpp"

#include <caf/all.hpp>
#include <kj/vector.h>

#include "bus/logging.hpp"

namespace cyto::services {

namespace {

/// The subscription behind one streaming call: asks the observe actor for it, routes its
/// batches here, and ends it when the call ends (client gone, cancelled, failed). Credit
/// goes back to the observe actor only once the client's sink has accepted a batch
/// (capnp `-> stream` flow control), so a slow client makes the observe actor queue and
/// then drop, counted, for this stream alone.
class stream_base : public observe_stream, private kj::TaskSet::ErrorHandler {
public:
  stream_base(bridge& br, stream_router& router, observe_actor observe)
      : bridge_(br), router_(router), observe_(std::move(observe)), tasks_(*this) {}

  ~stream_base() noexcept(false) override {
    if (ticket_ != 0)
      bridge_.cancel(ticket_);
    if (subscription_ != 0) {
      router_.remove(subscription_);
      caf::anon_send(observe_, unsub_atom::value, subscription_);
    }
  }

  /// Subscribes with `xs` (the observe actor's subscribe message); the promise resolves
  /// when the stream ends.
  template <class... Ts>
  kj::Promise<void> start(Ts&&... xs) {
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
        std::forward<Ts>(xs)...);
    return kj::mv(paf.promise);
  }

protected:
  /// Once `write` is accepted: grants `n` more items, or ends the stream (with `error`
  /// as a cyto error if not empty).
  void after(kj::Promise<void> write, uint32_t n, bool end, std::string error = {}) {
    tasks_.add(write.then([this, n, end, error = std::move(error)] {
      if (end)
        finish(error);
      else if (n > 0)
        caf::anon_send(observe_, demand_atom::value, subscription_, n);
    }));
  }

private:
  void finish(const std::string& error) {
    router_.remove(subscription_);
    subscription_ = 0; // the observe actor forgot it already
    if (error.empty()) {
      done_->fulfill();
    } else if (auto parsed = parse_rendered(error)) {
      done_->reject(to_exception(parsed->first, parsed->second));
    } else {
      done_->reject(to_exception(errc::internal, error));
    }
  }

  void taskFailed(kj::Exception&& e) override {
    done_->reject(kj::mv(e));
  }

  bridge& bridge_;
  stream_router& router_;
  observe_actor observe_;
  uint64_t ticket_ = 0;
  uint64_t subscription_ = 0;
  kj::Own<kj::PromiseFulfiller<void>> done_;
  kj::TaskSet tasks_;
};

class log_stream final : public stream_base {
public:
  log_stream(bridge& br, stream_router& router, observe_actor observe, schema::LogSink::Client sink)
      : stream_base(br, router, std::move(observe)), sink_(kj::mv(sink)) {}

  void on_message(caf::message& msg) override {
    auto& batch = msg.get_mutable_as<log_batch>(0);
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
    after(kj::joinPromises(writes.releaseAsArray()), static_cast<uint32_t>(batch.entries.size()),
          batch.end);
  }

private:
  schema::LogSink::Client sink_;
};

class stats_stream final : public stream_base {
public:
  stats_stream(bridge& br, stream_router& router, observe_actor observe,
               schema::StatsSink::Client sink)
      : stream_base(br, router, std::move(observe)), sink_(kj::mv(sink)) {}

  void on_message(caf::message& msg) override {
    auto& b = msg.get_mutable_as<stats_batch>(0);
    if (b.end) {
      after(kj::READY_NOW, 0, true, b.error);
      return;
    }
    auto req = sink_.sampleRequest();
    req.setUnixNanos(b.unix_nanos);
    auto cells = req.initCells(b.cells.size());
    for (uint i = 0; i < b.cells.size(); ++i) {
      auto& s = b.cells[i];
      auto out = cells[i];
      out.setCell(s.usage.cell);
      out.setCpuUsageUsec(s.usage.cpu_usage_usec);
      out.setCpuPercent(s.cpu_percent);
      out.setIntervalUsec(s.interval_usec);
      out.setMemoryCurrent(s.usage.memory_current);
      out.setMemoryPeak(s.usage.memory_peak);
      out.setPidsCurrent(s.usage.pids_current);
      out.setIoReadBytes(s.usage.io_read_bytes);
      out.setIoWriteBytes(s.usage.io_write_bytes);
      out.setOomKills(s.usage.oom_kills);
      out.setMemoryLimit(s.usage.memory_limit);
      out.setNetRxBytes(s.usage.net_rx_bytes);
      out.setNetTxBytes(s.usage.net_tx_bytes);
      out.setNetAvailable(s.usage.net_available);
    }
    after(req.send(), 1, false);
  }

private:
  schema::StatsSink::Client sink_;
};

class output_stream final : public stream_base {
public:
  output_stream(bridge& br, stream_router& router, observe_actor observe,
                schema::OutputSink::Client sink)
      : stream_base(br, router, std::move(observe)), sink_(kj::mv(sink)) {}

  void on_message(caf::message& msg) override {
    auto& b = msg.get_mutable_as<output_batch>(0);
    if (b.lines.empty() && b.dropped == 0) {
      after(kj::READY_NOW, 0, b.end, b.error);
      return;
    }
    after(send_lines(sink_, b), static_cast<uint32_t>(b.lines.size()), b.end, b.error);
  }

private:
  schema::OutputSink::Client sink_;
};

class event_stream final : public stream_base {
public:
  event_stream(bridge& br, stream_router& router, observe_actor observe,
               schema::EventSink::Client sink)
      : stream_base(br, router, std::move(observe)), sink_(kj::mv(sink)) {}

  void on_message(caf::message& msg) override {
    auto& b = msg.get_mutable_as<event_batch>(0);
    if (b.events.empty() && b.lost == 0) {
      after(kj::READY_NOW, 0, b.end);
      return;
    }
    auto req = sink_.eventsRequest();
    req.setLost(b.lost);
    auto out = req.initEvents(b.events.size());
    for (uint i = 0; i < b.events.size(); ++i) {
      auto& e = b.events[i];
      auto o = out[i];
      o.setKind(static_cast<schema::EventKind>(e.kind));
      o.setMonotonicNanos(e.monotonic_nanos);
      o.setCell(e.cell);
      o.setExecutable(e.executable);
      o.setPid(e.pid);
      o.setTgid(e.tgid);
      o.setNsPid(e.ns_pid);
      o.setPpid(e.ppid);
      o.setComm(e.comm);
      o.setSigno(e.signo);
      o.setSignalResult(e.signal_result);
      o.setSenderPid(e.sender_pid);
      o.setSenderTgid(e.sender_tgid);
      o.setSenderComm(e.sender_comm);
      o.setExitCode(e.exit_code);
      o.setExitSignal(e.exit_signal);
      o.setFilename(e.filename);
    }
    after(req.send(), static_cast<uint32_t>(b.events.size()), b.end);
  }

private:
  schema::EventSink::Client sink_;
};

/// The subscription id and end flag of any of the observe actor's batches.
template <class Batch>
bool batch_header(caf::message& msg, uint64_t& id, bool& end) {
  if (!msg.match_elements<Batch>())
    return false;
  auto& b = msg.get_as<Batch>(0);
  id = b.subscription;
  end = b.end;
  return true;
}

} // namespace

kj::Promise<void> send_lines(schema::OutputSink::Client& sink, const output_batch& b) {
  auto req = sink.linesRequest();
  req.setDropped(b.dropped);
  auto lines = req.initLines(b.lines.size());
  for (uint i = 0; i < b.lines.size(); ++i) {
    lines[i].setStream(b.lines[i].stream == 2 ? schema::OutputStream::STDERR
                                              : schema::OutputStream::STDOUT);
    lines[i].setLine(b.lines[i].line);
    lines[i].setUnixNanos(b.lines[i].unix_nanos);
  }
  return req.send();
}

stream_router::stream_router(bridge& br) : bridge_(br) {}

bool stream_router::route(const caf::strong_actor_ptr& sender, caf::message& msg) {
  uint64_t id = 0;
  bool end = false;
  if (!batch_header<log_batch>(msg, id, end) && !batch_header<stats_batch>(msg, id, end) &&
      !batch_header<output_batch>(msg, id, end) && !batch_header<event_batch>(msg, id, end))
    return false;
  auto i = streams_.find(id);
  if (i != streams_.end()) {
    i->second->on_batch(sender, msg);
  } else if (!end && sender) {
    // The stream is gone (client left): make sure its subscription ends too.
    caf::anon_send(caf::actor_cast<observe_actor>(sender), unsub_atom::value, id);
  }
  return true;
}

void stream_router::add(uint64_t subscription, observe_stream* stream) {
  streams_[subscription] = stream;
}

void stream_router::remove(uint64_t subscription) {
  streams_.erase(subscription);
}

namespace {

/// A stream's sink must be a capability: a null one would only fail later, deep in capnp,
/// with a message that is not ours.
void require_sink(bool present) {
  if (!present)
    fail(errc::invalid_argument, "sink: a capability to send the stream to is required");
}

event_filter from_capnp(schema::EventFilter::Reader f, uint8_t kinds) {
  event_filter out;
  out.cell = f.getCell();
  out.nested = f.getNested();
  out.executable = f.getExecutable();
  out.kinds = kinds;
  return out;
}

class observe_service final : public cancellable<schema::Observe::Server> {
public:
  observe_service(bridge& br, stream_router& router, observe_actor observe)
      : bridge_(br), router_(router), observe_(std::move(observe)) {}

  kj::Promise<void> daemonLogs(DaemonLogsContext context) override {
    auto params = context.getParams();
    auto level = static_cast<uint16_t>(params.getLevel());
    if (level > static_cast<uint16_t>(log_level::critical))
      fail(errc::invalid_argument, "level: unknown log level " + std::to_string(level));
    if (params.getTail() > max_tail)
      fail(errc::invalid_argument, "tail: at most " + std::to_string(max_tail) +
                                       " entries, asked for " + std::to_string(params.getTail()));
    require_sink(params.hasSink());
    auto stream = kj::heap<log_stream>(bridge_, router_, observe_, params.getSink());
    auto done =
        stream->start(subscribe_atom::value, logs_atom::value, static_cast<log_level>(level),
                      params.getFollow(), params.getTail(), sink_handle<log_sink_actor>());
    return done.attach(kj::mv(stream));
  }

  kj::Promise<void> stats(StatsContext context) override {
    auto params = context.getParams();
    require_sink(params.hasSink());
    auto stream = kj::heap<stats_stream>(bridge_, router_, observe_, params.getSink());
    auto done = stream->start(subscribe_atom::value, stats_atom::value,
                              std::string{params.getTarget().getCell()}, params.getIntervalMs(),
                              sink_handle<stats_sink_actor>());
    return done.attach(kj::mv(stream));
  }

  kj::Promise<void> output(OutputContext context) override {
    auto params = context.getParams();
    uint8_t which = 0;
    switch (params.getWhich()) {
    case schema::OutputStream::STDOUT:
      which = out_stdout;
      break;
    case schema::OutputStream::STDERR:
      which = out_stderr;
      break;
    case schema::OutputStream::BOTH:
      which = out_both;
      break;
    default:
      fail(errc::invalid_argument, "which: not stdout, stderr or both");
    }
    require_sink(params.hasSink());
    auto stream = kj::heap<output_stream>(bridge_, router_, observe_, params.getSink());
    output_filter filter{params.getSinceNanos(), params.getUntilNanos(), params.getTail()};
    auto done =
        stream->start(subscribe_atom::value, output_atom::value, std::string{params.getCell()},
                      std::string{params.getExecutable()}, which, params.getFollow(),
                      params.getFromStart(), filter, sink_handle<output_sink_actor>());
    return done.attach(kj::mv(stream));
  }

  kj::Promise<void> signals(SignalsContext context) override {
    auto params = context.getParams();
    require_sink(params.hasSink());
    return events(from_capnp(params.getFilter(), kind_bit(event_kind::signal)), params.getSink());
  }

  kj::Promise<void> processEvents(ProcessEventsContext context) override {
    auto params = context.getParams();
    require_sink(params.hasSink());
    return events(from_capnp(params.getFilter(), kind_bit(event_kind::exec) |
                                                     kind_bit(event_kind::exit) |
                                                     kind_bit(event_kind::oom)),
                  params.getSink());
  }

  kj::Promise<void> status(StatusContext context) override {
    return bridge_.request(observe_, get_atom::value, stats_atom::value)
        .then([context](observe_stats s) mutable {
          auto o = context.getResults().initStatus();
          o.setLogSubscribers(s.log_subscribers);
          o.setStatsSubscribers(s.stats_subscribers);
          o.setOutputSubscribers(s.output_subscribers);
          o.setEventSubscribers(s.event_subscribers);
          o.setEventsAvailable(s.events_available);
          o.setEventsUnavailable(s.events_unavailable);
          o.setEventsSubmitted(s.events_submitted);
          o.setEventsLostRingbuf(s.events_lost_ringbuf);
          o.setEventsConsumed(s.events_consumed);
          o.setEventsLostActor(s.events_lost_actor);
          o.setEventsSeen(s.events_seen);
          o.setEventsDelivered(s.events_delivered);
          o.setEventsLostSubscribers(s.events_lost_subscribers);
          o.setLogEntriesSeen(s.log_entries_seen);
          o.setLogEntriesDropped(s.log_entries_dropped);
        });
  }

private:
  template <class Sink>
  Sink sink_handle() {
    return caf::actor_cast<Sink>(bridge_.handle());
  }

  kj::Promise<void> events(event_filter filter, schema::EventSink::Client sink) {
    auto stream = kj::heap<event_stream>(bridge_, router_, observe_, kj::mv(sink));
    auto done = stream->start(subscribe_atom::value, events_atom::value, std::move(filter),
                              sink_handle<event_sink_actor>());
    return done.attach(kj::mv(stream));
  }

  static constexpr uint32_t max_tail = 1'000'000;
  bridge& bridge_;
  stream_router& router_;
  observe_actor observe_;
};

} // namespace

kj::Own<schema::Observe::Server> new_observe_service(bridge& br, stream_router& router,
                                                     observe_actor observe) {
  return kj::heap<observe_service>(br, router, std::move(observe));
}

} // namespace cyto::services
