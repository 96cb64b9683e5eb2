// -v/--volume and --tmpfs of `cyto run` (and create): podman's syntax into the spec's
// mounts. Only the syntax is checked here; cytod checks paths, names and modes.
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/units.hpp"
#include "schema/containers.capnp.h"

namespace cyto::cli {

namespace mount_flags_impl {

[[noreturn]] void bad(const std::string& what) {
  throw cli_error("cyto.invalid_argument: " + what);
}

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (true) {
    auto j = s.find(sep, i);
    out.push_back(s.substr(i, j == std::string::npos ? std::string::npos : j - i));
    if (j == std::string::npos)
      return out;
    i = j + 1;
  }
}

void fill_volume(const std::string& text, schema::Mount::Builder m) {
  auto parts = split_on(text, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    bad("-v '" + text + "': give SOURCE:TARGET[:ro] (SOURCE a host path or a volume name)");
  auto source = parts[0];
  if (source.front() == '/' || source.front() == '.') {
    // A relative host path is the caller's, so it is made absolute here (the daemon has
    // another working directory).
    if (source.front() == '.')
      source = std::filesystem::absolute(source).lexically_normal().string();
    m.setKind("bind");
  } else {
    m.setKind("volume");
  }
  m.setSource(source);
  m.setTarget(parts[1]);
  if (parts.size() == 3)
    for (auto& o : split_on(parts[2], ',')) {
      if (o == "ro")
        m.setReadOnly(true);
      else if (o == "rw")
        m.setReadOnly(false);
      else if (o != "rbind")
        bad("-v '" + text + "': option '" + o + "' is not ro, rw or rbind");
    }
}

void fill_tmpfs(const std::string& text, schema::Mount::Builder m) {
  auto colon = text.find(':');
  auto target = text.substr(0, colon);
  if (target.empty())
    bad("--tmpfs '" + text + "': give TARGET[:size=64m,mode=1777,ro]");
  m.setKind("tmpfs");
  m.setTarget(target);
  if (colon == std::string::npos)
    return;
  for (auto& o : split_on(text.substr(colon + 1), ',')) {
    if (o.rfind("size=", 0) == 0) {
      auto size = parse_size(o.substr(5));
      if (!size || *size == 0)
        bad("--tmpfs '" + text + "': size '" + o.substr(5) + "' is not a size like 64m or 1g");
      m.setSizeBytes(*size);
    } else if (o.rfind("mode=", 0) == 0) {
      m.setSource(o.substr(5)); // the daemon checks that it is octal
    } else if (o == "ro") {
      m.setReadOnly(true);
    } else if (o == "rw") {
      m.setReadOnly(false);
    } else {
      bad("--tmpfs '" + text + "': option '" + o + "' is not size=SIZE, mode=OCTAL, ro or rw");
    }
  }
}

} // namespace mount_flags_impl

void add_mount_flags(CLI::App* cmd, container_mount_flags& f) {
  using namespace mount_flags_impl;
  cmd->add_option("-v,--volume", f.volumes,
                  "mount SOURCE:TARGET[:ro]: a host path (/..., ./...) or a named volume "
                  "(made if missing); repeat")
      ->allow_extra_args(false);
  cmd->add_option("--tmpfs", f.tmpfs,
                  "mount a new tmpfs TARGET[:size=64m,mode=1777,ro] (nosuid, nodev); repeat")
      ->allow_extra_args(false);
}

void fill_mounts(const container_mount_flags& f, schema::ContainerSpec::Builder spec) {
  using namespace mount_flags_impl;
  auto mounts = spec.initMounts(f.volumes.size() + f.tmpfs.size());
  uint i = 0;
  for (auto& v : f.volumes)
    fill_volume(v, mounts[i++]);
  for (auto& t : f.tmpfs)
    fill_tmpfs(t, mounts[i++]);
}

} // namespace cyto::cli
