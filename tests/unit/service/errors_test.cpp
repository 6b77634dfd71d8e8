// One mapping from any module's error to a class, an HTTP status and a stable name.
#include "healer/pool/errors.hpp"

#include <gtest/gtest.h>

#include "healer/core/config_loader.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/errors.hpp"
#include "healer/store/errors.hpp"

namespace healer::service {
namespace {

TEST(Errors, ClassesAndHttpStatuses) {
  const std::pair<Error, int> cases[] = {
      {make_error(Errc::invalid_input, "x"), 400},
      {make_error(Errc::not_found, "x"), 404},
      {make_error(Errc::conflict, "x"), 409},
      {make_error(Errc::unauthorized, "x"), 401},
      {make_error(Errc::too_large, "x"), 413},
      {make_error(Errc::rate_limited, "x"), 429},
      {Error{store::make_error_code(store::Errc::wrong_master_key), ""}, 503},
      {Error{store::make_error_code(store::Errc::not_found), ""}, 404},
      {Error{store::make_error_code(store::Errc::duplicate_name), ""}, 409},
      {Error{ssh::make_error_code(ssh::Errc::auth_failed), ""}, 502},
      {Error{ssh::make_error_code(ssh::Errc::timeout), ""}, 504},
      {Error{pool::make_error_code(pool::Errc::pool_exhausted), ""}, 503},
      {Error{pool::make_error_code(pool::Errc::unknown_server), ""}, 404},
      {Error{config::make_error_code(config::Errc::invalid_value), ""}, 400},
      {Error{std::make_error_code(std::errc::invalid_argument), ""}, 400},
      {make_error(Errc::internal, "x"), 500},
  };
  for (const auto& [error, status] : cases) {
    EXPECT_EQ(http_status(error), status) << error.message();
  }
}

TEST(Errors, StableNames) {
  EXPECT_EQ(error_name(Error{ssh::make_error_code(ssh::Errc::host_key_changed), ""}),
            "host_key_changed");
  EXPECT_EQ(error_name(Error{pool::make_error_code(pool::Errc::circuit_open), ""}), "circuit_open");
  EXPECT_EQ(error_name(Error{store::make_error_code(store::Errc::busy), ""}), "busy");
  EXPECT_EQ(error_name(make_error(Errc::rate_limited, "")), "rate_limited");
  EXPECT_EQ(error_name(Error{config::make_error_code(config::Errc::unknown_key), ""}),
            "unknown_key");
  EXPECT_NE(category_named("ssh"), nullptr);
  EXPECT_NE(category_named("service"), nullptr);
  EXPECT_EQ(category_named("bogus"), nullptr);
}

}  // namespace
}  // namespace healer::service
