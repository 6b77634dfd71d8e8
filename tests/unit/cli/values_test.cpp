// Values CLI11 alone would accept too loosely: ports in octal or hex, timeouts NaN or infinite.
#include "values.hpp"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <limits>

namespace healer::cli {
namespace {

TEST(Timeout, RejectsNanInfinityZeroNegativeAndMoreThanADay) {
  EXPECT_EQ(*timeout_from_seconds(2.5, "--timeout"), std::chrono::milliseconds(2500));
  EXPECT_EQ(*timeout_from_seconds(86400, "--timeout"), std::chrono::milliseconds(86400000));
  for (const double bad : {std::nan(""), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity(), 0.0, -1.0, 86401.0, 1e300}) {
    const auto parsed = timeout_from_seconds(bad, "--timeout");
    ASSERT_FALSE(parsed) << bad;
    EXPECT_NE(parsed.error().detail.find("--timeout"), std::string::npos);
  }
}

int parse_port(const std::string& text, std::uint16_t& port) {
  CLI::App app;
  app.add_option("--port", port)->check(decimal_port());
  try {
    app.parse(std::vector<std::string>{text, "--port"});
  } catch (const CLI::ParseError&) {
    return 2;
  }
  return 0;
}

TEST(DecimalPort, OnlyPlainDecimal) {
  std::uint16_t port = 0;
  EXPECT_EQ(parse_port("22", port), 0);
  EXPECT_EQ(port, 22);
  EXPECT_EQ(parse_port("65535", port), 0);
  for (const char* bad : {"022", "0x50", "0", "65536", "-1", "22a", "", "+22", " 22"}) {
    EXPECT_EQ(parse_port(bad, port), 2) << bad;
  }
}

}  // namespace
}  // namespace healer::cli
