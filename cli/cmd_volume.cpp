// cyto volume create|ls|inspect|rm: named volumes that containers mount (-v NAME:/path).
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/output.hpp"
#include "schema/volumes.capnp.h"

namespace cyto::cli {

namespace cmd_volume_impl {

struct volume_flags {
  std::string name;
  std::vector<std::string> names;
  bool force = false;
};

schema::Volumes::Client volumes(client& c) {
  return wait(c, c.node().volumesRequest().send()).getService();
}

nlohmann::json volume_json(schema::VolumeInfo::Reader v) {
  auto users = nlohmann::json::array();
  for (auto u : v.getUsers())
    users.push_back({{"id", u.getId().cStr()}, {"name", u.getName().cStr()}});
  return {{"name", v.getName().cStr()},
          {"path", v.getPath().cStr()},
          {"created", iso_time(v.getCreatedUnixNanos())},
          {"createdUnixNanos", v.getCreatedUnixNanos()},
          {"users", users}};
}

std::string users_text(schema::VolumeInfo::Reader v) {
  std::vector<std::string> names;
  for (auto u : v.getUsers())
    names.emplace_back(u.getName().size() ? u.getName().cStr()
                                          : std::string{u.getId().cStr()}.substr(0, 12));
  return names.empty() ? "-" : join(names, ",");
}

int create(const global_options& g, const volume_flags& f) {
  client c{g};
  auto req = volumes(c).createRequest();
  req.setName(f.name);
  auto resp = wait(c, req.send());
  auto v = resp.getInfo();
  if (g.json)
    print_json(volume_json(v));
  else
    std::printf("%s\n", v.getName().cStr());
  return 0;
}

int list(const global_options& g) {
  client c{g};
  auto resp = wait(c, volumes(c).listRequest().send());
  if (g.json) {
    auto out = nlohmann::json::array();
    for (auto v : resp.getVolumes())
      out.push_back(volume_json(v));
    print_json(out);
    return 0;
  }
  std::printf("%-30s %-24s %s\n", "NAME", "CREATED", "USERS");
  for (auto v : resp.getVolumes())
    std::printf("%-30s %-24s %s\n", v.getName().cStr(), iso_time(v.getCreatedUnixNanos()).c_str(),
                users_text(v).c_str());
  return 0;
}

int inspect(const global_options& g, const volume_flags& f) {
  client c{g};
  auto svc = volumes(c);
  auto out = nlohmann::json::array();
  bool first = true;
  for (auto& n : f.names) {
    auto req = svc.inspectRequest();
    req.setName(n);
    auto resp = wait(c, req.send());
    auto v = resp.getInfo();
    if (g.json) {
      out.push_back(volume_json(v));
      continue;
    }
    if (!first)
      std::printf("\n");
    first = false;
    print_table({{"name", v.getName().cStr()},
                 {"path", v.getPath().cStr()},
                 {"created", iso_time(v.getCreatedUnixNanos())},
                 {"users", users_text(v)}});
  }
  if (g.json)
    print_json(out);
  return 0;
}

int remove(const global_options& g, const volume_flags& f) {
  client c{g};
  auto svc = volumes(c);
  int rc = 0;
  auto removed = nlohmann::json::array();
  for (auto& n : f.names) {
    auto req = svc.removeRequest();
    req.setName(n);
    req.setForce(f.force);
    try {
      req.send().wait(c.wait_scope());
      removed.push_back(n);
      if (!g.json)
        std::printf("%s\n", n.c_str());
    } catch (const kj::Exception& e) {
      // The others still go, as `podman volume rm` does; the exit code says one failed.
      std::fprintf(stderr, "cyto: %s\n", describe(e).c_str());
      rc = 1;
    }
  }
  if (g.json)
    print_json({{"removed", removed}});
  return rc;
}

} // namespace cmd_volume_impl

void add_volume_commands(CLI::App& app, global_options& g, std::function<int()>& run) {
  using namespace cmd_volume_impl;
  auto* vol = app.add_subcommand(
      "volume", "named volumes: directories of the node that containers mount and outlive");
  vol->require_subcommand(1);
  static volume_flags f;

  auto* cr = vol->add_subcommand("create", "make a volume; prints its name");
  cr->add_option("name", f.name, "volume name (default: generated, 64 hex digits)");
  cr->footer("`cyto run -v NAME:/path` makes a missing volume itself.");
  cr->callback([&] { run = [&] { return create(g, f); }; });

  auto* ls = vol->add_subcommand("ls", "list volumes with the containers that use them");
  ls->callback([&] { run = [&] { return list(g); }; });

  auto* in = vol->add_subcommand("inspect", "show volumes: host path, created, users");
  in->add_option("names", f.names, "volume names")->required();
  in->callback([&] { run = [&] { return inspect(g, f); }; });

  auto* rm = vol->add_subcommand(
      "rm", "remove volumes and their data; refused while any container (running or "
            "stopped) uses one");
  rm->add_option("names", f.names, "volume names")->required();
  rm->add_flag("-f,--force", f.force,
               "no error for a volume that does not exist (one in use is still refused: "
               "remove its containers first)");
  rm->callback([&] { run = [&] { return remove(g, f); }; });

  for (auto* sub : {cr, ls, in, rm}) {
    sub->add_option("--socket", g.socket, "cytod's socket");
    sub->add_option("--node", g.node, "run the verb against this node of the federation");
    sub->add_flag("--json", g.json, "print JSON for scripts");
  }
}

} // namespace cyto::cli
