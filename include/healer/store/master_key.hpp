#pragma once

#include <array>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "healer/core/result.hpp"

namespace healer::store {

/// The 32-byte key that encrypts secrets at rest (XChaCha20-Poly1305).
///
/// Text form (HEALER_MASTER_KEY and the key file alike): 64 hex digits, or the 32 bytes in standard
/// base64 with padding (44 characters); surrounding whitespace is ignored. The key file created on
/// first run holds the hex form and a newline, so `HEALER_MASTER_KEY=$(cat master.key)` works.
/// The bytes are wiped when the key is destroyed. Never log or format a key.
class MasterKey {
 public:
  static constexpr std::size_t kSize = 32;

  /// A fresh random key (libsodium randombytes_buf).
  [[nodiscard]] static Result<MasterKey> generate();
  /// Parses the text form; `origin` ("HEALER_MASTER_KEY", a file path) names the source in errors.
  /// Errors never quote the text.
  [[nodiscard]] static Result<MasterKey> parse(std::string_view text, std::string_view origin);
  /// Reads a key file; refuses one that group or others can access (Errc::master_key_insecure).
  [[nodiscard]] static Result<MasterKey> load_file(const std::filesystem::path& path);
  /// Creates `path` with mode 0600 holding a fresh key; fails with Errc::io if it exists. Atomic:
  /// another process sees either no file or the complete key.
  [[nodiscard]] static Result<MasterKey> create_file(const std::filesystem::path& path);

  MasterKey(const MasterKey& other) noexcept;
  MasterKey& operator=(const MasterKey& other) noexcept;
  ~MasterKey();

  /// The raw key bytes, for the store's crypto.
  [[nodiscard]] std::span<const unsigned char, kSize> bytes() const noexcept { return bytes_; }

 private:
  MasterKey() = default;

  std::array<unsigned char, kSize> bytes_{};
};

/// Where a master key may come from, in priority order.
struct KeySource {
  std::optional<std::string> env_value;  ///< the value of HEALER_MASTER_KEY, when set
  std::filesystem::path key_file;        ///< used when env_value is unset

  /// Reads HEALER_MASTER_KEY from the environment.
  [[nodiscard]] static KeySource from_environment(std::filesystem::path key_file);
};

/// Whether resolve_master_key() may create a missing key file.
enum class KeyCreation { allowed, forbidden };

/// HEALER_MASTER_KEY if set, else the key file; a missing key file is created
/// (KeyCreation::allowed) or is Errc::master_key_missing.
[[nodiscard]] Result<MasterKey> resolve_master_key(const KeySource& source, KeyCreation creation);

}  // namespace healer::store
