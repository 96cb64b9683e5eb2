#define BOOST_TEST_MODULE unit_actors_cells_limits
#include <boost/test/unit_test.hpp>

#include "actors/cells/limits.hpp"
#include "bus/errc.hpp"

using namespace cyto;
using namespace cyto::cells;

namespace {

bool invalid(const caf::error& e) {
  return code_of(e) == errc::invalid_argument;
}

} // namespace

BOOST_AUTO_TEST_CASE(good_names_pass) {
  for (auto* n : {"web", "a/b", "a.b-c_d/e2", "x/y/z"})
    BOOST_TEST(!check_name(n), n);
}

BOOST_AUTO_TEST_CASE(bad_names_are_refused) {
  std::string long_name(256, 'a');
  std::string nonprint = "a\x01";
  for (std::string n : {std::string{}, std::string{".."}, std::string{"/abs"}, std::string{"a//b"},
                        std::string{"a/../b"}, std::string{"a/"}, std::string{"_"},
                        std::string{"a/_"}, std::string{"sp ace"}, long_name, nonprint})
    BOOST_TEST(invalid(check_name(n)), "name '" << n << "'");
}

BOOST_AUTO_TEST_CASE(cpu_lists_parse) {
  BOOST_TEST((*parse_cpu_list("0-2,5") == std::vector<int>{0, 1, 2, 5}));
  BOOST_TEST((*parse_cpu_list("3\n") == std::vector<int>{3}));
  BOOST_TEST(!parse_cpu_list("2-1"));
  BOOST_TEST(!parse_cpu_list("a"));
  BOOST_TEST(!parse_cpu_list(""));
}

BOOST_AUTO_TEST_CASE(limit_ranges_are_checked) {
  std::vector<int> cpus{0, 1};
  cell_limits l;
  BOOST_TEST(!check_limits(l, cpus));
  l.cpu_weight = 10001;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l = {};
  l.cpu_max_quota_us = 300000; // 3 cpus' worth on a 2-cpu host
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l.cpu_max_quota_us = 150000;
  BOOST_TEST(!check_limits(l, cpus));
  l = {};
  l.cpu_max_period_us = 10;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l = {};
  l.memory_high = 512 << 20;
  l.memory_max = 256 << 20;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l = {};
  l.memory_max = 100;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l = {};
  l.cpuset_cpus = "0-7";
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l.cpuset_cpus = "1";
  BOOST_TEST(!check_limits(l, cpus));
  l = {};
  l.io_max.push_back({"sda", 1, 0, 0, 0});
  BOOST_TEST(invalid(check_limits(l, cpus)));
}

// 2^64-1 bytes was accepted and echoed although the kernel stores another value.
BOOST_AUTO_TEST_CASE(limits_beyond_what_the_kernel_holds_are_refused) {
  std::vector<int> cpus{0, 1};
  cell_limits l;
  l.memory_max = UINT64_MAX;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l.memory_max = uint64_t{1} << 62; // large but representable
  BOOST_TEST(!check_limits(l, cpus));
  l = {};
  l.memory_high = UINT64_MAX - 1;
  BOOST_TEST(invalid(check_limits(l, cpus)));
  l = {};
  l.pids_max = 4194304;
  BOOST_TEST(!check_limits(l, cpus));
  l.pids_max = 4194305;
  BOOST_TEST(invalid(check_limits(l, cpus)));
}
