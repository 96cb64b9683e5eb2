#include "actors/vms/qemu_args.hpp"

#include <cstdint>
#include <stdexcept>

namespace cyto::vms {

namespace {

std::string quoted(const std::string& arg) {
  if (!arg.empty() && arg.find_first_of(" \t") == std::string::npos)
    return arg;
  return "\"" + arg + "\"";
}

/// A QEMU option value with its commas doubled (QEMU's escape inside key=value lists).
std::string escaped(const std::string& value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',')
      out += ',';
  }
  return out;
}

/// "a.b.c.d/n" as the kernel's ip= parameter; empty if it is not such an address.
std::string ip_param(const std::string& cidr, const std::string& gateway) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos)
    return {};
  int prefix = 0;
  try {
    prefix = std::stoi(cidr.substr(slash + 1));
  } catch (const std::exception&) {
    return {};
  }
  if (prefix < 0 || prefix > 32)
    return {};
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  auto netmask = std::to_string(mask >> 24) + "." + std::to_string((mask >> 16) & 0xff) + "." +
                 std::to_string((mask >> 8) & 0xff) + "." + std::to_string(mask & 0xff);
  return "ip=" + cidr.substr(0, slash) + "::" + gateway + ":" + netmask + "::eth0:off";
}

} // namespace

std::string kernel_cmdline(const vm_spec& spec, const qemu_launch& how) {
  std::string out = "console=ttyS0";
  if (how.machine == "microvm" && how.accel == "tcg")
    // Without a calibrated TSC the microvm guest waits for timers TCG cannot fake.
    out += " tsc_early_khz=2000000 no_timer_check";
  if (!how.guest_ip.empty())
    if (auto ip = ip_param(how.guest_ip, how.gateway); !ip.empty())
      out += " " + ip;
  if (!spec.cmdline.empty())
    out += " " + spec.cmdline;
  if (!how.init_args.empty()) {
    out += " --";
    for (auto& a : how.init_args)
      out += " " + quoted(a);
  }
  return out;
}

std::vector<std::string> qemu_args(const vm_spec& spec, const qemu_launch& how) {
  bool micro = how.machine == "microvm";
  std::vector<std::string> a{how.qemu, "-name", "cyto-" + spec.name, "-machine", how.machine};
  if (how.accel == "kvm")
    a.insert(a.end(), {"-accel", "kvm", "-cpu", "host"});
  else
    a.insert(a.end(), {"-accel",
                       how.tb_size_mib ? "tcg,tb-size=" + std::to_string(how.tb_size_mib) : "tcg",
                       "-cpu", "max"});
  a.insert(a.end(), {"-smp", std::to_string(spec.vcpus), "-m",
                     std::to_string(spec.memory_bytes >> 20) + "M", "-nodefaults",
                     "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                     "-no-shutdown", "-kernel", spec.kernel});
  if (!spec.initrd.empty())
    a.insert(a.end(), {"-initrd", spec.initrd});
  a.insert(a.end(), {"-append", kernel_cmdline(spec, how)});
  a.insert(a.end(), {"-qmp", "unix:" + escaped(how.qmp_path) + ",server=on,wait=off"});
  // The guest channel, always: the guest's cytod answers on it.
  a.insert(a.end(), {"-device", micro ? "virtio-serial-device,id=vser0" : "virtio-serial-pci,id=vser0",
                     "-chardev",
                     "socket,id=cytoch,path=" + escaped(how.channel_path) + ",server=on,wait=off",
                     "-device",
                     std::string{"virtserialport,chardev=cytoch,name="} + channel_port_name});
  if (!how.tap.empty()) {
    // The tap exists (the network actor made it on the bridge): QEMU only opens it.
    a.insert(a.end(),
             {"-netdev", "tap,id=net0,ifname=" + how.tap + ",script=no,downscript=no", "-device",
              std::string{micro ? "virtio-net-device" : "virtio-net-pci"} + ",netdev=net0" +
                  (how.mac.empty() ? "" : ",mac=" + how.mac)});
  }
  for (size_t i = 0; i < spec.drives.size(); ++i) {
    auto& d = spec.drives[i];
    auto id = "drive" + std::to_string(i);
    auto drive = "file=" + escaped(d.path) + ",format=" + d.format + ",if=none,id=" + id;
    if (d.read_only)
      drive += ",readonly=on";
    a.insert(a.end(), {"-drive", drive, "-device",
                       std::string{micro ? "virtio-blk-device" : "virtio-blk-pci"} + ",drive=" + id});
  }
  return a;
}

} // namespace cyto::vms
