#define BOOST_TEST_MODULE unit_bus_errc
#include <boost/test/unit_test.hpp>

#include <caf/sec.hpp>

#include "bus/errc.hpp"

using namespace cyto;

BOOST_AUTO_TEST_CASE(every_code_round_trips_through_its_name) {
  for (uint8_t i = 0; i <= static_cast<uint8_t>(errc_last); ++i) {
    auto code = static_cast<errc>(i);
    auto name = to_string(code);
    BOOST_TEST(name != "unknown");
    auto back = errc_from_string(name);
    BOOST_REQUIRE(back.has_value());
    BOOST_TEST(static_cast<int>(*back) == static_cast<int>(code));
  }
  BOOST_TEST(!errc_from_string("no_such_code").has_value());
  BOOST_TEST(to_string(static_cast<errc>(200)) == "unknown");
}

BOOST_AUTO_TEST_CASE(codes_are_pinned) {
  // These numbers cross the wire; changing one breaks every client.
  BOOST_TEST(static_cast<int>(errc::not_found) == 1);
  BOOST_TEST(static_cast<int>(errc::invalid_argument) == 3);
  BOOST_TEST(static_cast<int>(errc::permission_denied) == 4);
  BOOST_TEST(static_cast<int>(errc::unavailable) == 6);
  BOOST_TEST(static_cast<int>(errc::timeout) == 11);
}

BOOST_AUTO_TEST_CASE(render_and_parse_are_inverse) {
  auto err = make_error(errc::not_found, "cell web: no such cell");
  BOOST_TEST(render(err) == "cyto.not_found: cell web: no such cell");
  auto parsed = parse_rendered("remote exception: " + render(err));
  BOOST_REQUIRE(parsed.has_value());
  BOOST_TEST(static_cast<int>(parsed->first) == static_cast<int>(errc::not_found));
  BOOST_TEST(parsed->second == "cell web: no such cell");
  BOOST_TEST(!parse_rendered("plain failure").has_value());
  BOOST_TEST(!parse_rendered("cyto.bogus: x").has_value());
}

BOOST_AUTO_TEST_CASE(caf_system_errors_map_to_cyto_codes) {
  BOOST_TEST(static_cast<int>(code_of(caf::make_error(caf::sec::request_receiver_down)))
             == static_cast<int>(errc::unavailable));
  BOOST_TEST(static_cast<int>(code_of(caf::make_error(caf::sec::request_timeout)))
             == static_cast<int>(errc::timeout));
  BOOST_TEST(static_cast<int>(code_of(caf::make_error(caf::sec::unexpected_message)))
             == static_cast<int>(errc::invalid_argument));
  BOOST_TEST(static_cast<int>(code_of(caf::error{})) == static_cast<int>(errc::ok));
  BOOST_TEST(render(caf::make_error(caf::sec::request_receiver_down)).rfind("cyto.unavailable: ", 0)
             == 0u);
}
