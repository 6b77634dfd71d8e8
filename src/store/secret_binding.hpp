#pragma once

// What a server's sealed secret is bound to (the AEAD additional data): the server row's id and
// every field that decides where the secret is sent and whom healer trusts to receive it. Editing
// any of them outside healer (the sqlite3 shell, a copied row) makes the secret fail to decrypt
// instead of replaying a password to another host; Database::update_server re-seals the secret
// when healer itself changes them.

#include <cstdint>
#include <string>
#include <string_view>

namespace healer::store {

/// The fields of a servers row a secret is bound to (host_key_policy as stored: "strict",
/// "accept_new").
struct SecretBinding {
  std::int64_t server_id = 0;
  std::string host;
  std::int64_t port = 0;
  std::string user;
  std::string host_key_policy;
  std::string known_hosts_file;

  bool operator==(const SecretBinding&) const = default;
};

/// The additional data of a secret sealed since schema migration 5: a version line, then each
/// field as "name=<byte length>:<value>" on its own line, so no two bindings give the same bytes.
[[nodiscard]] std::string secret_context(const SecretBinding& binding);

/// The additional data secrets had before migration 5: "server:<id>" only.
[[nodiscard]] std::string legacy_secret_context(std::int64_t server_id);

}  // namespace healer::store
