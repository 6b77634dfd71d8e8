#pragma once

#include <libssh/libssh.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

// Host keys of the simulated fleet: one ed25519 key per address, derived from a seed (the same
// seed gives the same keys in every run, so a known_hosts file stays valid across restarts; a
// new seed is "every host was reinstalled"), and the files clients read.
namespace healer::fleet_sim {

struct KeyFree {
  void operator()(ssh_key key) const noexcept { ssh_key_free(key); }
};
using KeyHandle = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;

/// The ed25519 host key of host `index` for `seed`: 32 bytes of BLAKE2b(seed, index) as the
/// private seed, handed to libssh as an OpenSSH private key. Throws std::runtime_error if libssh
/// refuses it.
[[nodiscard]] KeyHandle derive_host_key(std::uint64_t seed, std::size_t index);

/// "ssh-ed25519 AAAA..." for `key` (its public half); throws std::runtime_error.
[[nodiscard]] std::string public_key_line(ssh_key key);

/// Public keys read from an OpenSSH authorized_keys file (options before the key type are not
/// supported; comments and blank lines are skipped). Throws std::runtime_error when the file
/// cannot be read or a line is not a key.
[[nodiscard]] std::vector<KeyHandle> read_authorized_keys(const std::filesystem::path& file);

/// Writes `text` to `file` atomically (a temporary file renamed over it); throws.
void write_file_atomically(const std::filesystem::path& file, const std::string& text);

}  // namespace healer::fleet_sim
