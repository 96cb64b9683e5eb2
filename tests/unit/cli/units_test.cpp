#define BOOST_TEST_MODULE unit_cli_units
#include <boost/test/unit_test.hpp>

#include "cli/units.hpp"

using namespace cyto::cli;

BOOST_AUTO_TEST_CASE(sizes_parse_with_binary_units) {
  BOOST_TEST(*parse_size("1024") == 1024u);
  BOOST_TEST(*parse_size("512K") == 512u * 1024);
  BOOST_TEST(*parse_size("256M") == 256ull << 20);
  BOOST_TEST(*parse_size("1GiB") == 1ull << 30);
  BOOST_TEST(*parse_size("2g") == 2ull << 30);
}

BOOST_AUTO_TEST_CASE(bad_sizes_are_refused) {
  for (auto* s : {"", "-1", "1X", "M", "1.5G", "99999999999999999999", "17179869184T"})
    BOOST_TEST(!parse_size(s).has_value(), s);
}

BOOST_AUTO_TEST_CASE(durations_and_cpu_max_parse) {
  BOOST_TEST(*parse_duration_us("50ms") == 50000u);
  BOOST_TEST(*parse_duration_us("2s") == 2000000u);
  BOOST_TEST(*parse_duration_us("500us") == 500u);
  BOOST_TEST(!parse_duration_us("5h").has_value());
  auto c = parse_cpu_max("50ms/100ms");
  BOOST_REQUIRE(c.has_value());
  BOOST_TEST(c->quota_us == 50000u);
  BOOST_TEST(c->period_us == 100000u);
  BOOST_TEST(parse_cpu_max("max")->quota_us == UINT64_MAX);
  BOOST_TEST(parse_cpu_max("20ms")->period_us == 0u);
  BOOST_TEST(!parse_cpu_max("50ms/0").has_value());
  BOOST_TEST(!parse_cpu_max("lots").has_value());
}

BOOST_AUTO_TEST_CASE(signals_parse_by_name_or_number) {
  BOOST_TEST(*parse_signal("TERM") == 15);
  BOOST_TEST(*parse_signal("SIGKILL") == 9);
  BOOST_TEST(*parse_signal("usr1") == 10);
  BOOST_TEST(*parse_signal("2") == 2);
  BOOST_TEST(!parse_signal("0").has_value());
  BOOST_TEST(!parse_signal("NOPE").has_value());
}

BOOST_AUTO_TEST_CASE(sizes_render_for_humans) {
  BOOST_TEST(human_size(256ull << 20) == "256MiB");
  BOOST_TEST(human_size(1536) == "1.5KiB");
  BOOST_TEST(human_size(100) == "100B");
}
