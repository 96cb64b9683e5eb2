// cyto vm create|start|stop|kill|pause|resume|rm|ls|inspect|console|run
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "cli/units.hpp"
#include "schema/vms.capnp.h"

namespace cyto::cli {

namespace cmd_vm_impl {

/// The line a guest's init prints on the serial console before it powers off, with the
/// exit code of the command `cyto vm run` gave it: "CYTO-EXIT=<n>".
constexpr std::string_view exit_marker = "CYTO-EXIT=";
/// cyto's own failures in `vm run` (like `cyto run`).
constexpr int engine_failed = 125;

struct vm_flags {
  std::string name, kernel, initrd, cmdline, memory = "256M", accel, machine, network, image;
  /// The first positional word: the image, or (with --kernel or --image) the command's.
  std::string first_word;
  uint32_t vcpus = 1;
  std::vector<std::string> drives, labels, command;
  bool rm = false;
};

schema::Vms::Client vms(client& c) {
  return wait(c, c.node().vmsRequest().send()).getService();
}

const char* state_text(schema::VmState s) {
  switch (s) {
    case schema::VmState::CREATED: return "created";
    case schema::VmState::RUNNING: return "running";
    case schema::VmState::PAUSED: return "paused";
    case schema::VmState::STOPPED: return "stopped";
    case schema::VmState::EXITED: return "exited";
  }
  return "unknown";
}

std::vector<std::string> texts(capnp::List<capnp::Text>::Reader xs) {
  std::vector<std::string> out;
  for (auto x : xs)
    out.emplace_back(x.cStr());
  return out;
}

nlohmann::json vm_json(schema::VmInfo::Reader v) {
  auto s = v.getSpec();
  auto drives = nlohmann::json::array();
  for (auto d : s.getDrives())
    drives.push_back(
        {{"path", d.getPath().cStr()}, {"format", d.getFormat().cStr()}, {"readOnly", d.getReadOnly()}});
  auto root = v.getImageRoot();
  nlohmann::json image_root = nullptr;
  if (v.hasImageRoot())
    image_root = {{"image", root.getImage().cStr()},
                  {"digest", root.getDigest().cStr()},
                  {"disk", root.getDisk().cStr()},
                  {"overlay", root.getOverlay().cStr()},
                  {"command", texts(root.getCommand())},
                  {"env", texts(root.getEnv())},
                  {"workdir", root.getWorkdir().cStr()}};
  return {{"name", s.getName().cStr()},
          {"image", s.getImage().cStr()},
          {"imageRoot", image_root},
          {"state", state_text(v.getState())},
          {"pid", v.getPid()},
          {"vcpus", s.getVcpus()},
          {"memoryBytes", s.getMemoryBytes()},
          {"kernel", s.getKernel().cStr()},
          {"initrd", s.getInitrd().cStr()},
          {"cmdline", s.getCmdline().cStr()},
          {"initArgs", texts(s.getInitArgs())},
          {"drives", drives},
          {"labels", texts(s.getLabels())},
          {"network", s.getNetwork().cStr()},
          {"ips", texts(v.getIps())},
          {"gateway", v.getGateway().cStr()},
          {"tap", v.getTap().cStr()},
          {"mac", v.getMac().cStr()},
          {"accel", v.getAccel().cStr()},
          {"accelReason", v.getAccelReason().cStr()},
          {"machine", v.getMachine().cStr()},
          {"exitReason", v.getExitReason().cStr()},
          {"exitCode", v.getExitCode()},
          {"cell", v.getCell().cStr()},
          {"executable", v.getExecutable().cStr()},
          {"console", v.getConsolePath().cStr()},
          {"channel", v.getChannelPath().cStr()},
          {"qmp", v.getQmpPath().cStr()},
          {"dir", v.getDir().cStr()},
          {"created", iso_time(v.getCreatedUnixNanos())},
          {"started", v.getStartedUnixNanos() ? iso_time(v.getStartedUnixNanos()) : ""},
          {"finished", v.getFinishedUnixNanos() ? iso_time(v.getFinishedUnixNanos()) : ""}};
}

void print_vm(const global_options& g, schema::VmInfo::Reader v) {
  if (g.json)
    return print_json(vm_json(v));
  auto s = v.getSpec();
  std::vector<std::pair<std::string, std::string>> rows{
      {"name", s.getName().cStr()},
      {"state", state_text(v.getState())},
      {"pid", std::to_string(v.getPid())},
      {"vcpus", std::to_string(s.getVcpus())},
      {"memory", human_size(s.getMemoryBytes())},
      {"machine", v.getMachine().cStr()},
      {"accel", std::string{v.getAccel().cStr()} + " (" + v.getAccelReason().cStr() + ")"},
      {"kernel", s.getKernel().cStr()},
      {"initrd", s.getInitrd().cStr()},
      {"cmdline", s.getCmdline().cStr()},
      {"init args", join(texts(s.getInitArgs()))}};
  if (v.hasImageRoot()) {
    auto root = v.getImageRoot();
    rows.insert(rows.begin() + 2, {"image", std::string{root.getImage().cStr()} + " (" +
                                                root.getDigest().cStr() + ")"});
    rows.emplace_back("root disk", std::string{root.getDisk().cStr()} + " (shared, read-only)");
    rows.emplace_back("root overlay", root.getOverlay().cStr());
    rows.emplace_back("command", join(texts(root.getCommand())));
    rows.emplace_back("workdir", root.getWorkdir().cStr());
  }
  for (auto d : s.getDrives())
    rows.emplace_back("drive", std::string{d.getPath().cStr()} + " (" + d.getFormat().cStr() +
                                   (d.getReadOnly() ? ", read-only)" : ")"));
  if (s.hasNetwork() && s.getNetwork().size() > 0) {
    rows.emplace_back("network", s.getNetwork().cStr());
    rows.emplace_back("ips", v.getIps().size() ? join(texts(v.getIps()), ",") : "-");
    rows.emplace_back("gateway", v.getGateway().size() ? v.getGateway().cStr() : "-");
    rows.emplace_back("tap", v.getTap().size() ? v.getTap().cStr() : "-");
    rows.emplace_back("mac", v.getMac().size() ? v.getMac().cStr() : "-");
  }
  rows.insert(rows.end(), {{"labels", join(texts(s.getLabels()), ",")},
                           {"cell", v.getCell().cStr()},
                           {"console", v.getConsolePath().cStr()},
                           {"channel", v.getChannelPath().cStr()},
                           {"qmp", v.getQmpPath().cStr()},
                           {"created", iso_time(v.getCreatedUnixNanos())}});
  if (v.getStartedUnixNanos())
    rows.emplace_back("started", iso_time(v.getStartedUnixNanos()));
  if (v.getFinishedUnixNanos()) {
    rows.emplace_back("finished", iso_time(v.getFinishedUnixNanos()));
    rows.emplace_back("exit", std::string{v.getExitReason().cStr()} + " (QEMU exit code " +
                                  std::to_string(v.getExitCode()) + ")");
  }
  print_table(rows);
}

/// The positional words are IMAGE [CMD...] unless --kernel or --image is given: then
/// they are all the command (CLI11 does not tell which words came after "--").
void split_words(vm_flags& f) {
  if (!f.first_word.empty()) {
    if (f.kernel.empty() && f.image.empty())
      f.image = f.first_word;
    else
      f.command.insert(f.command.begin(), f.first_word);
    f.first_word.clear();
  }
  if (f.kernel.empty() && f.image.empty())
    throw cli_error("give an IMAGE or --kernel");
}

/// Fills a spec from the flags; cli_error on a bad value.
void fill_spec(const vm_flags& f, schema::VmSpec::Builder s) {
  s.setName(f.name);
  s.setImage(f.image);
  s.setVcpus(f.vcpus);
  auto mem = parse_size(f.memory);
  if (!mem)
    throw cli_error("--memory '" + f.memory + "': give a size like 256M or 1G");
  s.setMemoryBytes(*mem);
  auto absolute = [](const std::string& p) {
    if (p.empty() || p.front() == '/')
      return p;
    char buf[4096];
    return std::string{::getcwd(buf, sizeof(buf)) ? buf : "."} + "/" + p;
  };
  s.setKernel(absolute(f.kernel));
  s.setInitrd(absolute(f.initrd));
  s.setCmdline(f.cmdline);
  auto drives = s.initDrives(f.drives.size());
  for (uint i = 0; i < f.drives.size(); ++i) {
    // PATH[,format=raw|qcow2][,ro]
    auto text = f.drives[i];
    auto comma = text.find(',');
    drives[i].setPath(absolute(text.substr(0, comma)));
    drives[i].setFormat("raw");
    while (comma != std::string::npos) {
      auto next = text.find(',', comma + 1);
      auto opt = text.substr(comma + 1, next == std::string::npos ? std::string::npos
                                                                  : next - comma - 1);
      if (opt == "ro" || opt == "readonly")
        drives[i].setReadOnly(true);
      else if (opt.rfind("format=", 0) == 0)
        drives[i].setFormat(opt.substr(7));
      else
        throw cli_error("--drive '" + text + "': unknown option '" + opt +
                        "' (give PATH[,format=raw|qcow2][,ro])");
      comma = next;
    }
  }
  s.setAccel(f.accel);
  s.setMachine(f.machine);
  s.setNetwork(f.network);
  auto labels = s.initLabels(f.labels.size());
  for (uint i = 0; i < f.labels.size(); ++i)
    labels.set(i, f.labels[i]);
  auto args = s.initInitArgs(f.command.size());
  for (uint i = 0; i < f.command.size(); ++i)
    args.set(i, f.command[i]);
}

/// Prints console lines; remembers the guest's exit marker.
class console_printer final : public schema::OutputSink::Server {
public:
  console_printer(bool json, std::optional<int>* exit_code) : json_(json), exit_code_(exit_code) {
  }

  kj::Promise<void> lines(LinesContext context) override {
    auto p = context.getParams();
    if (p.getDropped() > 0)
      std::fprintf(stderr, "-- %llu console lines dropped --\n",
                   static_cast<unsigned long long>(p.getDropped()));
    for (auto l : p.getLines()) {
      std::string line = l.getLine().cStr();
      while (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (exit_code_ && line.rfind(exit_marker, 0) == 0) {
        try {
          *exit_code_ = std::stoi(line.substr(exit_marker.size()));
        } catch (const std::exception&) {
        }
      }
      if (json_)
        print_json({{"line", line}});
      else
        std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
    return kj::READY_NOW;
  }

private:
  bool json_;
  std::optional<int>* exit_code_;
};

kj::Promise<void> stream_console(schema::Vms::Client& svc, const std::string& name, bool follow,
                                 bool json, std::optional<int>* exit_code) {
  auto req = svc.consoleRequest();
  req.setName(name);
  req.setFollow(follow);
  req.setSink(kj::heap<console_printer>(json, exit_code));
  return req.send().ignoreResult();
}

int create(const global_options& g, vm_flags f) {
  split_words(f);
  client c{g};
  auto req = vms(c).allocateRequest();
  fill_spec(f, req.initSpec());
  auto resp = wait(c, req.send());
  if (g.json)
    print_json(vm_json(resp.getInfo()));
  else
    std::printf("%s\n", resp.getInfo().getSpec().getName().cStr());
  return 0;
}

/// One of start, kill, pause, resume, inspect: NAME -> info.
template <class Send>
int one(const global_options& g, Send send) {
  client c{g};
  auto svc = vms(c);
  auto resp = wait(c, send(svc));
  auto info = resp.getInfo();
  if (g.json)
    print_json(vm_json(info));
  else
    std::printf("%s %s\n", info.getSpec().getName().cStr(), state_text(info.getState()));
  return 0;
}

int stop(const global_options& g, const std::string& name, const std::string& timeout) {
  auto us = parse_duration_us(timeout);
  if (!us)
    throw cli_error("--timeout '" + timeout + "': give a duration like 30s");
  return one(g, [&](schema::Vms::Client& svc) {
    auto req = svc.stopRequest();
    req.setName(name);
    req.setTimeoutMs(static_cast<uint32_t>(*us / 1000));
    return req.send();
  });
}

int rm(const global_options& g, const std::vector<std::string>& names, bool force) {
  client c{g};
  auto svc = vms(c);
  for (auto& n : names) {
    auto req = svc.freeRequest();
    req.setName(n);
    req.setForce(force);
    wait(c, req.send());
    if (!g.json)
      std::printf("%s\n", n.c_str());
  }
  return 0;
}

int ls(const global_options& g) {
  client c{g};
  auto resp = wait(c, vms(c).listRequest().send());
  if (g.json) {
    auto out = nlohmann::json::array();
    for (auto v : resp.getVms())
      out.push_back(vm_json(v));
    print_json(out);
    return 0;
  }
  std::printf("%-20s  %-8s  %8s  %5s  %8s  %-8s  %-4s  %-18s  %s\n", "NAME", "STATE", "PID",
              "VCPUS", "MEMORY", "MACHINE", "ACCEL", "IP", "EXIT");
  for (auto v : resp.getVms()) {
    auto s = v.getSpec();
    auto ip = v.getIps().size() ? join(texts(v.getIps()), ",") : std::string{"-"};
    std::printf("%-20s  %-8s  %8u  %5u  %8s  %-8s  %-4s  %-18s  %s\n", s.getName().cStr(),
                state_text(v.getState()), v.getPid(), s.getVcpus(),
                human_size(s.getMemoryBytes()).c_str(), v.getMachine().cStr(), v.getAccel().cStr(),
                ip.c_str(), v.getExitReason().cStr());
  }
  return 0;
}

int console(const global_options& g, const std::string& name, bool follow) {
  client c{g};
  auto svc = vms(c);
  wait(c, stream_console(svc, name, follow, g.json, nullptr));
  return 0;
}

std::string random_name() {
  std::random_device rd;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "run-%08x", static_cast<unsigned>(rd()));
  return buf;
}

/// Boot, print the console until QEMU ends, exit with the guest command's code.
int run(const global_options& g, vm_flags f) {
  try {
    split_words(f);
  } catch (const cli_error& e) {
    std::fprintf(stderr, "cyto: %s\n", e.what());
    return engine_failed;
  }
  if (f.name.empty())
    f.name = random_name();
  std::unique_ptr<client> cp;
  try {
    cp = std::make_unique<client>(g);
  } catch (const cli_error& e) {
    std::fprintf(stderr, "cyto: %s\n", e.what());
    return engine_failed;
  }
  auto& c = *cp;
  auto svc = vms(c);
  auto remove = [&] {
    auto req = svc.freeRequest();
    req.setName(f.name);
    req.setForce(true);
    try {
      req.send().wait(c.wait_scope());
    } catch (const kj::Exception& e) {
      std::fprintf(stderr, "cyto: remove vm %s: %s\n", f.name.c_str(), describe(e).c_str());
    }
  };
  try {
    auto alloc = svc.allocateRequest();
    fill_spec(f, alloc.initSpec());
    alloc.send().wait(c.wait_scope());
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
    return engine_failed;
  }
  try {
    auto start = svc.startRequest();
    start.setName(f.name);
    start.send().wait(c.wait_scope());
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
    // A run that never ran leaves nothing.
    remove();
    return engine_failed;
  }
  std::optional<int> guest_code;
  int code = engine_failed;
  try {
    stream_console(svc, f.name, true, g.json, &guest_code).wait(c.wait_scope());
    auto req = svc.inspectRequest();
    req.setName(f.name);
    auto info = req.send().wait(c.wait_scope()).getInfo();
    if (guest_code)
      code = *guest_code;
    else
      std::fprintf(stderr, "cyto: the guest ended without a %sN line on its console (%s)\n",
                   std::string{exit_marker}.c_str(), info.getExitReason().cStr());
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
  }
  if (f.rm)
    remove();
  return code;
}

void add_spec_flags(CLI::App* sub, vm_flags& f) {
  sub->add_option("--kernel", f.kernel,
                  "the guest kernel (bzImage); image VMs default to cytod's image boot kernel");
  sub->add_option("--initrd", f.initrd, "an initramfs");
  sub->add_option("--image", f.image,
                  "boot from this image of the store (instead of IMAGE before the command; "
                  "needed with --kernel)");
  sub->add_option("--cmdline", f.cmdline, "kernel command line (console=ttyS0 is added)");
  sub->add_option("-m,--memory", f.memory, "guest memory (256M, 1G; default 256M)");
  sub->add_option("--vcpus", f.vcpus, "guest CPUs (default 1)");
  sub->add_option("--drive", f.drives, "a disk: PATH[,format=raw|qcow2][,ro]; repeat")
      ->allow_extra_args(false);
  sub->add_option("--accel", f.accel, "kvm or tcg (default: hardware KVM if the host has it)");
  sub->add_option("--machine", f.machine, "microvm (default) or q35");
  sub->add_option("--label", f.labels, "KEY=VALUE; repeat")->allow_extra_args(false);
  sub->add_option("--network", f.network,
                  "a cyto network (cyto network ls): a tap on its bridge and an address from "
                  "its IPAM at start; the guest gets ip=ADDR::GW:MASK::eth0:off");
  sub->add_option("image", f.first_word,
                  "the image to boot (without --kernel or --image; with them, the command's "
                  "first word)");
  sub->add_option("command", f.command,
                  "after --: the command the guest runs (for an image: instead of its Cmd; "
                  "else the init's arguments after ' -- ' on the kernel command line)");
}

} // namespace cmd_vm_impl

void add_vm_commands(CLI::App& app, global_options& g, std::function<int()>& action) {
  using namespace cmd_vm_impl;
  static vm_flags f;
  static std::string name, timeout = "30s";
  static std::vector<std::string> names;
  static bool force = false, follow = false;
  // The guest side (`vm exec`) may have made the command already.
  CLI::App* vm = nullptr;
  try {
    vm = app.get_subcommand("vm");
    vm->description("virtual machines (QEMU, one cell each)");
  } catch (const CLI::OptionNotFound&) {
    vm = app.add_subcommand("vm", "virtual machines (QEMU, one cell each)");
  }
  vm->require_subcommand(1);
  vm->footer("A VM's QEMU runs as the executable 'qemu' of the cell vms/NAME; its serial console\n"
             "is that executable's stdout. Guests used with 'vm run' print CYTO-EXIT=<n> on the\n"
             "console (ttyS0) with the command's exit code before they power off.");
  auto common = [&g](CLI::App* sub) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  };

  auto* create_cmd = vm->add_subcommand(
      "create", "allocate a VM (its cell and record): NAME IMAGE [-- CMD] | NAME --kernel K");
  create_cmd->add_option("name", f.name, "VM name")->required();
  add_spec_flags(create_cmd, f);
  common(create_cmd);
  create_cmd->callback([&] { action = [&] { return create(g, f); }; });

  auto* run_cmd = vm->add_subcommand(
      "run", "boot a VM, print its console, exit with the guest command's code: "
             "IMAGE -- CMD ARGS | --kernel K -- CMD ARGS");
  run_cmd->footer("The command goes to the guest's init after ' -- ' on the kernel command line;\n"
                  "the init prints CYTO-EXIT=<n> on the console and powers off. cyto's own\n"
                  "failures exit 125.\n"
                  "An IMAGE's root file system is the VM's root disk (ext4, cached per image, a\n"
                  "copy-on-write overlay per VM); the command runs there instead of its Cmd.\n"
                  "Examples: cyto vm run --rm demo -- echo hi\n"
                  "          cyto vm run --rm --kernel vmlinuz --initrd initrd.gz -- sh -c 'exit 3'");
  run_cmd->add_option("--name", f.name, "VM name (default: run-<random>)");
  run_cmd->add_flag("--rm", f.rm, "remove the VM once it has ended");
  add_spec_flags(run_cmd, f);
  common(run_cmd);
  run_cmd->callback([&] { action = [&] { return run(g, f); }; });

  auto simple = [&](const char* verb, const char* help, auto send) {
    auto* sub = vm->add_subcommand(verb, help);
    sub->add_option("name", name, "VM name")->required();
    common(sub);
    sub->callback([&g, &action, send] {
      action = [&g, send] {
        return one(g, [send](schema::Vms::Client& svc) { return send(svc, name); });
      };
    });
    return sub;
  };
  simple("start", "start a created or ended VM's QEMU: NAME",
         [](schema::Vms::Client& svc, const std::string& n) {
           auto r = svc.startRequest();
           r.setName(n);
           return r.send();
         });
  simple("kill", "SIGKILL the VM's QEMU: NAME", [](schema::Vms::Client& svc, const std::string& n) {
    auto r = svc.killRequest();
    r.setName(n);
    return r.send();
  });
  simple("pause", "stop the guest's CPUs: NAME", [](schema::Vms::Client& svc, const std::string& n) {
    auto r = svc.pauseRequest();
    r.setName(n);
    return r.send();
  });
  simple("resume", "let a paused guest run: NAME",
         [](schema::Vms::Client& svc, const std::string& n) {
           auto r = svc.resumeRequest();
           r.setName(n);
           return r.send();
         });

  auto* stop_cmd =
      vm->add_subcommand("stop", "ACPI power button, then QEMU quit after the timeout: NAME");
  stop_cmd->add_option("name", name, "VM name")->required();
  stop_cmd->add_option("-t,--timeout", timeout, "time the guest gets to power off (default 30s)");
  common(stop_cmd);
  stop_cmd->callback([&] { action = [&] { return stop(g, name, timeout); }; });

  auto* rm_cmd = vm->add_subcommand("rm", "remove VMs (cell, directory, record): NAME...");
  rm_cmd->add_option("names", names, "VM names")->required();
  rm_cmd->add_flag("-f,--force", force, "kill a running VM first");
  common(rm_cmd);
  rm_cmd->callback([&] { action = [&] { return rm(g, names, force); }; });

  auto* ls_cmd = vm->add_subcommand("ls", "list VMs");
  common(ls_cmd);
  ls_cmd->callback([&] { action = [&] { return ls(g); }; });

  auto* inspect_cmd = vm->add_subcommand("inspect", "one VM in detail: NAME");
  inspect_cmd->add_option("name", name, "VM name")->required();
  common(inspect_cmd);
  inspect_cmd->callback([&] {
    action = [&] {
      client c{g};
      auto req = vms(c).inspectRequest();
      req.setName(name);
      auto resp = wait(c, req.send());
      print_vm(g, resp.getInfo());
      return 0;
    };
  });

  auto* console_cmd = vm->add_subcommand("console", "the serial console's output: NAME");
  console_cmd->add_option("name", name, "VM name")->required();
  console_cmd->add_flag("-f,--follow", follow, "keep printing new lines until QEMU ends");
  common(console_cmd);
  console_cmd->callback([&] { action = [&] { return console(g, name, follow); }; });
}

} // namespace cyto::cli
