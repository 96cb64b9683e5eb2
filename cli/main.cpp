// cyto: the command line client of cytod. It speaks Cap'n Proto to the daemon's socket
// (or its TCP gateway, over mutual TLS) and nothing else.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "cli/completion.hpp"
#include "cyto/version.hpp"

int main(int argc, char** argv) {
  using namespace cyto::cli;
  global_options g;
  logs_options logs;

  CLI::App app{"cyto: run and watch workloads on a cyto node"};
  app.require_subcommand(1);
  app.add_option("--socket", g.socket, "cytod's socket")->capture_default_str();
  app.add_flag("--json", g.json, "print JSON (one object per line) for scripts");
  app.add_option("--connect", g.connect,
                 "host:port of a node's TCP gateway (mutual TLS) instead of the socket");
  app.add_option("--cert", g.cert, "with --connect: our certificate (PEM, e.g. from `make pki`)");
  app.add_option("--key", g.key, "with --connect: its private key (PEM)");
  app.add_option("--ca", g.ca, "with --connect: the CA the node's certificate must come from");
  app.add_option("--node", g.node,
                 "run the verb against this node of the federation, through the one the "
                 "socket reaches (see `cyto node ls`)");
  app.add_option("--vm", g.vm,
                 "run the verb against the cytod inside this VM (through the host's cytod)");
  app.set_version_flag("--version",
                       std::string{"cyto "} + cyto::version + " (" + cyto::git_revision + ")");

  auto* discover = app.add_subcommand("discover", "show the node: version, uptime, host features");
  auto* health = app.add_subcommand(
      "health", "check that every actor of the node is alive; list quarantined state records and "
                "stray cgroups");
  auto* version = app.add_subcommand("version", "show the CLI's and the daemon's versions");
  auto* logs_cmd = app.add_subcommand(
    "logs", "show a container's output (NAME), an executable's (CELL/EXECUTABLE) or cytod's "
            "own log (--daemon)");
  logs_cmd->add_option("target", logs.target,
                       "container NAME, or CELL/EXECUTABLE (nested cells: A/B/EXECUTABLE)");
  logs_cmd->add_flag("--daemon", logs.daemon, "cytod's own log");
  logs_cmd->add_flag("--stderr", logs.stderr_only, "the executable's stderr instead of stdout");
  logs_cmd->add_flag("--both", logs.both, "stdout and stderr (history: stdout's, then stderr's)");
  logs_cmd->add_flag("-f,--follow", logs.follow, "keep printing new entries until interrupted");
  logs_cmd->add_option("--level", logs.level, "lowest level shown: trace|debug|info|warn|error|critical")
    ->capture_default_str();
  logs_cmd->add_option("--tail", logs.tail,
                       "show only the last N lines of the history (--daemon: entries, default "
                       "100; output: all)");
  logs_cmd->add_option("--since", logs.since,
                       "output seen since this time: a duration back (10m, 1h30m) or a time "
                       "(2026-12-04T18:00:00Z, Unix seconds)");
  logs_cmd->add_option("--until", logs.until, "output seen until this time (same forms)");
  logs_cmd->add_flag("-t,--timestamps", logs.timestamps,
                     "prefix each line with the time it was seen (RFC 3339)");
  std::function<int()> run;
  add_cell_commands(app, g, run);
  add_image_commands(app, g, run);
  add_observe_commands(app, g, run);
  add_network_commands(app, g, run);
  add_container_commands(app, g, run);
  add_cp_command(app, g, run);
  add_volume_commands(app, g, run);
  add_pod_commands(app, g, run);
  add_stats_command(app, g, run);
  add_node_commands(app, g, run);
  add_vm_commands(app, g, run);
  add_vm_guest_commands(app, g, run); // vm exec, under the vm command made above
  add_completion_command(app, run);
  // Options a verb does not know go to its parent, so global ones may follow the verb
  // (cyto discover --connect ...), except in verbs whose trailing words are a command
  // (run, exec): there they must come before the verb.
  std::function<void(CLI::App*)> fall_through = [&](CLI::App* parent) {
    for (auto* sub : parent->get_subcommands([](CLI::App*) { return true; })) {
      sub->fallthrough(!sub->get_prefix_command());
      fall_through(sub);
    }
  };
  fall_through(&app);
  for (auto* sub : {discover, health, version, logs_cmd}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON (one object per line) for scripts");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (*discover) return cmd_discover(g);
    if (*health) return cmd_health(g);
    if (*version) return cmd_version(g);
    if (*logs_cmd) return cmd_logs(g, logs);
    if (run) return run();
  } catch (const cli_error& e) {
    std::fprintf(stderr, "cyto: %s\n", e.what());
    return 1;
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
    return 1;
  }
  return 0;
}
