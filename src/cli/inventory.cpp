#include "inventory.hpp"

#include <fmt/format.h>
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>

#include "healer/cli/exit_codes.hpp"
#include "healer/core/error.hpp"
#include "healer/store/paths.hpp"

namespace healer::cli {
namespace {

namespace fs = std::filesystem;

Error usage_error(std::string detail) {
  return Error{std::make_error_code(std::errc::invalid_argument), std::move(detail)};
}

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

int usage(const std::string& message) {
  std::cerr << "healer: " << message << '\n';
  return kExitUsage;
}

int fail(const Error& error) {
  std::cerr << "healer: " << error.message() << '\n';
  return exit_code_for(error);
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += separator;
    }
    out += item;
  }
  return out;
}

void add_store_options(CLI::App& app, StoreArgs& args) {
  app.add_option("--db", args.db,
                 "Inventory database (default: $HEALER_DB, else "
                 "$XDG_DATA_HOME/healer/healer.db or ~/.local/share/healer/healer.db); secrets in "
                 "it are encrypted under HEALER_MASTER_KEY or master.key next to it")
      ->type_name("FILE");
}

Result<store::Store> open_store(const StoreArgs& args) {
  store::StoreOptions options;
  if (!args.db.empty()) {
    options.db_path = args.db;
  } else {
    auto path = store::default_db_path();
    if (!path) {
      return std::move(path).error();
    }
    options.db_path = std::move(*path);
  }
  return store::Store::open(std::move(options));
}

void add_selection_options(CLI::App& app, Selection& selection) {
  app.add_option("servers", selection.names, "Server names (see `healer server list`)")
      ->type_name("SERVER");
  app.add_option("--tag,-t", selection.tags, "Every server with this tag (repeatable)");
  app.add_flag("--all,-a", selection.all, "Every server in the inventory");
}

Result<std::vector<store::ServerRecord>> select_servers(store::Store& store,
                                                        const Selection& selection) {
  if (selection.empty()) {
    return usage_error("name at least one server, or use --tag TAG or --all");
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
        return usage_error(fmt::format("no server named '{}' in {} (see `healer server list`)",
                                       name, store.path().string()));
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
      return usage_error(fmt::format("no server has the tag '{}'", tag));
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
    return usage_error(
        fmt::format("the inventory {} holds no server yet (add one with `healer server add` or "
                    "`healer server import ~/.ssh/config`)",
                    store.path().string()));
  }
  return chosen;
}

std::string default_known_hosts() {
  return (fs::path(home_dir()) / ".ssh" / "known_hosts").string();
}

std::string default_identity() {
  for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
    const auto path = fs::path(home_dir()) / ".ssh" / name;
    if (fs::exists(path)) {
      return path.string();
    }
  }
  return (fs::path(home_dir()) / ".ssh" / "id_ed25519").string();
}

Result<pool::Server> pool_server_for(const store::ServerRecord& record, const PoolConfig& config) {
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
  if (const char* passphrase = std::getenv("HEALER_KEY_PASSPHRASE"); passphrase != nullptr) {
    connect.passphrase = passphrase;
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
        return usage_error(
            fmt::format("server '{}' uses a password but none is stored; set it "
                        "with `healer server add {} --auth password --replace`",
                        record.name, record.name));
      }
      connect.auth = ssh::AuthMethod::password;
      connect.password = *record.secret;
      break;
    case store::AuthMethod::stored_key:
      if (!record.secret) {
        return usage_error(
            fmt::format("server '{}' uses a stored key but none is stored", record.name));
      }
      connect.auth = ssh::AuthMethod::key_data;
      connect.private_key = *record.secret;
      break;
  }
  return server;
}

std::string describe(const store::ServerRecord& record) {
  std::string text = record.user.empty() ? record.host : record.user + "@" + record.host;
  if (record.port != 22) {
    text += fmt::format(":{}", record.port);
  }
  return text;
}

}  // namespace healer::cli
