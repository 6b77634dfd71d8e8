#include "secret_box.hpp"

#include <sodium.h>

#include <cstring>
#include <stdexcept>

#include "healer/store/errors.hpp"

namespace healer::store::crypto {
namespace {

constexpr unsigned char kFormatV1 = 0x01;
constexpr std::size_t kNonceSize = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr std::size_t kTagSize = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr std::size_t kHeaderSize = 1 + kNonceSize;

constexpr std::string_view kKeyCheckPlaintext = "healer master key check v1";
constexpr std::string_view kKeyCheckContext = "meta:key_check";

static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == MasterKey::kSize);

const unsigned char* as_bytes(std::string_view text) noexcept {
  return reinterpret_cast<const unsigned char*>(text.data());
}

}  // namespace

bool init() noexcept {
  static const bool initialised = sodium_init() >= 0;
  return initialised;
}

std::vector<unsigned char> seal(const MasterKey& key, std::string_view plaintext,
                                std::string_view context) {
  if (!init()) {
    throw std::runtime_error("libsodium failed to initialise");
  }
  std::vector<unsigned char> sealed(kHeaderSize + plaintext.size() + kTagSize);
  sealed[0] = kFormatV1;
  unsigned char* nonce = sealed.data() + 1;
  randombytes_buf(nonce, kNonceSize);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      sealed.data() + kHeaderSize, &written, as_bytes(plaintext), plaintext.size(),
      as_bytes(context), context.size(), nullptr, nonce, key.bytes().data());
  sealed.resize(kHeaderSize + static_cast<std::size_t>(written));
  return sealed;
}

Result<std::string> open(const MasterKey& key, std::span<const unsigned char> sealed,
                         std::string_view context) {
  if (!init()) {
    throw std::runtime_error("libsodium failed to initialise");
  }
  if (sealed.size() < kHeaderSize + kTagSize || sealed[0] != kFormatV1) {
    return make_error(Errc::secret_corrupt, "unknown format or truncated ciphertext");
  }
  const std::size_t plain_size = sealed.size() - kHeaderSize - kTagSize;
  std::string plaintext(plain_size, '\0');
  unsigned long long written = 0;
  const int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
      reinterpret_cast<unsigned char*>(plaintext.data()), &written, nullptr,
      sealed.data() + kHeaderSize, sealed.size() - kHeaderSize, as_bytes(context), context.size(),
      sealed.data() + 1, key.bytes().data());
  if (rc != 0) {
    wipe(plaintext);
    return make_error(Errc::secret_corrupt, "authentication failed (wrong key or damaged data)");
  }
  plaintext.resize(static_cast<std::size_t>(written));
  return plaintext;
}

std::vector<unsigned char> make_key_check(const MasterKey& key) {
  return seal(key, kKeyCheckPlaintext, kKeyCheckContext);
}

bool verify_key_check(const MasterKey& key, std::span<const unsigned char> check) {
  auto opened = open(key, check, kKeyCheckContext);
  return opened && *opened == kKeyCheckPlaintext;
}

void wipe(std::span<char> bytes) noexcept { sodium_memzero(bytes.data(), bytes.size()); }

void wipe(std::span<unsigned char> bytes) noexcept { sodium_memzero(bytes.data(), bytes.size()); }

}  // namespace healer::store::crypto
