#pragma once
// A QEMU guest booting the image deploy/make-vm-image makes (cytod as its init), with
// the channel arguments the vms actor gives every VM: its socket at
// <host state>/vms/<name>/channel.sock. Shared by the vm_guest test and vm_guest_bench.

#include <memory>
#include <string>

#include "tests/integration/daemon_fixture.hpp"

namespace cyto::test {

/// The guest image, made once for all tests (or the reason there is none).
struct guest_image {
  temp_dir dir;
  std::string skip;

  guest_image() {
    if (::access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
      skip = "qemu-system-x86_64 not found (install qemu-system-x86, see deploy/install-deps)";
      return;
    }
    auto r = run_process({std::string{CYTO_SOURCE_DIR} + "/deploy/make-vm-image", dir / "image",
                          "--cytod", cytod_path},
                         120s);
    if (r.code() == 77)
      skip = "no guest kernel could be had: " + r.err;
    else if (r.code() != 0)
      throw std::runtime_error("make-vm-image failed (" + describe_status(r.status) + "): " + r.err);
  }
  std::string file(const std::string& name) const {
    return dir / ("image/" + name);
  }
};

inline guest_image& image() {
  static guest_image img;
  return img;
}

inline void skip_without_image() {
  if (!image().skip.empty()) {
    std::printf("SKIP: %s\n", image().skip.c_str());
    std::fflush(stdout);
    std::exit(77);
  }
}

/// One QEMU guest booting the image, its channel where the host daemon looks for it.
class guest_vm {
public:
  guest_vm(const daemon_fixture& host, const std::string& name) : name_(name) {
    auto vm_dir = host.state_dir() + "/vms/" + name;
    std::filesystem::create_directories(vm_dir);
    channel_ = vm_dir + "/channel.sock";
    qmp_ = vm_dir + "/qmp.sock";
    serial_ = vm_dir + "/console.log";
    auto cmdline = lines_of(read_text(image().file("cmdline"))).at(0);
    qemu_ = std::make_unique<child_process>(
      std::vector<std::string>{
        "/usr/bin/qemu-system-x86_64", "-M", "q35", "-accel", "tcg", "-cpu", "max", "-m", "384",
        "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", image().file("vmlinuz"), "-initrd", image().file("initramfs.cpio"),
        "-append", cmdline, "-serial", "file:" + serial_, "-qmp",
        "unix:" + qmp_ + ",server=on,wait=off", "-device", "virtio-serial-pci,id=vser0",
        "-chardev", "socket,id=cytoch,path=" + channel_ + ",server=on,wait=off", "-device",
        "virtserialport,chardev=cytoch,name=org.cyto.channel.0"},
      vm_dir + "/qemu.log");
  }

  const std::string& name() const {
    return name_;
  }
  std::string console() const {
    return read_text(serial_);
  }
  pid_t pid() const {
    return qemu_->pid();
  }

  /// Waits for QEMU to exit; returns its exit code, or throws after the timeout.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto st = wait_pid_for(qemu_->pid(), timeout);
    if (!st)
      throw std::runtime_error("QEMU did not exit within " + std::to_string(timeout.count())
                               + " ms; console:\n" + console());
    exited_ = true;
    return exit_code(*st);
  }

  /// Sends one QMP command (after the capabilities handshake); returns the reply line.
  std::string qmp(const std::string& command) {
    int fd = connect_unix(qmp_);
    auto send_line = [fd](const std::string& line) {
      auto text = line + "\n";
      if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        throw std::runtime_error("write to QMP failed");
    };
    std::string buf;
    auto read_reply = [&](const char* key) {
      auto deadline = steady::now() + 10s;
      while (steady::now() < deadline) {
        for (auto& line : lines_of(buf))
          if (contains(line, key))
            return line;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 200) > 0) {
          char chunk[4096];
          auto n = ::read(fd, chunk, sizeof(chunk));
          if (n <= 0)
            break;
          buf.append(chunk, static_cast<size_t>(n));
        }
      }
      throw std::runtime_error(std::string{"no QMP "} + key + " in: " + buf);
    };
    read_reply("\"QMP\"");
    send_line(R"({"execute":"qmp_capabilities"})");
    read_reply("\"return\"");
    buf.clear();
    send_line(R"({"execute":")" + command + R"("})");
    auto reply = read_reply("\"return\"");
    ::close(fd);
    return reply;
  }

  ~guest_vm() {
    if (!exited_)
      qemu_.reset(); // SIGKILL and reap
  }

private:
  std::string name_, channel_, qmp_, serial_;
  std::unique_ptr<child_process> qemu_;
  bool exited_ = false;
};

} // namespace cyto::test
