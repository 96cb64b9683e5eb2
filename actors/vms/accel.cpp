#include "actors/vms/accel.hpp"

#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

namespace cyto::vms {

accel_choice choose_accel(const std::string& sys_module, const std::string& dev_kvm) {
  accel_choice c;
  if (int fd = ::open(dev_kvm.c_str(), O_RDWR | O_CLOEXEC); fd >= 0) {
    c.kvm_device = true;
    ::close(fd);
  }
  std::error_code ec;
  for (const char* m : {"kvm_intel", "kvm_amd", "kvm_pvm"}) {
    if (std::filesystem::is_directory(std::filesystem::path{sys_module} / m, ec)) {
      c.kvm_module = m;
      break;
    }
  }
  if (!c.kvm_device) {
    c.accel = "tcg";
    c.reason = dev_kvm + " missing or not openable";
  } else if (c.kvm_module == "kvm_intel" || c.kvm_module == "kvm_amd") {
    c.accel = "kvm";
    c.reason = "hardware-backed " + dev_kvm + " (" + c.kvm_module + ")";
  } else if (c.kvm_module == "kvm_pvm") {
    c.accel = "tcg";
    c.reason = dev_kvm + " is paravirtual (kvm_pvm) and cannot boot a stock kernel";
  } else {
    c.accel = "tcg";
    c.reason = dev_kvm + " has no kvm_intel or kvm_amd module behind it";
  }
  return c;
}

} // namespace cyto::vms
