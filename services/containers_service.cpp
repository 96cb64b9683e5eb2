#include "services/containers_service.hpp"

#include <atomic>

#include <caf/all.hpp>

#include "services/attach_relay.hpp"
#include "services/cells_service.hpp"
#include "services/convert.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

std::vector<port_mapping> from_capnp(capnp::List<schema::PortMapping>::Reader xs) {
  std::vector<port_mapping> out;
  for (auto p : xs) {
    port_mapping m;
    m.host_port = p.getHostPort();
    m.container_port = p.getContainerPort();
    if (p.hasProtocol())
      m.protocol = p.getProtocol();
    m.host_ip = p.getHostIp();
    out.push_back(std::move(m));
  }
  return out;
}

void to_capnp(const std::vector<port_mapping>& in, capnp::List<schema::PortMapping>::Builder out) {
  for (uint i = 0; i < in.size(); ++i) {
    out[i].setHostPort(in[i].host_port);
    out[i].setContainerPort(in[i].container_port);
    out[i].setProtocol(in[i].protocol);
    out[i].setHostIp(in[i].host_ip);
  }
}

container_spec from_capnp(schema::ContainerSpec::Reader s) {
  container_spec out;
  out.name = s.getName();
  out.image = s.getImage();
  out.entrypoint = texts(s.getEntrypoint());
  out.args = texts(s.getArgs());
  out.env = texts(s.getEnv());
  out.workdir = s.getWorkdir();
  out.user = s.getUser();
  out.hostname = s.getHostname();
  if (s.hasLimits())
    out.limits = cell_from_capnp(s.getLimits()).limits;
  out.pod = s.getPod();
  out.network = s.getNetwork();
  out.ports = from_capnp(s.getPorts());
  out.auto_remove = s.getAutoRemove();
  out.read_only = s.getReadOnly();
  out.cap_add = texts(s.getCapAdd());
  out.sysctls = texts(s.getSysctls());
  for (auto m : s.getMounts())
    out.mounts.push_back(
        {m.getKind(), m.getSource(), m.getTarget(), m.getReadOnly(), m.getSizeBytes()});
  if (s.hasRestart()) {
    out.restart.mode = s.getRestart().getMode();
    out.restart.max_retries = s.getRestart().getMaxRetries();
  }
  out.tty = s.getTty();
  out.interactive = s.getInteractive();
  return out;
}

void to_capnp(const container_spec& s, schema::ContainerSpec::Builder out) {
  out.setName(s.name);
  out.setImage(s.image);
  fill_texts(out.initEntrypoint(s.entrypoint.size()), s.entrypoint);
  fill_texts(out.initArgs(s.args.size()), s.args);
  fill_texts(out.initEnv(s.env.size()), s.env);
  out.setWorkdir(s.workdir);
  out.setUser(s.user);
  out.setHostname(s.hostname);
  cell_spec cs;
  cs.limits = s.limits;
  cell_to_capnp(cs, out.initLimits());
  out.setPod(s.pod);
  out.setNetwork(s.network);
  to_capnp(s.ports, out.initPorts(s.ports.size()));
  out.setAutoRemove(s.auto_remove);
  out.setReadOnly(s.read_only);
  fill_texts(out.initCapAdd(s.cap_add.size()), s.cap_add);
  fill_texts(out.initSysctls(s.sysctls.size()), s.sysctls);
  auto mounts = out.initMounts(s.mounts.size());
  for (uint i = 0; i < s.mounts.size(); ++i) {
    mounts[i].setKind(s.mounts[i].kind);
    mounts[i].setSource(s.mounts[i].source);
    mounts[i].setTarget(s.mounts[i].target);
    mounts[i].setReadOnly(s.mounts[i].read_only);
    mounts[i].setSizeBytes(s.mounts[i].size_bytes);
  }
  auto restart = out.initRestart();
  restart.setMode(s.restart.mode);
  restart.setMaxRetries(s.restart.max_retries);
  out.setTty(s.tty);
  out.setInteractive(s.interactive);
}

void to_capnp(const container_info& x, schema::ContainerInfo::Builder out) {
  to_capnp(x.spec, out.initSpec());
  out.setId(x.id);
  out.setState(static_cast<schema::ContainerState>(x.state));
  out.setPid(x.pid);
  out.setExitCode(x.exit_code);
  out.setExitSignal(x.exit_signal);
  out.setError(x.error);
  out.setCell(x.cell);
  out.setExecutable(x.executable);
  out.setImageName(x.image_name);
  out.setImageDigest(x.image_digest);
  out.setBundle(x.bundle);
  fill_texts(out.initCommand(x.command.size()), x.command);
  fill_texts(out.initIps(x.ips.size()), x.ips);
  out.setCreatedUnixNanos(x.created_unix_nanos);
  out.setStartedUnixNanos(x.started_unix_nanos);
  out.setFinishedUnixNanos(x.finished_unix_nanos);
  out.setRestartCount(x.restart_count);
}

void to_capnp(const pod_info& x, schema::PodInfo::Builder out) {
  auto s = out.initSpec();
  s.setName(x.spec.name);
  cell_spec cs;
  cs.limits = x.spec.limits;
  cell_to_capnp(cs, s.initLimits());
  s.setNetwork(x.spec.network);
  to_capnp(x.spec.ports, s.initPorts(x.spec.ports.size()));
  out.setCell(x.cell);
  out.setPausePid(x.pause_pid);
  out.setRunning(x.running);
  fill_texts(out.initContainers(x.containers.size()), x.containers);
  fill_texts(out.initIps(x.ips.size()), x.ips);
  out.setCreatedUnixNanos(x.created_unix_nanos);
}

/// The output of one run: the batches of the containers actor's relay, tagged with our
/// watch id, to the client's sink; credit goes back to the relay once the client has
/// accepted a batch (capnp `-> stream` flow control). Dropped (the call ended): the
/// relay ends the subscription.
class run_output final : public observe_stream, private kj::TaskSet::ErrorHandler {
public:
  run_output(stream_router& router, schema::OutputSink::Client sink)
      : router_(router), watch_(next_watch()), sink_(kj::mv(sink)), tasks_(*this) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    ended_ = paf.promise.fork();
    done_ = kj::mv(paf.fulfiller);
    router_.add(watch_, this);
  }

  ~run_output() noexcept(false) override {
    router_.remove(watch_);
    if (relay_ && !end_)
      caf::anon_send(caf::actor_cast<caf::actor>(relay_), unsub_atom::value, watch_);
  }

  uint64_t watch() const noexcept {
    return watch_;
  }

  /// Resolves once the last batch was accepted by the client.
  kj::Promise<void> ended() {
    return ended_.addBranch();
  }

  void on_message(caf::message&) override {}

  void on_batch(const caf::strong_actor_ptr& sender, caf::message& msg) override {
    if (!msg.match_elements<output_batch>() || end_)
      return;
    relay_ = sender;
    auto& b = msg.get_as<output_batch>(0);
    auto n = static_cast<uint32_t>(b.lines.size());
    bool end = b.end;
    if (end) {
      end_ = true;
      router_.remove(watch_);
    }
    kj::Promise<void> write = n == 0 && b.dropped == 0 ? kj::Promise<void>(kj::READY_NOW)
                                                       : send_lines(sink_, b);
    tasks_.add(write.then([this, n, end] {
      if (end)
        done_->fulfill();
      else if (n > 0 && relay_)
        caf::anon_send(caf::actor_cast<caf::actor>(relay_), demand_atom::value, watch_, n);
    }));
  }

private:
  /// Apart from the observe actor's subscription ids (which count up from 1).
  static uint64_t next_watch() {
    static std::atomic<uint64_t> next{1};
    return (uint64_t{1} << 63) | next++;
  }

  void taskFailed(kj::Exception&& e) override {
    done_->reject(kj::mv(e));
  }

  stream_router& router_;
  uint64_t watch_;
  schema::OutputSink::Client sink_;
  caf::strong_actor_ptr relay_;
  bool end_ = false;
  kj::ForkedPromise<void> ended_ = kj::Promise<void>(kj::READY_NOW).fork();
  kj::Own<kj::PromiseFulfiller<void>> done_;
  kj::TaskSet tasks_;
};

class containers_service final : public cancellable<schema::Containers::Server> {
public:
  containers_service(bridge& br, stream_router& router, progress_router& progress,
                     containers_actor actor)
      : bridge_(br), router_(router), progress_(progress), actor_(std::move(actor)) {}

  kj::Promise<void> create(CreateContext context) override {
    // Unbounded: making the root file system of a large image takes what it takes.
    return bridge_.request(bridge::infinite, actor_, create_atom::value,
                           from_capnp(context.getParams().getSpec()))
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> start(StartContext context) override {
    auto p = context.getParams();
    // Unbounded: with `wait` it answers when the container exits.
    return bridge_.request(bridge::infinite, actor_, start_atom::value, std::string{p.getName()},
                           p.getWait())
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> run(RunContext context) override {
    auto p = context.getParams();
    run_options opts;
    opts.wait = p.getWait();
    opts.pull = static_cast<uint8_t>(p.getPull());
    kj::Own<run_output> output;
    output_sink_actor output_sink;
    if (p.hasOutput()) {
      output = kj::heap<run_output>(router_, p.getOutput());
      opts.output_watch = output->watch();
      output_sink = caf::actor_cast<output_sink_actor>(bridge_.handle());
    }
    image_progress_sink_actor progress_sink;
    if (p.hasProgress()) {
      opts.progress_watch = progress_.add(p.getProgress());
      progress_sink = caf::actor_cast<image_progress_sink_actor>(bridge_.handle());
    }
    auto* out = output.get();
    auto watch = opts.progress_watch;
    // Unbounded: pulls, and with `wait` it answers when the container exits.
    return bridge_
        .request(bridge::infinite, actor_, run_atom::value, from_capnp(p.getSpec()), opts,
                 output_sink, progress_sink)
        .then([this, context, out, watch, wait = opts.wait](
                  container_info info) mutable -> kj::Promise<void> {
          to_capnp(info, context.getResults().initInfo());
          // Answer after the last progress call and (waiting) the last output line.
          kj::Promise<void> last = watch ? progress_.finish(watch) : kj::READY_NOW;
          if (out && wait)
            last = last.then([out] { return out->ended(); });
          return last;
        })
        .attach(kj::mv(output), kj::defer([this, watch] {
                  if (watch)
                    progress_.remove(watch);
                }));
  }

  kj::Promise<void> stop(StopContext context) override {
    auto p = context.getParams();
    return bridge_
        .request(bridge::infinite, actor_, stop_atom::value, std::string{p.getName()}, p.getSignal(),
                 p.getTimeoutMs())
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> kill(KillContext context) override {
    auto p = context.getParams();
    return bridge_.request(actor_, kill_atom::value, std::string{p.getName()}, p.getSignal());
  }

  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return bridge_.request(actor_, delete_atom::value, std::string{p.getName()}, p.getForce());
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(actor_, list_atom::value)
        .then([context](std::vector<container_info> all) mutable {
          auto out = context.getResults().initContainers(all.size());
          for (uint i = 0; i < all.size(); ++i)
            to_capnp(all[i], out[i]);
        });
  }

  kj::Promise<void> inspect(InspectContext context) override {
    return bridge_.request(actor_, get_atom::value, std::string{context.getParams().getName()})
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> exec(ExecContext context) override {
    auto p = context.getParams();
    exec_spec spec{p.getName(), texts(p.getArgv()), texts(p.getEnv()), p.getCwd(), p.getUser(),
                   p.getTty(), p.getInteractive()};
    return bridge_.request(actor_, exec_atom::value, std::move(spec))
        .then([context](exec_info info) mutable {
          auto out = context.getResults().initInfo();
          out.setCell(info.cell);
          out.setExecutable(info.executable);
          out.setPid(info.pid);
        });
  }

  kj::Promise<void> wait(WaitContext context) override {
    return bridge_
        .request(bridge::infinite, actor_, wait_atom::value,
                 std::string{context.getParams().getName()})
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> init(InitContext context) override {
    // Unbounded: attaching the network and creating the process take what they take.
    return bridge_
        .request(bridge::infinite, actor_, init_atom::value,
                 std::string{context.getParams().getName()})
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> attach(AttachContext context) override {
    auto p = context.getParams();
    auto output = p.getOutput();
    return bridge_.request(actor_, attach_atom::value, std::string{p.getName()},
                           std::string{p.getExec()})
        .then([this, context, output](std::string path) mutable {
          context.getResults().setInput(attach_relay(bridge_.event_port(), path, kj::mv(output)));
        });
  }

  kj::Promise<void> copyOut(CopyOutContext context) override {
    auto p = context.getParams();
    // Unbounded: the tar of a large tree takes what it takes to write.
    return bridge_
        .request(bridge::infinite, actor_, copy_atom::value, get_atom::value,
                 std::string{p.getName()}, std::string{p.getPath()})
        .then([this, sink = p.getSink()](copy_stream_actor s) mutable {
          return pump_out(kj::mv(s), kj::mv(sink));
        });
  }

  kj::Promise<void> copyIn(CopyInContext context) override {
    auto p = context.getParams();
    return bridge_
        .request(bridge::infinite, actor_, copy_atom::value, put_atom::value,
                 std::string{p.getName()}, std::string{p.getPath()}, std::string{p.getSource()})
        .then([this, context](copy_stream_actor s) mutable {
          context.getResults().setInput(kj::heap<copy_input>(bridge_, kj::mv(s)));
        });
  }

private:
  /// The tar's bytes feed an InputStream's writes (in order: one actor, one sender).
  class copy_input final : public schema::InputStream::Server {
  public:
    copy_input(bridge& br, copy_stream_actor s) : bridge_(br), stream_(kj::mv(s)) {}

    kj::Promise<void> write(WriteContext context) override {
      auto data = context.getParams().getData();
      return bridge_.request(bridge::infinite, stream_, put_atom::value,
                             std::string{data.asChars().begin(), data.size()});
    }

    kj::Promise<void> close(CloseContext) override {
      return bridge_.request(bridge::infinite, stream_, done_atom::value);
    }

    kj::Promise<void> resize(ResizeContext) override {
      return kj::READY_NOW;
    }

  private:
    bridge& bridge_;
    copy_stream_actor stream_;
  };

  /// Chunks of the tar to the sink, one after another, then done().
  kj::Promise<void> pump_out(copy_stream_actor s, schema::ByteSink::Client sink) {
    auto next = bridge_.request(bridge::infinite, s, get_atom::value);
    return next.then([this, s = kj::mv(s), sink = kj::mv(sink)](std::string bytes) mutable
                     -> kj::Promise<void> {
      if (bytes.empty())
        return sink.doneRequest().send().ignoreResult();
      auto req = sink.writeRequest();
      req.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      return req.send().then([this, s = kj::mv(s), sink = kj::mv(sink)]() mutable {
        return pump_out(kj::mv(s), kj::mv(sink));
      });
    });
  }

  bridge& bridge_;
  stream_router& router_;
  progress_router& progress_;
  containers_actor actor_;
};

class pods_service final : public cancellable<schema::Pods::Server> {
public:
  pods_service(bridge& br, containers_actor actor) : bridge_(br), actor_(std::move(actor)) {}

  kj::Promise<void> create(CreateContext context) override {
    auto s = context.getParams().getSpec();
    pod_spec spec;
    spec.name = s.getName();
    if (s.hasLimits())
      spec.limits = cell_from_capnp(s.getLimits()).limits;
    spec.network = s.getNetwork();
    spec.ports = from_capnp(s.getPorts());
    return bridge_.request(bridge::infinite, actor_, create_atom::value, std::move(spec))
        .then(
            [context](pod_info info) mutable { to_capnp(info, context.getResults().initInfo()); });
  }

  kj::Promise<void> addContainer(AddContainerContext context) override {
    auto p = context.getParams();
    auto spec = from_capnp(p.getSpec());
    spec.pod = p.getPod();
    return bridge_.request(bridge::infinite, actor_, run_atom::value, std::move(spec), false)
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
  }

  kj::Promise<void> stop(StopContext context) override {
    auto p = context.getParams();
    return bridge_
        .request(bridge::infinite, actor_, stop_atom::value, pod_atom::value,
                 std::string{p.getName()},
                 p.getTimeoutMs())
        .then(
            [context](pod_info info) mutable { to_capnp(info, context.getResults().initInfo()); });
  }

  kj::Promise<void> remove(RemoveContext context) override {
    auto p = context.getParams();
    return bridge_.request(actor_, delete_atom::value, pod_atom::value, std::string{p.getName()},
                           p.getForce());
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(actor_, list_atom::value, pod_atom::value)
        .then([context](std::vector<pod_info> all) mutable {
          auto out = context.getResults().initPods(all.size());
          for (uint i = 0; i < all.size(); ++i)
            to_capnp(all[i], out[i]);
        });
  }

private:
  bridge& bridge_;
  containers_actor actor_;
};

} // namespace

kj::Own<schema::Containers::Server> new_containers_service(bridge& br, stream_router& router,
                                                           progress_router& progress,
                                                           containers_actor actor) {
  return kj::heap<containers_service>(br, router, progress, std::move(actor));
}

kj::Own<schema::Pods::Server> new_pods_service(bridge& br, containers_actor actor) {
  return kj::heap<pods_service>(br, std::move(actor));
}

} // namespace cyto::services
