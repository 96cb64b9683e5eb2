#include "services/containers_service.hpp"

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

class containers_service final : public cancellable<schema::Containers::Server> {
public:
  containers_service(bridge& br, containers_actor actor) : bridge_(br), actor_(std::move(actor)) {}

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
    return bridge_.request(bridge::infinite, actor_, run_atom::value, from_capnp(p.getSpec()),
                           p.getWait())
        .then([context](container_info info) mutable {
          to_capnp(info, context.getResults().initInfo());
        });
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

kj::Own<schema::Containers::Server> new_containers_service(bridge& br, containers_actor actor) {
  return kj::heap<containers_service>(br, std::move(actor));
}

kj::Own<schema::Pods::Server> new_pods_service(bridge& br, containers_actor actor) {
  return kj::heap<pods_service>(br, std::move(actor));
}

} // namespace cyto::services
