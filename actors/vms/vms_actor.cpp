#include "actors/vms/vms_actor.hpp"

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/vms/accel.hpp"
#include "actors/vms/qemu_args.hpp"
#include "actors/vms/qmp_session.hpp"
#include "actors/vms/root_disk.hpp"
#include "actors/vms/vm_rows.hpp"
#include "bus/errc.hpp"
#include "bus/internal.hpp"
#include "bus/logging.hpp"

namespace cyto::vms {

namespace {

/// The owner the images actor records for the trees root disks are built from.
constexpr const char* rootfs_owner = "vms";

using self_ptr = vms_private::stateful_pointer<vms_state>;
using vm = vms_state::vm;
using nlohmann::json;
namespace fs = std::filesystem;

/// Parent cell of every VM cell, so `cyto cell ls` groups them.
constexpr const char* vms_cell = "vms";
constexpr const char* qemu_exe = "qemu";
constexpr const char* qemu_package = "qemu-system-x86";

int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Answers a request of a void handler (CAF 0.17's typed promise has no empty deliver).
void deliver_ok(caf::typed_response_promise<void>& rp) {
  static_cast<caf::response_promise&>(rp).deliver(caf::unit);
}

caf::error no_vm(const std::string& name) {
  return make_error(errc::not_found, "vm " + name + ": no such VM");
}

bool is_live(vm_state s) {
  return s == vm_state::running || s == vm_state::paused;
}

std::string text_of(vm_state s) {
  switch (s) {
    case vm_state::created: return "created";
    case vm_state::running: return "running";
    case vm_state::paused: return "paused";
    case vm_state::stopped: return "stopped";
    case vm_state::exited: return "exited";
  }
  return "unknown";
}

/// The last `max` bytes of a file, trailing newlines cut (QEMU's stderr for an error).
std::string tail_of(const std::string& path, size_t max = 600) {
  std::ifstream in{path, std::ios::binary};
  std::string text{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  if (text.size() > max)
    text = "..." + text.substr(text.size() - max);
  return text;
}

std::string stderr_path(const vm_info& info) {
  auto p = info.console_path;
  auto dot = p.rfind(".stdout");
  return dot == std::string::npos ? std::string{} : p.substr(0, dot) + ".stderr";
}

caf::error check_name(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  if (!ok)
    return make_error(errc::invalid_argument,
                      "vm name '" + name +
                          "': 1-63 of [A-Za-z0-9_.-], starting with a letter or digit");
  return {};
}

uint64_t host_memory_bytes() {
  std::ifstream in{"/proc/meminfo"};
  std::string key;
  uint64_t kib = 0;
  while (in >> key >> kib) {
    if (key == "MemTotal:")
      return kib * 1024;
    in.ignore(1024, '\n');
  }
  return 0;
}

/// A file QEMU must read (and write unless `read_only`): absolute, existing, no dir.
caf::error check_file(const std::string& what, const std::string& path, bool read_only) {
  if (path.empty() || path.front() != '/')
    return make_error(errc::invalid_argument, what + " '" + path + "': give an absolute path");
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0)
    return make_error(errno == ENOENT ? errc::not_found : errc::permission_denied,
                      what + " " + path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode))
    return make_error(errc::invalid_argument, what + " " + path + " is a directory");
  int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0)
    return make_error(errc::permission_denied, what + " " + path + ": cannot open for " +
                                                   (read_only ? "reading" : "writing") + ": " +
                                                   std::strerror(errno));
  ::close(fd);
  return {};
}

/// The QEMU binary as an absolute path; unavailable naming the Debian package.
caf::expected<std::string> find_qemu(const std::string& qemu) {
  return find_tool(qemu, qemu_package, "QEMU");
}

std::string canonical(const std::string& path) {
  std::error_code ec;
  auto p = fs::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

/// A running VM (other than `self_name`) that uses `d`'s file where one of them writes.
caf::error drive_conflict(const vms_state& st, const std::string& self_name, const vm_drive& d) {
  auto mine = canonical(d.path);
  for (auto& [n, v] : st.vms) {
    if (n == self_name || !is_live(v.info.state))
      continue;
    for (auto& other : v.info.spec.drives)
      if (canonical(other.path) == mine && !(other.read_only && d.read_only))
        return make_error(errc::failed_precondition,
                          "drive " + d.path + " is in use by running VM " + n);
  }
  return {};
}

/// What the kernel command line can carry after " -- " for the guest's init.
caf::error check_init_args(const std::string& cmdline, const std::vector<std::string>& args) {
  // The kernel panics beyond CONFIG_INIT_ENV_ARG_LIMIT (32) init arguments, init's own
  // name among them.
  if (args.size() > 31)
    return make_error(errc::invalid_argument,
                      std::to_string(args.size()) +
                          " arguments for the guest's init: the kernel passes at most 31");
  size_t length = cmdline.size();
  for (auto& a : args) {
    if (a == "--")
      return make_error(errc::invalid_argument,
                        "guest command argument '--': the kernel ends init's arguments there");
    if (a.empty() || a.find_first_of("\"\n") != std::string::npos)
      return make_error(errc::invalid_argument,
                        "guest command argument '" + a +
                            "': the kernel command line cannot carry empty arguments, "
                            "double quotes or newlines");
    length += a.size() + 3;
  }
  // x86's COMMAND_LINE_SIZE, less what qemu_args adds.
  if (length > 1900)
    return make_error(errc::invalid_argument,
                      "kernel command line and guest command are longer than 1900 bytes");
  return {};
}

caf::error check_spec(const vms_state& st, vm_spec& spec) {
  if (auto err = check_name(spec.name))
    return err;
  auto cpus = std::thread::hardware_concurrency();
  if (spec.vcpus == 0 || spec.vcpus > cpus)
    return make_error(errc::invalid_argument, "vcpus " + std::to_string(spec.vcpus) +
                                                  ": give 1.." + std::to_string(cpus) +
                                                  " (the host's cpus)");
  auto ram = host_memory_bytes();
  if (spec.memory_bytes < (16ull << 20) || (ram && spec.memory_bytes >= ram))
    return make_error(errc::invalid_argument,
                      "memory " + std::to_string(spec.memory_bytes >> 20) +
                          " MiB: give at least 16 MiB and less than the host's " +
                          std::to_string(ram >> 20) + " MiB");
  if (spec.memory_bytes % (1ull << 20))
    return make_error(errc::invalid_argument, "memory: give whole MiB");
  if (spec.kernel.empty())
    return make_error(errc::invalid_argument, "no kernel given (give a kernel or an image)");
  if (auto err = check_file("kernel", spec.kernel, true))
    return err;
  if (!spec.initrd.empty())
    if (auto err = check_file("initrd", spec.initrd, true))
      return err;
  std::set<std::string> seen;
  for (auto& d : spec.drives) {
    if (d.format.empty())
      d.format = "raw";
    if (d.format != "raw" && d.format != "qcow2")
      return make_error(errc::invalid_argument,
                        "drive " + d.path + ": format '" + d.format + "' is not raw or qcow2");
    if (auto err = check_file("drive", d.path, d.read_only))
      return err;
    if (!seen.insert(canonical(d.path)).second)
      return make_error(errc::invalid_argument, "drive " + d.path + " is given twice");
    if (auto err = drive_conflict(st, spec.name, d))
      return err;
  }
  if (!spec.accel.empty() && spec.accel != "kvm" && spec.accel != "tcg")
    return make_error(errc::invalid_argument, "accel '" + spec.accel + "' is not kvm or tcg");
  if (!spec.machine.empty() && spec.machine != "microvm" && spec.machine != "q35")
    return make_error(errc::invalid_argument,
                      "machine '" + spec.machine + "' is not microvm or q35");
  for (auto& l : spec.labels)
    if (l.find('=') == std::string::npos || l.front() == '=')
      return make_error(errc::invalid_argument, "label '" + l + "' is not key=value");
  if (spec.cmdline.find(" -- ") != std::string::npos || spec.cmdline.rfind("-- ", 0) == 0)
    return make_error(errc::invalid_argument,
                      "cmdline: give the guest's init arguments after '--' of vm run, "
                      "not in the kernel command line");
  return check_init_args(spec.cmdline, spec.init_args);
}

std::string vm_dir(const vms_state& st, const std::string& name) {
  return st.config.state_dir + "/vms/" + name;
}

void persist(self_ptr self, vm& v) {
  auto word = text_of(v.info.state);
  if (auto err = self->state.db->put({kind_vm, v.info.spec.name, word, store::to_blob(v.info)}))
    self->state.log->error("record vm {}: {}", v.info.spec.name, render(err));
}

/// The owner name of a VM's attachment in the network actor.
std::string net_owner(const std::string& name) {
  return "vm/" + name;
}

/// Releases the VM's tap and lease (a no-op in the network actor when it has none) and
/// forgets its addresses. The network actor handles requests in order, so a later start's
/// attach comes after this.
/// `k` runs once the network actor answered (at once when there is nothing to release).
void release_net(self_ptr self, vm& v, std::function<void()> k = {}) {
  auto& st = self->state;
  if (!k)
    k = [] {};
  if ((v.info.spec.network.empty() && v.info.tap.empty()) || !st.config.network)
    return k();
  v.info.ips.clear();
  v.info.gateway.clear();
  v.info.tap.clear();
  auto name = v.info.spec.name;
  self->request(st.config.network, caf::infinite, detach_atom::value, net_owner(name))
      .then([k] { k(); },
            [self, name, k](caf::error& err) {
              self->state.log->error("vm {}: release its tap and lease: {}", name, render(err));
              k();
            });
}

void remove_dir(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

/// Allocates `vms/<name>`, making the parent cell "vms" on first use.
template <class Ok, class Fail>
void allocate_cell(self_ptr self, cell_spec cs, Ok ok, Fail fail) {
  auto go = [self, cs, ok, fail]() mutable {
    self->request(self->state.config.cells, caf::infinite, allocate_atom::value, cs)
        .then(std::move(ok), std::move(fail));
  };
  if (self->state.parent_made)
    return go();
  cell_spec parent;
  parent.name = vms_cell;
  self->request(self->state.config.cells, caf::infinite, allocate_atom::value, parent)
      .then(
          [self, go](cell_info&) mutable {
            self->state.parent_made = true;
            go();
          },
          [self, go, fail](caf::error& err) mutable {
            if (code_of(err) != errc::already_exists)
              return fail(err);
            self->state.parent_made = true;
            go();
          });
}

// -- QMP ------------------------------------------------------------------------------

/// Runs a QMP command on the VM's session; `k` gets the reply (or the error).
void qmp(self_ptr self, vm& v, const std::string& command, json args,
         std::function<void(caf::expected<json>)> k) {
  if (!v.qmp)
    return k(make_error(errc::unavailable, "vm " + v.info.spec.name + ": no QMP connection"));
  self->request(v.qmp, std::chrono::seconds{10}, exec_atom::value, command,
                args.is_null() ? std::string{} : args.dump())
      .then([k](std::string& text) { k(json::parse(text, nullptr, false)); },
            [k](caf::error& err) { k(err); });
}

/// Connects a QMP session to the VM's QEMU; `k` gets the guest's status
/// ("running", "paused", "shutdown", ...) or the error.
void connect_qmp(self_ptr self, const std::string& name,
                 std::function<void(caf::expected<std::string>)> k) {
  auto& st = self->state;
  auto& v = st.vms.at(name);
  if (v.qmp)
    caf::anon_send_exit(v.qmp, caf::exit_reason::user_shutdown);
  v.qmp = self->spawn<caf::detached>(qmp_session, vms_private{self}, name);
  auto run = v.run;
  self->request(v.qmp, caf::infinite, start_atom::value, v.info.qmp_path, v.info.pid,
                st.config.qmp_timeout_ms)
      .then(
          [self, name, run, k](std::string& version) {
            auto i = self->state.vms.find(name);
            if (i == self->state.vms.end() || i->second.run != run)
              return;
            self->state.log->debug("vm {}: QMP connected (QEMU {})", name, version);
            qmp(self, i->second, "query-status", nullptr, [k](caf::expected<json> r) {
              if (!r)
                return k(r.error());
              k(r->value("status", std::string{"unknown"}));
            });
          },
          [k](caf::error& err) { k(err); });
}

// -- exits ----------------------------------------------------------------------------

void watch_exit(self_ptr self, const vm& v) {
  auto name = v.info.spec.name;
  auto run = v.run;
  self->request(self->state.config.cells, caf::infinite, wait_atom::value, v.info.cell,
                std::string{qemu_exe})
      .then([self, name, run](exit_status& s) { self->send(self, exited_atom::value, name, run, s); },
            [self, name, run](caf::error& err) {
              self->state.log->warn("vm {}: lost QEMU: {}", name, render(err));
              self->send(self, exited_atom::value, name, run, exit_status{true, false, 0, 0});
            });
}

void on_exit(self_ptr self, const std::string& name, uint64_t run, const exit_status& s) {
  auto& st = self->state;
  auto i = st.vms.find(name);
  if (i == st.vms.end() || i->second.run != run || !is_live(i->second.info.state))
    return;
  auto& v = i->second;
  auto& info = v.info;
  if (v.qmp) {
    caf::anon_send_exit(v.qmp, caf::exit_reason::user_shutdown);
    v.qmp = nullptr;
  }
  info.exit_code = !s.known ? -1 : s.signal ? 128 + s.signal : s.code;
  if (!v.shutdown_reason.empty())
    info.exit_reason = v.shutdown_reason;
  else if (!s.known)
    info.exit_reason = "QEMU ended; how is unknown";
  else if (s.signal)
    info.exit_reason = "QEMU killed by signal " + std::to_string(s.signal);
  else
    info.exit_reason = "QEMU exited with code " + std::to_string(s.code);
  info.state = v.stopping ? vm_state::stopped : vm_state::exited;
  info.pid = 0;
  info.finished_unix_nanos = now_nanos();
  st.log->info("vm {} {}: {}", name, text_of(info.state), info.exit_reason);
  caf::error start_err;
  if (!v.starting.empty()) {
    auto why = tail_of(stderr_path(info));
    start_err =
        make_error(errc::invalid_argument, "QEMU exited at start (" + info.exit_reason + ")" +
                                               (why.empty() ? std::string{} : ": " + why));
    info.exit_reason = context_of(start_err);
  }
  v.starting_now = false;
  // Answered once the tap and lease are released: when stop returns, they are gone.
  auto starting = std::move(v.starting);
  auto waiters = std::move(v.waiters);
  v.starting.clear();
  v.waiters.clear();
  release_net(self, v, [self, name, start_err, starting, waiters]() mutable {
    auto i = self->state.vms.find(name);
    for (auto& rp : starting)
      rp.deliver(start_err);
    for (auto& rp : waiters)
      if (i != self->state.vms.end())
        rp.deliver(i->second.info);
      else
        rp.deliver(no_vm(name));
  });
  persist(self, v);
}

/// Sends QEMU a signal through the cells actor (answers on exit; the exit watcher acts).
void signal_qemu(self_ptr self, const vm& v, int sig) {
  self->request(self->state.config.cells, caf::infinite, stop_atom::value, v.info.cell,
                std::string{qemu_exe}, int32_t{sig}, uint32_t{0})
      .then([](exit_status&) {},
            [self, name = v.info.spec.name](caf::error& err) {
              if (code_of(err) != errc::not_found)
                self->state.log->warn("vm {}: signal QEMU: {}", name, render(err));
            });
}

/// Ends QEMU: QMP quit, or SIGTERM when QMP is not there.
void quit_qemu(self_ptr self, vm& v) {
  auto name = v.info.spec.name;
  qmp(self, v, "quit", nullptr, [self, name](caf::expected<json> r) {
    if (r)
      return;
    auto i = self->state.vms.find(name);
    if (i != self->state.vms.end() && is_live(i->second.info.state))
      signal_qemu(self, i->second, SIGTERM);
  });
}

void on_qmp_event(self_ptr self, qmp_event& ev) {
  auto& st = self->state;
  auto i = st.vms.find(ev.vm);
  if (i == st.vms.end())
    return;
  auto& v = i->second;
  // Only the current session speaks for the VM.
  if (!v.qmp || self->current_sender() != caf::actor_cast<caf::strong_actor_ptr>(v.qmp))
    return;
  auto data = json::parse(ev.data_json, nullptr, false);
  st.log->debug("vm {}: QMP event {} {}", ev.vm, ev.event, ev.data_json);
  if (ev.event.empty()) {
    v.qmp = nullptr; // closed: QEMU is ending (the exit watcher reports it)
  } else if (ev.event == "SHUTDOWN") {
    auto reason = data.is_object() ? data.value("reason", std::string{"shutdown"}) : "shutdown";
    // The first reason counts: our own quit after a guest power-off reports another.
    if (v.shutdown_reason.empty())
      v.shutdown_reason = reason;
    // -no-shutdown keeps QEMU around after the guest powered off: now it may go.
    if (reason != "host-qmp-quit")
      quit_qemu(self, v);
  } else if (ev.event == "STOP" && v.info.state == vm_state::running) {
    v.info.state = vm_state::paused;
    persist(self, v);
  } else if (ev.event == "RESUME" && v.info.state == vm_state::paused) {
    v.info.state = vm_state::running;
    persist(self, v);
  }
}

// -- start ----------------------------------------------------------------------------

void fail_start(self_ptr self, vm& v, caf::error err) {
  // QEMU may still run (QMP never answered): kill it; the exit watcher then answers the
  // starters with QEMU's stderr. If it is gone already, answer now.
  if (is_live(v.info.state)) {
    self->state.log->warn("vm {}: start failed: {}", v.info.spec.name, render(err));
    v.stopping = false;
    signal_qemu(self, v, SIGKILL);
    return;
  }
  auto starting = std::move(v.starting);
  v.starting.clear();
  v.starting_now = false;
  release_net(self, v, [starting, err]() mutable {
    for (auto& rp : starting)
      rp.deliver(err);
  });
  persist(self, v);
}

void launch(self_ptr self, vm& v, uint64_t run);

caf::error start(self_ptr self, const std::string& name,
                 caf::typed_response_promise<vm_info> rp) {
  auto& st = self->state;
  auto i = st.vms.find(name);
  if (i == st.vms.end())
    return no_vm(name);
  auto& v = i->second;
  if (is_live(v.info.state) || v.starting_now)
    return make_error(errc::failed_precondition, "vm " + name + " is already running");
  auto qemu = find_qemu(st.config.qemu);
  if (!qemu)
    return qemu.error();
  auto spec = v.info.spec;
  if (auto err = check_file("kernel", spec.kernel, true))
    return err;
  if (!spec.initrd.empty())
    if (auto err = check_file("initrd", spec.initrd, true))
      return err;
  for (auto& d : spec.drives)
    if (auto err = drive_conflict(st, name, d))
      return err;
  if (!spec.network.empty() && !st.config.network)
    return make_error(errc::unavailable, "vm " + name + ": network " + spec.network +
                                             ": the network service is not running");
  v.starting_now = true;
  v.starting.push_back(rp);
  v.stopping = false;
  v.shutdown_reason.clear();
  auto run = ++v.run;
  if (spec.network.empty()) {
    launch(self, v, run);
    return {};
  }
  // The tap and the address first: QEMU opens the tap, the guest is told the address.
  self->request(st.config.network, caf::infinite, attach_atom::value,
                tap_request{net_owner(name), spec.network})
      .then(
          [self, name, run](net_attachment& a) {
            auto i = self->state.vms.find(name);
            if (i == self->state.vms.end() || i->second.run != run) {
              self->send(self->state.config.network, detach_atom::value, net_owner(name));
              return;
            }
            auto& v = i->second;
            v.info.ips = a.ips;
            v.info.gateway = a.gateway;
            v.info.tap = a.ifname;
            v.info.mac = a.mac;
            persist(self, v); // a crash before QEMU runs: the restart releases the tap
            launch(self, v, run);
          },
          [self, name, run](caf::error& err) {
            auto i = self->state.vms.find(name);
            if (i == self->state.vms.end() || i->second.run != run)
              return;
            fail_start(self, i->second, err);
          });
  return {};
}

void launch(self_ptr self, vm& v, uint64_t run) {
  auto& st = self->state;
  auto name = v.info.spec.name;
  auto& spec = v.info.spec;
  ::unlink(v.info.qmp_path.c_str());
  ::unlink(v.info.channel_path.c_str());
  auto qemu = find_qemu(st.config.qemu);
  if (!qemu)
    return fail_start(self, v, qemu.error());
  qemu_launch how;
  how.qemu = *qemu;
  how.accel = v.info.accel;
  how.machine = v.info.machine;
  how.qmp_path = v.info.qmp_path;
  how.channel_path = v.info.channel_path;
  how.init_args = spec.init_args;
  how.tap = v.info.tap;
  how.mac = v.info.mac;
  how.guest_ip = v.info.ips.empty() ? std::string{} : v.info.ips.front();
  how.gateway = v.info.gateway;
  // QEMU's view of the spec: an image VM's root disk first (/dev/vda), then the spec's
  // drives; the boot initramfs runs the image's command in it. The record keeps the spec.
  auto qemu_spec = spec;
  if (!spec.image.empty()) {
    auto& root = v.info.image_root;
    if (auto err = check_file("root disk", root.disk, true))
      return fail_start(self, v, err);
    if (auto err = check_file("root overlay", root.overlay, false))
      return fail_start(self, v, err);
    qemu_spec.drives.insert(qemu_spec.drives.begin(), vm_drive{root.overlay, "qcow2", false});
    how.init_args = boot_init_args(root);
  }
  // Cap TCG's translation cache (1 GiB by default) so it fits the cell's memory.max.
  how.tb_size_mib = std::max<uint64_t>(64, (st.config.memory_overhead >> 20) / 2);
  executable_spec exe;
  exe.cell = v.info.cell;
  exe.name = qemu_exe;
  exe.argv = qemu_args(qemu_spec, how);
  exe.cwd = v.info.dir;
  exe.description = "vm " + name;
  self->request(st.config.cells, caf::infinite, start_atom::value, exe)
      .then(
          [self, name, run](executable_info& e) {
            auto i = self->state.vms.find(name);
            if (i == self->state.vms.end() || i->second.run != run)
              return;
            auto& v = i->second;
            v.info.pid = e.pid;
            v.info.console_path = e.stdout_path;
            v.info.state = vm_state::running;
            v.info.exit_reason.clear();
            v.info.exit_code = 0;
            v.info.started_unix_nanos = now_nanos();
            v.info.finished_unix_nanos = 0;
            persist(self, v);
            watch_exit(self, v);
            connect_qmp(self, name, [self, name, run](caf::expected<std::string> status) {
              auto i = self->state.vms.find(name);
              if (i == self->state.vms.end() || i->second.run != run)
                return;
              auto& v = i->second;
              if (!status)
                return fail_start(self, v, status.error());
              if (!is_live(v.info.state))
                return;
              if (*status == "paused" && v.info.state == vm_state::running) {
                v.info.state = vm_state::paused;
                persist(self, v);
              }
              self->state.log->info("vm {} started: pid {}, {} on {}", name, v.info.pid,
                                    v.info.machine, v.info.accel);
              v.starting_now = false;
              for (auto& rp : v.starting)
                rp.deliver(v.info);
              v.starting.clear();
            });
          },
          [self, name, run](caf::error& err) {
            auto i = self->state.vms.find(name);
            if (i == self->state.vms.end() || i->second.run != run)
              return;
            fail_start(self, i->second, err);
          });
}

// -- image root disks -----------------------------------------------------------------

std::string disks_dir(const vms_state& st) {
  return st.config.state_dir + "/vms/disks";
}

std::string boot_dir(const vms_state& st) {
  return st.config.state_dir + "/vms/boot";
}

/// An image VM's kernel and initrd default to the image boot files; its command line to
/// a quiet console that ends QEMU on a panic.
caf::error resolve_image_boot(const vms_state& st, vm_spec& spec) {
  if (spec.image.empty())
    return {};
  if (!st.config.images)
    return make_error(errc::unavailable, "VMs from images need the images actor");
  auto fill = [&](std::string& field, const std::string& configured, const char* file,
                  const char* what) -> caf::error {
    if (!field.empty())
      return {};
    field = configured.empty() ? boot_dir(st) + "/" + file : configured;
    if (::access(field.c_str(), R_OK) == 0)
      return {};
    return make_error(errc::unavailable,
                      std::string{"the "} + what + " of image VMs, " + field + ", is missing (" +
                          "deploy/make-vm-boot " + fs::path{field}.parent_path().string() +
                          " makes it from Debian's cloud kernel; or give one)");
  };
  if (auto err = fill(spec.kernel, st.config.image_kernel, "vmlinuz", "kernel"))
    return err;
  if (auto err = fill(spec.initrd, st.config.image_initrd, "initramfs.cpio", "initramfs"))
    return err;
  if (spec.cmdline.empty())
    spec.cmdline = "quiet panic=-1";
  return {};
}

/// Answers every waiter of the disk build of `digest`.
void finish_disk(self_ptr self, const std::string& digest, caf::expected<std::string> r) {
  auto i = self->state.disk_builds.find(digest);
  if (i == self->state.disk_builds.end())
    return;
  auto waiters = std::move(i->second);
  self->state.disk_builds.erase(i);
  for (auto& k : waiters)
    k(r);
}

/// The cached root disk of image `img` (built first if missing); `k` gets its path.
/// Concurrent asks for one image share one build.
void ensure_disk(self_ptr self, const image_info& img,
                 std::function<void(caf::expected<std::string>)> k) {
  auto& st = self->state;
  auto file = disk_file_name(img.manifest_digest);
  if (!file)
    return k(file.error());
  auto disk = disks_dir(st) + "/" + *file;
  struct stat sb{};
  if (::stat(disk.c_str(), &sb) == 0)
    return k(disk);
  auto digest = img.manifest_digest;
  auto& waiters = st.disk_builds[digest];
  waiters.push_back(std::move(k));
  if (waiters.size() > 1)
    return;
  auto mke2fs = find_tool(st.config.mke2fs, "e2fsprogs", "mke2fs");
  if (!mke2fs)
    return finish_disk(self, digest, mke2fs.error());
  // The image's layers merged by the images actor (an overlay mount, whiteouts applied)
  // are what mke2fs copies.
  auto short_hex = file->substr(0, 16);
  auto id = "vmdisk-" + short_hex;
  auto target = disks_dir(st) + "/" + disk_mount_prefix + short_hex;
  st.log->info("building the root disk of image {} ({}) at {}", img.name, digest, disk);
  auto started = std::chrono::steady_clock::now();
  // Unmounts the image's tree, then answers: once a build is answered, nothing of it
  // but the disk is left.
  auto release = [self, id, target, digest](caf::expected<std::string> r) {
    self->request(self->state.config.images, caf::infinite, unmount_atom::value, id,
                  std::string{rootfs_owner})
        .then(
            [self, target, digest, r] {
              ::rmdir(target.c_str());
              finish_disk(self, digest, r);
            },
            [self, id, digest, r](caf::error& err) {
              self->state.log->error("unmount the disk build's rootfs {}: {}", id, render(err));
              finish_disk(self, digest, r);
            });
  };
  self->request(st.config.images, caf::infinite, mount_atom::value, img.name, id, target,
                std::string{rootfs_owner}, false)
      .then(
          [self, disk, target, mke2fs = *mke2fs, release, started](rootfs_info&) {
            auto builder = self->spawn<caf::detached>(
                [](disk_builder_actor::pointer b) -> disk_builder_actor::behavior_type {
                  return {[b](create_atom, std::string& tool, std::string& root,
                              std::string& out) -> caf::result<std::string> {
                    auto err = build_ext4(tool, root, out);
                    b->quit();
                    if (err)
                      return err;
                    return out;
                  }};
                });
            self->request(builder, caf::infinite, create_atom::value, mke2fs, target, disk)
                .then(
                    [self, release, started](std::string& path) {
                      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - started)
                                    .count();
                      self->state.log->info("root disk {} built in {} ms", path, ms);
                      release(path);
                    },
                    [release](caf::error& err) { release(err); });
          },
          [self, digest](caf::error& err) { finish_disk(self, digest, err); });
}

/// Gives VM `name` (reserved, spec.image set) its root: the image's command, the cached
/// disk and its own overlay. `k` gets the error, if any; the caller undoes.
void prepare_image_root(self_ptr self, const std::string& name,
                        std::function<void(caf::error)> k) {
  auto& st = self->state;
  auto image = st.vms.at(name).info.spec.image;
  auto qemu_img = find_tool(st.config.qemu_img, "qemu-utils", "qemu-img");
  if (!qemu_img)
    return k(qemu_img.error());
  self->request(st.config.images, caf::infinite, get_atom::value, image)
      .then(
          [self, name, k, qemu_img = *qemu_img](image_info& img) {
            auto& v = self->state.vms.at(name); // reserved: nothing frees it meanwhile
            if (!img.os.empty() && img.os != "linux")
              return k(make_error(errc::invalid_argument,
                                  "image " + img.name + " is for " + img.os + ", not linux"));
            if (!img.architecture.empty() && img.architecture != "amd64")
              return k(make_error(errc::invalid_argument, "image " + img.name + " is for " +
                                                              img.architecture + ", not amd64"));
            auto root = guest_command(img.config_json, v.info.spec.init_args);
            if (!root)
              return k(make_error(code_of(root.error()),
                                  "image " + img.name + ": " + context_of(root.error())));
            root->image = img.name;
            root->digest = img.manifest_digest;
            root->overlay = v.info.dir + "/root.qcow2";
            if (auto err = check_init_args(v.info.spec.cmdline, boot_init_args(*root)))
              return k(err);
            ensure_disk(self, img,
                        [self, name, k, qemu_img, root = *root](
                            caf::expected<std::string> disk) mutable {
                          if (!disk)
                            return k(disk.error());
                          root.disk = *disk;
                          if (auto err = make_overlay(qemu_img, root.disk, root.overlay))
                            return k(err);
                          self->state.vms.at(name).info.image_root = std::move(root);
                          k({});
                        });
          },
          [k](caf::error& err) { k(err); });
}

// -- allocate, free -------------------------------------------------------------------

caf::error allocate(self_ptr self, vm_spec spec, caf::typed_response_promise<vm_info> rp) {
  auto& st = self->state;
  if (auto err = resolve_image_boot(st, spec))
    return err;
  if (auto err = check_spec(st, spec))
    return err;
  if (st.vms.count(spec.name))
    return make_error(errc::already_exists, "vm " + spec.name + " exists");
  if (auto qemu = find_qemu(st.config.qemu); !qemu)
    return qemu.error();
  vm v;
  auto& info = v.info;
  info.spec = spec;
  info.state = vm_state::created;
  if (spec.accel.empty()) {
    info.accel = st.host_accel;
    info.accel_reason = st.host_accel_reason;
  } else {
    info.accel = spec.accel;
    info.accel_reason = "asked for (host: " + st.host_accel + ", " + st.host_accel_reason + ")";
  }
  info.machine = spec.machine.empty() ? "microvm" : spec.machine;
  info.cell = std::string{vms_cell} + "/" + spec.name;
  info.executable = qemu_exe;
  info.dir = vm_dir(st, spec.name);
  info.qmp_path = info.dir + "/qmp.sock";
  info.channel_path = info.dir + "/channel.sock";
  info.created_unix_nanos = now_nanos();
  if (auto err = st.db->put({kind_vm, spec.name, "creating", store::to_blob(info)}))
    return err;
  std::error_code ec;
  fs::create_directories(info.dir, ec);
  if (ec) {
    st.db->erase(kind_vm, spec.name);
    return make_error(errc::unavailable, "create " + info.dir + ": " + ec.message());
  }
  ::chmod(info.dir.c_str(), 0700);
  auto name = spec.name;
  cell_spec cs;
  cs.name = info.cell;
  cs.limits.memory_max = spec.memory_bytes + st.config.memory_overhead;
  v.starting_now = true; // reserved: no start, free or second allocate until the cell exists
  st.vms.emplace(name, std::move(v));
  auto fail = [self, name, rp](caf::error err) mutable {
    auto& st = self->state;
    remove_dir(vm_dir(st, name));
    st.db->erase(kind_vm, name);
    st.vms.erase(name);
    rp.deliver(err);
  };
  auto make_cell = [self, name, cs, rp, fail]() mutable {
    allocate_cell(
        self, cs,
        [self, name, rp](cell_info&) mutable {
          auto& v = self->state.vms.at(name);
          v.starting_now = false;
          persist(self, v);
          self->state.log->info("allocated vm {}: {} vcpus, {} MiB, {} on {}{}", name,
                                v.info.spec.vcpus, v.info.spec.memory_bytes >> 20,
                                v.info.machine, v.info.accel,
                                v.info.image_root.disk.empty()
                                    ? std::string{}
                                    : ", root " + v.info.image_root.disk);
          rp.deliver(v.info);
        },
        [fail](caf::error& err) mutable { fail(err); });
  };
  if (spec.image.empty()) {
    make_cell();
    return {};
  }
  prepare_image_root(self, name, [make_cell, fail](caf::error err) mutable {
    if (err)
      fail(std::move(err));
    else
      make_cell();
  });
  return {};
}

void free_vm(self_ptr self, const std::string& name, std::function<void(caf::error)> k) {
  auto& st = self->state;
  auto& v = st.vms.at(name);
  if (v.qmp)
    caf::anon_send_exit(v.qmp, caf::exit_reason::user_shutdown);
  auto cell = v.info.cell;
  auto finish = [self, name, k] {
    auto& st = self->state;
    remove_dir(vm_dir(st, name));
    st.db->erase(kind_vm, name);
    st.vms.erase(name);
    st.log->info("freed vm {}", name);
    k({});
  };
  release_net(self, v, [self, name, cell, finish] {
    self->request(self->state.config.cells, caf::infinite, free_atom::value, cell, true, true)
        .then([finish] { finish(); },
              [self, name, finish](caf::error& err) {
                if (code_of(err) != errc::not_found)
                  self->state.log->error("free the cell of vm {}: {}", name, render(err));
                finish();
              });
  });
}

// -- restart --------------------------------------------------------------------------

void readopt(self_ptr self, const std::string& name) {
  auto& v = self->state.vms.at(name);
  self->request(self->state.config.cells, caf::infinite, get_atom::value, v.info.cell)
      .then(
          [self, name](cell_info& ci) {
            auto& v = self->state.vms.at(name);
            bool alive = false;
            for (auto& e : ci.executables)
              if (e.spec.name == qemu_exe && !e.status.exited && e.pid == v.info.pid)
                alive = true;
            if (!alive) {
              // Ended while the daemon was down: QEMU's stderr and the console's last line
              // say how.
              auto why = tail_of(stderr_path(v.info), 200);
              auto last = tail_of(v.info.console_path, 120);
              if (auto nl = last.rfind('\n'); nl != std::string::npos)
                last = last.substr(nl + 1);
              v.info.state = vm_state::exited;
              v.info.pid = 0;
              v.info.exit_code = -1;
              v.info.finished_unix_nanos = now_nanos();
              v.info.exit_reason = "QEMU ended while cytod was down" +
                                   (why.empty() ? std::string{} : "; its stderr: " + why) +
                                   (last.empty() ? std::string{} : "; last console line: " + last);
              release_net(self, v);
              persist(self, v);
              self->state.log->warn("vm {}: {}", name, v.info.exit_reason);
              return;
            }
            ++v.run;
            watch_exit(self, v);
            auto run = v.run;
            connect_qmp(self, name, [self, name, run](caf::expected<std::string> status) {
              auto i = self->state.vms.find(name);
              if (i == self->state.vms.end() || i->second.run != run)
                return;
              auto& v = i->second;
              if (!status) {
                self->state.log->error("vm {}: re-adopted QEMU pid {} but QMP: {}", name,
                                       v.info.pid, render(status.error()));
                return;
              }
              self->state.log->info("re-adopted vm {} pid {} ({})", name, v.info.pid, *status);
              if (*status == "shutdown" || *status == "guest-panicked") {
                // -no-shutdown kept it for us: the guest ended while we were away.
                v.shutdown_reason = (*status == "shutdown" ? "guest-shutdown" : "guest-panicked") +
                                    std::string{" (while cytod was down)"};
                quit_qemu(self, v);
              } else if (*status == "paused" && v.info.state == vm_state::running) {
                v.info.state = vm_state::paused;
                persist(self, v);
              } else if (*status == "running" && v.info.state == vm_state::paused) {
                v.info.state = vm_state::running;
                persist(self, v);
              }
            });
          },
          [self, name](caf::error& err) {
            auto& v = self->state.vms.at(name);
            v.info.state = vm_state::exited;
            v.info.pid = 0;
            v.info.exit_code = -1;
            v.info.exit_reason = "its cell is gone: " + render(err);
            release_net(self, v);
            persist(self, v);
          });
}

void reconcile(self_ptr self) {
  auto& st = self->state;
  std::vector<std::string> dropped;
  auto rows = st.db->load_all<vm_info>(kind_vm, dropped);
  for (auto& key : dropped)
    st.log->error("state.db: unreadable vm record {}; quarantined (cyto health)", key);
  if (!rows) {
    st.log->error("read vms from state.db: {}", render(rows.error()));
    return;
  }
  for (auto& [r, info] : *rows) {
    auto name = info.spec.name;
    if (r.state == "creating") {
      st.log->warn("cleaning up half-made vm {}", name);
      self->request(st.config.cells, caf::infinite, free_atom::value, info.cell, true, true)
          .then([] {}, [](caf::error&) {});
      remove_dir(info.dir);
      st.db->erase(kind_vm, name);
      if (st.config.network && !info.spec.network.empty())
        self->send(st.config.network, detach_atom::value, net_owner(name));
      continue;
    }
    auto& v = st.vms[name];
    v.info = info;
    if (is_live(info.state))
      readopt(self, name);
    else if (!info.spec.network.empty())
      // cytod may have died between an attach and QEMU's start or end: a no-op if not.
      release_net(self, v, [self, name] {
        if (auto i = self->state.vms.find(name); i != self->state.vms.end())
          persist(self, i->second);
      });
  }
}

/// Unmounts the image roots of disk builds a crash interrupted (the images actor mounts
/// them again at its start), then removes their mount points.
void release_stale_disk_mounts(self_ptr self) {
  self->request(self->state.config.images, caf::infinite, list_atom::value, mount_atom::value)
      .then(
          [self](std::vector<rootfs_info>& all) {
            for (auto& r : all) {
              if (r.id.rfind("vmdisk-", 0) != 0)
                continue;
              self->state.log->warn("removing rootfs {} of an interrupted root disk build", r.id);
              auto target = r.target;
              self->request(self->state.config.images, caf::infinite, unmount_atom::value, r.id,
                            std::string{rootfs_owner})
                  .then([target] { ::rmdir(target.c_str()); }, [](caf::error&) {});
            }
          },
          [self](caf::error& err) {
            self->state.log->warn("list the images actor's rootfs: {}", render(err));
          });
}

/// The VM `name` if its QEMU runs (running or paused); `what` names the refused action.
caf::expected<vm*> find_live(vms_state& st, const std::string& name, const char* what) {
  auto i = st.vms.find(name);
  if (i == st.vms.end())
    return no_vm(name);
  if (!is_live(i->second.info.state) || i->second.starting_now)
    return make_error(errc::failed_precondition, "vm " + name + " is not running (" +
                                                     text_of(i->second.info.state) + "); cannot " +
                                                     what);
  return &i->second;
}

/// pause (QMP stop) and resume (QMP cont): `command`, then state `from` becomes `to`.
caf::result<vm_info> toggle_cpus(self_ptr self, const std::string& name, const char* command,
                                 vm_state from, vm_state to, const char* what) {
  auto v = find_live(self->state, name, what);
  if (!v)
    return std::move(v.error());
  auto rp = self->make_response_promise<vm_info>();
  qmp(self, **v, command, nullptr, [self, name, from, to, rp](caf::expected<json> r) mutable {
    auto i = self->state.vms.find(name);
    if (!r) {
      rp.deliver(r.error());
    } else if (i == self->state.vms.end()) {
      rp.deliver(no_vm(name));
    } else {
      if (i->second.info.state == from) {
        i->second.info.state = to;
        persist(self, i->second);
      }
      rp.deliver(i->second.info);
    }
  });
  return rp;
}

} // namespace

std::string vms_config::validate() const {
  if (state_dir.empty() || state_dir.front() != '/')
    return "state_dir must be an absolute path";
  if (qemu.empty())
    return "vms.qemu must name the QEMU binary";
  if (!cells)
    return "the cells actor is needed";
  return {};
}

vms_state::~vms_state() {
  for (auto& [n, v] : vms)
    if (v.qmp)
      caf::anon_send_exit(v.qmp, caf::exit_reason::user_shutdown);
}

vms_private::behavior_type vms(self_ptr self, vms_config config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.log = log::get("vms");
  auto choice = choose_accel();
  st.host_accel = choice.accel;
  st.host_accel_reason = choice.reason;
  std::error_code ec;
  fs::create_directories(st.config.state_dir + "/vms", ec);
  auto db = store::state_db::open(st.config.state_dir + "/state.db");
  if (!db) {
    st.log->error("vms unavailable: {}", render(db.error()));
    self->quit(db.error());
    return {vms_private::behavior_type::unsafe_init{}, caf::behavior{}};
  }
  st.db = std::move(*db);
  st.db->declare(kind_vm, vm_row_version, {{1, vm_v1_to_v2}});
  fs::create_directories(disks_dir(st), ec);
  clean_disk_dir(disks_dir(st));
  if (st.config.images)
    release_stale_disk_mounts(self);
  reconcile(self);
  st.log->info("vms ready: {} VMs, accelerator {} ({})", st.vms.size(), st.host_accel,
               st.host_accel_reason);
  return {
      [self](allocate_atom, vm_spec& spec) -> caf::result<vm_info> {
        auto rp = self->make_response_promise<vm_info>();
        if (spec.network.empty()) {
          if (auto err = allocate(self, std::move(spec), rp))
            rp.deliver(err);
          return rp;
        }
        if (!self->state.config.network) {
          rp.deliver(make_error(errc::unavailable, "vm " + spec.name + ": network " + spec.network +
                                                       ": the network service is not running"));
          return rp;
        }
        // The network must exist now (its tap and lease come at start).
        self->request(self->state.config.network, caf::infinite, get_atom::value, spec.network)
            .then(
                [self, spec, rp](network_info&) mutable {
                  if (auto err = allocate(self, std::move(spec), rp))
                    rp.deliver(err);
                },
                [self, rp](caf::error& err) mutable { rp.deliver(err); });
        return rp;
      },
      [self](start_atom, std::string& name) -> caf::result<vm_info> {
        auto rp = self->make_response_promise<vm_info>();
        if (auto err = start(self, name, rp))
          rp.deliver(err);
        return rp;
      },
      [self](stop_atom, std::string& name, uint32_t timeout_ms) -> caf::result<vm_info> {
        auto v = find_live(self->state, name, "stop it");
        if (!v)
          return std::move(v.error());
        auto& m = **v;
        auto rp = self->make_response_promise<vm_info>();
        m.waiters.push_back(rp);
        if (m.stopping)
          return rp;
        m.stopping = true;
        auto run = m.run;
        auto powerdown = [self, name](caf::expected<json>) {
          auto i = self->state.vms.find(name);
          if (i == self->state.vms.end())
            return;
          qmp(self, i->second, "system_powerdown", nullptr, [self, name](caf::expected<json> r) {
            auto i = self->state.vms.find(name);
            if (!r && i != self->state.vms.end() && is_live(i->second.info.state)) {
              self->state.log->warn("vm {}: ACPI powerdown failed ({}); quitting QEMU", name,
                                    render(r.error()));
              quit_qemu(self, i->second);
            }
          });
        };
        // A paused guest cannot see the power button: let it run first.
        if (m.info.state == vm_state::paused)
          qmp(self, m, "cont", nullptr, powerdown);
        else
          powerdown(json{});
        self->delayed_send(self, std::chrono::milliseconds{timeout_ms}, tick_atom::value, name,
                           run);
        return rp;
      },
      [self](kill_atom, std::string& name) -> caf::result<vm_info> {
        auto v = find_live(self->state, name, "kill it");
        if (!v)
          return std::move(v.error());
        auto rp = self->make_response_promise<vm_info>();
        (*v)->waiters.push_back(rp);
        (*v)->stopping = true;
        signal_qemu(self, **v, SIGKILL);
        return rp;
      },
      [self](pause_atom, std::string& name) -> caf::result<vm_info> {
        return toggle_cpus(self, name, "stop", vm_state::running, vm_state::paused, "pause it");
      },
      [self](resume_atom, std::string& name) -> caf::result<vm_info> {
        return toggle_cpus(self, name, "cont", vm_state::paused, vm_state::running, "resume it");
      },
      [self](free_atom, std::string& name, bool force) -> caf::result<void> {
        auto& st = self->state;
        auto i = st.vms.find(name);
        if (i == st.vms.end())
          return no_vm(name);
        auto& v = i->second;
        if (v.starting_now)
          return make_error(errc::failed_precondition, "vm " + name + " is being started");
        auto rp = self->make_response_promise<void>();
        auto done = [rp](caf::error err) mutable {
          if (err)
            rp.deliver(err);
          else
            deliver_ok(rp);
        };
        if (is_live(v.info.state)) {
          if (!force) {
            rp.deliver(make_error(errc::failed_precondition,
                                  "vm " + name + " is running; stop it first or use force"));
            return rp;
          }
          // Freed once QEMU has ended.
          v.stopping = true;
          signal_qemu(self, v, SIGKILL);
          auto name_copy = name;
          self->request(self->state.config.cells, caf::infinite, wait_atom::value, v.info.cell,
                        std::string{qemu_exe})
              .then([self, name_copy, done](exit_status&) { free_vm(self, name_copy, done); },
                    [self, name_copy, done](caf::error&) { free_vm(self, name_copy, done); });
          return rp;
        }
        free_vm(self, name, done);
        return rp;
      },
      [self](list_atom) {
        std::vector<vm_info> out;
        for (auto& [n, v] : self->state.vms)
          out.push_back(v.info);
        return out;
      },
      [self](get_atom, std::string& name) -> caf::result<vm_info> {
        auto i = self->state.vms.find(name);
        if (i == self->state.vms.end())
          return no_vm(name);
        return i->second.info;
      },
      // Events come from the QMP sessions (workers of this actor), never as itself.
      bus::internal(
          self, [self](qmp_event& ev) { on_qmp_event(self, ev); },
          [self](const caf::strong_actor_ptr& from) {
            for (auto& [name, v] : self->state.vms)
              if (v.qmp && from == caf::actor_cast<caf::strong_actor_ptr>(v.qmp))
                return true;
            return false;
          }),
      bus::internal(self,
                    [self](exited_atom, std::string& name, uint64_t run, exit_status& s) {
                      on_exit(self, name, run, s);
                    }),
      bus::internal(self, [self](tick_atom, std::string& name, uint64_t run) {
        auto i = self->state.vms.find(name);
        if (i == self->state.vms.end() || i->second.run != run || !is_live(i->second.info.state))
          return;
        self->state.log->info("vm {} did not power down in time: quitting QEMU", name);
        quit_qemu(self, i->second);
      }),
  };
}

} // namespace cyto::vms
