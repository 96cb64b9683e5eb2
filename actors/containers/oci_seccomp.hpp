#pragma once
// linux.seccomp -> a libseccomp filter. The filter is compiled in the runtime before the
// container process exists (so an unknown syscall or action is an error that leaves
// nothing behind) and loaded by the container process just before exec.

#include <memory>

#include "actors/containers/oci_spec.hpp"

namespace cyto::containers {

class seccomp_filter {
public:
  explicit seccomp_filter(void* ctx) noexcept : ctx_(ctx) {}
  ~seccomp_filter();
  seccomp_filter(const seccomp_filter&) = delete;
  seccomp_filter& operator=(const seccomp_filter&) = delete;

  /// Installs the filter on the calling thread; returns the negative errno of libseccomp.
  int load() const noexcept;

private:
  void* ctx_;
};

/// Compiles a profile; errors name the field ("linux.seccomp.syscalls[2].names[0]: unknown
/// syscall \"foo\"").
result<std::unique_ptr<seccomp_filter>> compile_seccomp(const oci::seccomp& profile);

/// The default profile a container gets when asked for one (`cyto-runtime
/// --default-seccomp`, or an image without its own): like podman's, everything a normal
/// program needs is allowed and the calls that reach beyond the container (kernel
/// modules, kexec, reboot, swap, clock setting, keyrings, bpf, perf, ptrace of other
/// tasks, mount) fail with EPERM.
oci::seccomp default_seccomp_profile();

} // namespace cyto::containers
