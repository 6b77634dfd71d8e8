// Where the database lives: --db (the caller) > HEALER_DB > XDG_DATA_HOME > ~/.local/share.
#include "healer/store/paths.hpp"

#include <gtest/gtest.h>

#include "healer/store/errors.hpp"

namespace healer::store {
namespace {

TEST(PathsTest, HealerDbWins) {
  PathEnvironment env{"/srv/healer.db", "/xdg", "/home/u"};
  EXPECT_EQ(*default_db_path(env), "/srv/healer.db");
}

TEST(PathsTest, XdgDataHomeNext) {
  PathEnvironment env{std::nullopt, "/xdg", "/home/u"};
  EXPECT_EQ(*default_db_path(env), "/xdg/healer/healer.db");
}

TEST(PathsTest, HomeLocalShareLast) {
  PathEnvironment env{std::nullopt, std::nullopt, "/home/u"};
  EXPECT_EQ(*default_db_path(env), "/home/u/.local/share/healer/healer.db");
}

TEST(PathsTest, EmptyAndRelativeValuesAreIgnored) {
  PathEnvironment env{"", "relative/xdg", "/home/u"};
  EXPECT_EQ(*default_db_path(env), "/home/u/.local/share/healer/healer.db");
}

TEST(PathsTest, NothingSetIsAClearError) {
  auto path = default_db_path(PathEnvironment{});
  ASSERT_FALSE(path);
  EXPECT_EQ(path.error().code, make_error_code(Errc::io));
  EXPECT_NE(path.error().message().find("--db"), std::string::npos);
}

TEST(PathsTest, KeyFileSitsNextToTheDatabase) {
  EXPECT_EQ(default_key_file("/data/healer/healer.db"), "/data/healer/master.key");
}

}  // namespace
}  // namespace healer::store
