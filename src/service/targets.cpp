#include "healer/service/targets.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <set>

#include "healer/service/errors.hpp"

namespace healer::service {
namespace {

namespace fs = std::filesystem;

}  // namespace

std::string home_dir() {
  const char* home = std::getenv("HOME");
  return home != nullptr ? home : "";
}

std::string local_user() {
  if (const passwd* entry = getpwuid(getuid()); entry != nullptr) {
    return entry->pw_name;
  }
  const char* user = std::getenv("USER");
  return user != nullptr ? user : "";
}

std::string default_known_hosts() {
  return (fs::path(home_dir()) / ".ssh" / "known_hosts").string();
}

std::string default_identity() {
  for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    const auto path = fs::path(home_dir()) / ".ssh" / name;
    std::error_code ec;
    if (fs::exists(path, ec)) {
      return path.string();
    }
  }
  return (fs::path(home_dir()) / ".ssh" / "id_ed25519").string();
}

std::string describe(const store::ServerRecord& record) {
  std::string text = record.user.empty() ? record.host : record.user + "@" + record.host;
  if (record.port != 22) {
    text += fmt::format(":{}", record.port);
  }
  return text;
}

Result<std::vector<store::ServerRecord>> select_servers(store::Store& store,
                                                        const Selection& selection) {
  if (selection.empty()) {
    return make_error(Errc::invalid_input, "name at least one server, or use --tag TAG or --all");
  }
  std::vector<store::ServerRecord> chosen;
  std::set<std::int64_t> seen;
  auto take = [&](store::ServerRecord record) -> Result<void> {
    if (!seen.insert(record.id).second) {
      return {};
    }
    // Lists never decrypt; read again with the secret when the server has one.
    if (record.has_secret) {
      auto full = store.get_server(record.id, store::SecretAccess::decrypt);
      if (!full) {
        return std::move(full).error();
      }
      record = std::move(*full);
    }
    chosen.push_back(std::move(record));
    return {};
  };
  for (const auto& name : selection.names) {
    auto record = store.get_server_by_name(name);
    if (!record) {
      if (record.error().code == store::Errc::not_found) {
        return make_error(Errc::not_found,
                          fmt::format("no server named '{}' in {} (see `healer server list`)", name,
                                      store.location()));
      }
      return std::move(record).error();
    }
    if (auto taken = take(std::move(*record)); !taken) {
      return std::move(taken).error();
    }
  }
  for (const auto& tag : selection.tags) {
    auto records = store.list_servers(tag);
    if (!records) {
      return std::move(records).error();
    }
    if (records->empty()) {
      return make_error(Errc::not_found, fmt::format("no server has the tag '{}'", tag));
    }
    for (auto& record : *records) {
      if (auto taken = take(std::move(record)); !taken) {
        return std::move(taken).error();
      }
    }
  }
  if (selection.all) {
    auto records = store.list_servers();
    if (!records) {
      return std::move(records).error();
    }
    for (auto& record : *records) {
      if (auto taken = take(std::move(record)); !taken) {
        return std::move(taken).error();
      }
    }
  }
  if (chosen.empty()) {
    return make_error(Errc::not_found,
                      fmt::format("the inventory {} holds no server yet (add one with `healer "
                                  "server add` or `healer server import ~/.ssh/config`)",
                                  store.location()));
  }
  return chosen;
}

Result<store::ServerRecord> record_for(const AdHocTarget& target, const LocalSecrets& secrets) {
  store::ServerRecord record;
  record.host = target.host;
  record.port = target.port;
  record.user = target.user.empty() ? local_user() : target.user;
  record.known_hosts_file = target.known_hosts;
  record.host_key_policy =
      target.accept_new_host_key ? store::HostKeyPolicy::accept_new : store::HostKeyPolicy::strict;
  record.auth_method = target.auth;
  switch (target.auth) {
    case store::AuthMethod::password:
      if (!secrets.password) {
        return make_error(Errc::invalid_input,
                          "--auth password needs the password in HEALER_PASSWORD");
      }
      record.secret = *secrets.password;
      break;
    case store::AuthMethod::agent:
      record.identity_file = target.identity;
      break;
    case store::AuthMethod::key_file:
      record.identity_file = target.identity.empty() ? default_identity() : target.identity;
      break;
    case store::AuthMethod::stored_key:
      return make_error(Errc::invalid_input, "a host given on the command line has no stored key");
  }
  record.name = fmt::format("{}@{}:{}", record.user, record.host, record.port);
  return record;
}

Result<pool::Server> pool_server_for(const store::ServerRecord& record, const PoolConfig& config,
                                     const LocalSecrets& secrets) {
  pool::Server server;
  server.id = record.name;
  server.endpoint = ssh::Endpoint(record.host, record.port);
  auto& connect = server.connect;
  connect.user = record.user;
  connect.known_hosts_file =
      record.known_hosts_file.empty() ? default_known_hosts() : record.known_hosts_file;
  connect.host_key_policy = record.host_key_policy == store::HostKeyPolicy::accept_new
                                ? ssh::HostKeyPolicy::accept_new
                                : ssh::HostKeyPolicy::strict;
  connect.keepalive_interval = config.keepalive_interval;
  connect.keepalive_max_missed = config.keepalive_max_missed;
  if (secrets.key_passphrase) {
    connect.passphrase = *secrets.key_passphrase;
  }
  switch (record.auth_method) {
    case store::AuthMethod::key_file:
      connect.auth = ssh::AuthMethod::key_file;
      connect.identity_file =
          record.identity_file.empty() ? default_identity() : record.identity_file;
      break;
    case store::AuthMethod::agent:
      connect.auth = ssh::AuthMethod::agent;
      connect.identity_file = record.identity_file;
      break;
    case store::AuthMethod::password:
      if (!record.secret) {
        return make_error(Errc::invalid_input,
                          fmt::format("server '{}' uses a password but none is stored; set it "
                                      "with `healer server add {} --auth password --replace`",
                                      record.name, record.name));
      }
      connect.auth = ssh::AuthMethod::password;
      connect.password = *record.secret;
      break;
    case store::AuthMethod::stored_key:
      if (!record.secret) {
        return make_error(
            Errc::invalid_input,
            fmt::format("server '{}' uses a stored key but none is stored", record.name));
      }
      connect.auth = ssh::AuthMethod::key_data;
      connect.private_key = *record.secret;
      break;
  }
  return server;
}

Result<std::vector<std::string>> register_servers(Runtime& runtime,
                                                  const std::vector<store::ServerRecord>& records) {
  std::vector<pool::Server> servers;
  servers.reserve(records.size());
  for (const auto& record : records) {
    auto server = pool_server_for(record, runtime.settings().pool, runtime.secrets());
    if (!server) {
      return std::move(server).error();
    }
    servers.push_back(std::move(*server));
  }
  std::vector<std::string> ids;
  ids.reserve(servers.size());
  for (auto& server : servers) {
    ids.push_back(server.id);
    runtime.registry().add_server(std::move(server));
  }
  return ids;
}

}  // namespace healer::service
