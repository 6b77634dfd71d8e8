#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/pool_config.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/store/records.hpp"
#include "healer/store/store.hpp"

namespace CLI {
class App;
}  // namespace CLI

namespace healer::cli {

/// Where the inventory lives: --db FILE, else HEALER_DB, else the XDG data directory.
struct StoreArgs {
  std::string db;
};

/// Registers --db on `app`.
void add_store_options(CLI::App& app, StoreArgs& args);

/// Opens (creating on first use) the inventory database. Errors are one line naming the file.
[[nodiscard]] Result<store::Store> open_store(const StoreArgs& args);

/// Which servers a command acts on: names, --tag, --all (at least one of them).
struct Selection {
  std::vector<std::string> names;
  std::vector<std::string> tags;
  bool all = false;

  [[nodiscard]] bool empty() const noexcept { return names.empty() && tags.empty() && !all; }
};

/// Registers the positional SERVER... and --tag/--all on `app`.
void add_selection_options(CLI::App& app, Selection& selection);

/// The servers `selection` names, in the order given (names first, then tags, then --all),
/// without duplicates; an unknown name is an error naming it. Secrets are decrypted: the result
/// is meant for pool_server_for().
[[nodiscard]] Result<std::vector<store::ServerRecord>> select_servers(store::Store& store,
                                                                      const Selection& selection);

/// $HOME (empty when unset).
[[nodiscard]] std::string home_dir();
/// The local user's name (passwd entry, else $USER).
[[nodiscard]] std::string local_user();

/// Prints "healer: <message>" to stderr; returns the usage exit code (2).
int usage(const std::string& message);
/// Prints "healer: <error>" to stderr; returns exit_code_for(error).
int fail(const Error& error);

/// `items` joined with `separator`.
[[nodiscard]] std::string join(const std::vector<std::string>& items,
                               std::string_view separator = ", ");

/// ~/.ssh/known_hosts.
[[nodiscard]] std::string default_known_hosts();
/// OpenSSH's first existing default identity (~/.ssh/id_ed25519, id_ecdsa, id_rsa).
[[nodiscard]] std::string default_identity();

/// How to reach a stored server through the pool (id = the server's name): credentials from the
/// record (its decrypted secret for password and stored keys), known_hosts and host-key policy
/// from the record, keepalive from `config`. HEALER_KEY_PASSPHRASE unlocks encrypted key files.
[[nodiscard]] Result<pool::Server> pool_server_for(const store::ServerRecord& record,
                                                   const PoolConfig& config);

/// "user@host:port" for messages.
[[nodiscard]] std::string describe(const store::ServerRecord& record);

}  // namespace healer::cli
