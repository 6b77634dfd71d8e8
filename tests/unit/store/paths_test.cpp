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

TEST(PathsTest, DatabaseUrlsAreToldFromFiles) {
  EXPECT_TRUE(is_database_url("postgresql://u@db.example:5432/healer"));
  EXPECT_TRUE(is_database_url("postgres://u@db/healer"));
  EXPECT_FALSE(is_database_url("/var/lib/healer/healer.db"));
  EXPECT_FALSE(is_database_url("postgresql.db"));
  EXPECT_FALSE(is_database_url("mysql://u@db/healer"));
}

TEST(PathsTest, DisplayedUrlsNeverShowThePassword) {
  EXPECT_EQ(display_location("postgresql://ops:S3cret-pw@db:5432/healer"),
            "postgresql://ops:***@db:5432/healer");
  EXPECT_EQ(display_location("postgres://ops:p%40ss@db/healer?sslmode=require"),
            "postgres://ops:***@db/healer?sslmode=require");
  EXPECT_EQ(
      display_location("postgresql://db/healer?user=ops&password=S3cret-pw&sslmode=verify-full"),
      "postgresql://db/healer?user=ops&password=***&sslmode=verify-full");
  EXPECT_EQ(display_location("postgresql://ops@db/healer"), "postgresql://ops@db/healer");
  EXPECT_EQ(display_location("/srv/healer.db"), "/srv/healer.db");
}

TEST(PathsTest, StateDirectoryOfAUrlIsTheDataDirectoryNotTheUrl) {
  PathEnvironment env{"postgresql://u@db/healer", "/xdg", "/home/u"};
  EXPECT_EQ(*state_directory("postgresql://u@db/healer", env), "/xdg/healer");
  env.xdg_data_home.reset();
  EXPECT_EQ(*state_directory("postgresql://u@db/healer", env), "/home/u/.local/share/healer");
  EXPECT_EQ(*state_directory("/srv/healer/healer.db", env), "/srv/healer");
  auto none = state_directory("postgresql://u@db/healer", PathEnvironment{});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, make_error_code(Errc::io));
}

}  // namespace
}  // namespace healer::store
