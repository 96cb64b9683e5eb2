// The accelerator rule: KVM only when a hardware vendor module backs /dev/kvm.
#define BOOST_TEST_MODULE vm_accel
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "actors/vms/accel.hpp"

namespace fs = std::filesystem;
using cyto::vms::choose_accel;

namespace {

/// A fake /sys/module and /dev/kvm in a temp dir (a regular file opens read-write too).
struct fake_host {
  fs::path root;
  fake_host() {
    char tmpl[] = "/tmp/cyto-unit-accel-XXXXXX";
    root = ::mkdtemp(tmpl);
    fs::create_directories(root / "module" / "kvm");
  }
  ~fake_host() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  void module(const char* name) { fs::create_directories(root / "module" / name); }
  void device() { std::ofstream{root / "kvm"}; }
  std::string sys() const { return (root / "module").string(); }
  std::string dev() const { return (root / "kvm").string(); }
};

} // namespace

BOOST_AUTO_TEST_CASE(paravirtual_kvm_gets_tcg) {
  fake_host h;
  h.module("kvm_pvm");
  h.device();
  auto c = choose_accel(h.sys(), h.dev());
  BOOST_TEST(c.accel == "tcg");
  BOOST_TEST(c.kvm_device);
  BOOST_TEST(c.kvm_module == "kvm_pvm");
  BOOST_TEST(c.reason.find("paravirtual") != std::string::npos, c.reason);
}

BOOST_AUTO_TEST_CASE(hardware_kvm_gets_kvm) {
  for (const char* m : {"kvm_intel", "kvm_amd"}) {
    fake_host h;
    h.module(m);
    h.device();
    auto c = choose_accel(h.sys(), h.dev());
    BOOST_TEST(c.accel == "kvm", m);
    BOOST_TEST(c.kvm_module == m);
  }
}

BOOST_AUTO_TEST_CASE(missing_device_gets_tcg_even_with_a_vendor_module) {
  fake_host h;
  h.module("kvm_intel");
  auto c = choose_accel(h.sys(), h.dev());
  BOOST_TEST(c.accel == "tcg");
  BOOST_TEST(!c.kvm_device);
  BOOST_TEST(c.reason.find("missing") != std::string::npos, c.reason);
}

BOOST_AUTO_TEST_CASE(device_without_vendor_module_gets_tcg) {
  fake_host h;
  h.device();
  auto c = choose_accel(h.sys(), h.dev());
  BOOST_TEST(c.accel == "tcg");
  BOOST_TEST(c.kvm_module.empty());
}
