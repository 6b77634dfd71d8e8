#include "healer/core/result.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace healer {
namespace {

enum class TestErrc { broken = 1 };

class TestCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "test"; }
  std::string message(int) const override { return "broken thing"; }
};

const std::error_category& test_category() {
  static const TestCategory category;
  return category;
}

std::error_code make_error_code(TestErrc e) { return {static_cast<int>(e), test_category()}; }

}  // namespace
}  // namespace healer

template <>
struct std::is_error_code_enum<healer::TestErrc> : std::true_type {};

namespace healer {
namespace {

TEST(Result, HoldsValue) {
  Result<int> r = 42;
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 42);
}

TEST(Result, HoldsErrorWithMessage) {
  Result<std::string> r = make_error(TestErrc::broken, "host a:22");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, TestErrc::broken);
  EXPECT_EQ(r.error().message(), "broken thing: host a:22");
}

TEST(Result, DefaultConstructedHoldsDefaultValue) {
  Result<int> r;
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 0);
}

TEST(Result, MovesOnlyTypes) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  auto owned = std::move(r).value();
  EXPECT_EQ(*owned, 7);
}

TEST(Result, VoidSuccessAndFailure) {
  Result<void> ok;
  EXPECT_TRUE(ok);
  Result<void> failed = make_error(TestErrc::broken, "x");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().detail, "x");
}

TEST(Error, MessageWithoutDetail) {
  Error e{make_error_code(TestErrc::broken), ""};
  EXPECT_EQ(e.message(), "broken thing");
}

}  // namespace
}  // namespace healer

namespace healer {
namespace {

Result<std::vector<std::string>> make_names() { return std::vector<std::string>{"a", "b"}; }

TEST(Result, RangeForOverATemporaryResultIsSafe) {
  std::string joined;
  for (const auto& name : *make_names()) {  // the value outlives the loop (ASan checks this)
    joined += name;
  }
  EXPECT_EQ(joined, "ab");
}

}  // namespace
}  // namespace healer
