#include "services/cells_service.hpp"

#include <map>

#include "services/convert.hpp"
#include "services/network_service.hpp"
#include "services/cancellable.hpp"

namespace cyto::services {

namespace {

cell_spec from_capnp(schema::Cell::Reader c) {
  cell_spec s;
  s.name = c.getName();
  auto& l = s.limits;
  l.cpu_weight = c.getCpu().getWeight();
  l.cpu_max_quota_us = c.getCpu().getMaxQuotaUs();
  l.cpu_max_period_us = c.getCpu().getMaxPeriodUs();
  l.cpuset_cpus = c.getCpuset().getCpus();
  l.cpuset_mems = c.getCpuset().getMems();
  l.memory_min = c.getMemory().getMin();
  l.memory_low = c.getMemory().getLow();
  l.memory_high = c.getMemory().getHigh();
  l.memory_max = c.getMemory().getMax();
  l.pids_max = c.getPidsMax();
  l.io_weight = c.getIo().getWeight();
  for (auto d : c.getIo().getMax())
    l.io_max.push_back({d.getDevice(), d.getRbps(), d.getWbps(), d.getRiops(), d.getWiops()});
  s.isolate_process = c.getIsolateProcess();
  s.isolate_network = c.getIsolateNetwork();
  s.network = c.getNetwork();
  s.ports = services::from_capnp(c.getPorts());
  return s;
}

void to_capnp(const cell_spec& s, schema::Cell::Builder c) {
  c.setName(s.name);
  auto& l = s.limits;
  auto cpu = c.initCpu();
  cpu.setWeight(l.cpu_weight);
  cpu.setMaxQuotaUs(l.cpu_max_quota_us);
  cpu.setMaxPeriodUs(l.cpu_max_period_us);
  auto cs = c.initCpuset();
  cs.setCpus(l.cpuset_cpus);
  cs.setMems(l.cpuset_mems);
  auto m = c.initMemory();
  m.setMin(l.memory_min);
  m.setLow(l.memory_low);
  m.setHigh(l.memory_high);
  m.setMax(l.memory_max);
  c.setPidsMax(l.pids_max);
  auto io = c.initIo();
  io.setWeight(l.io_weight);
  auto devs = io.initMax(l.io_max.size());
  for (uint i = 0; i < l.io_max.size(); ++i) {
    auto& d = l.io_max[i];
    auto out = devs[i];
    out.setDevice(d.device);
    out.setRbps(d.rbps);
    out.setWbps(d.wbps);
    out.setRiops(d.riops);
    out.setWiops(d.wiops);
  }
  c.setIsolateProcess(s.isolate_process);
  c.setIsolateNetwork(s.isolate_network);
  c.setNetwork(s.network);
  services::to_capnp(s.ports, c.initPorts(s.ports.size()));
}

executable_spec from_capnp(kj::StringPtr cell, schema::Executable::Reader e) {
  executable_spec s;
  s.cell = cell;
  s.name = e.getName();
  s.argv = texts(e.getArgv());
  s.command = e.getCommand();
  s.env = texts(e.getEnv());
  s.cwd = e.getCwd();
  s.uid = e.getUid();
  s.gid = e.getGid();
  s.description = e.getDescription();
  return s;
}

void to_capnp(const exit_status& x, schema::ExitStatus::Builder out) {
  out.setExited(x.exited);
  out.setKnown(x.known);
  out.setCode(x.code);
  out.setSignal(x.signal);
}

void to_capnp(const executable_info& x, schema::ExecutableInfo::Builder out) {
  auto e = out.initExecutable();
  e.setName(x.spec.name);
  fill_texts(e.initArgv(x.spec.argv.size()), x.spec.argv);
  e.setCommand(x.spec.command);
  fill_texts(e.initEnv(x.spec.env.size()), x.spec.env);
  e.setCwd(x.spec.cwd);
  e.setUid(x.spec.uid);
  e.setGid(x.spec.gid);
  e.setDescription(x.spec.description);
  out.setCellName(x.spec.cell);
  out.setPid(x.pid);
  out.setNsPid(x.ns_pid);
  out.setStartedUnixNanos(x.started_unix_nanos);
  to_capnp(x.status, out.initStatus());
  out.setStdoutPath(x.stdout_path);
  out.setStderrPath(x.stderr_path);
}

/// Fills one cell and, recursively, the cells nested under it.
void to_capnp(const std::vector<cell_info>& all, size_t at,
              const std::multimap<std::string, size_t>& children, schema::CellInfo::Builder out) {
  auto& c = all[at];
  to_capnp(c.spec, out.initCell());
  auto exes = out.initExecutables(c.executables.size());
  for (uint i = 0; i < c.executables.size(); ++i)
    to_capnp(c.executables[i], exes[i]);
  auto pids = out.initPids(c.pids.size());
  for (uint i = 0; i < c.pids.size(); ++i)
    pids.set(i, c.pids[i]);
  out.setCgroupPath(c.cgroup_path);
  fill_texts(out.initIps(c.net.ips.size()), c.net.ips);
  out.setNetnsPath(c.net.netns_path);
  auto [b, e] = children.equal_range(c.spec.name);
  auto kids = out.initChildren(std::distance(b, e));
  uint i = 0;
  for (auto it = b; it != e; ++it)
    to_capnp(all, it->second, children, kids[i++]);
}

std::string parent_of(const std::string& name) {
  auto slash = name.rfind('/');
  return slash == std::string::npos ? std::string{} : name.substr(0, slash);
}

class cells_service final : public cancellable<schema::Cells::Server> {
public:
  cells_service(bridge& br, cells_actor cells) : bridge_(br), cells_(std::move(cells)) {
  }

  kj::Promise<void> allocate(AllocateContext context) override {
    return bridge_.request(cells_, allocate_atom::value, from_capnp(context.getParams().getCell()))
      .then([context](cell_info info) mutable {
        std::vector<cell_info> one{std::move(info)};
        to_capnp(one, 0, {}, context.getResults().initInfo());
      });
  }

  kj::Promise<void> free(FreeContext context) override {
    auto p = context.getParams();
    return bridge_.request(cells_, free_atom::value, std::string{p.getName()}, p.getRecursive(),
                           p.getForce());
  }

  kj::Promise<void> start(StartContext context) override {
    auto p = context.getParams();
    return bridge_.request(cells_, start_atom::value, from_capnp(p.getCellName(), p.getExecutable()))
      .then([context](executable_info info) mutable {
        to_capnp(info, context.getResults().initInfo());
      });
  }

  kj::Promise<void> stop(StopContext context) override {
    auto p = context.getParams();
    return bridge_
      .request(bridge::infinite, cells_, stop_atom::value, std::string{p.getCellName()},
               std::string{p.getExecutableName()}, p.getSignal(), p.getTimeoutMs())
      .then([context](exit_status s) mutable { to_capnp(s, context.getResults().initStatus()); });
  }

  kj::Promise<void> list(ListContext context) override {
    return bridge_.request(cells_, list_atom::value)
      .then([context](std::vector<cell_info> all) mutable {
        std::multimap<std::string, size_t> children;
        std::vector<size_t> tops;
        for (size_t i = 0; i < all.size(); ++i) {
          auto parent = parent_of(all[i].spec.name);
          if (parent.empty())
            tops.push_back(i);
          else
            children.emplace(parent, i);
        }
        auto out = context.getResults().initCells(tops.size());
        for (uint i = 0; i < tops.size(); ++i)
          to_capnp(all, tops[i], children, out[i]);
      });
  }

  kj::Promise<void> get(GetContext context) override {
    return bridge_.request(cells_, get_atom::value, std::string{context.getParams().getName()})
      .then([context](cell_info info) mutable {
        std::vector<cell_info> one{std::move(info)};
        to_capnp(one, 0, {}, context.getResults().initInfo());
      });
  }

  kj::Promise<void> wait(WaitContext context) override {
    auto p = context.getParams();
    return bridge_
      .request(bridge::infinite, cells_, wait_atom::value, std::string{p.getCellName()},
               std::string{p.getExecutableName()})
      .then([context](exit_status s) mutable { to_capnp(s, context.getResults().initStatus()); });
  }

private:
  bridge& bridge_;
  cells_actor cells_;
};

} // namespace

cell_spec cell_from_capnp(schema::Cell::Reader c) {
  return from_capnp(c);
}

void cell_to_capnp(const cell_spec& s, schema::Cell::Builder c) {
  to_capnp(s, c);
}

kj::Own<schema::Cells::Server> new_cells_service(bridge& br, cells_actor cells) {
  return kj::heap<cells_service>(br, std::move(cells));
}

} // namespace cyto::services
