#include "healer/core/deadline.hpp"

#include <gtest/gtest.h>

namespace healer {
namespace {

using namespace std::chrono_literals;

TEST(Deadline, PastDeadlineIsExpiredWithNoTimeLeft) {
  const Deadline past(Clock::now() - 1ms);
  EXPECT_TRUE(past.expired());
  EXPECT_EQ(past.remaining(), Clock::duration::zero());
}

TEST(Deadline, FutureDeadlineHasTimeLeft) {
  const auto d = Deadline::after(10s);
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.remaining(), 9s);
  EXPECT_LE(d.remaining(), 10s);
}

TEST(Deadline, NeverDoesNotExpire) {
  EXPECT_FALSE(Deadline::never().expired());
  EXPECT_EQ(Deadline::never().at(), Clock::time_point::max());
}

TEST(Deadline, MinPicksTheEarlier) {
  const Deadline early(Clock::time_point(1s));
  const Deadline late(Clock::time_point(2s));
  EXPECT_EQ(early.min(late).at(), early.at());
  EXPECT_EQ(late.min(early).at(), early.at());
}

}  // namespace
}  // namespace healer
