// The cgroup backends against the real kernel (root). Runs the backend this host uses:
// v1 on v1/hybrid hosts, v2 on unified ones (also inside the cgroup v2 QEMU guest).
#define BOOST_TEST_MODULE integration_cgroup_driver
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "actors/cells/cgroup.hpp"
#include "actors/cells/limits.hpp"
#include "actors/node/host_features.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::cells;

namespace {

struct root_required {
  root_required() {
    if (::geteuid() != 0) {
      std::printf("SKIP: cgroup driver tests need root (they create cgroups)\n");
      std::exit(77);
    }
  }
};

BOOST_TEST_GLOBAL_FIXTURE(root_required);

cgroup_mode host_mode() {
  std::ifstream in{"/proc/self/mountinfo"};
  std::stringstream ss;
  ss << in.rdbuf();
  return node::classify(node::parse_cgroup_mounts(ss.str()));
}

std::string trimmed(const std::string& path) {
  auto v = read_file(path);
  BOOST_REQUIRE_MESSAGE(v, "read " << path);
  auto s = *v;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

struct driver_fixture {
  std::string root;
  std::unique_ptr<cgroup_driver> drv;

  driver_fixture() {
    std::random_device rd;
    root = "cyto-test-" + std::to_string(rd() % 1000000);
    drv = make_cgroup_driver(host_mode(), root);
    auto err = drv->init();
    BOOST_REQUIRE_MESSAGE(!err, render(err));
    BOOST_TEST_MESSAGE("cgroup backend " << to_string(drv->mode()) << " root " << root);
  }

  ~driver_fixture() {
    auto err = drv->destroy_root();
    if (err)
      BOOST_TEST_MESSAGE("cleanup: " << render(err));
  }

  /// A child that sleeps until killed; returns its pid.
  static pid_t sleeper() {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    return pid;
  }

  static void reap(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

} // namespace

BOOST_FIXTURE_TEST_SUITE(cgroup_driver_tests, driver_fixture)

BOOST_AUTO_TEST_CASE(limits_land_in_cgroup_files) {
  cell_limits l;
  l.cpu_weight = 50;
  l.cpu_max_quota_us = 50000;
  l.cpu_max_period_us = 100000;
  l.memory_max = 256ull << 20;
  l.pids_max = 42;
  l.cpuset_cpus = "0";
  auto err = drv->create("web", l);
  BOOST_REQUIRE_MESSAGE(!err, render(err));
  BOOST_TEST(drv->exists("web"));
  BOOST_TEST(trimmed(drv->file("web", "memory.max")) == std::to_string(256ull << 20));
  BOOST_TEST(trimmed(drv->file("web", "pids.max")) == "42");
  BOOST_TEST(trimmed(drv->file("web", "cpuset.cpus")) == "0");
  if (drv->mode() == cgroup_mode::v2) {
    BOOST_TEST(trimmed(drv->file("web", "cpu.weight")) == "50");
    BOOST_TEST(trimmed(drv->file("web", "cpu.max")) == "50000 100000");
  } else {
    BOOST_TEST(trimmed(drv->file("web", "cpu.weight")) == "512"); // cpu.shares
    BOOST_TEST(trimmed(drv->file("web", "cpu.max")) == "50000");  // cfs_quota_us
    BOOST_TEST(trimmed(drv->file("web", "cpu.max.period")) == "100000");
  }
  BOOST_TEST(!drv->remove("web"));
  BOOST_TEST(!drv->exists("web"));
}

BOOST_AUTO_TEST_CASE(attached_process_is_in_the_cell) {
  BOOST_REQUIRE(!drv->create("box", {}));
  auto pid = sleeper();
  auto err = drv->attach("box", pid);
  BOOST_REQUIRE_MESSAGE(!err, render(err));
  auto pids = drv->pids("box");
  BOOST_TEST((std::find(pids.begin(), pids.end(), pid) != pids.end()));
  std::ifstream in{"/proc/" + std::to_string(pid) + "/cgroup"};
  std::stringstream ss;
  ss << in.rdbuf();
  BOOST_TEST(ss.str().find("/" + root + "/box/_") != std::string::npos, ss.str());
  // A cell with a process cannot be removed.
  auto busy = drv->remove("box");
  BOOST_TEST(static_cast<int>(code_of(busy)) == static_cast<int>(errc::failed_precondition));
  reap(pid);
  for (int i = 0; i < 100 && !drv->pids("box").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_TEST(!drv->remove("box"));
}

BOOST_AUTO_TEST_CASE(nested_cell_lives_under_its_parent) {
  cell_limits parent;
  parent.memory_max = 512ull << 20;
  BOOST_REQUIRE(!drv->create("p", parent));
  cell_limits child;
  child.memory_max = 128ull << 20;
  BOOST_REQUIRE(!drv->create("p/c", child));
  auto f = drv->file("p/c", "memory.max");
  BOOST_TEST(f.find("/" + root + "/p/c/") != std::string::npos);
  BOOST_TEST(trimmed(f) == std::to_string(128ull << 20));
  auto pid = sleeper();
  BOOST_REQUIRE(!drv->attach("p/c", pid));
  auto pids = drv->pids("p"); // includes nested cells
  BOOST_TEST((std::find(pids.begin(), pids.end(), pid) != pids.end()));
  reap(pid);
  for (int i = 0; i < 100 && !drv->pids("p").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  BOOST_TEST(!drv->remove("p/c"));
  BOOST_TEST(!drv->remove("p"));
}

BOOST_AUTO_TEST_CASE(failed_create_leaves_nothing_behind) {
  BOOST_REQUIRE(!drv->create("dup", {}));
  auto again = drv->create("dup", {});
  BOOST_TEST(static_cast<int>(code_of(again)) == static_cast<int>(errc::already_exists));
  BOOST_TEST(drv->exists("dup")); // the first one is untouched
  cell_limits bad;
  bad.cpuset_cpus = "0-4095"; // passes the syntax check here, refused by the kernel
  auto err = drv->create("badcpus", bad);
  BOOST_TEST(static_cast<bool>(err));
  BOOST_TEST(!drv->exists("badcpus"));
  BOOST_TEST(!drv->remove("dup"));
}

BOOST_AUTO_TEST_CASE(unsupported_limits_are_refused_before_writing) {
  cell_limits l;
  l.memory_min = 1 << 20;
  auto err = drv->create("nomin", l);
  if (drv->mode() == cgroup_mode::v1) {
    BOOST_TEST(static_cast<int>(code_of(err)) == static_cast<int>(errc::invalid_argument));
    BOOST_TEST(render(err).find("not supported with cgroup v1") != std::string::npos);
    BOOST_TEST(!drv->exists("nomin"));
  } else {
    BOOST_TEST(!err);
    BOOST_TEST(trimmed(drv->file("nomin", "memory.min")) == std::to_string(1 << 20));
    BOOST_TEST(!drv->remove("nomin"));
  }
}

BOOST_AUTO_TEST_SUITE_END()
