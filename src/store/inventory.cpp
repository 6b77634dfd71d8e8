// Servers (with tags, labels and encrypted secrets) and applications.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "database.hpp"
#include "healer/store/errors.hpp"
#include "secret_binding.hpp"
#include "secret_box.hpp"

namespace healer::store {
namespace {

std::string_view to_sql(AuthMethod method) noexcept {
  switch (method) {
    case AuthMethod::key_file:
      return "key_file";
    case AuthMethod::agent:
      return "agent";
    case AuthMethod::password:
      return "password";
    case AuthMethod::stored_key:
      return "stored_key";
  }
  return "key_file";
}

std::optional<AuthMethod> auth_method_from_sql(std::string_view text) noexcept {
  for (const auto method :
       {AuthMethod::key_file, AuthMethod::agent, AuthMethod::password, AuthMethod::stored_key}) {
    if (to_sql(method) == text) {
      return method;
    }
  }
  return std::nullopt;
}

std::string_view to_sql(HostKeyPolicy policy) noexcept {
  return policy == HostKeyPolicy::accept_new ? "accept_new" : "strict";
}

std::optional<HostKeyPolicy> host_key_policy_from_sql(std::string_view text) noexcept {
  if (text == "strict") {
    return HostKeyPolicy::strict;
  }
  if (text == "accept_new") {
    return HostKeyPolicy::accept_new;
  }
  return std::nullopt;
}

bool uses_secret(AuthMethod method) noexcept {
  return method == AuthMethod::password || method == AuthMethod::stored_key;
}

// What a server's sealed secret is bound to (the record's id must be set).
SecretBinding binding_of(const ServerRecord& server) {
  return SecretBinding{server.id,
                       server.host,
                       static_cast<std::int64_t>(server.port),
                       server.user,
                       std::string(to_sql(server.host_key_policy)),
                       server.known_hosts_file};
}

std::string server_label(std::string_view name, std::int64_t id) {
  return "server '" + std::string(name) + "' (#" + std::to_string(id) + ")";
}

Error invalid(std::string detail) { return make_error(Errc::invalid_record, std::move(detail)); }

// Checks what SQLite's constraints can't express well. `adding`: a secret is required for the
// methods that use one (on update, the stored secret may stand).
Result<void> validate(const ServerRecord& server, bool adding) {
  if (server.name.empty()) {
    return invalid("a server needs a name");
  }
  const std::string who = "server '" + server.name + "'";
  if (server.host.empty()) {
    return invalid(who + " needs a host");
  }
  if (server.port == 0) {
    return invalid(who + ": port 0 is not valid");
  }
  if (server.user.empty()) {
    return invalid(who + " needs a user");
  }
  if (server.auth_method == AuthMethod::key_file && server.identity_file.empty()) {
    return invalid(who + ": auth method key_file needs an identity file");
  }
  if (uses_secret(server.auth_method)) {
    if (server.secret && server.secret->empty()) {
      return invalid(who + ": the secret is empty");
    }
    if (adding && !server.secret) {
      return invalid(who + ": auth method " + std::string(to_sql(server.auth_method)) +
                     " needs a secret");
    }
  } else if (server.secret) {
    return invalid(who + ": auth method " + std::string(to_sql(server.auth_method)) +
                   " keeps no secret");
  }
  for (const auto& tag : server.tags) {
    if (tag.empty()) {
      return invalid(who + ": empty tag");
    }
  }
  for (const auto& [key, value] : server.labels) {
    if (key.empty()) {
      return invalid(who + ": empty label key");
    }
  }
  return {};
}

Result<void> validate(const ApplicationRecord& app) {
  if (app.name.empty()) {
    return invalid("an application needs a name");
  }
  const std::string who = "application '" + app.name + "'";
  if (app.server_id <= 0) {
    return invalid(who + " needs a server");
  }
  if (std::find(app.ports.begin(), app.ports.end(), std::uint16_t{0}) != app.ports.end()) {
    return invalid(who + ": port 0 is not valid");
  }
  for (const auto* list : {&app.systemd_units, &app.log_paths}) {
    if (std::find(list->begin(), list->end(), std::string()) != list->end()) {
      return invalid(who + ": empty unit name or log path");
    }
  }
  return {};
}

// A UNIQUE failure on a name becomes a readable duplicate_name; other errors pass unchanged.
Error name_conflict(Error error, std::string_view kind, std::string_view name) {
  if (error.code == make_error_code(Errc::duplicate_name)) {
    return make_error(Errc::duplicate_name, "a " + std::string(kind) + " named '" +
                                                std::string(name) + "' already exists");
  }
  return error;
}

std::string to_json(const std::vector<std::string>& values) {
  // Replace invalid UTF-8 rather than throw: records come from users and remote hosts.
  return nlohmann::json(values).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string to_json(const std::vector<std::uint16_t>& values) {
  // Numbers cannot be invalid UTF-8; the same handler anyway, so no dump() here can throw.
  return nlohmann::json(values).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

template <class T>
Result<std::vector<T>> from_json(const std::string& text, std::string_view what) {
  const auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array()) {
    return make_error(Errc::corrupt, std::string(what) + " is not a JSON array");
  }
  std::vector<T> values;
  values.reserve(parsed.size());
  for (const auto& item : parsed) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!item.is_string()) {
        return make_error(Errc::corrupt, std::string(what) + " holds a non-string");
      }
      values.push_back(item.template get<std::string>());
    } else {
      if (!item.is_number_unsigned() || item.template get<std::uint64_t>() > 65535) {
        return make_error(Errc::corrupt, std::string(what) + " holds an invalid port");
      }
      values.push_back(static_cast<T>(item.template get<std::uint64_t>()));
    }
  }
  return values;
}

constexpr std::string_view kServerColumns =
    "SELECT id, name, host, port, \"user\", auth_method, identity_file, host_key_policy, "
    "known_hosts_file, secret IS NOT NULL, created_at, updated_at FROM servers ";

constexpr std::string_view kApplicationColumns =
    "SELECT id, name, server_id, systemd_units, ports, health_url, log_paths FROM applications ";

}  // namespace

Result<std::vector<ServerRecord>> Database::select_servers(
    std::string_view where, const std::function<void(sql::Statement&)>& bind) {
  auto query = db_.prepare(std::string(kServerColumns) + std::string(where));
  if (!query) {
    return std::move(query).error();
  }
  bind(*query);
  std::vector<ServerRecord> servers;
  for (;;) {
    auto row = query->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    ServerRecord server;
    server.id = query->int64(0);
    server.name = query->text(1);
    server.host = query->text(2);
    server.port = static_cast<std::uint16_t>(query->int64(3));  // CHECK: 1..65535
    server.user = query->text(4);
    const auto method = auth_method_from_sql(query->text(5));
    const auto policy = host_key_policy_from_sql(query->text(7));
    if (!method || !policy) {
      return make_error(Errc::corrupt, server_label(server.name, server.id) +
                                           ": unknown auth method or host key policy");
    }
    server.auth_method = *method;
    server.identity_file = query->text(6);
    server.host_key_policy = *policy;
    server.known_hosts_file = query->text(8);
    server.has_secret = query->int64(9) != 0;
    server.created_at = query->int64(10);
    server.updated_at = query->int64(11);
    servers.push_back(std::move(server));
  }

  auto tags = db_.prepare("SELECT tag FROM server_tags WHERE server_id = ?1 ORDER BY tag");
  if (!tags) {
    return std::move(tags).error();
  }
  auto labels =
      db_.prepare("SELECT key, value FROM server_labels WHERE server_id = ?1 ORDER BY key");
  if (!labels) {
    return std::move(labels).error();
  }
  for (auto& server : servers) {
    tags->reset();
    tags->bind(1, server.id);
    for (;;) {
      auto row = tags->step();
      if (!row) {
        return std::move(row).error();
      }
      if (!*row) {
        break;
      }
      server.tags.push_back(tags->text(0));
    }
    labels->reset();
    labels->bind(1, server.id);
    for (;;) {
      auto row = labels->step();
      if (!row) {
        return std::move(row).error();
      }
      if (!*row) {
        break;
      }
      server.labels.emplace(labels->text(0), labels->text(1));
    }
  }
  return servers;
}

Result<void> Database::write_tags_and_labels(const ServerRecord& server, std::int64_t id) {
  for (const char* sql : {"DELETE FROM server_tags WHERE server_id = ?1",
                          "DELETE FROM server_labels WHERE server_id = ?1"}) {
    auto clear = db_.prepare(sql);
    if (!clear) {
      return std::move(clear).error();
    }
    clear->bind(1, id);
    if (auto cleared = clear->run(); !cleared) {
      return cleared;
    }
  }
  auto tag = db_.prepare(
      "INSERT INTO server_tags (server_id, tag) VALUES (?1, ?2) ON CONFLICT DO NOTHING");
  if (!tag) {
    return std::move(tag).error();
  }
  for (const auto& name : server.tags) {
    tag->reset();
    tag->bind(1, id).bind(2, name);
    if (auto inserted = tag->run(); !inserted) {
      return inserted;
    }
  }
  auto label = db_.prepare("INSERT INTO server_labels (server_id, key, value) VALUES (?1, ?2, ?3)");
  if (!label) {
    return std::move(label).error();
  }
  for (const auto& [key, value] : server.labels) {
    label->reset();
    label->bind(1, id).bind(2, key).bind(3, value);
    if (auto inserted = label->run(); !inserted) {
      return inserted;
    }
  }
  return {};
}

Result<void> Database::write_secret(const ServerRecord& server,
                                    const std::optional<std::string>& secret) {
  auto update = db_.prepare("UPDATE servers SET secret = ?2 WHERE id = ?1");
  if (!update) {
    return std::move(update).error();
  }
  update->bind(1, server.id);
  if (secret) {
    // Only ciphertext reaches SQLite; the plaintext stays in the caller's record.
    update->bind_blob(2, crypto::seal(key_, *secret, secret_context(binding_of(server))));
  } else {
    update->bind_null(2);
  }
  return update->run();
}

Result<void> Database::decrypt_secret(ServerRecord& server) {
  auto query = db_.prepare("SELECT secret FROM servers WHERE id = ?1 AND secret IS NOT NULL");
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, server.id);
  auto row = query->step();
  if (!row) {
    return std::move(row).error();
  }
  if (!*row) {
    server.secret.reset();
    return {};
  }
  auto plaintext = crypto::open(key_, query->blob(0), secret_context(binding_of(server)));
  if (!plaintext) {
    // The master key is right (checked at open): the row changed behind healer's back or the
    // bytes are damaged. Never try the secret anywhere else.
    return make_error(Errc::secret_corrupt,
                      "the secret of " + server_label(server.name, server.id) +
                          " does not decrypt for the server's current host, port, user and "
                          "host key settings: the row was changed outside healer, or the secret "
                          "is damaged; store the secret again");
  }
  server.secret = std::move(plaintext).value();
  return {};
}

Result<std::int64_t> Database::add_server(const ServerRecord& server) {
  if (auto valid = validate(server, true); !valid) {
    return std::move(valid).error();
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  auto insert = db_.prepare(
      "INSERT INTO servers (name, host, port, \"user\", auth_method, identity_file, "
      "host_key_policy, known_hosts_file, created_at, updated_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) RETURNING id");
  if (!insert) {
    return std::move(insert).error();
  }
  insert->bind(1, server.name)
      .bind(2, server.host)
      .bind(3, server.port)
      .bind(4, server.user)
      .bind(5, to_sql(server.auth_method))
      .bind(6, server.identity_file)
      .bind(7, to_sql(server.host_key_policy))
      .bind(8, server.known_hosts_file)
      .bind(9, now_unix_ms());
  auto inserted = insert_returning_id(*insert);
  if (!inserted) {
    return name_conflict(std::move(inserted).error(), "server", server.name);
  }
  const std::int64_t id = *inserted;
  if (auto written = write_tags_and_labels(server, id); !written) {
    return std::move(written).error();
  }
  if (server.secret) {
    ServerRecord stored = server;
    stored.id = id;
    auto written = write_secret(stored, server.secret);
    crypto::wipe(*stored.secret);
    if (!written) {
      return std::move(written).error();
    }
  }
  if (auto committed = transaction->commit(); !committed) {
    return std::move(committed).error();
  }
  return id;
}

Result<void> Database::update_server(const ServerRecord& server) {
  if (auto valid = validate(server, false); !valid) {
    return valid;
  }
  auto transaction = sql::Transaction::begin(db_);
  if (!transaction) {
    return std::move(transaction).error();
  }
  // The stored secret and what it is bound to now, to re-seal it if the binding changes.
  auto before = db_.prepare(
      "SELECT host, port, \"user\", host_key_policy, known_hosts_file, secret FROM servers "
      "WHERE id = ?1");
  if (!before) {
    return std::move(before).error();
  }
  before->bind(1, server.id);
  auto found = before->step();
  if (!found) {
    return std::move(found).error();
  }
  if (!*found) {
    return make_error(Errc::not_found, "server #" + std::to_string(server.id));
  }
  const SecretBinding old_binding{server.id,       before->text(0), before->int64(1),
                                  before->text(2), before->text(3), before->text(4)};
  std::optional<std::vector<unsigned char>> old_secret;
  if (!before->is_null(5)) {
    const auto blob = before->blob(5);
    old_secret.emplace(blob.begin(), blob.end());
  }
  auto update = db_.prepare(
      "UPDATE servers SET name = ?2, host = ?3, port = ?4, \"user\" = ?5, auth_method = ?6, "
      "identity_file = ?7, host_key_policy = ?8, known_hosts_file = ?9, updated_at = ?10 "
      "WHERE id = ?1");
  if (!update) {
    return std::move(update).error();
  }
  update->bind(1, server.id)
      .bind(2, server.name)
      .bind(3, server.host)
      .bind(4, server.port)
      .bind(5, server.user)
      .bind(6, to_sql(server.auth_method))
      .bind(7, server.identity_file)
      .bind(8, to_sql(server.host_key_policy))
      .bind(9, server.known_hosts_file)
      .bind(10, now_unix_ms());
  if (auto updated = update->run(); !updated) {
    return name_conflict(std::move(updated).error(), "server", server.name);
  }
  if (db_.changes() == 0) {
    return make_error(Errc::not_found, "server #" + std::to_string(server.id));
  }
  if (auto written = write_tags_and_labels(server, server.id); !written) {
    return written;
  }
  if (!uses_secret(server.auth_method)) {
    if (auto cleared = write_secret(server, std::nullopt); !cleared) {
      return cleared;
    }
  } else if (server.secret) {
    if (auto written = write_secret(server, server.secret); !written) {
      return written;
    }
  } else if (!old_secret) {
    return invalid("server '" + server.name + "': auth method " +
                   std::string(to_sql(server.auth_method)) + " needs a secret");
  } else if (!(old_binding == binding_of(server))) {
    // The kept secret follows the server to its new address or settings: healer makes the
    // change, so it re-seals (a change made outside healer leaves a secret that does not decrypt).
    auto plaintext = crypto::open(key_, *old_secret, secret_context(old_binding));
    if (!plaintext) {
      return make_error(Errc::secret_corrupt,
                        "the stored secret of " + server_label(server.name, server.id) +
                            " does not decrypt, so it cannot follow the new settings; give the "
                            "secret again with the change");
    }
    auto written = write_secret(server, *plaintext);
    crypto::wipe(*plaintext);
    if (!written) {
      return written;
    }
  }
  return transaction->commit();
}

Result<ServerRecord> Database::get_server(std::int64_t id, SecretAccess access) {
  auto servers = select_servers("WHERE id = ?1", [id](sql::Statement& s) { s.bind(1, id); });
  if (!servers) {
    return std::move(servers).error();
  }
  if (servers->empty()) {
    return make_error(Errc::not_found, "server #" + std::to_string(id));
  }
  ServerRecord server = std::move(servers->front());
  if (access == SecretAccess::decrypt) {
    if (auto decrypted = decrypt_secret(server); !decrypted) {
      return std::move(decrypted).error();
    }
  }
  return server;
}

Result<ServerRecord> Database::get_server_by_name(std::string_view name, SecretAccess access) {
  auto servers = select_servers("WHERE name = ?1", [name](sql::Statement& s) { s.bind(1, name); });
  if (!servers) {
    return std::move(servers).error();
  }
  if (servers->empty()) {
    return make_error(Errc::not_found, "server '" + std::string(name) + "'");
  }
  ServerRecord server = std::move(servers->front());
  if (access == SecretAccess::decrypt) {
    if (auto decrypted = decrypt_secret(server); !decrypted) {
      return std::move(decrypted).error();
    }
  }
  return server;
}

Result<std::vector<ServerRecord>> Database::list_servers(std::string_view tag) {
  if (tag.empty()) {
    return select_servers("ORDER BY name", [](sql::Statement&) {});
  }
  return select_servers(
      "WHERE id IN (SELECT server_id FROM server_tags WHERE tag = ?1) ORDER BY name",
      [tag](sql::Statement& s) { s.bind(1, tag); });
}

Result<void> Database::remove_server(std::int64_t id) {
  auto remove = db_.prepare("DELETE FROM servers WHERE id = ?1");
  if (!remove) {
    return std::move(remove).error();
  }
  remove->bind(1, id);
  if (auto removed = remove->run(); !removed) {
    return removed;
  }
  if (db_.changes() == 0) {
    return make_error(Errc::not_found, "server #" + std::to_string(id));
  }
  return {};
}

Result<void> Database::remove_server_by_name(std::string_view name) {
  auto remove = db_.prepare("DELETE FROM servers WHERE name = ?1");
  if (!remove) {
    return std::move(remove).error();
  }
  remove->bind(1, name);
  if (auto removed = remove->run(); !removed) {
    return removed;
  }
  if (db_.changes() == 0) {
    return make_error(Errc::not_found, "server '" + std::string(name) + "'");
  }
  return {};
}

Result<std::vector<ApplicationRecord>> Database::select_applications(
    std::string_view where, std::optional<std::int64_t> key, std::string_view name) {
  auto query = db_.prepare(std::string(kApplicationColumns) + std::string(where));
  if (!query) {
    return std::move(query).error();
  }
  if (key) {
    query->bind(1, *key);
  } else if (!name.empty()) {
    query->bind(1, name);
  }
  std::vector<ApplicationRecord> apps;
  for (;;) {
    auto row = query->step();
    if (!row) {
      return std::move(row).error();
    }
    if (!*row) {
      break;
    }
    ApplicationRecord app;
    app.id = query->int64(0);
    app.name = query->text(1);
    app.server_id = query->int64(2);
    const std::string what = "application #" + std::to_string(app.id);
    auto units = from_json<std::string>(query->text(3), what + " systemd_units");
    auto ports = from_json<std::uint16_t>(query->text(4), what + " ports");
    auto logs = from_json<std::string>(query->text(6), what + " log_paths");
    if (!units) {
      return std::move(units).error();
    }
    if (!ports) {
      return std::move(ports).error();
    }
    if (!logs) {
      return std::move(logs).error();
    }
    app.systemd_units = std::move(units).value();
    app.ports = std::move(ports).value();
    app.health_url = query->text(5);
    app.log_paths = std::move(logs).value();
    apps.push_back(std::move(app));
  }
  return apps;
}

Result<std::int64_t> Database::add_application(const ApplicationRecord& app) {
  if (auto valid = validate(app); !valid) {
    return std::move(valid).error();
  }
  auto insert = db_.prepare(
      "INSERT INTO applications (name, server_id, systemd_units, ports, health_url, log_paths, "
      "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id");
  if (!insert) {
    return std::move(insert).error();
  }
  insert->bind(1, app.name)
      .bind(2, app.server_id)
      .bind(3, to_json(app.systemd_units))
      .bind(4, to_json(app.ports))
      .bind(5, app.health_url)
      .bind(6, to_json(app.log_paths))
      .bind(7, now_unix_ms());
  auto inserted = insert_returning_id(*insert);
  if (!inserted) {
    Error error = name_conflict(std::move(inserted).error(), "application", app.name);
    if (error.code == make_error_code(Errc::not_found)) {
      error.detail =
          "server #" + std::to_string(app.server_id) + " (for application '" + app.name + "')";
    }
    return error;
  }
  return *inserted;
}

Result<void> Database::update_application(const ApplicationRecord& app) {
  if (auto valid = validate(app); !valid) {
    return valid;
  }
  auto update = db_.prepare(
      "UPDATE applications SET name = ?2, server_id = ?3, systemd_units = ?4, ports = ?5, "
      "health_url = ?6, log_paths = ?7, updated_at = ?8 WHERE id = ?1");
  if (!update) {
    return std::move(update).error();
  }
  update->bind(1, app.id)
      .bind(2, app.name)
      .bind(3, app.server_id)
      .bind(4, to_json(app.systemd_units))
      .bind(5, to_json(app.ports))
      .bind(6, app.health_url)
      .bind(7, to_json(app.log_paths))
      .bind(8, now_unix_ms());
  if (auto updated = update->run(); !updated) {
    Error error = name_conflict(std::move(updated).error(), "application", app.name);
    if (error.code == make_error_code(Errc::not_found)) {
      error.detail =
          "server #" + std::to_string(app.server_id) + " (for application '" + app.name + "')";
    }
    return error;
  }
  if (db_.changes() == 0) {
    return make_error(Errc::not_found, "application #" + std::to_string(app.id));
  }
  return {};
}

Result<ApplicationRecord> Database::get_application(std::int64_t id) {
  auto apps = select_applications("WHERE id = ?1", id, {});
  if (!apps) {
    return std::move(apps).error();
  }
  if (apps->empty()) {
    return make_error(Errc::not_found, "application #" + std::to_string(id));
  }
  return std::move(apps->front());
}

Result<ApplicationRecord> Database::get_application_by_name(std::string_view name) {
  if (name.empty()) {
    return make_error(Errc::not_found, "application ''");
  }
  auto apps = select_applications("WHERE name = ?1", std::nullopt, name);
  if (!apps) {
    return std::move(apps).error();
  }
  if (apps->empty()) {
    return make_error(Errc::not_found, "application '" + std::string(name) + "'");
  }
  return std::move(apps->front());
}

Result<std::vector<ApplicationRecord>> Database::list_applications(
    std::optional<std::int64_t> server_id) {
  if (server_id) {
    return select_applications("WHERE server_id = ?1 ORDER BY name", server_id, {});
  }
  return select_applications("ORDER BY name", std::nullopt, {});
}

Result<void> Database::remove_application(std::int64_t id) {
  auto remove = db_.prepare("DELETE FROM applications WHERE id = ?1");
  if (!remove) {
    return std::move(remove).error();
  }
  remove->bind(1, id);
  if (auto removed = remove->run(); !removed) {
    return removed;
  }
  if (db_.changes() == 0) {
    return make_error(Errc::not_found, "application #" + std::to_string(id));
  }
  return {};
}

}  // namespace healer::store
