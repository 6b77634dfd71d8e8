#include "database.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "healer/core/log.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/paths.hpp"
#include "migrations.hpp"
#include "secret_box.hpp"

namespace healer::store {
namespace {

constexpr std::string_view kKeyCheck = "key_check";

std::string errno_text(int error) { return std::generic_category().message(error); }

// mkdir -p with mode 0700 for every directory it creates (existing ones are left alone).
Result<void> make_private_directories(const std::filesystem::path& directory) {
  if (directory.empty()) {
    return {};
  }
  std::filesystem::path partial;
  for (const auto& component : directory) {
    partial /= component;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return make_error(Errc::io,
                        "creating directory " + partial.string() + ": " + errno_text(errno));
    }
  }
  struct stat info {};
  if (::stat(directory.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return make_error(Errc::io, directory.string() + " is not a directory");
  }
  return {};
}

// Tightens a file to 0600 if it is open to group or others; a missing file is fine.
Result<void> tighten(const std::filesystem::path& file) {
  struct stat info {};
  if (::stat(file.c_str(), &info) != 0) {
    return {};
  }
  if ((info.st_mode & 077) != 0) {
    if (::chmod(file.c_str(), 0600) != 0) {
      return make_error(Errc::io,
                        "cannot restrict " + file.string() + " to mode 0600: " + errno_text(errno));
    }
    log::get("store")->warn("{} was accessible by other users; changed its mode to 0600",
                            file.string());
  }
  return {};
}

Result<std::optional<std::vector<unsigned char>>> read_meta(sql::Connection& db,
                                                            std::string_view key) {
  auto query = db.prepare("SELECT value FROM meta WHERE key = ?1");
  if (!query) {
    return std::move(query).error();
  }
  query->bind(1, key);
  auto row = query->step();
  if (!row) {
    return std::move(row).error();
  }
  if (!*row) {
    return std::optional<std::vector<unsigned char>>();
  }
  const auto blob = query->blob(0);
  return std::optional<std::vector<unsigned char>>(std::in_place, blob.begin(), blob.end());
}

Error with_context(Error error, std::string_view context) {
  error.detail = std::string(context) + ": " + error.detail;
  return error;
}

}  // namespace

Result<void> prepare_database_file(const std::filesystem::path& db_path) {
  if (auto made = make_private_directories(db_path.parent_path()); !made) {
    return made;
  }
  // Create the file ourselves so it is 0600 from its first byte (SQLite would use 0644 & ~umask).
  const int fd = ::open(db_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return make_error(Errc::io, "creating " + db_path.string() + ": " + errno_text(errno));
  }
  ::close(fd);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::path file = db_path;
    file += suffix;
    if (auto tightened = tighten(file); !tightened) {
      return tightened;
    }
  }
  return {};
}

Result<Database> Database::open(const StoreOptions& options) {
  if (!crypto::init()) {
    return make_error(Errc::sqlite, "libsodium failed to initialise");
  }
  if (options.db_path.empty()) {
    return make_error(Errc::io, "no database path given");
  }
  const std::filesystem::path& path = options.db_path;
  const std::string where = path.string();
  if (auto prepared = prepare_database_file(path); !prepared) {
    return std::move(prepared).error();
  }
  auto connection = sql::Connection::open(path);
  if (!connection) {
    return std::move(connection).error();
  }
  sqlite3_busy_timeout(connection->handle(), static_cast<int>(options.busy_timeout.count()));
  if (auto pragmas = connection->exec("PRAGMA foreign_keys = ON"); !pragmas) {
    return with_context(std::move(pragmas).error(), where);
  }
  {
    auto wal = connection->prepare("PRAGMA journal_mode = WAL");
    if (!wal) {
      return with_context(std::move(wal).error(), where);
    }
    auto row = wal->step();
    if (!row) {
      return with_context(std::move(row).error(), where);
    }
    if (!*row || wal->text(0) != "wal") {
      return make_error(Errc::io, where + ": cannot switch the database to WAL mode");
    }
  }
  // In WAL mode NORMAL never corrupts; a power loss may only lose the last transactions.
  if (auto pragmas = connection->exec("PRAGMA synchronous = NORMAL"); !pragmas) {
    return with_context(std::move(pragmas).error(), where);
  }

  auto version = migrations::migrate(*connection);
  if (!version) {
    return with_context(std::move(version).error(), where);
  }

  // The key check: the first open stores a value sealed with the key; later opens must unseal it.
  auto stored = read_meta(*connection, kKeyCheck);
  if (!stored) {
    return with_context(std::move(stored).error(), where);
  }
  std::string key_origin = "the key given by the caller";
  std::optional<MasterKey> key = options.master_key;
  if (!key) {
    const std::filesystem::path key_file =
        options.key_file.empty() ? default_key_file(path) : options.key_file;
    const KeySource source = KeySource::from_environment(key_file);
    key_origin = source.env_value ? "HEALER_MASTER_KEY" : "key file " + key_file.string();
    auto resolved = resolve_master_key(
        source, stored->has_value() ? KeyCreation::forbidden : KeyCreation::allowed);
    if (!resolved) {
      return std::move(resolved).error();
    }
    key.emplace(*resolved);
  }
  if (!stored->has_value()) {
    auto insert = connection->prepare("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)");
    if (!insert) {
      return with_context(std::move(insert).error(), where);
    }
    insert->bind(1, kKeyCheck).bind_blob(2, crypto::make_key_check(*key));
    if (auto inserted = insert->run(); !inserted) {
      return with_context(std::move(inserted).error(), where);
    }
    // Another process may have stored its own check first: read back what won.
    stored = read_meta(*connection, kKeyCheck);
    if (!stored || !stored->has_value()) {
      return make_error(Errc::sqlite, where + ": cannot read back the key check");
    }
  }
  if (!crypto::verify_key_check(*key, **stored)) {
    return make_error(Errc::wrong_master_key, where + " (key from " + key_origin + ")");
  }
  return Database(std::move(connection).value(), std::move(*key), *version);
}

}  // namespace healer::store
