// cyto vm exec: a command in a cell inside a VM, through the cytod that is the guest's init.
#include <cstdio>
#include <random>

#include "cli/commands.hpp"
#include "schema/cells.capnp.h"

namespace cyto::cli {

namespace cmd_vm_guest_impl {

constexpr int exit_engine = 125;

struct exec_flags {
  std::string vm;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
};

std::string exec_cell_name() {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "vm-exec-%08x", static_cast<unsigned>(rd()));
  return buf;
}

int status_code(schema::ExitStatus::Reader s) {
  return s.getSignal() != 0 ? 128 + s.getSignal() : s.getCode();
}

int exec(global_options g, const exec_flags& f) {
  if (f.argv.empty())
    throw cli_error("vm exec: no command (cyto vm exec NAME -- CMD ARGS...)");
  for (auto& e : f.env)
    if (e.find('=') == std::string::npos)
      throw cli_error("vm exec: --env '" + e + "' is not KEY=VALUE");
  g.vm = f.vm;
  client c{g};
  auto cells = wait(c, c.node().cellsRequest().send()).getService();
  // A cell of its own, so the command's processes are all found and all go with it.
  auto cell = exec_cell_name();
  {
    auto req = cells.allocateRequest();
    req.initCell().setName(cell);
    wait(c, req.send());
  }
  auto free_cell = [&] {
    auto req = cells.freeRequest();
    req.setName(cell);
    req.setRecursive(true);
    req.setForce(true);
    try {
      wait(c, req.send());
    } catch (const cli_error& e) {
      std::fprintf(stderr, "cyto: vm exec: removing cell %s in %s: %s\n", cell.c_str(),
                   f.vm.c_str(), e.what());
    }
  };
  try {
    auto req = cells.startRequest();
    req.setCellName(cell);
    auto e = req.initExecutable();
    e.setName("exec");
    auto argv = e.initArgv(f.argv.size());
    for (uint i = 0; i < f.argv.size(); ++i)
      argv.set(i, f.argv[i]);
    auto env = e.initEnv(f.env.size());
    for (uint i = 0; i < f.env.size(); ++i)
      env.set(i, f.env[i]);
    e.setCwd(f.cwd);
    wait(c, req.send());
    wait(c, follow_output(c, cell, "exec"));
    auto wreq = cells.waitRequest();
    wreq.setCellName(cell);
    wreq.setExecutableName("exec");
    int code = status_code(wait(c, wreq.send()).getStatus());
    free_cell();
    return code;
  } catch (...) {
    free_cell();
    throw;
  }
}

} // namespace cmd_vm_guest_impl

void add_vm_guest_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_vm_guest_impl;
  static exec_flags ef;
  CLI::App* vm = nullptr;
  try {
    vm = app.get_subcommand("vm");
  } catch (const CLI::OptionNotFound&) {
    vm = app.add_subcommand("vm", "virtual machines");
    vm->require_subcommand(1);
  }
  auto* ex = vm->add_subcommand(
    "exec", "run a command in a cell inside a VM (its cytod is the guest's init), show its "
            "output and exit with its code: NAME -- CMD ARGS...");
  ex->footer("The command runs in a new cell of the guest's cytod, removed afterwards. "
             "Failures of cyto itself exit 125.\nExample: cyto vm exec web -- uname -a");
  ex->add_option("name", ef.vm, "the VM")->required();
  ex->add_option("-e,--env", ef.env, "set KEY=VALUE; repeat")->allow_extra_args(false);
  ex->add_option("-w,--workdir", ef.cwd, "working directory in the guest");
  ex->add_option("command", ef.argv, "the command and its arguments (after --)");
  ex->add_option("--socket", g.socket, "cytod's socket");
  ex->callback([&] {
    run = [&] {
      try {
        return exec(g, ef);
      } catch (const cli_error& e) {
        std::fprintf(stderr, "cyto: %s\n", e.what());
        return exit_engine;
      }
    };
  });
}

} // namespace cyto::cli
