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

// Owns a file descriptor.
struct Fd {
  int fd = -1;
  explicit Fd(int value) noexcept : fd(value) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

bool is_link_at(const std::filesystem::path& file) {
  struct stat info {};
  return ::lstat(file.c_str(), &info) == 0 && S_ISLNK(info.st_mode);
}

Error symlink_refused(const std::filesystem::path& file) {
  return make_error(Errc::io, "refusing " + file.string() +
                                  ": it is a symbolic link (healer opens its database, and "
                                  "changes its mode, only at its real path)");
}

// What opening `file` failed with, in words a user can act on.
Error open_failed(const std::filesystem::path& file, int error, bool exists) {
  if (error == ELOOP && is_link_at(file)) {
    return symlink_refused(file);
  }
  if (exists && (error == EACCES || error == EPERM || error == EROFS)) {
    return make_error(Errc::read_only,
                      file.string() + " is read-only (" + errno_text(error) +
                          "): healer needs write access to change it; commands that only read "
                          "open it read-only");
  }
  return make_error(Errc::io,
                    (exists ? "opening " : "creating ") + file.string() + ": " + errno_text(error));
}

// Tightens an open file to 0600 if group or others may access it (fchmod: the file that was
// opened, never what a path resolves to later).
Result<void> tighten(int fd, const std::filesystem::path& file) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return make_error(Errc::io, "reading the mode of " + file.string() + ": " + errno_text(errno));
  }
  if (!S_ISREG(info.st_mode)) {
    return make_error(Errc::io, file.string() + " is not a regular file");
  }
  if ((info.st_mode & 077) != 0) {
    if (::fchmod(fd, 0600) != 0) {
      return make_error(Errc::io,
                        "cannot restrict " + file.string() + " to mode 0600: " + errno_text(errno));
    }
    log::get("store")->warn("{} was accessible by other users; changed its mode to 0600",
                            file.string());
  }
  return {};
}

// Tightens SQLite's -wal or -shm file if present; refuses a symbolic link there too.
Result<void> tighten_companion(const std::filesystem::path& file) {
  Fd opened(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (opened.fd < 0) {
    if (errno == ENOENT) {
      return {};
    }
    return open_failed(file, errno, true);
  }
  return tighten(opened.fd, file);
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

Result<std::int64_t> insert_returning_id(sql::Statement& insert) {
  auto row = insert.step();
  if (!row) {
    return std::move(row).error();
  }
  if (!*row) {
    return make_error(Errc::sqlite, "an INSERT returned no id");
  }
  const std::int64_t id = insert.int64(0);
  if (auto finished = insert.run(); !finished) {
    return std::move(finished).error();
  }
  return id;
}

Result<void> prepare_database_file(const std::filesystem::path& db_path) {
  if (auto made = make_private_directories(db_path.parent_path()); !made) {
    return made;
  }
  // SQLite keeps a WAL database's -wal and -shm next to it: it needs to create them there.
  const std::filesystem::path directory =
      db_path.parent_path().empty() ? std::filesystem::path(".") : db_path.parent_path();
  if (::faccessat(AT_FDCWD, directory.c_str(), W_OK | X_OK, AT_EACCESS) != 0) {
    const int error = errno;
    if (error == EACCES || error == EPERM || error == EROFS) {
      return make_error(Errc::read_only,
                        "the directory " + directory.string() + " is read-only (" +
                            errno_text(error) +
                            "): healer needs to create the database's -wal and -shm files "
                            "there; commands that only read open it read-only");
    }
  }
  // Create the file ourselves so it is 0600 from its first byte (SQLite would use 0644 & ~umask);
  // O_NOFOLLOW: a symbolic link planted at the path is refused, never written or chmod'ed through.
  struct stat before {};
  const bool exists = ::lstat(db_path.c_str(), &before) == 0;
  Fd file(::open(db_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  if (file.fd < 0) {
    return open_failed(db_path, errno, exists);
  }
  if (auto tightened = tighten(file.fd, db_path); !tightened) {
    return tightened;
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::filesystem::path companion = db_path;
    companion += suffix;
    if (auto tightened = tighten_companion(companion); !tightened) {
      return tightened;
    }
  }
  return {};
}

namespace {

// Resolves the master key (the caller's, HEALER_MASTER_KEY or the key file) and checks it against
// the database's key check when there is one; creates the key file only for a database without
// a check (a new one) and only when `may_create`.
Result<MasterKey> master_key_for(const StoreOptions& options, const std::string& where,
                                 const std::optional<std::vector<unsigned char>>& key_check,
                                 bool may_create) {
  std::string key_origin = "the key given by the caller";
  std::optional<MasterKey> key = options.master_key;
  if (!key) {
    std::filesystem::path key_file = options.key_file;
    if (key_file.empty() && is_database_url(options.db_path.native())) {
      // A server database has no directory of its own here: the key lives in healer's state
      // directory on this machine (every node of a fleet needs the same key).
      auto directory = state_directory(options.db_path);
      if (!directory) {
        return std::move(directory).error();
      }
      key_file = *directory / "master.key";
    } else if (key_file.empty()) {
      key_file = default_key_file(options.db_path);
    }
    const KeySource source = KeySource::from_environment(key_file);
    if (!source.env_value && !key_check && may_create) {
      if (auto made = make_private_directories(key_file.parent_path()); !made) {
        return std::move(made).error();
      }
    }
    key_origin = source.env_value ? "HEALER_MASTER_KEY" : "key file " + key_file.string();
    auto resolved = resolve_master_key(
        source, key_check || !may_create ? KeyCreation::forbidden : KeyCreation::allowed);
    if (!resolved) {
      return std::move(resolved).error();
    }
    key.emplace(*resolved);
  }
  if (key_check && !crypto::verify_key_check(*key, *key_check)) {
    return make_error(Errc::wrong_master_key, where + " (key from " + key_origin + ")");
  }
  return *key;
}

// SQLite cannot read a WAL database read-only when it may not create the -shm file (a read-only
// directory and no -shm left by a writer): it then answers SQLITE_READONLY or SQLITE_CANTOPEN.
bool needs_immutable(const Error& error, const std::filesystem::path& path) {
  std::filesystem::path wal = path;
  wal += "-wal";
  struct stat info {};
  return error.code == make_error_code(Errc::io) && ::lstat(wal.c_str(), &info) != 0 &&
         ::faccessat(AT_FDCWD, path.parent_path().empty() ? "." : path.parent_path().c_str(), W_OK,
                     AT_EACCESS) != 0;
}

}  // namespace

Result<Database> Database::open_read_only(const StoreOptions& options) {
  const std::filesystem::path& path = options.db_path;
  const std::string where = path.string();
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) {
      return make_error(Errc::not_found,
                        "no database at " + where + " (a read-only open creates nothing)");
    }
    return make_error(Errc::io, "reading " + where + ": " + errno_text(errno));
  }
  if (S_ISLNK(info.st_mode)) {
    return symlink_refused(path);
  }
  if (!S_ISREG(info.st_mode)) {
    return make_error(Errc::io, where + " is not a regular file");
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    std::filesystem::path companion = path;
    companion += suffix;
    if (is_link_at(companion)) {
      return symlink_refused(companion);
    }
  }
  // The first read shows whether plain read-only access works; in a directory nobody can write,
  // nobody can open the database in WAL mode to change it either, so `immutable` is safe there.
  auto connection = sql::Connection::open(path, sql::OpenMode::read_only, options.busy_timeout);
  Result<int> version =
      connection ? migrations::read_version(*connection) : Result<int>(connection.error());
  if (!version && needs_immutable(version.error(), path)) {
    connection = sql::Connection::open(path, sql::OpenMode::immutable, options.busy_timeout);
    version = connection ? migrations::read_version(*connection) : Result<int>(connection.error());
  }
  if (!version) {
    return with_context(std::move(version).error(), where);
  }
  if (*version > migrations::latest_version()) {
    return make_error(Errc::schema_too_new, where + ": database is at schema version " +
                                                std::to_string(*version) +
                                                ", this healer knows up to " +
                                                std::to_string(migrations::latest_version()));
  }
  if (*version < migrations::latest_version()) {
    return make_error(Errc::schema_too_old,
                      where + " is at schema version " + std::to_string(*version) +
                          " and this healer needs " + std::to_string(migrations::latest_version()) +
                          "; a read-only open does not migrate: run a command that writes (for "
                          "example `healer server add`) once with write access");
  }
  auto stored = read_meta(*connection, kKeyCheck);
  if (!stored) {
    return with_context(std::move(stored).error(), where);
  }
  if (!stored->has_value()) {
    return make_error(Errc::corrupt, where + " has no master key check (never fully created)");
  }
  auto key = master_key_for(options, where, *stored, false);
  if (!key) {
    return std::move(key).error();
  }
  return Database(std::move(connection).value(), std::move(*key), *version, true);
}

Result<Database> Database::open(const StoreOptions& options) {
  if (!crypto::init()) {
    return make_error(Errc::sqlite, "libsodium failed to initialise");
  }
  if (options.db_path.empty()) {
    return make_error(Errc::io, "no database path given");
  }
  if (is_database_url(options.db_path.native())) {
    return open_postgres(options);
  }
  if (options.read_only) {
    return open_read_only(options);
  }
  const std::filesystem::path& path = options.db_path;
  const std::string where = path.string();
  if (auto prepared = prepare_database_file(path); !prepared) {
    return std::move(prepared).error();
  }
  auto connection = sql::Connection::open(path, sql::OpenMode::read_write, options.busy_timeout);
  if (!connection) {
    return std::move(connection).error();
  }
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
  auto version = migrate_with_key(*connection, options, where);
  if (!version) {
    return std::move(version).error();
  }
  return Database(std::move(connection).value(), std::move(version->second), version->first, false);
}

Result<Database> Database::open_postgres(const StoreOptions& options) {
  const std::string where = display_location(options.db_path.native());
  auto connection = sql::Connection::open_postgres(options.db_path.native(), options.busy_timeout,
                                                   options.reply_timeout);
  if (!connection) {
    return std::move(connection).error();
  }
  if (options.read_only) {
    // The same checks as a read-only file: nothing created, migrated or written.
    if (auto guarded = connection->exec("SET default_transaction_read_only = on"); !guarded) {
      return with_context(std::move(guarded).error(), where);
    }
    auto version = migrations::read_version(*connection);
    if (!version) {
      return with_context(std::move(version).error(), where);
    }
    if (*version != migrations::latest_version()) {
      return make_error(
          *version > migrations::latest_version() ? Errc::schema_too_new : Errc::schema_too_old,
          where + " is at schema version " + std::to_string(*version) + " and this healer needs " +
              std::to_string(migrations::latest_version()) + "; a read-only open does not migrate");
    }
    auto stored = read_meta(*connection, kKeyCheck);
    if (!stored) {
      return with_context(std::move(stored).error(), where);
    }
    if (!stored->has_value()) {
      return make_error(Errc::corrupt, where + " has no master key check (never fully created)");
    }
    auto key = master_key_for(options, where, *stored, false);
    if (!key) {
      return std::move(key).error();
    }
    return Database(std::move(connection).value(), std::move(*key), *version, true);
  }
  // Nodes starting together migrate one at a time: a session-level advisory lock (released
  // below, or by the server when this connection ends).
  if (auto locked = connection->exec("SELECT pg_advisory_lock(7401850233)"); !locked) {
    return with_context(std::move(locked).error(), where);
  }
  auto version = migrate_with_key(*connection, options, where);
  if (auto unlocked = connection->exec("SELECT pg_advisory_unlock(7401850233)"); !unlocked) {
    return with_context(std::move(unlocked).error(), where);
  }
  if (!version) {
    return std::move(version).error();
  }
  return Database(std::move(connection).value(), std::move(version->second), version->first, false);
}

Result<std::pair<int, MasterKey>> Database::migrate_with_key(sql::Connection& connection,
                                                             const StoreOptions& options,
                                                             const std::string& where) {
  // The key first: a migration may need it (step 5 re-seals secrets). The key check lives in
  // `meta` (migration 1); a new database has none yet, and its first open stores one.
  auto version = migrations::current_version(connection);
  if (!version) {
    return with_context(std::move(version).error(), where);
  }
  Result<std::optional<std::vector<unsigned char>>> stored{std::nullopt};
  if (*version >= 1) {
    stored = read_meta(connection, kKeyCheck);
    if (!stored) {
      return with_context(std::move(stored).error(), where);
    }
  }
  auto key = master_key_for(options, where, *stored, true);
  if (!key) {
    return std::move(key).error();
  }
  migrations::Environment environment;
  environment.key = &*key;
  version = migrations::migrate(connection, migrations::latest_version(), environment);
  if (!version) {
    return with_context(std::move(version).error(), where);
  }

  if (!stored->has_value()) {
    auto insert = connection.prepare(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING");
    if (!insert) {
      return with_context(std::move(insert).error(), where);
    }
    insert->bind(1, kKeyCheck).bind_blob(2, crypto::make_key_check(*key));
    if (auto inserted = insert->run(); !inserted) {
      return with_context(std::move(inserted).error(), where);
    }
    // Another process may have stored its own check first: read back what won.
    stored = read_meta(connection, kKeyCheck);
    if (!stored || !stored->has_value()) {
      return make_error(Errc::sqlite, where + ": cannot read back the key check");
    }
    if (!crypto::verify_key_check(*key, **stored)) {
      return make_error(Errc::wrong_master_key, where + " (another process created it first)");
    }
  }
  return std::pair<int, MasterKey>(*version, std::move(*key));
}

}  // namespace healer::store
