#include "services/vms_service.hpp"

#include "services/convert.hpp"
#include "services/errors.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

vm_spec from_capnp(schema::VmSpec::Reader s) {
  vm_spec out;
  out.name = s.getName();
  out.vcpus = s.getVcpus();
  out.memory_bytes = s.getMemoryBytes();
  out.kernel = s.getKernel();
  out.initrd = s.getInitrd();
  out.cmdline = s.getCmdline();
  for (auto d : s.getDrives())
    out.drives.push_back(
        {d.getPath(), d.hasFormat() ? std::string{d.getFormat()} : std::string{"raw"},
         d.getReadOnly()});
  out.accel = s.getAccel();
  out.machine = s.getMachine();
  out.labels = texts(s.getLabels());
  out.init_args = texts(s.getInitArgs());
  out.network = s.getNetwork();
  out.image = s.getImage();
  return out;
}

void to_capnp(const vm_spec& s, schema::VmSpec::Builder out) {
  out.setName(s.name);
  out.setVcpus(s.vcpus);
  out.setMemoryBytes(s.memory_bytes);
  out.setKernel(s.kernel);
  out.setInitrd(s.initrd);
  out.setCmdline(s.cmdline);
  auto drives = out.initDrives(s.drives.size());
  for (uint i = 0; i < s.drives.size(); ++i) {
    drives[i].setPath(s.drives[i].path);
    drives[i].setFormat(s.drives[i].format);
    drives[i].setReadOnly(s.drives[i].read_only);
  }
  out.setAccel(s.accel);
  out.setMachine(s.machine);
  fill_texts(out.initLabels(s.labels.size()), s.labels);
  fill_texts(out.initInitArgs(s.init_args.size()), s.init_args);
  out.setNetwork(s.network);
  out.setImage(s.image);
}

void to_capnp(const vm_image_root& r, schema::VmImageRoot::Builder out) {
  out.setImage(r.image);
  out.setDigest(r.digest);
  out.setDisk(r.disk);
  out.setOverlay(r.overlay);
  fill_texts(out.initCommand(r.command.size()), r.command);
  fill_texts(out.initEnv(r.env.size()), r.env);
  out.setWorkdir(r.workdir);
}

void to_capnp(const vm_info& x, schema::VmInfo::Builder out) {
  to_capnp(x.spec, out.initSpec());
  out.setState(static_cast<schema::VmState>(x.state));
  out.setPid(x.pid);
  out.setExitReason(x.exit_reason);
  out.setExitCode(x.exit_code);
  out.setAccel(x.accel);
  out.setAccelReason(x.accel_reason);
  out.setMachine(x.machine);
  out.setCell(x.cell);
  out.setExecutable(x.executable);
  out.setConsolePath(x.console_path);
  out.setChannelPath(x.channel_path);
  out.setQmpPath(x.qmp_path);
  out.setDir(x.dir);
  out.setCreatedUnixNanos(x.created_unix_nanos);
  out.setStartedUnixNanos(x.started_unix_nanos);
  out.setFinishedUnixNanos(x.finished_unix_nanos);
  fill_texts(out.initIps(x.ips.size()), x.ips);
  out.setGateway(x.gateway);
  out.setTap(x.tap);
  out.setMac(x.mac);
  if (!x.spec.image.empty())
    to_capnp(x.image_root, out.initImageRoot());
}

class vms_service final : public cancellable<schema::Vms::Server> {
public:
  vms_service(bridge& br, stream_router& router, registry_actor registry, vms_actor actor)
    : bridge_(br), router_(router), registry_(std::move(registry)), actor_(std::move(actor)) {
  }

  kj::Promise<void> allocate(AllocateContext context) override {
    // Unbounded: a VM from an image makes its root disk first (mke2fs -d of the image).
    return bridge_
        .request(bridge::infinite, actor_, allocate_atom::value,
                 from_capnp(context.getParams().getSpec()))
        .then([context](vm_info info) mutable { to_capnp(info, context.getResults().initInfo()); });
  }

  kj::Promise<void> start(StartContext context) override {
    return answer(context, bridge_.request(bridge::infinite, actor_, start_atom::value,
                                           name_of(context)));
  }

  kj::Promise<void> stop(StopContext context) override {
    return answer(context, bridge_.request(bridge::infinite, actor_, stop_atom::value, name_of(context),
                                           context.getParams().getTimeoutMs()));
  }

  kj::Promise<void> kill(KillContext context) override {
    return answer(context, bridge_.request(actor_, kill_atom::value, name_of(context)));
  }

  kj::Promise<void> pause(PauseContext context) override {
    return answer(context, bridge_.request(actor_, pause_atom::value, name_of(context)));
  }

  kj::Promise<void> resume(ResumeContext context) override {
    return answer(context, bridge_.request(actor_, resume_atom::value, name_of(context)));
  }

  kj::Promise<void> free(FreeContext context) override {
    auto p = context.getParams();
    return bridge_.request(actor_, free_atom::value, std::string{p.getName()}, p.getForce());
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(actor_, list_atom::value)
        .then([context](std::vector<vm_info> all) mutable {
          auto out = context.getResults().initVms(all.size());
          for (uint i = 0; i < all.size(); ++i)
            to_capnp(all[i], out[i]);
        });
  }

  kj::Promise<void> inspect(InspectContext context) override {
    return answer(context, bridge_.request(actor_, get_atom::value, name_of(context)));
  }

  kj::Promise<void> console(ConsoleContext context) override {
    auto p = context.getParams();
    bool follow = p.getFollow();
    auto sink = p.getSink();
    // The console is QEMU's stdout: the observe service's output stream of the VM's
    // executable (history, then live lines with no gap at the seam).
    return bridge_.request(actor_, get_atom::value, std::string{p.getName()})
        .then([this, follow, sink](vm_info info) mutable {
          if (info.console_path.empty())
            fail(errc::failed_precondition,
                 "vm " + info.spec.name + " has not been started: no console yet");
          return bridge_.request(registry_, get_atom::value, std::string{service_name::observe})
              .then([this, info, follow, sink](caf::strong_actor_ptr h) mutable {
                schema::Observe::Client observe =
                    new_observe_service(bridge_, router_, caf::actor_cast<observe_actor>(h));
                auto req = observe.outputRequest();
                req.setCell(info.cell);
                req.setExecutable(info.executable);
                req.setWhich(schema::OutputStream::STDOUT);
                req.setFollow(follow);
                req.setFromStart(true);
                req.setSink(kj::mv(sink));
                return req.send().ignoreResult().attach(kj::mv(observe));
              });
        });
  }

private:
  template <class Context>
  static std::string name_of(Context& context) {
    return context.getParams().getName();
  }

  template <class Context>
  static kj::Promise<void> answer(Context context, kj::Promise<vm_info> p) {
    return p.then(
        [context](vm_info info) mutable { to_capnp(info, context.getResults().initInfo()); });
  }

  bridge& bridge_;
  stream_router& router_;
  registry_actor registry_;
  vms_actor actor_;
};

} // namespace

kj::Own<schema::Vms::Server> new_vms_service(bridge& br, stream_router& router,
                                             registry_actor registry, vms_actor vms) {
  return kj::heap<vms_service>(br, router, std::move(registry), std::move(vms));
}

} // namespace cyto::services
