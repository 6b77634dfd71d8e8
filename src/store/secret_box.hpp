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

/// Overwrites a string's bytes (sodium_memzero) and clears it.
void wipe(std::string& text) noexcept;
/// Overwrites a byte buffer (sodium_memzero).
void wipe(void* bytes, std::size_t size) noexcept;

}  // namespace healer::store::crypto
