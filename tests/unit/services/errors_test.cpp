#define BOOST_TEST_MODULE unit_services_errors
#include <boost/test/unit_test.hpp>

#include "services/errors.hpp"

using namespace cyto;
using namespace cyto::services;

BOOST_AUTO_TEST_CASE(errc_and_capnp_codes_map_both_ways) {
  for (uint8_t i = 0; i <= static_cast<uint8_t>(errc_last); ++i) {
    auto code = static_cast<errc>(i);
    auto wire = to_capnp(code);
    BOOST_TEST(static_cast<uint16_t>(wire) == i);
    BOOST_TEST(static_cast<int>(from_capnp(wire)) == static_cast<int>(code));
  }
  BOOST_TEST(static_cast<int>(from_capnp(static_cast<schema::ErrorCode>(999)))
             == static_cast<int>(errc::internal));
}

BOOST_AUTO_TEST_CASE(bus_error_becomes_a_prefixed_exception_and_back) {
  auto e = to_exception(make_error(errc::permission_denied, "uid 65534 may not"));
  BOOST_TEST(std::string{e.getDescription().cStr()} == "cyto.permission_denied: uid 65534 may not");
  auto [code, text] = from_exception(e);
  BOOST_TEST(static_cast<int>(code) == static_cast<int>(errc::permission_denied));
  BOOST_TEST(text == "uid 65534 may not");
}

BOOST_AUTO_TEST_CASE(foreign_exceptions_become_internal) {
  kj::Exception e(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::str("boom"));
  auto [code, text] = from_exception(e);
  BOOST_TEST(static_cast<int>(code) == static_cast<int>(errc::internal));
  BOOST_TEST(text == "boom");
}

BOOST_AUTO_TEST_CASE(resource_exhausted_is_an_overload) {
  BOOST_TEST((to_exception(errc::resource_exhausted, "queue").getType()
              == kj::Exception::Type::OVERLOADED));
  BOOST_TEST((to_exception(errc::not_found, "x").getType() == kj::Exception::Type::FAILED));
}
