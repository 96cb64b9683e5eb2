#define BOOST_TEST_MODULE unit_actors_node
#include <boost/test/unit_test.hpp>

#include "actors/node/host_features.hpp"

using namespace cyto;
using namespace cyto::node;

namespace {

constexpr const char* hybrid_mountinfo =
  "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
  "32 25 0:27 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"
  "33 32 0:28 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
  "34 32 0:29 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd\n"
  "37 32 0:32 / /sys/fs/cgroup/cpu,cpuacct rw shared:15 - cgroup cgroup rw,cpu,cpuacct\n"
  "38 32 0:33 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory\n";

constexpr const char* v2_mountinfo =
  "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
  "rw,nsdelegate,memory_recursiveprot\n";

} // namespace

BOOST_AUTO_TEST_CASE(hybrid_host_is_recognised_with_its_v1_controllers) {
  auto mounts = parse_cgroup_mounts(hybrid_mountinfo);
  BOOST_REQUIRE_EQUAL(mounts.size(), 4u);
  BOOST_TEST(mounts[0].v2);
  BOOST_TEST(mounts[0].path == "/sys/fs/cgroup/unified");
  BOOST_TEST(mounts[1].controllers.empty()); // name=systemd is no controller
  BOOST_TEST(mounts[2].controllers == (std::vector<std::string>{"cpu", "cpuacct"}));
  BOOST_TEST(static_cast<int>(classify(mounts)) == static_cast<int>(cgroup_mode::hybrid));
}

BOOST_AUTO_TEST_CASE(unified_host_is_v2) {
  auto mounts = parse_cgroup_mounts(v2_mountinfo);
  BOOST_REQUIRE_EQUAL(mounts.size(), 1u);
  BOOST_TEST(static_cast<int>(classify(mounts)) == static_cast<int>(cgroup_mode::v2));
}

BOOST_AUTO_TEST_CASE(legacy_host_is_v1_and_none_is_unknown) {
  auto mounts = parse_cgroup_mounts(
    "38 32 0:33 / /sys/fs/cgroup/memory rw shared:16 - cgroup cgroup rw,memory\n");
  BOOST_TEST(static_cast<int>(classify(mounts)) == static_cast<int>(cgroup_mode::v1));
  BOOST_TEST(static_cast<int>(classify(parse_cgroup_mounts("garbage\n\n - \n")))
             == static_cast<int>(cgroup_mode::unknown));
}

BOOST_AUTO_TEST_CASE(detection_on_this_host_is_consistent) {
  auto f = detect_host_features();
  BOOST_TEST(!f.kernel_release.empty());
  BOOST_TEST(!f.namespaces.empty());
  BOOST_TEST(std::is_sorted(f.namespaces.begin(), f.namespaces.end()));
  if (f.ebpf)
    BOOST_TEST(f.btf); // ebpf is reported only with BTF
  BOOST_TEST(f.ebpf == f.ebpf_detail.empty(), "a reason exactly when ebpf is off: " << f.ebpf_detail);
}
