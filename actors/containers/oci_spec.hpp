#pragma once
// The OCI runtime-spec (1.0.x / 1.1.x) config.json as plain structs, parsed and checked
// before anything touches the kernel: every field the runtime accepts is validated here
// (types, ranges, absolute paths, known names), so a bad bundle fails with an error naming
// the field and nothing is created. Unknown properties are ignored, as the spec requires.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "actors/containers/status.hpp"

namespace cyto::containers::oci {

struct user {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::optional<uint32_t> umask;
  std::vector<uint32_t> additional_gids;
};

struct rlimit {
  int resource = 0; // RLIMIT_*
  std::string type;
  uint64_t soft = 0;
  uint64_t hard = 0;
};

/// Capability sets as kernel capability numbers.
struct capabilities {
  std::vector<int> bounding, effective, inheritable, permitted, ambient;
};

struct process {
  bool terminal = false;
  unsigned console_height = 0;
  unsigned console_width = 0;
  oci::user user;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd;
  std::optional<capabilities> caps;
  std::vector<rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
};

struct mount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

struct hook {
  std::string path;
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<int> timeout; // seconds, > 0
};

struct hooks {
  std::vector<hook> prestart, create_runtime, create_container, start_container, poststart,
    poststop;
};

struct namespace_entry {
  int flag = 0; // CLONE_NEW*
  std::string type;
  std::string path; // join this one instead of making a new one
};

struct id_mapping {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
};

struct device {
  char type = 'c'; // c, b, u, p
  std::string path;
  int64_t major = 0;
  int64_t minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
};

/// A linux.resources.devices rule: allow or deny `access` (of "rwm") to devices of `type`
/// ('a', 'c' or 'b'); -1 for major or minor means any.
struct device_rule {
  bool allow = false;
  char type = 'a';
  int64_t major = -1;
  int64_t minor = -1;
  std::string access = "rwm";
};

/// A per-device blockIO value: a weight (weightDevice) or a rate (throttle*Device).
struct block_device_value {
  int64_t major = 0;
  int64_t minor = 0;
  uint64_t value = 0;
};

/// linux.resources, every field this runtime applies. Fields it cannot apply on a host
/// are refused there by name (cgroupfs_provider), never ignored.
struct resources {
  std::optional<int64_t> memory_limit;
  std::optional<int64_t> memory_reservation;
  /// memory + swap, as the spec counts it; -1 is unlimited.
  std::optional<int64_t> memory_swap;
  std::optional<int64_t> memory_kernel;
  std::optional<int64_t> memory_kernel_tcp;
  std::optional<uint64_t> memory_swappiness;
  bool disable_oom_killer = false;
  std::optional<uint64_t> cpu_shares;
  std::optional<int64_t> cpu_quota;
  std::optional<uint64_t> cpu_period;
  std::string cpu_cpus;
  std::string cpu_mems;
  std::optional<int64_t> pids_limit;
  std::optional<uint16_t> blkio_weight;
  std::optional<uint16_t> blkio_leaf_weight;
  std::vector<block_device_value> blkio_weight_device;
  std::vector<block_device_value> throttle_read_bps, throttle_write_bps;
  std::vector<block_device_value> throttle_read_iops, throttle_write_iops;
  std::vector<device_rule> devices;
  bool any() const {
    return memory_limit || memory_reservation || memory_swap || memory_kernel
           || memory_kernel_tcp || memory_swappiness || disable_oom_killer || cpu_shares
           || cpu_quota || cpu_period || !cpu_cpus.empty() || !cpu_mems.empty() || pids_limit
           || blkio_weight || blkio_leaf_weight || !blkio_weight_device.empty()
           || !throttle_read_bps.empty() || !throttle_write_bps.empty()
           || !throttle_read_iops.empty() || !throttle_write_iops.empty() || !devices.empty();
  }
};

struct seccomp_arg {
  unsigned index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;
};

struct seccomp_rule {
  std::vector<std::string> names;
  std::string action;
  std::optional<unsigned> errno_ret;
  std::vector<seccomp_arg> args;
};

struct seccomp {
  std::string default_action;
  std::optional<unsigned> default_errno_ret;
  std::vector<std::string> architectures;
  std::vector<std::string> flags;
  std::vector<seccomp_rule> syscalls;
};

struct linux_config {
  std::vector<namespace_entry> namespaces;
  std::vector<id_mapping> uid_mappings, gid_mappings;
  std::vector<device> devices;
  std::string cgroups_path;
  oci::resources resources;
  std::map<std::string, std::string> sysctl;
  std::optional<oci::seccomp> seccomp;
  std::string rootfs_propagation;
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;

  const namespace_entry* find(int flag) const {
    for (auto& n : namespaces)
      if (n.flag == flag)
        return &n;
    return nullptr;
  }
};

struct config {
  std::string oci_version;
  std::string root_path; // absolute (resolved against the bundle)
  bool root_readonly = false;
  std::optional<oci::process> process;
  std::string hostname;
  std::string domainname;
  std::vector<oci::mount> mounts;
  oci::hooks hooks;
  linux_config linux;
  std::map<std::string, std::string> annotations;
};

/// Parses config.json text; `bundle` (absolute) resolves a relative root.path.
/// Checks every accepted field; the error names it ("process.cwd: must be absolute").
result<config> parse_config(const std::string& text, const std::string& bundle);

/// Parses a process.json (runc exec --process): an OCI process object alone.
result<process> parse_process_json(const std::string& text);

/// Parses a linux.resources object alone (runc update --resources).
result<resources> parse_resources_json(const std::string& text);

/// Reads <bundle>/config.json and parses it; also checks that the rootfs is a directory
/// and that namespace paths exist.
result<config> load_bundle(const std::string& bundle);

/// Capability number of "CAP_SYS_ADMIN" (case-insensitive), or nothing.
std::optional<int> capability_from_name(const std::string& name);

/// "CAP_SYS_ADMIN" for a capability number.
std::string capability_name(int cap);

/// The runtime-spec version this runtime implements.
inline constexpr const char* spec_version = "1.1.0";

} // namespace cyto::containers::oci
