#include "services/metrics.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/atom.hpp>
#include <fmt/format.h>
#include <kj/compat/http.h>

#include "bus/errc.hpp"
#include "bus/federation_actor.hpp"
#include "bus/logging.hpp"

namespace cyto::services {

namespace {

/// One metric family: HELP and TYPE once, then its samples.
class family_writer {
public:
  family_writer(std::string& out, const char* name, const char* type, const char* help)
      : out_(out), name_(name) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  /// labels: already rendered `a="x",b="y"` (or empty). Integers print exactly (a
  /// double would turn 2^53+ byte counts into 1e+16-style text), doubles shortest.
  template <class T>
  requires std::is_same_v<T, double> || std::is_same_v<T, uint64_t>
  void sample(const std::string& labels, T value) {
    if (labels.empty())
      fmt::format_to(std::back_inserter(out_), "{} {}\n", name_, value);
    else
      fmt::format_to(std::back_inserter(out_), "{}{{{}}} {}\n", name_, labels, value);
  }

private:
  std::string& out_;
  const char* name_;
};

/// A family of one unlabelled sample.
template <class T>
void single(std::string& out, const char* name, const char* type, const char* help, T value) {
  family_writer{out, name, type, help}.sample("", value);
}

std::string label(const char* key, const std::string& value) {
  return std::string{key} + "=\"" + escape_label(value) + "\"";
}

const char* to_text(container_state s) {
  switch (s) {
  case container_state::created:
    return "created";
  case container_state::running:
    return "running";
  case container_state::stopped:
    return "stopped";
  }
  return "unknown";
}

const char* to_text(vm_state s) {
  switch (s) {
  case vm_state::created:
    return "created";
  case vm_state::running:
    return "running";
  case vm_state::paused:
    return "paused";
  case vm_state::stopped:
    return "stopped";
  case vm_state::exited:
    return "exited";
  }
  return "unknown";
}

template <class Info, class State, size_t N>
void count_states(std::string& out, const char* name, const char* help,
                  const std::vector<Info>& items, const State (&states)[N]) {
  family_writer f{out, name, "gauge", help};
  for (auto st : states) {
    uint64_t n = 0;
    for (auto& x : items)
      n += x.state == st;
    f.sample(label("state", to_text(st)), n);
  }
}

void render_cells(std::string& out, const std::vector<cell_usage>& cells) {
  auto labels = [](const cell_usage& c) {
    return label("cell", c.cell) + "," + label("kind", cell_kind(c.cell));
  };
  struct column {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*value)(const cell_usage&);
    /// Printed as value * scale (a double) when set; as the exact integer otherwise.
    double scale;
  };
  static constexpr column columns[] = {
      {"cyto_cell_cpu_usage_seconds_total", "counter",
       "CPU time used by the cell and its children (cpu.stat usage_usec)",
       [](const cell_usage& c) { return c.cpu_usage_usec; }, 1e-6},
      {"cyto_cell_memory_bytes", "gauge", "Memory in use by the cell (memory.current)",
       [](const cell_usage& c) { return c.memory_current; }, 0},
      {"cyto_cell_memory_peak_bytes", "gauge",
       "Highest memory use of the cell (memory.peak; 0 when the kernel keeps none)",
       [](const cell_usage& c) { return c.memory_peak; }, 0},
      {"cyto_cell_pids", "gauge", "Processes and threads in the cell (pids.current)",
       [](const cell_usage& c) { return c.pids_current; }, 0},
      {"cyto_cell_io_read_bytes_total", "counter", "Bytes the cell read from block devices",
       [](const cell_usage& c) { return c.io_read_bytes; }, 0},
      {"cyto_cell_io_write_bytes_total", "counter", "Bytes the cell wrote to block devices",
       [](const cell_usage& c) { return c.io_write_bytes; }, 0},
      {"cyto_cell_oom_kills_total", "counter", "Processes of the cell the OOM killer ended",
       [](const cell_usage& c) { return c.oom_kills; }, 0},
  };
  for (auto& col : columns) {
    family_writer f{out, col.name, col.type, col.help};
    for (auto& c : cells) {
      if (col.scale != 0)
        f.sample(labels(c), static_cast<double>(col.value(c)) * col.scale);
      else
        f.sample(labels(c), col.value(c));
    }
  }
}

} // namespace

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string cell_kind(const std::string& cell) {
  if (cell.rfind("containers/", 0) == 0)
    return "container";
  if (cell.rfind("vms/", 0) == 0)
    return "vm";
  if (cell.rfind("pods/", 0) == 0)
    return cell.find('/', 5) == std::string::npos ? "pod" : "container";
  return "cell";
}

std::string render_metrics(const metrics_snapshot& s) {
  std::string out;
  out.reserve(16 << 10);
  {
    family_writer f{out, "cyto_metrics_source_up", "gauge",
                    "Whether the actor behind each part of this scrape answered"};
    for (auto [name, ok] :
         {std::pair{"node", s.node.has_value()}, std::pair{"cells", s.cells.has_value()},
          std::pair{"containers", s.containers.has_value()}, std::pair{"vms", s.vms.has_value()},
          std::pair{"images", s.images.has_value()}, std::pair{"topics", s.topics.has_value()},
          std::pair{"observe", s.observe.has_value()}})
      f.sample(label("source", name), uint64_t{ok});
  }
  for (auto& [source, why] : s.failed) {
    auto text = why;
    for (auto& c : text)
      if (c == '\n')
        c = ' ';
    out += "# " + source + ": " + text + "\n";
  }
  if (s.node) {
    family_writer info{out, "cyto_build_info", "gauge", "The daemon's version and node name"};
    info.sample(label("version", s.node->version) + "," + label("node", s.node->node_name),
                uint64_t{1});
    single(out, "cyto_uptime_seconds", "gauge", "Seconds since cytod started",
           static_cast<double>(s.node->uptime_nanos) / 1e9);
  }
  if (s.cells) {
    single(out, "cyto_cells", "gauge", "Cells with a usage reading", uint64_t{s.cells->size()});
    render_cells(out, *s.cells);
  }
  if (s.containers) {
    static constexpr container_state states[] = {container_state::created, container_state::running,
                                                 container_state::stopped};
    count_states(out, "cyto_containers", "Containers by state", *s.containers, states);
  }
  if (s.vms) {
    static constexpr vm_state states[] = {vm_state::created, vm_state::running, vm_state::paused,
                                          vm_state::stopped, vm_state::exited};
    count_states(out, "cyto_vms", "Virtual machines by state", *s.vms, states);
  }
  if (s.images) {
    single(out, "cyto_images", "gauge", "Images in the store", uint64_t{s.images->size()});
    family_writer b{out, "cyto_image_bytes", "gauge", "Bytes of the images' blobs"};
    uint64_t bytes = 0;
    for (auto& i : *s.images)
      bytes += i.size;
    b.sample("", bytes);
  }
  {
    single(out, "cyto_gateway_connections", "gauge", "Client connections open now",
           s.connections_open);
    single(out, "cyto_gateway_connections_total", "counter",
           "Client connections accepted since start", s.connections_accepted);
    // By verb, sorted for a stable text.
    std::map<std::string, uint64_t> verbs;
    for (auto [atom, n] : s.calls.by_verb)
      verbs[atom == 0 ? "other" : caf::to_string(static_cast<caf::atom_value>(atom))] += n;
    family_writer r{out, "cyto_gateway_calls_total", "counter",
                    "Calls the gateway forwarded to the bus, by verb"};
    for (auto& [verb, n] : verbs)
      r.sample(label("verb", verb), n);
    single(out, "cyto_image_pulls_total", "counter", "Image pulls asked for through the gateway",
           verbs.count("pull") ? verbs["pull"] : uint64_t{0});
    family_writer e{out, "cyto_gateway_call_errors_total", "counter",
                    "Forwarded calls answered with an error, by cyto error code"};
    for (size_t i = 1; i <= static_cast<size_t>(errc_last); ++i) {
      e.sample(label("code", std::string{to_string(static_cast<errc>(i))}), s.calls.errors[i]);
    }
  }
  if (s.topics) {
    auto& t = *s.topics;
    single(out, "cyto_bus_topics", "gauge", "Event topics on the bus", t.topics);
    single(out, "cyto_bus_subscribers", "gauge", "Topic subscriptions", t.subscribers);
    single(out, "cyto_bus_events_published_total", "counter", "Events published", t.published);
    single(out, "cyto_bus_events_delivered_total", "counter", "Events delivered to subscribers",
           t.delivered);
    single(out, "cyto_bus_events_dropped_total", "counter",
           "Events dropped from full subscriber queues", t.dropped);
  }
  if (s.observe) {
    auto& o = *s.observe;
    family_writer subs{out, "cyto_observe_subscribers", "gauge", "Observe subscriptions by kind"};
    subs.sample(label("kind", "logs"), o.log_subscribers);
    subs.sample(label("kind", "stats"), o.stats_subscribers);
    subs.sample(label("kind", "output"), o.output_subscribers);
    subs.sample(label("kind", "events"), o.event_subscribers);
    single(out, "cyto_observe_log_entries_total", "counter", "Daemon log entries seen",
           o.log_entries_seen);
    single(out, "cyto_observe_log_entries_dropped_total", "counter",
           "Daemon log entries dropped before a subscriber", o.log_entries_dropped);
    single(out, "cyto_kernel_events_available", "gauge", "Whether kernel events (eBPF) flow",
           uint64_t{o.events_available});
    family_writer ev{out, "cyto_kernel_events_total", "counter",
                     "Kernel events at each stage of the pipeline"};
    ev.sample(label("stage", "submitted"), o.events_submitted);
    ev.sample(label("stage", "consumed"), o.events_consumed);
    ev.sample(label("stage", "seen"), o.events_seen);
    ev.sample(label("stage", "delivered"), o.events_delivered);
    family_writer lost{out, "cyto_kernel_events_lost_total", "counter",
                       "Kernel events lost, by where"};
    lost.sample(label("where", "ringbuf"), o.events_lost_ringbuf);
    lost.sample(label("where", "actor"), o.events_lost_actor);
    lost.sample(label("where", "subscribers"), o.events_lost_subscribers);
  }
  return out;
}

int listen_metrics_socket(const std::string& address) {
  auto where = "metrics.listen: cannot listen on " + address + ": ";
  auto hp = bus::parse_host_port(address);
  if (!hp)
    throw std::runtime_error(where + "expected host:port");
  auto host = hp->first;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;
  addrinfo* res = nullptr;
  auto port = std::to_string(hp->second);
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0)
    throw std::runtime_error(where + ::gai_strerror(rc) + " (the host must be an IP address)");
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(res);
    throw std::runtime_error(where + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  int rc = ::bind(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0 || ::listen(fd, 64) != 0) {
    auto err = where + std::strerror(errno);
    ::close(fd);
    throw std::runtime_error(err);
  }
  return fd;
}

// -- the HTTP side -----------------------------------------------------------------

class metrics_server::service final : public kj::HttpService {
public:
  explicit service(metrics_server& owner)
      : owner_(owner), table_(kj::heap<kj::HttpHeaderTable>()) {}

  kj::HttpHeaderTable& table() {
    return *table_;
  }

  kj::Promise<void> request(kj::HttpMethod method, kj::StringPtr url, const kj::HttpHeaders&,
                            kj::AsyncInputStream&, Response& response) override {
    std::string path{url.cStr()};
    path = path.substr(0, path.find('?'));
    if (path != "/metrics")
      return reply(response, 404, "Not Found", "only /metrics is served here\n");
    if (method != kj::HttpMethod::GET && method != kj::HttpMethod::HEAD)
      return reply(response, 405, "Method Not Allowed", "GET /metrics\n");
    bool head = method == kj::HttpMethod::HEAD;
    return owner_.collect().then([this, &response, head](metrics_snapshot s) {
      auto text = render_metrics(s);
      kj::HttpHeaders headers{*table_};
      headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
      auto body = response.send(200, "OK", headers, uint64_t{text.size()});
      if (head)
        return kj::Promise<void>(kj::READY_NOW).attach(kj::mv(body));
      auto owned = kj::heapString(text.data(), text.size());
      auto p = body->write(owned.begin(), owned.size());
      return p.attach(kj::mv(owned), kj::mv(body));
    });
  }

private:
  kj::Promise<void> reply(Response& response, uint code, kj::StringPtr status, kj::StringPtr text) {
    kj::HttpHeaders headers{*table_};
    headers.set(kj::HttpHeaderId::CONTENT_TYPE, "text/plain; charset=utf-8");
    auto body = response.send(code, status, headers, uint64_t{text.size()});
    auto p = body->write(text.begin(), text.size());
    return p.attach(kj::mv(body));
  }

  metrics_server& owner_;
  kj::Own<kj::HttpHeaderTable> table_;
};

namespace {

/// Asks one actor; an answer lands in `slot`, an error in s.failed[name].
template <class Handle, class T, class... Ts>
kj::Promise<void> ask(bridge& br, const Handle& h, metrics_snapshot& s, std::optional<T>& slot,
                      const char* name, Ts&&... xs) {
  if (!h) {
    s.failed[name] = "cyto.unavailable: not running";
    return kj::READY_NOW;
  }
  return br.request(h, std::forward<Ts>(xs)...)
      .then([&slot](T answer) { slot = std::move(answer); },
            [&s, name](kj::Exception&& e) { s.failed[name] = e.getDescription().cStr(); });
}

} // namespace

metrics_server::metrics_server(kj::AsyncIoContext& io, caf::actor_system& sys, int fd,
                               metrics_sources sources)
    : io_(io), bridge_(sys, io.unixEventPort), sources_(std::move(sources)),
      listener_(
          io.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      service_(std::make_unique<service>(*this)) {
  auto server = kj::heap<kj::HttpServer>(io.provider->getTimer(), service_->table(), *service_);
  auto listening = server->listenHttp(*listener_);
  serving_ = listening.attach(kj::mv(server)).eagerlyEvaluate([](kj::Exception&& e) {
    log::get("metrics")->error("metrics endpoint stopped: {}", e.getDescription().cStr());
  });
}

metrics_server::~metrics_server() {
  serving_ = nullptr; // the HTTP server (and its connections) before the service
}

kj::Promise<metrics_snapshot> metrics_server::collect() {
  auto s = kj::heap<metrics_snapshot>();
  auto& x = *s;
  auto& b = bridge_;
  auto& src = sources_;
  auto parts = kj::heapArrayBuilder<kj::Promise<void>>(7);
  parts.add(ask(b, src.node, x, x.node, "node", discover_atom::value));
  parts.add(ask(b, src.cells, x, x.cells, "cells", stats_atom::value, std::string{}));
  parts.add(ask(b, src.containers, x, x.containers, "containers", list_atom::value));
  parts.add(ask(b, src.vms, x, x.vms, "vms", list_atom::value));
  parts.add(ask(b, src.images, x, x.images, "images", list_atom::value));
  parts.add(ask(b, src.topics, x, x.topics, "topics", get_atom::value, stats_atom::value));
  parts.add(ask(b, src.observe, x, x.observe, "observe", get_atom::value, stats_atom::value));
  return kj::joinPromises(parts.finish()).then([this, s = kj::mv(s)]() mutable {
    if (sources_.gateway)
      sources_.gateway(*s);
    return kj::mv(*s);
  });
}

} // namespace cyto::services
