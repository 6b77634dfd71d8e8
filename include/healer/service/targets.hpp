#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/runtime.hpp"
#include "healer/store/records.hpp"
#include "healer/store/store.hpp"

// Which servers a request acts on, and how to reach each one through the pool.
namespace healer::service {

/// Servers by name, by tag, or all of them (at least one of the three).
struct Selection {
  std::vector<std::string> names;
  std::vector<std::string> tags;
  bool all = false;

  [[nodiscard]] bool empty() const noexcept { return names.empty() && tags.empty() && !all; }
};

/// The servers `selection` names, in the order given (names first, then tags, then all), without
/// duplicates; an unknown name or an empty tag is an error naming it. Secrets are decrypted (the
/// result is meant for pool_server_for()). Blocking: store reads.
[[nodiscard]] Result<std::vector<store::ServerRecord>> select_servers(store::Store& store,
                                                                      const Selection& selection);

/// A host given on the command line instead of an inventory name (`healer exec --host`). Not an
/// aggregate on purpose.
struct AdHocTarget {
  AdHocTarget() = default;

  std::string host;
  std::uint16_t port = 22;
  std::string user;                                      ///< empty: the local user
  store::AuthMethod auth = store::AuthMethod::key_file;  ///< key_file, agent or password
  std::string identity;     ///< key file; with agent, the one agent key offered
  std::string known_hosts;  ///< empty: ~/.ssh/known_hosts
  bool accept_new_host_key = false;
};

/// The inventory-shaped record of an ad hoc host (not stored); its name is "user@host:port".
/// A password comes from `secrets` (HEALER_PASSWORD): an error when it is missing.
[[nodiscard]] Result<store::ServerRecord> record_for(const AdHocTarget& target,
                                                     const LocalSecrets& secrets);

/// How to reach a server through the pool (pool id = the record's name): credentials from the
/// record (its decrypted secret for password and stored keys; key files unlocked with
/// `secrets.key_passphrase`), known_hosts and host-key policy from the record, keepalive from
/// `config`. The one conversion every command and the daemon use.
[[nodiscard]] Result<pool::Server> pool_server_for(const store::ServerRecord& record,
                                                   const PoolConfig& config,
                                                   const LocalSecrets& secrets);

/// Adds (or refreshes) each record's pool server in the runtime's registry; on the loop. Returns
/// the pool ids in order; a record that cannot be converted fails the whole call.
[[nodiscard]] Result<std::vector<std::string>> register_servers(
    Runtime& runtime, const std::vector<store::ServerRecord>& records);

/// "user@host:port" for messages (":port" only when not 22).
[[nodiscard]] std::string describe(const store::ServerRecord& record);

/// $HOME (empty when unset).
[[nodiscard]] std::string home_dir();
/// The local user's name (passwd entry, else $USER).
[[nodiscard]] std::string local_user();
/// ~/.ssh/known_hosts.
[[nodiscard]] std::string default_known_hosts();
/// OpenSSH's first existing default identity (~/.ssh/id_ed25519, id_ecdsa, id_rsa).
[[nodiscard]] std::string default_identity();

}  // namespace healer::service
