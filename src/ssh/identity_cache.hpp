#pragma once

// Private keys parsed once per process, not once per connection.
//
// A fleet sweep connects to every server with the same identity; parsing it each time (file read,
// PEM/OpenSSH decoding, bcrypt-pbkdf for an encrypted key: ~100 ms per connect at OpenSSH's
// default 16 rounds) is client CPU spent per server for nothing. A key file is keyed by its path
// and stat (device, inode, size, mtime, ctime), so a replaced file is parsed again; an in-memory
// key by a BLAKE2b digest of its text. The passphrase is part of the key (as a digest), so a wrong
// passphrase never finds a key loaded with the right one. Parsed keys stay in memory for the life
// of the process, as in ssh-agent; the daemon already holds the store's master key the same way.

#include <libssh/libssh.h>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>

namespace healer::ssh::detail {

using SharedPrivateKey = std::shared_ptr<std::remove_pointer_t<ssh_key>>;

/// Counters for tests: how often a key was parsed.
struct IdentityCacheStats {
  std::size_t parsed = 0;  ///< keys parsed (cache misses that loaded)
  std::size_t reused = 0;  ///< lookups answered from memory
};

class IdentityCache {
 public:
  static IdentityCache& instance();

  /// The key in `path`, decrypted with `passphrase`; parsed by `load` (which returns a new
  /// ssh_key or nullptr) only if this path, file version and passphrase were not loaded before.
  /// Failures are not remembered.
  SharedPrivateKey from_file(const std::string& path, const std::string& passphrase,
                             const std::function<ssh_key()>& load);

  /// The same for a key given as text: keyed by a digest of `text` and `passphrase`.
  SharedPrivateKey from_text(const std::string& text, const std::string& passphrase,
                             const std::function<ssh_key()>& load);

  [[nodiscard]] IdentityCacheStats stats();

  IdentityCache();
  ~IdentityCache();
  IdentityCache(const IdentityCache&) = delete;
  IdentityCache& operator=(const IdentityCache&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace healer::ssh::detail
