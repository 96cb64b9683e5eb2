// Built instead of probe.cpp when clang, bpftool, libbpf or the kernel's BTF
// was missing at configure time: the daemon builds and runs without events.
#include "ebpf/probe.hpp"

namespace cyto::ebpf {

std::unique_ptr<probe> probe::open(std::string& why) {
  return open(why, probe_options{});
}

std::unique_ptr<probe> probe::open(std::string& why, const probe_options&) {
  why = "built without eBPF programs: " CYTO_EBPF_UNAVAILABLE;
  return nullptr;
}

bool probe::supported(std::string& why) {
  why = "built without eBPF programs: " CYTO_EBPF_UNAVAILABLE;
  return false;
}

} // namespace cyto::ebpf
