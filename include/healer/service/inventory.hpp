#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/store/records.hpp"
#include "healer/store/store.hpp"

// Changing the inventory: one validation for `healer server add` and `POST /api/v1/servers`.
namespace healer::service {

/// A server as a person describes it. Not an aggregate on purpose.
struct ServerSpec {
  ServerSpec() = default;

  std::string name;
  std::string host;
  std::uint16_t port = 22;
  std::string user;  ///< empty: the local user
  store::AuthMethod auth = store::AuthMethod::key_file;
  std::string identity;  ///< key file (key_file; empty: the default identity) or agent filter
  std::string known_hosts;
  bool accept_new_host_key = false;
  std::vector<std::string> tags;
  std::map<std::string, std::string> labels;
  /// Password (auth = password) or private key text (auth = stored_key); secret.
  std::optional<std::string> secret;
};

/// What add_server() did.
struct AddedServer {
  store::ServerRecord record;  ///< without its secret
  bool updated = false;        ///< an existing server of that name was replaced
};

/// Checks a spec (names, host, user, tags and labels without control characters; the secret its
/// method needs) and builds the record to store.
[[nodiscard]] Result<store::ServerRecord> validate_server(ServerSpec spec);

/// Validates and stores a server; with `replace`, an existing one of the same name is updated
/// (else a conflict). Blocking.
[[nodiscard]] Result<AddedServer> add_server(store::Store& store, ServerSpec spec, bool replace);

/// Removes a server by name with its history. Blocking.
[[nodiscard]] Result<void> remove_server(store::Store& store, std::string_view name);

/// Checks an application: a name like a server's; units as systemd names (no control
/// characters, no leading '-'); a health URL that is http:// or https:// (it is handed to curl
/// or wget on the server: never something that reads as an option); absolute log paths without
/// control characters.
[[nodiscard]] Result<void> validate_application(const store::ApplicationRecord& app);

/// Why `text` is not fit as a name, tag, host or user (empty, too long, control characters,
/// invalid UTF-8, a leading '-'), or nullopt when it is.
[[nodiscard]] std::optional<std::string> bad_word(std::string_view text, std::size_t max_size);

/// "key" | "agent" | "password" | "stored-key" and back.
[[nodiscard]] const char* auth_name(store::AuthMethod method) noexcept;
[[nodiscard]] std::optional<store::AuthMethod> parse_auth(std::string_view text) noexcept;

}  // namespace healer::service
