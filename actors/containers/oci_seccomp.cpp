#include "actors/containers/oci_seccomp.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <seccomp.h>

namespace cyto::containers {

namespace {

struct bad {
  std::string text;
};

uint32_t action_of(const std::string& name, std::optional<unsigned> errno_ret,
                   const std::string& field) {
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_THREAD") return SCMP_ACT_KILL_THREAD;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  if (name == "SCMP_ACT_TRAP") return SCMP_ACT_TRAP;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_TRACE") return SCMP_ACT_TRACE(errno_ret.value_or(EPERM));
  if (name == "SCMP_ACT_NOTIFY")
    throw bad{field + ": SCMP_ACT_NOTIFY is not supported by this runtime"};
  throw bad{field + ": unknown seccomp action \"" + name + "\""};
}

scmp_compare op_of(const std::string& op, const std::string& field) {
  if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (op == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
  if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  throw bad{field + ": unknown seccomp operator \"" + op + "\""};
}

uint32_t arch_of(const std::string& name, const std::string& field) {
  if (name.rfind("SCMP_ARCH_", 0) != 0)
    throw bad{field + ": unknown architecture \"" + name + "\""};
  std::string lower = name.substr(10);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  uint32_t a = seccomp_arch_resolve_name(lower.c_str());
  if (a == 0)
    throw bad{field + ": unknown architecture \"" + name + "\""};
  return a;
}

} // namespace

seccomp_filter::~seccomp_filter() {
  seccomp_release(static_cast<scmp_filter_ctx>(ctx_));
}

int seccomp_filter::load() const noexcept {
  return seccomp_load(static_cast<scmp_filter_ctx>(ctx_));
}

result<std::unique_ptr<seccomp_filter>> compile_seccomp(const oci::seccomp& p) {
  scmp_filter_ctx ctx = nullptr;
  try {
    auto def = action_of(p.default_action, p.default_errno_ret, "linux.seccomp.defaultAction");
    ctx = seccomp_init(def);
    if (!ctx)
      return status{"internal", "seccomp_init failed"};
    auto guard = std::make_unique<seccomp_filter>(ctx);
    // libseccomp sets no_new_privs itself unless told not to: that is process.noNewPrivileges'
    // job, and a container without it must not get it from its seccomp profile.
    if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); rc != 0)
      return status{"internal", std::string{"seccomp: clear the NNP attribute: "} + std::strerror(-rc)};
    for (size_t i = 0; i < p.architectures.size(); ++i) {
      auto f = "linux.seccomp.architectures[" + std::to_string(i) + "]";
      auto a = arch_of(p.architectures[i], f);
      int rc = seccomp_arch_add(ctx, a);
      if (rc != 0 && rc != -EEXIST)
        throw bad{f + ": " + std::strerror(-rc)};
    }
    for (size_t i = 0; i < p.flags.size(); ++i) {
      auto& fl = p.flags[i];
      int rc = 0;
      if (fl == "SECCOMP_FILTER_FLAG_TSYNC")
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
      else if (fl == "SECCOMP_FILTER_FLAG_LOG")
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
      else if (fl == "SECCOMP_FILTER_FLAG_SPEC_ALLOW")
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_SSB, 1);
      else
        throw bad{"linux.seccomp.flags[" + std::to_string(i) + "]: unknown flag \"" + fl + "\""};
      if (rc != 0)
        throw bad{"linux.seccomp.flags[" + std::to_string(i) + "]: " + std::strerror(-rc)};
    }
    // The runtime's own last steps (until execve) run under the filter when
    // noNewPrivileges is off; a rule equal to the default action is simply skipped.
    for (size_t i = 0; i < p.syscalls.size(); ++i) {
      auto& r = p.syscalls[i];
      auto f = "linux.seccomp.syscalls[" + std::to_string(i) + "]";
      auto act = action_of(r.action, r.errno_ret, f + ".action");
      std::vector<scmp_arg_cmp> cmps;
      for (size_t k = 0; k < r.args.size(); ++k) {
        auto& a = r.args[k];
        cmps.push_back({a.index, op_of(a.op, f + ".args[" + std::to_string(k) + "].op"), a.value,
                        a.value_two});
      }
      for (size_t n = 0; n < r.names.size(); ++n) {
        int nr = seccomp_syscall_resolve_name(r.names[n].c_str());
        if (nr == __NR_SCMP_ERROR)
          throw bad{f + ".names[" + std::to_string(n) + "]: unknown syscall \"" + r.names[n]
                    + "\""};
        if (act == def)
          continue;
        int rc = seccomp_rule_add_array(ctx, act, nr, cmps.size(), cmps.data());
        if (rc != 0)
          throw bad{f + ".names[" + std::to_string(n) + "] (" + r.names[n]
                    + "): " + std::strerror(-rc)};
      }
    }
    return guard;
  } catch (const bad& b) {
    return invalid(b.text);
  }
}

oci::seccomp default_seccomp_profile() {
  oci::seccomp p;
  p.default_action = "SCMP_ACT_ALLOW";
  oci::seccomp_rule deny;
  deny.action = "SCMP_ACT_ERRNO";
  deny.errno_ret = EPERM;
  deny.names = {"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
                "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
                "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
                "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind",
                "mount", "mount_setattr", "move_mount", "move_pages", "nfsservctl",
                "open_by_handle_at", "open_tree", "perf_event_open", "personality",
                "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
                "query_module", "quotactl", "reboot", "request_key", "set_mempolicy",
                "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs",
                "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat",
                "vm86", "vm86old"};
  // Drop names this libseccomp does not know (old ones on new arches, new ones on old
  // libseccomp) so the built-in profile always compiles.
  deny.names.erase(std::remove_if(deny.names.begin(), deny.names.end(),
                                  [](const std::string& n) {
                                    return seccomp_syscall_resolve_name(n.c_str())
                                           == __NR_SCMP_ERROR;
                                  }),
                   deny.names.end());
  p.syscalls.push_back(std::move(deny));
  return p;
}

} // namespace cyto::containers
