// White-box: the AEAD wrapper that seals secrets (src/store/secret_box.hpp).
#include "secret_box.hpp"

#include <gtest/gtest.h>

#include <string>

#include "healer/store/errors.hpp"
#include "store_test_support.hpp"

namespace healer::store::crypto {
namespace {

using test::key_of;

std::string as_string(const std::vector<unsigned char>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

TEST(SecretBoxTest, RoundTrip) {
  const auto key = key_of(7);
  const auto sealed = seal(key, "hunter2-correct-horse", "server:1");
  auto opened = open(key, sealed, "server:1");
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(*opened, "hunter2-correct-horse");
}

TEST(SecretBoxTest, EmptyPlaintextRoundTrips) {
  const auto key = key_of(7);
  auto opened = open(key, seal(key, "", "c"), "c");
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "");
}

TEST(SecretBoxTest, CiphertextHidesThePlaintextAndUsesAFreshNonce) {
  const auto key = key_of(7);
  const auto a = seal(key, "hunter2-correct-horse", "server:1");
  const auto b = seal(key, "hunter2-correct-horse", "server:1");
  EXPECT_NE(a, b);
  EXPECT_EQ(as_string(a).find("hunter2"), std::string::npos);
  EXPECT_EQ(a.size(), 1 + 24 + 21 + 16U);  // format, nonce, ciphertext, tag
  EXPECT_EQ(a[0], 0x01);
}

TEST(SecretBoxTest, WrongKeyContextOrByteIsAnErrorNeverGarbage) {
  const auto key = key_of(7);
  const auto sealed = seal(key, "hunter2", "server:1");

  auto wrong_key = open(key_of(8), sealed, "server:1");
  ASSERT_FALSE(wrong_key);
  EXPECT_EQ(wrong_key.error().code, make_error_code(Errc::secret_corrupt));

  auto wrong_context = open(key, sealed, "server:2");
  ASSERT_FALSE(wrong_context);
  EXPECT_EQ(wrong_context.error().code, make_error_code(Errc::secret_corrupt));

  for (std::size_t i = 0; i < sealed.size(); ++i) {
    auto tampered = sealed;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(open(key, tampered, "server:1")) << "byte " << i;
  }

  auto truncated = std::vector<unsigned char>(sealed.begin(), sealed.begin() + 20);
  auto short_result = open(key, truncated, "server:1");
  ASSERT_FALSE(short_result);
  EXPECT_EQ(short_result.error().code, make_error_code(Errc::secret_corrupt));
}

TEST(SecretBoxTest, KeyCheckAcceptsOnlyItsKey) {
  const auto check = make_key_check(key_of(1));
  EXPECT_TRUE(verify_key_check(key_of(1), check));
  EXPECT_FALSE(verify_key_check(key_of(2), check));
  EXPECT_FALSE(verify_key_check(key_of(1), {}));
}

TEST(SecretBoxTest, WipeClearsTheString) {
  std::string secret = "hunter2";
  wipe(secret);
  EXPECT_TRUE(secret.empty());
}

}  // namespace
}  // namespace healer::store::crypto
