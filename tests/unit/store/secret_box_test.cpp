// White-box: the AEAD wrapper that seals secrets (src/store/secret_box.hpp).
#include "secret_box.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

TEST(SecretBoxTest, WipeZeroesExactlyTheBufferItIsGiven) {
  std::array<char, 32> chars{};
  chars.fill('x');
  wipe(std::span<char>(chars).subspan(4, 20));
  EXPECT_EQ(std::string(chars.data(), 4), "xxxx");
  EXPECT_EQ(std::string(chars.data() + 4, 20), std::string(20, '\0'));
  EXPECT_EQ(std::string(chars.data() + 24, 8), "xxxxxxxx");

  std::array<unsigned char, 16> bytes{};
  bytes.fill(0xa5);
  wipe(std::span<unsigned char>(bytes));
  EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b == 0; }));
}

// An allocator that copies each buffer's bytes when it is freed: the buffer is still allocated
// inside deallocate(), so reading it there is defined (unlike peeking through a pointer kept
// from before the string freed it).
struct FreedBuffers {
  std::vector<std::string> contents;
};

template <class T>
struct InspectingAllocator {
  using value_type = T;
  explicit InspectingAllocator(FreedBuffers* sink) noexcept : freed(sink) {}
  template <class U>
  InspectingAllocator(const InspectingAllocator<U>& other) noexcept  // NOLINT: rebinding
      : freed(other.freed) {}
  T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    freed->contents.emplace_back(reinterpret_cast<const char*>(p), n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  bool operator==(const InspectingAllocator& other) const noexcept { return freed == other.freed; }

  FreedBuffers* freed;
};

using InspectedString = std::basic_string<char, std::char_traits<char>, InspectingAllocator<char>>;

constexpr std::string_view kLongSecret = "correct-horse-battery-staple-4781-Zebra";  // past SSO

TEST(SecretBoxTest, TheInspectingAllocatorSeesWhatAStringLeavesBehind) {
  // The control for the test below: without wipe(), the freed buffer still holds the secret.
  FreedBuffers freed;
  {
    InspectedString secret{InspectingAllocator<char>(&freed)};
    secret = kLongSecret;
    secret.resize(7);
    secret.clear();
  }
  ASSERT_EQ(freed.contents.size(), 1U);
  EXPECT_NE(freed.contents[0].find("battery-staple"), std::string::npos);
}

TEST(SecretBoxTest, WipeOverwritesEveryByteTheStringOwnedBeforeItIsFreed) {
  FreedBuffers freed;
  {
    InspectedString secret{InspectingAllocator<char>(&freed)};
    secret = kLongSecret;
    secret.resize(7);  // a shrunk string keeps the old bytes past size()
    wipe(secret);
    EXPECT_TRUE(secret.empty());
    EXPECT_TRUE(freed.contents.empty()) << "wipe() keeps the buffer; the string frees it";
  }
  ASSERT_EQ(freed.contents.size(), 1U);
  EXPECT_GT(freed.contents[0].size(), kLongSecret.size());
  EXPECT_EQ(freed.contents[0], std::string(freed.contents[0].size(), '\0'));
}

}  // namespace
}  // namespace healer::store::crypto
