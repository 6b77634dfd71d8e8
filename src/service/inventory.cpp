#include "healer/service/inventory.hpp"

#include <fmt/format.h>

#include <filesystem>

#include "healer/service/errors.hpp"
#include "healer/service/targets.hpp"

namespace healer::service {
namespace {

namespace fs = std::filesystem;

// Length of the UTF-8 sequence starting with `lead`, 0 when it cannot start one.
std::size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) {
    return 1;
  }
  if (lead >= 0xc2 && lead <= 0xdf) {
    return 2;
  }
  if (lead >= 0xe0 && lead <= 0xef) {
    return 3;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    return 4;
  }
  return 0;
}

bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto length = sequence_length(static_cast<unsigned char>(text[i]));
    if (length == 0 || i + length > text.size()) {
      return false;
    }
    for (std::size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

Error invalid(std::string detail) { return make_error(Errc::invalid_input, std::move(detail)); }

}  // namespace

std::optional<std::string> bad_word(std::string_view text, std::size_t max_size) {
  if (text.empty()) {
    return std::string("is empty");
  }
  if (text.size() > max_size) {
    return fmt::format("is longer than {} bytes", max_size);
  }
  if (text.front() == '-') {
    return std::string("starts with '-'");
  }
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return std::string("contains a control character");
    }
  }
  if (!valid_utf8(text)) {
    return std::string("is not valid UTF-8");
  }
  return std::nullopt;
}

const char* auth_name(store::AuthMethod method) noexcept {
  switch (method) {
    case store::AuthMethod::key_file:
      return "key";
    case store::AuthMethod::agent:
      return "agent";
    case store::AuthMethod::password:
      return "password";
    case store::AuthMethod::stored_key:
      return "stored-key";
  }
  return "?";
}

std::optional<store::AuthMethod> parse_auth(std::string_view text) noexcept {
  for (const auto method : {store::AuthMethod::key_file, store::AuthMethod::agent,
                            store::AuthMethod::password, store::AuthMethod::stored_key}) {
    if (text == auth_name(method)) {
      return method;
    }
  }
  return std::nullopt;
}

Result<store::ServerRecord> validate_server(ServerSpec spec) {
  if (auto why = bad_word(spec.name, 128)) {
    return invalid(fmt::format("the server name {}", *why));
  }
  if (auto why = bad_word(spec.host, 255); why || spec.host.find(' ') != std::string::npos) {
    return invalid(fmt::format("the host {}", why ? *why : "contains a space"));
  }
  if (spec.port == 0) {
    return invalid("the port must be 1-65535");
  }
  store::ServerRecord record;
  record.name = std::move(spec.name);
  record.host = std::move(spec.host);
  record.port = spec.port;
  record.user = spec.user.empty() ? local_user() : std::move(spec.user);
  if (auto why = bad_word(record.user, 64); why || record.user.find(' ') != std::string::npos) {
    return invalid(fmt::format("the user {}", why ? *why : "contains a space"));
  }
  record.known_hosts_file = std::move(spec.known_hosts);
  record.host_key_policy =
      spec.accept_new_host_key ? store::HostKeyPolicy::accept_new : store::HostKeyPolicy::strict;
  for (const auto& tag : spec.tags) {
    if (auto why = bad_word(tag, 64); why || tag.find_first_of(" ,") != std::string::npos) {
      return invalid(fmt::format("the tag '{}' {}", tag, why ? *why : "contains ' ' or ','"));
    }
  }
  record.tags = std::move(spec.tags);
  for (const auto& [key, value] : spec.labels) {
    if (auto why = bad_word(key, 64); why || key.find_first_of(" =") != std::string::npos) {
      return invalid(fmt::format("the label key '{}' {}", key, why ? *why : "contains ' ' or '='"));
    }
    if (!value.empty()) {
      if (auto why = bad_word(value, 1024)) {
        return invalid(fmt::format("the label {}'s value {}", key, *why));
      }
    }
  }
  record.labels = std::move(spec.labels);
  record.auth_method = spec.auth;
  switch (spec.auth) {
    case store::AuthMethod::key_file:
      record.identity_file =
          spec.identity.empty() ? default_identity() : fs::absolute(spec.identity).string();
      break;
    case store::AuthMethod::agent:
      record.identity_file = std::move(spec.identity);
      break;
    case store::AuthMethod::password:
      if (!spec.secret || spec.secret->empty()) {
        return invalid("--auth password needs a password (HEALER_PASSWORD or --password-stdin)");
      }
      record.secret = std::move(spec.secret);
      break;
    case store::AuthMethod::stored_key:
      if (!spec.secret || spec.secret->empty()) {
        return invalid(
            "--auth stored-key needs --identity FILE: the key is read from it and kept "
            "encrypted in the database");
      }
      record.secret = std::move(spec.secret);
      break;
  }
  return record;
}

Result<void> validate_application(const store::ApplicationRecord& app) {
  if (auto why = bad_word(app.name, 128)) {
    return invalid(fmt::format("the application name {}", *why));
  }
  for (const auto& unit : app.systemd_units) {
    if (auto why = bad_word(unit, 256); why || unit.find(' ') != std::string::npos) {
      return invalid(fmt::format("the unit '{}' {}", unit, why ? *why : "contains a space"));
    }
  }
  for (const auto port : app.ports) {
    if (port == 0) {
      return invalid("a port must be 1-65535");
    }
  }
  if (!app.health_url.empty()) {
    if (auto why = bad_word(app.health_url, 2048)) {
      return invalid(fmt::format("the health URL {}", *why));
    }
    if (!app.health_url.starts_with("http://") && !app.health_url.starts_with("https://")) {
      return invalid("the health URL must start with http:// or https://");
    }
    if (app.health_url.find_first_of(" \t") != std::string::npos) {
      return invalid("the health URL contains white space");
    }
  }
  for (const auto& path : app.log_paths) {
    if (auto why = bad_word(path, 4096)) {
      return invalid(fmt::format("the log path '{}' {}", path, *why));
    }
    if (path.front() != '/') {
      return invalid(fmt::format("the log path '{}' must be absolute", path));
    }
  }
  return {};
}

Result<AddedServer> add_server(store::Store& store, ServerSpec spec, bool replace) {
  auto record = validate_server(std::move(spec));
  if (!record) {
    return std::move(record).error();
  }
  AddedServer added;
  if (replace) {
    if (auto existing = store.get_server_by_name(record->name); existing) {
      record->id = existing->id;
      if (auto updated = store.update_server(*record); !updated) {
        return std::move(updated).error();
      }
      added.updated = true;
    }
  }
  if (!added.updated) {
    auto id = store.add_server(*record);
    if (!id) {
      if (id.error().code == store::Errc::duplicate_name) {
        return make_error(Errc::conflict,
                          fmt::format("a server named '{}' already exists (use --replace to "
                                      "update it)",
                                      record->name));
      }
      return std::move(id).error();
    }
    record->id = *id;
  }
  record->has_secret = record->secret.has_value();
  record->secret.reset();
  added.record = std::move(*record);
  return added;
}

Result<void> remove_server(store::Store& store, std::string_view name) {
  if (auto removed = store.remove_server_by_name(name); !removed) {
    if (removed.error().code == store::Errc::not_found) {
      return make_error(Errc::not_found, fmt::format("no server named '{}'", std::string(name)));
    }
    return removed;
  }
  return {};
}

}  // namespace healer::service
