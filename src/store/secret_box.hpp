#pragma once

// Authenticated encryption of secrets at rest: XChaCha20-Poly1305 (IETF AEAD) under the master
// key, a random 24-byte nonce per secret, and associated data that binds each ciphertext to its
// place (e.g. "server:42"), so a ciphertext copied to another row fails to decrypt.
//
// Sealed format: 1 format byte (0x01) || nonce (24) || ciphertext || tag (16).

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/store/master_key.hpp"

namespace healer::store::crypto {

/// sodium_init() once per process; false if libsodium cannot initialise.
[[nodiscard]] bool init() noexcept;

/// Encrypts `plaintext` (not kept) bound to `context`.
[[nodiscard]] std::vector<unsigned char> seal(const MasterKey& key, std::string_view plaintext,
                                              std::string_view context);

/// Decrypts a sealed blob bound to `context`; Errc::secret_corrupt when the key, the context or a
/// byte is wrong (never returns garbage). The caller wipes the result when done (wipe()).
[[nodiscard]] Result<std::string> open(const MasterKey& key, std::span<const unsigned char> sealed,
                                       std::string_view context);

/// The key check value stored in the meta table: the sealed known plaintext.
[[nodiscard]] std::vector<unsigned char> make_key_check(const MasterKey& key);
/// True when `check` was made with `key`.
[[nodiscard]] bool verify_key_check(const MasterKey& key, std::span<const unsigned char> check);

/// Overwrites every byte of `bytes` with zeros (sodium_memzero: not optimised away). Every wipe
/// comes down to this one.
void wipe(std::span<char> bytes) noexcept;
void wipe(std::span<unsigned char> bytes) noexcept;

/// Overwrites every byte the string owns, past size() up to capacity() too (a string that shrank
/// keeps old bytes there), then clears it; the buffer is kept, not freed. Any allocator, so a
/// test can look at the buffer when it is finally freed.
template <class Allocator>
void wipe(std::basic_string<char, std::char_traits<char>, Allocator>& text) noexcept {
  // resize() within capacity() never allocates.
  text.resize(text.capacity());
  wipe(std::span<char>(text.data(), text.size()));
  text.clear();
}

}  // namespace healer::store::crypto
