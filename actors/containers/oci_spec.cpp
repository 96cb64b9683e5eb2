#include "actors/containers/oci_spec.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <sched.h>
#include <sys/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace cyto::containers {

status from_errno(int err, const std::string& what) {
  std::string code = "internal";
  switch (err) {
    case ENOENT: code = "not_found"; break;
    case EACCES:
    case EPERM: code = "permission_denied"; break;
    case EINVAL:
    case ENOTDIR:
    case ERANGE: code = "invalid_argument"; break;
    case EEXIST: code = "already_exists"; break;
    case EBUSY: code = "failed_precondition"; break;
    case ENOMEM:
    case ENOSPC:
    case EAGAIN: code = "resource_exhausted"; break;
    case ENOSYS: code = "unsupported"; break;
  }
  return {code, what + ": " + std::strerror(err)};
}

} // namespace cyto::containers

namespace cyto::containers::oci {

namespace {

using json = nlohmann::json;

/// Thrown inside the parser only; parse_config turns it into a status.
struct bad_field {
  std::string text;
};

[[noreturn]] void fail(const std::string& field, const std::string& what) {
  throw bad_field{field + ": " + what};
}

const char* type_of(const json& j) {
  return j.type_name();
}

const json* member(const json& obj, const char* key) {
  auto i = obj.find(key);
  if (i == obj.end() || i->is_null())
    return nullptr;
  return &*i;
}

const json& need_object(const json& j, const std::string& field) {
  if (!j.is_object())
    fail(field, std::string{"must be an object, not "} + type_of(j));
  return j;
}

const json& need_array(const json& j, const std::string& field) {
  if (!j.is_array())
    fail(field, std::string{"must be an array, not "} + type_of(j));
  return j;
}

std::string get_string(const json& j, const std::string& field) {
  if (!j.is_string())
    fail(field, std::string{"must be a string, not "} + type_of(j));
  return j.get<std::string>();
}

bool get_bool(const json& j, const std::string& field) {
  if (!j.is_boolean())
    fail(field, std::string{"must be a boolean, not "} + type_of(j));
  return j.get<bool>();
}

int64_t get_int(const json& j, const std::string& field, int64_t lo, int64_t hi) {
  if (!j.is_number_integer())
    fail(field, std::string{"must be an integer, not "} + type_of(j));
  if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    fail(field, "out of range");
  auto v = j.get<int64_t>();
  if (v < lo || v > hi)
    fail(field, "out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + "): "
                  + std::to_string(v));
  return v;
}

uint64_t get_uint(const json& j, const std::string& field) {
  if (!j.is_number_unsigned() && !(j.is_number_integer() && j.get<int64_t>() >= 0))
    fail(field, std::string{"must be a non-negative integer, not "} + j.dump());
  return j.get<uint64_t>();
}

uint32_t get_u32(const json& j, const std::string& field) {
  auto v = get_uint(j, field);
  if (v > UINT32_MAX)
    fail(field, "out of range: " + std::to_string(v));
  return static_cast<uint32_t>(v);
}

/// obj[key], which the spec requires; the error names "<field>.<key>".
const json& required(const json& obj, const char* key, const std::string& field) {
  auto* v = member(obj, key);
  if (!v)
    fail(field.empty() ? std::string{key} : field + "." + key, "is required");
  return *v;
}

/// Calls fn(element, "<field>[i]") for each element of an array of objects.
template <class F>
void each_object(const json& arr, const std::string& field, F fn) {
  need_array(arr, field);
  for (size_t i = 0; i < arr.size(); ++i) {
    auto f = field + "[" + std::to_string(i) + "]";
    fn(need_object(arr[i], f), f);
  }
}

std::vector<std::string> get_strings(const json& j, const std::string& field) {
  need_array(j, field);
  std::vector<std::string> out;
  for (size_t i = 0; i < j.size(); ++i)
    out.push_back(get_string(j[i], field + "[" + std::to_string(i) + "]"));
  return out;
}

std::string need_absolute(const json& j, const std::string& field) {
  auto s = get_string(j, field);
  if (s.empty() || s[0] != '/')
    fail(field, "must be an absolute path, not \"" + s + "\"");
  return s;
}

void check_env(const std::vector<std::string>& env, const std::string& field) {
  for (size_t i = 0; i < env.size(); ++i) {
    auto eq = env[i].find('=');
    if (eq == std::string::npos || eq == 0)
      fail(field + "[" + std::to_string(i) + "]", "must be KEY=VALUE, not \"" + env[i] + "\"");
  }
}

void check_version(const std::string& v) {
  // Semantic versions 1.0.x to 1.3.x (with pre-release suffixes): minor versions of the
  // runtime-spec only add fields, and a field this runtime cannot honour is refused by
  // name wherever it is parsed.
  auto ok = [&](const char* prefix) {
    auto n = std::strlen(prefix);
    if (v.compare(0, n, prefix) != 0)
      return false;
    auto rest = v.substr(n);
    if (rest.empty() || !std::isdigit(static_cast<unsigned char>(rest[0])))
      return false;
    size_t i = 0;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i])))
      ++i;
    return i == rest.size() || rest[i] == '-' || rest[i] == '+';
  };
  if (!ok("1.0.") && !ok("1.1.") && !ok("1.2.") && !ok("1.3."))
    fail("ociVersion",
         "unsupported version \"" + v + "\" (this runtime implements 1.0.x to 1.3.x)");
}

std::vector<int> parse_cap_list(const json& j, const std::string& field) {
  std::vector<int> out;
  auto names = get_strings(j, field);
  for (size_t i = 0; i < names.size(); ++i) {
    auto c = capability_from_name(names[i]);
    if (!c)
      fail(field + "[" + std::to_string(i) + "]", "unknown capability \"" + names[i] + "\"");
    // Capabilities this kernel does not know are skipped, as runc and crun do.
    if (*c <= CAP_LAST_CAP || CAP_IS_SUPPORTED(*c))
      if (std::find(out.begin(), out.end(), *c) == out.end())
        out.push_back(*c);
  }
  return out;
}

int rlimit_from_name(const std::string& name) {
  static const std::pair<const char*, int> table[] = {
    {"RLIMIT_AS", RLIMIT_AS},           {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},         {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},     {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},       {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},     {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},   {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING}, {"RLIMIT_STACK", RLIMIT_STACK}};
  for (auto& [n, r] : table)
    if (name == n)
      return r;
  return -1;
}

int namespace_flag(const std::string& type) {
  if (type == "pid") return CLONE_NEWPID;
  if (type == "network") return CLONE_NEWNET;
  if (type == "mount") return CLONE_NEWNS;
  if (type == "ipc") return CLONE_NEWIPC;
  if (type == "uts") return CLONE_NEWUTS;
  if (type == "user") return CLONE_NEWUSER;
  if (type == "cgroup") return CLONE_NEWCGROUP;
#ifdef CLONE_NEWTIME
  if (type == "time") return CLONE_NEWTIME;
#endif
  return 0;
}

process parse_process(const json& j) {
  need_object(j, "process");
  process p;
  if (auto* t = member(j, "terminal"))
    p.terminal = get_bool(*t, "process.terminal");
  if (auto* cs = member(j, "consoleSize")) {
    need_object(*cs, "process.consoleSize");
    if (!member(*cs, "height") || !member(*cs, "width"))
      fail("process.consoleSize", "needs height and width");
    p.console_height = get_u32((*cs)["height"], "process.consoleSize.height");
    p.console_width = get_u32((*cs)["width"], "process.consoleSize.width");
  }
  auto* u = &need_object(required(j, "user", "process"), "process.user");
  if (auto* v = member(*u, "uid"))
    p.user.uid = get_u32(*v, "process.user.uid");
  if (auto* v = member(*u, "gid"))
    p.user.gid = get_u32(*v, "process.user.gid");
  if (auto* v = member(*u, "umask"))
    p.user.umask = get_u32(*v, "process.user.umask");
  if (auto* v = member(*u, "additionalGids")) {
    need_array(*v, "process.user.additionalGids");
    for (size_t i = 0; i < v->size(); ++i)
      p.user.additional_gids.push_back(
        get_u32((*v)[i], "process.user.additionalGids[" + std::to_string(i) + "]"));
  }
  if (member(*u, "username"))
    fail("process.user.username", "is for Windows; use uid and gid");
  p.args = get_strings(required(j, "args", "process"), "process.args");
  if (p.args.empty())
    fail("process.args", "needs at least one entry (the program)");
  if (p.args[0].empty())
    fail("process.args[0]", "must not be empty");
  if (auto* e = member(j, "env")) {
    p.env = get_strings(*e, "process.env");
    check_env(p.env, "process.env");
  }
  p.cwd = need_absolute(required(j, "cwd", "process"), "process.cwd");
  if (auto* c = member(j, "capabilities")) {
    need_object(*c, "process.capabilities");
    capabilities caps;
    std::pair<const char*, std::vector<int>*> sets[] = {
      {"bounding", &caps.bounding},   {"effective", &caps.effective},
      {"inheritable", &caps.inheritable}, {"permitted", &caps.permitted},
      {"ambient", &caps.ambient}};
    for (auto& [name, out] : sets)
      if (auto* s = member(*c, name))
        *out = parse_cap_list(*s, std::string{"process.capabilities."} + name);
    p.caps = std::move(caps);
  }
  if (auto* r = member(j, "rlimits")) {
    std::set<int> seen;
    each_object(*r, "process.rlimits", [&](const json& e, const std::string& field) {
      rlimit rl;
      rl.type = get_string(required(e, "type", field), field + ".type");
      rl.resource = rlimit_from_name(rl.type);
      if (rl.resource < 0)
        fail(field + ".type", "unknown rlimit \"" + rl.type + "\"");
      if (!seen.insert(rl.resource).second)
        fail(field + ".type", "duplicate rlimit \"" + rl.type + "\"");
      rl.soft = get_uint(required(e, "soft", field), field + ".soft");
      rl.hard = get_uint(required(e, "hard", field), field + ".hard");
      if (rl.soft > rl.hard)
        fail(field, "soft limit above hard limit");
      p.rlimits.push_back(rl);
    });
  }
  if (auto* n = member(j, "noNewPrivileges"))
    p.no_new_privileges = get_bool(*n, "process.noNewPrivileges");
  if (auto* o = member(j, "oomScoreAdj"))
    p.oom_score_adj = static_cast<int>(get_int(*o, "process.oomScoreAdj", -1000, 1000));
  for (auto* key : {"apparmorProfile", "selinuxLabel"})
    if (auto* v = member(j, key); v && !get_string(*v, std::string{"process."} + key).empty())
      fail(std::string{"process."} + key, "is not supported by this runtime (no LSM support)");
  for (auto* key : {"ioPriority", "scheduler", "execCPUAffinity"})
    if (member(j, key))
      fail(std::string{"process."} + key, "is not supported by this runtime");
  return p;
}

std::vector<hook> parse_hooks(const json& j, const std::string& field) {
  std::vector<hook> out;
  each_object(j, field, [&](const json& e, const std::string& f) {
    hook h;
    h.path = need_absolute(required(e, "path", f), f + ".path");
    if (auto* a = member(e, "args"))
      h.args = get_strings(*a, f + ".args");
    if (auto* v = member(e, "env")) {
      h.env = get_strings(*v, f + ".env");
      check_env(h.env, f + ".env");
    }
    if (auto* t = member(e, "timeout"))
      h.timeout = static_cast<int>(get_int(*t, f + ".timeout", 1, INT32_MAX));
    out.push_back(std::move(h));
  });
  return out;
}

std::vector<id_mapping> parse_mappings(const json& j, const std::string& field) {
  std::vector<id_mapping> out;
  each_object(j, field, [&](const json& e, const std::string& f) {
    id_mapping m{get_u32(required(e, "containerID", f), f + ".containerID"),
                 get_u32(required(e, "hostID", f), f + ".hostID"),
                 get_u32(required(e, "size", f), f + ".size")};
    if (m.size == 0)
      fail(f + ".size", "must be at least 1");
    out.push_back(m);
  });
  return out;
}

std::vector<block_device_value> parse_block_values(const json& j, const std::string& field,
                                                   const char* key, int64_t lo, int64_t hi) {
  std::vector<block_device_value> out;
  each_object(j, field, [&](const json& e, const std::string& f) {
    block_device_value v;
    v.major = get_int(required(e, "major", f), f + ".major", 0, UINT32_MAX);
    v.minor = get_int(required(e, "minor", f), f + ".minor", 0, UINT32_MAX);
    v.value = static_cast<uint64_t>(get_int(required(e, key, f), f + "." + key, lo, hi));
    out.push_back(v);
  });
  return out;
}

void parse_resources(const json& j, resources& r) {
  need_object(j, "linux.resources");
  if (auto* m = member(j, "memory")) {
    need_object(*m, "linux.resources.memory");
    auto bytes = [&](const char* key, std::optional<int64_t>& out) {
      if (auto* v = member(*m, key))
        out = get_int(*v, std::string{"linux.resources.memory."} + key, -1, INT64_MAX);
    };
    bytes("limit", r.memory_limit);
    bytes("reservation", r.memory_reservation);
    bytes("swap", r.memory_swap);
    bytes("kernel", r.memory_kernel);
    bytes("kernelTCP", r.memory_kernel_tcp);
    if (auto* v = member(*m, "swappiness")) {
      r.memory_swappiness = get_uint(*v, "linux.resources.memory.swappiness");
      if (*r.memory_swappiness > 100)
        fail("linux.resources.memory.swappiness",
             "out of range (0..100): " + std::to_string(*r.memory_swappiness));
    }
    if (auto* v = member(*m, "disableOOMKiller"))
      r.disable_oom_killer = get_bool(*v, "linux.resources.memory.disableOOMKiller");
    if (auto* v = member(*m, "useHierarchy"); v && !get_bool(*v, "linux.resources.memory.useHierarchy"))
      fail("linux.resources.memory.useHierarchy", "false is not supported (memory is always "
                                                  "accounted hierarchically)");
    if (auto* v = member(*m, "checkBeforeUpdate");
        v && get_bool(*v, "linux.resources.memory.checkBeforeUpdate"))
      fail("linux.resources.memory.checkBeforeUpdate", "is not supported by this runtime");
    for (auto* o : {&r.memory_limit, &r.memory_reservation, &r.memory_kernel,
                    &r.memory_kernel_tcp})
      if (*o == -1)
        o->reset();
    if (r.memory_swap && *r.memory_swap != -1 && r.memory_limit
        && *r.memory_swap < *r.memory_limit)
      fail("linux.resources.memory.swap", "must be at least memory.limit (it counts memory "
                                          "and swap together)");
  }
  if (auto* c = member(j, "cpu")) {
    need_object(*c, "linux.resources.cpu");
    if (auto* v = member(*c, "shares"))
      r.cpu_shares = get_uint(*v, "linux.resources.cpu.shares");
    if (auto* v = member(*c, "quota"))
      r.cpu_quota = get_int(*v, "linux.resources.cpu.quota", -1, INT64_MAX);
    if (auto* v = member(*c, "period"))
      r.cpu_period = get_uint(*v, "linux.resources.cpu.period");
    if (auto* v = member(*c, "cpus"))
      r.cpu_cpus = get_string(*v, "linux.resources.cpu.cpus");
    if (auto* v = member(*c, "mems"))
      r.cpu_mems = get_string(*v, "linux.resources.cpu.mems");
    for (auto* k : {"realtimeRuntime", "realtimePeriod", "burst", "idle"})
      if (member(*c, k))
        fail(std::string{"linux.resources.cpu."} + k, "is not supported by this runtime");
  }
  if (auto* p = member(j, "pids")) {
    need_object(*p, "linux.resources.pids");
    if (auto* v = member(*p, "limit"))
      r.pids_limit = get_int(*v, "linux.resources.pids.limit", -1, INT64_MAX);
    if (r.pids_limit && *r.pids_limit <= 0)
      r.pids_limit.reset(); // 0 and -1: unlimited
  }
  if (auto* b = member(j, "blockIO")) {
    const std::string f = "linux.resources.blockIO";
    need_object(*b, f);
    if (auto* v = member(*b, "weight"))
      r.blkio_weight = static_cast<uint16_t>(get_int(*v, f + ".weight", 10, 1000));
    if (auto* v = member(*b, "leafWeight"))
      r.blkio_leaf_weight = static_cast<uint16_t>(get_int(*v, f + ".leafWeight", 10, 1000));
    if (auto* v = member(*b, "weightDevice")) {
      each_object(*v, f + ".weightDevice", [&](const json& e, const std::string& ef) {
        if (member(e, "leafWeight"))
          fail(ef + ".leafWeight", "is not supported by this runtime");
      });
      r.blkio_weight_device = parse_block_values(*v, f + ".weightDevice", "weight", 10, 1000);
    }
    std::pair<const char*, std::vector<block_device_value>*> throttles[] = {
      {"throttleReadBpsDevice", &r.throttle_read_bps},
      {"throttleWriteBpsDevice", &r.throttle_write_bps},
      {"throttleReadIOPSDevice", &r.throttle_read_iops},
      {"throttleWriteIOPSDevice", &r.throttle_write_iops}};
    for (auto& [key, out] : throttles)
      if (auto* v = member(*b, key))
        *out = parse_block_values(*v, f + "." + key, "rate", 0, INT64_MAX);
  }
  if (auto* d = member(j, "devices")) {
    each_object(*d, "linux.resources.devices", [&](const json& e, const std::string& f) {
      device_rule rule;
      rule.allow = get_bool(required(e, "allow", f), f + ".allow");
      if (auto* t = member(e, "type")) {
        auto s = get_string(*t, f + ".type");
        if (s != "a" && s != "c" && s != "b")
          fail(f + ".type", "must be a, c or b");
        rule.type = s[0];
      }
      if (auto* v = member(e, "major"))
        rule.major = get_int(*v, f + ".major", -1, UINT32_MAX);
      if (auto* v = member(e, "minor"))
        rule.minor = get_int(*v, f + ".minor", -1, UINT32_MAX);
      if (auto* a = member(e, "access")) {
        auto s = get_string(*a, f + ".access");
        if (s.empty() || s.find_first_not_of("rwm") != std::string::npos)
          fail(f + ".access", "must be made of r, w and m");
        rule.access = s;
      }
      r.devices.push_back(rule);
    });
  }
  for (auto* k : {"hugepageLimits", "network", "rdma", "unified"})
    if (auto* v = member(j, k); v && !(v->is_array() || v->is_object() ? v->empty() : false))
      fail(std::string{"linux.resources."} + k, "is not supported by this runtime");
}

seccomp parse_seccomp(const json& j) {
  need_object(j, "linux.seccomp");
  seccomp s;
  s.default_action = get_string(required(j, "defaultAction", "linux.seccomp"),
                                "linux.seccomp.defaultAction");
  if (auto* v = member(j, "defaultErrnoRet"))
    s.default_errno_ret = get_u32(*v, "linux.seccomp.defaultErrnoRet");
  if (auto* v = member(j, "architectures"))
    s.architectures = get_strings(*v, "linux.seccomp.architectures");
  if (auto* v = member(j, "flags"))
    s.flags = get_strings(*v, "linux.seccomp.flags");
  if (auto* v = member(j, "listenerPath"); v && !get_string(*v, "linux.seccomp.listenerPath").empty())
    fail("linux.seccomp.listenerPath", "is not supported by this runtime");
  if (auto* v = member(j, "syscalls")) {
    each_object(*v, "linux.seccomp.syscalls", [&](const json& e, const std::string& f) {
      seccomp_rule r;
      r.names = get_strings(required(e, "names", f), f + ".names");
      if (r.names.empty())
        fail(f + ".names", "needs at least one syscall");
      r.action = get_string(required(e, "action", f), f + ".action");
      if (auto* er = member(e, "errnoRet"))
        r.errno_ret = get_u32(*er, f + ".errnoRet");
      if (auto* args = member(e, "args"))
        each_object(*args, f + ".args", [&](const json& ae, const std::string& af) {
          seccomp_arg sa;
          sa.index = static_cast<unsigned>(get_int(required(ae, "index", af), af + ".index", 0, 5));
          sa.value = get_uint(required(ae, "value", af), af + ".value");
          if (auto* v2 = member(ae, "valueTwo"))
            sa.value_two = get_uint(*v2, af + ".valueTwo");
          sa.op = get_string(required(ae, "op", af), af + ".op");
          r.args.push_back(sa);
        });
      s.syscalls.push_back(std::move(r));
    });
  }
  return s;
}

linux_config parse_linux(const json& j) {
  need_object(j, "linux");
  linux_config l;
  if (auto* ns = member(j, "namespaces")) {
    each_object(*ns, "linux.namespaces", [&](const json& e, const std::string& f) {
      namespace_entry n;
      n.type = get_string(required(e, "type", f), f + ".type");
      n.flag = namespace_flag(n.type);
      if (n.flag == 0)
        fail(f + ".type", "unknown namespace type \"" + n.type + "\"");
      if (l.find(n.flag))
        fail(f + ".type", "duplicate namespace \"" + n.type + "\"");
      if (auto* p = member(e, "path"))
        n.path = need_absolute(*p, f + ".path");
      l.namespaces.push_back(std::move(n));
    });
  }
  if (auto* m = member(j, "uidMappings"))
    l.uid_mappings = parse_mappings(*m, "linux.uidMappings");
  if (auto* m = member(j, "gidMappings"))
    l.gid_mappings = parse_mappings(*m, "linux.gidMappings");
  auto* userns = l.find(CLONE_NEWUSER);
  if (userns && userns->path.empty() && (l.uid_mappings.empty() || l.gid_mappings.empty()))
    fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings");
  if ((!userns || !userns->path.empty()) && (!l.uid_mappings.empty() || !l.gid_mappings.empty()))
    fail("linux.uidMappings", "mappings need a new user namespace (linux.namespaces type user)");
  if (auto* d = member(j, "devices")) {
    each_object(*d, "linux.devices", [&](const json& e, const std::string& f) {
      device dev;
      auto ts = get_string(required(e, "type", f), f + ".type");
      if (ts.size() != 1 || std::string{"cbup"}.find(ts[0]) == std::string::npos)
        fail(f + ".type", "must be c, b, u or p");
      dev.type = ts[0];
      dev.path = need_absolute(required(e, "path", f), f + ".path");
      if (dev.type != 'p') {
        dev.major = get_int(required(e, "major", f), f + ".major", 0, 0xfff);
        dev.minor = get_int(required(e, "minor", f), f + ".minor", 0, 0xfffff);
      }
      if (auto* v = member(e, "fileMode"))
        dev.file_mode = get_u32(*v, f + ".fileMode");
      if (auto* v = member(e, "uid"))
        dev.uid = get_u32(*v, f + ".uid");
      if (auto* v = member(e, "gid"))
        dev.gid = get_u32(*v, f + ".gid");
      l.devices.push_back(std::move(dev));
    });
  }
  if (auto* c = member(j, "cgroupsPath"))
    l.cgroups_path = get_string(*c, "linux.cgroupsPath");
  if (auto* r = member(j, "resources"))
    parse_resources(*r, l.resources);
  if (auto* s = member(j, "sysctl")) {
    need_object(*s, "linux.sysctl");
    for (auto& [k, v] : s->items()) {
      if (k.empty() || k.find("..") != std::string::npos || k.find('/') == 0)
        fail("linux.sysctl", "bad key \"" + k + "\"");
      l.sysctl[k] = get_string(v, "linux.sysctl." + k);
    }
  }
  if (auto* s = member(j, "seccomp"))
    l.seccomp = parse_seccomp(*s);
  if (auto* p = member(j, "rootfsPropagation")) {
    l.rootfs_propagation = get_string(*p, "linux.rootfsPropagation");
    static const std::set<std::string> ok = {"private", "rprivate", "shared",     "rshared",
                                             "slave",   "rslave",   "unbindable", "runbindable"};
    if (!l.rootfs_propagation.empty() && !ok.count(l.rootfs_propagation))
      fail("linux.rootfsPropagation", "unknown propagation \"" + l.rootfs_propagation + "\"");
  }
  if (auto* m = member(j, "maskedPaths"))
    for (auto& p : (l.masked_paths = get_strings(*m, "linux.maskedPaths")))
      if (p.empty() || p[0] != '/')
        fail("linux.maskedPaths", "\"" + p + "\" must be absolute");
  if (auto* m = member(j, "readonlyPaths"))
    for (auto& p : (l.readonly_paths = get_strings(*m, "linux.readonlyPaths")))
      if (p.empty() || p[0] != '/')
        fail("linux.readonlyPaths", "\"" + p + "\" must be absolute");
  for (auto* key : {"intelRdt", "personality", "timeOffsets", "memoryPolicy"})
    if (member(j, key))
      fail(std::string{"linux."} + key, "is not supported by this runtime");
  if (auto* m = member(j, "mountLabel"); m && !get_string(*m, "linux.mountLabel").empty())
    fail("linux.mountLabel", "is not supported by this runtime (no SELinux support)");
  return l;
}

std::string join_bundle(const std::string& bundle, const std::string& path) {
  if (!path.empty() && path[0] == '/')
    return path;
  return bundle + "/" + path;
}

} // namespace

std::optional<int> capability_from_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (lower.rfind("cap_", 0) != 0)
    return std::nullopt;
  cap_value_t v;
  if (cap_from_name(lower.c_str(), &v) != 0)
    return std::nullopt;
  // libcap also parses plain numbers ("cap_12" is not a name, but "12" would be).
  if (lower.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") != std::string::npos)
    return std::nullopt;
  return static_cast<int>(v);
}

std::string capability_name(int cap) {
  char* n = cap_to_name(cap);
  std::string out = n ? n : std::to_string(cap);
  cap_free(n);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  return out;
}

/// Parses `text` as JSON and hands it to `fn`; a malformed text or a bad field becomes an
/// invalid_argument naming `what` (the JSON file) or the field.
template <class T, class F>
result<T> parse_json_as(const std::string& text, const char* what, F fn) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return invalid(std::string{what} + ": malformed JSON: " + e.what());
  }
  try {
    return fn(j);
  } catch (const bad_field& e) {
    return invalid(e.text);
  } catch (const json::exception& e) {
    return invalid(std::string{what} + ": " + e.what());
  }
}

result<process> parse_process_json(const std::string& text) {
  return parse_json_as<process>(text, "process.json", [](const json& j) { return parse_process(j); });
}

result<resources> parse_resources_json(const std::string& text) {
  return parse_json_as<resources>(text, "resources", [](const json& j) {
    resources r;
    parse_resources(j, r);
    return r;
  });
}

result<config> parse_config(const std::string& text, const std::string& bundle) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    // Found by fuzzing: a number too large for a double is out_of_range, not parse_error.
    return invalid("config.json: malformed JSON: " + std::string{e.what()});
  }
  try {
    need_object(j, "config.json");
    config c;
    c.oci_version = get_string(required(j, "ociVersion", ""), "ociVersion");
    check_version(c.oci_version);
    auto* root = &need_object(required(j, "root", ""), "root");
    auto path = get_string(required(*root, "path", "root"), "root.path");
    if (path.empty())
      fail("root.path", "must not be empty");
    c.root_path = join_bundle(bundle, path);
    if (auto* ro = member(*root, "readonly"))
      c.root_readonly = get_bool(*ro, "root.readonly");
    if (auto* p = member(j, "process"))
      c.process = parse_process(*p);
    if (auto* h = member(j, "hostname"))
      c.hostname = get_string(*h, "hostname");
    if (auto* h = member(j, "domainname"))
      c.domainname = get_string(*h, "domainname");
    if (auto* m = member(j, "mounts")) {
      each_object(*m, "mounts", [&](const json& e, const std::string& f) {
        oci::mount mt;
        mt.destination = need_absolute(required(e, "destination", f), f + ".destination");
        if (auto* t = member(e, "type"))
          mt.type = get_string(*t, f + ".type");
        if (auto* s = member(e, "source"))
          mt.source = get_string(*s, f + ".source");
        if (auto* o = member(e, "options"))
          mt.options = get_strings(*o, f + ".options");
        for (auto* k : {"uidMappings", "gidMappings"})
          if (member(e, k))
            fail(f + "." + k, "idmapped mounts are not supported by this runtime");
        if (!mt.source.empty() && mt.source[0] != '/'
            && (mt.type == "bind" || std::count(mt.options.begin(), mt.options.end(), "bind")
                || std::count(mt.options.begin(), mt.options.end(), "rbind")))
          mt.source = join_bundle(bundle, mt.source);
        c.mounts.push_back(std::move(mt));
      });
    }
    if (auto* h = member(j, "hooks")) {
      need_object(*h, "hooks");
      std::pair<const char*, std::vector<hook>*> lists[] = {
        {"prestart", &c.hooks.prestart},
        {"createRuntime", &c.hooks.create_runtime},
        {"createContainer", &c.hooks.create_container},
        {"startContainer", &c.hooks.start_container},
        {"poststart", &c.hooks.poststart},
        {"poststop", &c.hooks.poststop}};
      for (auto& [name, out] : lists)
        if (auto* l = member(*h, name))
          *out = parse_hooks(*l, std::string{"hooks."} + name);
    }
    if (auto* l = member(j, "linux"))
      c.linux = parse_linux(*l);
    if (!c.linux.find(CLONE_NEWNS))
      fail("linux.namespaces", "needs a mount namespace (this runtime never mounts in the "
                               "host's namespace)");
    // A joined uts namespace gets the hostname too (as with runc); the host's never.
    if (!c.hostname.empty() && !c.linux.find(CLONE_NEWUTS))
      fail("hostname", "needs a uts namespace");
    if (!c.domainname.empty() && !c.linux.find(CLONE_NEWUTS))
      fail("domainname", "needs a uts namespace");
    if (!c.linux.sysctl.empty())
      for (auto& [k, _] : c.linux.sysctl) {
        // Namespaced sysctls only, like runc: others would change the host.
        bool net = k.rfind("net.", 0) == 0, ipc = k.rfind("kernel.msg", 0) == 0
                                                   || k.rfind("kernel.sem", 0) == 0
                                                   || k.rfind("kernel.shm", 0) == 0
                                                   || k.rfind("fs.mqueue.", 0) == 0;
        bool uts = k == "kernel.hostname" || k == "kernel.domainname";
        if (net && !c.linux.find(CLONE_NEWNET))
          fail("linux.sysctl." + k, "needs a network namespace");
        if (ipc && !c.linux.find(CLONE_NEWIPC))
          fail("linux.sysctl." + k, "needs an ipc namespace");
        if (!net && !ipc && !uts)
          fail("linux.sysctl." + k, "is not namespaced; it would change the host");
      }
    if (auto* a = member(j, "annotations")) {
      need_object(*a, "annotations");
      for (auto& [k, v] : a->items()) {
        if (k.empty())
          fail("annotations", "keys must not be empty");
        c.annotations[k] = get_string(v, "annotations." + k);
      }
    }
    return c;
  } catch (const bad_field& e) {
    return invalid(e.text);
  } catch (const json::exception& e) {
    return invalid(std::string{"config.json: "} + e.what());
  }
}

result<config> load_bundle(const std::string& bundle_in) {
  char real[PATH_MAX];
  if (!::realpath(bundle_in.c_str(), real))
    return from_errno(errno, "bundle " + bundle_in);
  std::string bundle = real;
  std::ifstream in{bundle + "/config.json"};
  if (!in)
    return from_errno(errno, "read " + bundle + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse_config(ss.str(), bundle);
  if (!c)
    return c;
  struct stat st{};
  if (::stat(c->root_path.c_str(), &st) != 0)
    return status{"invalid_argument", "root.path " + c->root_path + ": " + std::strerror(errno)};
  if (!S_ISDIR(st.st_mode))
    return invalid("root.path " + c->root_path + ": not a directory");
  for (auto& n : c->linux.namespaces)
    if (!n.path.empty() && ::stat(n.path.c_str(), &st) != 0)
      return invalid("linux.namespaces: " + n.type + " namespace path " + n.path + ": "
                     + std::strerror(errno));
  return c;
}

} // namespace cyto::containers::oci
