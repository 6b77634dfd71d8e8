// The master key: text forms, the key file (created 0600, refused when readable by others) and
// the order of sources. Real files in a temp dir.
#include "healer/store/master_key.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "healer/store/errors.hpp"
#include "store_test_support.hpp"
#include "temp_dir.hpp"

namespace healer::store {
namespace {

using test::file_bytes;
using test::file_mode;

constexpr std::string_view kHex =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
// The same 32 bytes in standard base64.
constexpr std::string_view kBase64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

bool same_key(const MasterKey& a, const MasterKey& b) {
  return std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin());
}

TEST(MasterKeyTest, ParsesHexAndBase64ToTheSameBytes) {
  auto from_hex = MasterKey::parse(kHex, "test");
  auto from_base64 = MasterKey::parse(kBase64, "test");
  ASSERT_TRUE(from_hex) << from_hex.error().message();
  ASSERT_TRUE(from_base64) << from_base64.error().message();
  EXPECT_TRUE(same_key(*from_hex, *from_base64));
  EXPECT_EQ(from_hex->bytes()[0], 0x00);
  EXPECT_EQ(from_hex->bytes()[31], 0x1f);
}

TEST(MasterKeyTest, IgnoresSurroundingWhitespace) {
  auto key = MasterKey::parse("  " + std::string(kHex) + "\n", "test");
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_TRUE(same_key(*key, *MasterKey::parse(kHex, "test")));
}

TEST(MasterKeyTest, WrongLengthIsAClearErrorThatDoesNotQuoteTheValue) {
  const std::string value = "s3cr3t-but-short";
  auto key = MasterKey::parse(value, "HEALER_MASTER_KEY");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, make_error_code(Errc::master_key_invalid));
  const std::string message = key.error().message();
  EXPECT_NE(message.find("HEALER_MASTER_KEY"), std::string::npos) << message;
  EXPECT_NE(message.find("64 hex digits"), std::string::npos) << message;
  EXPECT_NE(message.find("got 16 characters"), std::string::npos) << message;
  EXPECT_EQ(message.find(value), std::string::npos) << message;
}

TEST(MasterKeyTest, RejectsRightLengthButNotHexOrBase64) {
  const std::string not_hex(64, 'z');
  auto key = MasterKey::parse(not_hex, "HEALER_MASTER_KEY");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code, make_error_code(Errc::master_key_invalid));
  EXPECT_EQ(key.error().message().find(not_hex), std::string::npos);

  // 44 base64 characters that decode to 33 bytes are not a key either.
  auto too_long = MasterKey::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g", "x");
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, make_error_code(Errc::master_key_invalid));
}

TEST(MasterKeyTest, GeneratedKeysDiffer) {
  auto a = MasterKey::generate();
  auto b = MasterKey::generate();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_FALSE(same_key(*a, *b));
}

TEST(MasterKeyTest, CreatedKeyFileIsPrivateHexAndLoadsBack) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  auto created = MasterKey::create_file(path);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(file_mode(path), 0600);
  const std::string contents = file_bytes(path);
  ASSERT_EQ(contents.size(), 65U);  // 64 hex digits and a newline
  EXPECT_EQ(contents.back(), '\n');
  EXPECT_EQ(contents.find_first_not_of("0123456789abcdef\n"), std::string::npos);

  auto loaded = MasterKey::load_file(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_TRUE(same_key(*created, *loaded));

  // The file's text is also a valid HEALER_MASTER_KEY.
  auto as_env = MasterKey::parse(contents, "HEALER_MASTER_KEY");
  ASSERT_TRUE(as_env);
  EXPECT_TRUE(same_key(*created, *as_env));

  // Only the key file is left (no temporary files).
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(MasterKeyTest, CreateNeverOverwritesAnExistingKeyFile) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  auto first = MasterKey::create_file(path);
  ASSERT_TRUE(first);
  const std::string before = file_bytes(path);
  auto second = MasterKey::create_file(path);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, make_error_code(Errc::io));
  EXPECT_EQ(file_bytes(path), before);
}

TEST(MasterKeyTest, KeyFileReadableByOthersIsRefused) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  ASSERT_TRUE(MasterKey::create_file(path));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto loaded = MasterKey::load_file(path);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, make_error_code(Errc::master_key_insecure));
  EXPECT_NE(loaded.error().message().find("0644"), std::string::npos) << loaded.error().message();
  EXPECT_NE(loaded.error().message().find("chmod 600"), std::string::npos);
}

TEST(MasterKeyTest, MissingKeyFileIsMasterKeyMissing) {
  healer::test::TempDir dir;
  auto loaded = MasterKey::load_file(dir.path() / "absent.key");
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, make_error_code(Errc::master_key_missing));
}

TEST(MasterKeyTest, MalformedKeyFileIsInvalid) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  {
    std::ofstream out(path);
    out << "not a key\n";
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  auto loaded = MasterKey::load_file(path);
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().code, make_error_code(Errc::master_key_invalid));
  EXPECT_NE(loaded.error().message().find(path.string()), std::string::npos);
}

TEST(MasterKeyTest, ResolvePrefersTheEnvironmentOverTheKeyFile) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  KeySource source{std::string(kHex), path};
  auto key = resolve_master_key(source, KeyCreation::allowed);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_TRUE(same_key(*key, *MasterKey::parse(kHex, "test")));
  EXPECT_EQ(file_mode(path), -1) << "no key file is created when the environment has the key";
}

TEST(MasterKeyTest, ResolveCreatesTheKeyFileOnlyWhenAllowed) {
  healer::test::TempDir dir;
  const auto path = dir.path() / "master.key";
  auto refused = resolve_master_key(KeySource{std::nullopt, path}, KeyCreation::forbidden);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, make_error_code(Errc::master_key_missing));
  EXPECT_NE(refused.error().message().find(path.string()), std::string::npos);
  EXPECT_EQ(file_mode(path), -1);

  auto created = resolve_master_key(KeySource{std::nullopt, path}, KeyCreation::allowed);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(file_mode(path), 0600);
  auto again = resolve_master_key(KeySource{std::nullopt, path}, KeyCreation::forbidden);
  ASSERT_TRUE(again);
  EXPECT_TRUE(same_key(*created, *again));
}

TEST(MasterKeyTest, FromEnvironmentReadsHealerMasterKey) {
  {
    test::ScopedEnv env("HEALER_MASTER_KEY", std::string(kHex));
    const auto source = KeySource::from_environment("/nowhere/master.key");
    ASSERT_TRUE(source.env_value);
    EXPECT_EQ(*source.env_value, kHex);
    EXPECT_EQ(source.key_file, "/nowhere/master.key");
  }
  test::ScopedEnv unset("HEALER_MASTER_KEY", std::nullopt);
  EXPECT_FALSE(KeySource::from_environment("k").env_value);
}

}  // namespace
}  // namespace healer::store
