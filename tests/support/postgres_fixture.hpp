#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "child_process.hpp"
#include "temp_dir.hpp"

namespace healer::test {

/// A real PostgreSQL 15 server for a test: initdb into a temp dir, `postgres` on a free
/// 127.0.0.1 port (and a unix socket in the temp dir), a superuser `healer` with a random password
/// (TCP connections need it: the tests see that it never shows in an error). Stopped by its PID
/// and the directory removed in the destructor.
///
/// initdb and postgres refuse to run as root: as root they run as the unprivileged user
/// healer-test (scripts/install-deps.sh creates it, SshdFixture uses it too), and the temp dir
/// is chowned to it. The binaries come from /usr/lib/postgresql/15/bin or `pg_config --bindir`.
/// initdb runs once per machine and user: its cluster is kept in
/// $TMPDIR/healer-pg-template-<major>-<uid> (about 40 MB) and copied by every later fixture.
class PostgresFixture {
 public:
  /// Empty when the server binaries are installed; else why not (tests GTEST_SKIP with it).
  [[nodiscard]] static std::string unavailable_reason();

  /// Starts a server; throws std::runtime_error with the server log's tail if it cannot.
  PostgresFixture();
  ~PostgresFixture();
  PostgresFixture(const PostgresFixture&) = delete;
  PostgresFixture& operator=(const PostgresFixture&) = delete;

  /// One server for the whole test process, started on first use and stopped at exit.
  [[nodiscard]] static PostgresFixture& shared();

  /// A fresh, empty schema of the `healer` database; returns the URL that selects it
  /// (`postgresql://healer:PASSWORD@127.0.0.1:PORT/healer?options=-csearch_path%3D...`).
  [[nodiscard]] std::string fresh_database_url();
  /// The schema fresh_database_url() made last.
  [[nodiscard]] const std::string& schema() const noexcept { return schema_; }
  /// The URL of `database` on this server (with the password).
  [[nodiscard]] std::string url(std::string_view database = "healer") const;

  /// Runs `sql` as the superuser over the unix socket; returns the first column of the first
  /// row ("" when none). Throws std::runtime_error with the server's message on failure.
  std::string query(std::string_view sql, std::string_view database = "healer") const;

  /// Fast shutdown (SIGINT to the postmaster) and wait: the failure-path tests' server crash.
  void stop();
  /// Starts the stopped server again on the same port and data (throws if it cannot).
  void restart();
  [[nodiscard]] bool running();
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const std::string& password() const noexcept { return password_; }
  [[nodiscard]] pid_t pid() const noexcept { return server_ ? server_->pid() : -1; }
  /// The server's log (startup errors, crashes).
  [[nodiscard]] std::filesystem::path log_path() const { return dir_.path() / "postgres.log"; }

 private:
  bool start_on(std::uint16_t port);

  TempDir dir_;
  std::filesystem::path bin_;
  std::string password_;
  std::uint16_t port_ = 0;
  int schemas_ = 0;
  std::string schema_;
  std::optional<ChildProcess> server_;
};

}  // namespace healer::test
