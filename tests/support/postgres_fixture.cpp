#include "postgres_fixture.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <stdexcept>
#include <vector>

#include "poll_until.hpp"
#include "ports.hpp"

namespace healer::test {
namespace {

using std::chrono::milliseconds;

constexpr const char* kDefaultBin = "/usr/lib/postgresql/15/bin";
constexpr const char* kTestUser = "healer-test";  // created by scripts/install-deps.sh
constexpr const char* kSetprivPath = "/usr/bin/setpriv";
constexpr const char* kEnvPath = "/usr/bin/env";
constexpr milliseconds kStartTimeout{20000};
constexpr milliseconds kStopGrace{5000};
constexpr int kPortAttempts = 5;

std::filesystem::path server_bin() {
  if (std::filesystem::exists(std::filesystem::path(kDefaultBin) / "postgres")) {
    return kDefaultBin;
  }
  try {
    const auto found = run_command({"pg_config", "--bindir"}, milliseconds(5000));
    std::string bin = found.out;
    while (!bin.empty() && (bin.back() == '\n' || bin.back() == ' ')) {
      bin.pop_back();
    }
    if (found.exit_code() == 0 && !bin.empty()) {
      return bin;
    }
  } catch (const std::exception&) {
    // No pg_config: the caller reports the missing binaries.
  }
  return {};
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string tail(const std::string& text, std::size_t bytes = 2000) {
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

std::string random_password() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device source;
  std::uniform_int_distribution<std::size_t> pick(0, sizeof kAlphabet - 2);
  std::string password = "Pg";
  for (int i = 0; i < 22; ++i) {
    password += kAlphabet[pick(source)];
  }
  return password;
}

// As root: the uid and gid of the unprivileged test user (initdb and postgres refuse root).
struct RunAs {
  uid_t uid = 0;
  gid_t gid = 0;
};

std::optional<RunAs> run_as() {
  if (::geteuid() != 0) {
    return std::nullopt;
  }
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> strings(16384);
  if (::getpwnam_r(kTestUser, &entry, strings.data(), strings.size(), &found) != 0 ||
      found == nullptr) {
    throw std::runtime_error(std::string("PostgresFixture: the unprivileged test user ") +
                             kTestUser + " does not exist: run scripts/install-deps.sh as root");
  }
  return RunAs{found->pw_uid, found->pw_gid};
}

// `argv` run in `dir`, as the test user when we are root. setpriv and env exec (no fork), so the
// pid of a spawned server is the postmaster's own.
std::vector<std::string> as_server_user(const std::filesystem::path& dir,
                                        std::vector<std::string> argv) {
  std::vector<std::string> command;
  if (const auto user = run_as()) {
    command = {kSetprivPath, fmt::format("--reuid={}", user->uid),
               fmt::format("--regid={}", user->gid), "--clear-groups", "--"};
  }
  command.insert(command.end(), {kEnvPath, "-C", dir.string()});
  command.insert(command.end(), argv.begin(), argv.end());
  return command;
}

void chown_tree(const std::filesystem::path& dir) {
  const auto user = run_as();
  if (!user) {
    return;
  }
  if (::chown(dir.c_str(), user->uid, user->gid) != 0) {
    throw std::runtime_error("PostgresFixture: chown " + dir.string() + " failed");
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (::lchown(entry.path().c_str(), user->uid, user->gid) != 0) {
      throw std::runtime_error("PostgresFixture: chown " + entry.path().string() + " failed");
    }
  }
}

// initdb costs over a second of CPU and ctest runs each test in a process of its own: the first
// fixture on the machine runs it once into $TMPDIR/healer-pg-template-<major>-<uid> (built aside
// and renamed into place when complete, so a concurrent fixture sees all of it or nothing) and
// every fixture copies that cluster (cp -a, a tenth of a second). Deleting it is always safe.
std::filesystem::path template_cluster(const std::filesystem::path& bin) {
  const char* env_tmp = std::getenv("TMPDIR");  // NOLINT(concurrency-mt-unsafe): no setenv here
  const std::filesystem::path base = (env_tmp != nullptr && *env_tmp != '\0') ? env_tmp : "/tmp";
  const auto target = base / fmt::format("healer-pg-template-{}-{}",
                                         bin.parent_path().filename().string(), ::geteuid());
  if (std::filesystem::exists(target / "PG_VERSION")) {
    return target;
  }
  TempDir staging("healer-pg-template-");
  if (run_as()) {
    std::filesystem::permissions(staging.path(), std::filesystem::perms::owner_all |
                                                     std::filesystem::perms::group_exec |
                                                     std::filesystem::perms::others_exec);
  }
  { std::ofstream(staging.path() / "pwfile") << random_password() << '\n'; }
  std::filesystem::permissions(staging.path() / "pwfile", std::filesystem::perms::owner_read |
                                                              std::filesystem::perms::owner_write);
  chown_tree(staging.path());
  // -N: no fsync of the new cluster (a test server); trust on the socket, a password over TCP.
  const auto initdb = run_command(
      as_server_user(
          staging.path(),
          {(bin / "initdb").string(), "-D", (staging.path() / "data").string(), "-U", "healer",
           "--pwfile=" + (staging.path() / "pwfile").string(), "--auth-local=trust",
           "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "-N"}),
      milliseconds(60000));
  if (initdb.exit_code() != 0) {
    throw std::runtime_error("PostgresFixture: initdb failed: " + tail(initdb.err + initdb.out));
  }
  std::error_code ignored;  // another process may have won the race: its cluster is as good
  std::filesystem::rename(staging.path() / "data", target, ignored);
  if (!std::filesystem::exists(target / "PG_VERSION")) {
    throw std::runtime_error("PostgresFixture: cannot keep the template cluster at " +
                             target.string());
  }
  return target;
}

struct ConnFinish {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct ResultClear {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};

}  // namespace

std::string PostgresFixture::unavailable_reason() {
  const auto bin = server_bin();
  if (bin.empty() || !std::filesystem::exists(bin / "initdb") ||
      !std::filesystem::exists(bin / "postgres")) {
    return "PostgreSQL server binaries (initdb, postgres) not found in " +
           std::string(kDefaultBin) +
           " or `pg_config --bindir`: install postgresql-15 (scripts/install-deps.sh)";
  }
  if (::geteuid() == 0 && !std::filesystem::exists(kSetprivPath)) {
    return "running as root needs setpriv (util-linux) to start PostgreSQL as healer-test";
  }
  return {};
}

PostgresFixture::PostgresFixture() : dir_("healer-pg-"), bin_(server_bin()) {
  if (const auto reason = unavailable_reason(); !reason.empty()) {
    throw std::runtime_error("PostgresFixture: " + reason);
  }
  password_ = random_password();
  if (run_as()) {
    // The server user must reach its files inside our 0700 temp dir.
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::owner_all |
                                                  std::filesystem::perms::group_exec |
                                                  std::filesystem::perms::others_exec);
  }
  chown_tree(dir_.path());
  const auto cluster = template_cluster(bin_);
  const auto copied = run_command({"cp", "-a", cluster.string(), (dir_.path() / "data").string()},
                                  milliseconds(60000));
  if (copied.exit_code() != 0) {
    throw std::runtime_error("PostgresFixture: copying " + cluster.string() +
                             " failed: " + tail(copied.err));
  }
  for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
    if (start_on(closed_port())) {
      // This server's own password (the template's is thrown away), over the trusted socket.
      query("ALTER ROLE healer PASSWORD '" + password_ + "'", "postgres");
      query("CREATE DATABASE healer", "postgres");
      return;
    }
  }
  throw std::runtime_error("PostgresFixture: postgres did not start: " +
                           tail(read_file(log_path())));
}

bool PostgresFixture::start_on(std::uint16_t port) {
  port_ = port;
  // A test server: no durability (fsync off), few connections, small memory.
  server_.emplace(ChildProcess::spawn(as_server_user(dir_.path(), {(bin_ / "postgres").string(),
                                                                   "-D",
                                                                   (dir_.path() / "data").string(),
                                                                   "-k",
                                                                   dir_.path().string(),
                                                                   "-h",
                                                                   "127.0.0.1",
                                                                   "-p",
                                                                   std::to_string(port),
                                                                   "-c",
                                                                   "fsync=off",
                                                                   "-c",
                                                                   "synchronous_commit=off",
                                                                   "-c",
                                                                   "full_page_writes=off",
                                                                   "-c",
                                                                   "max_connections=40",
                                                                   "-c",
                                                                   "shared_buffers=16MB",
                                                                   "-c",
                                                                   "log_min_messages=warning"}),
                                      log_path()));
  const std::string ping = fmt::format(
      "host={} port={} dbname=postgres user=healer connect_timeout=2", dir_.path().string(), port);
  const bool ready =
      poll_until([&] { return !server_->running() || PQping(ping.c_str()) == PQPING_OK; },
                 kStartTimeout, milliseconds(20));
  if (ready && server_->running()) {
    return true;
  }
  server_.reset();  // SIGKILLs it if still running
  return false;
}

PostgresFixture::~PostgresFixture() {
  try {
    stop();
  } catch (const std::exception& error) {
    std::cerr << "PostgresFixture teardown: " << error.what() << '\n';
  }
}

PostgresFixture& PostgresFixture::shared() {
  static PostgresFixture server;
  return server;
}

void PostgresFixture::stop() {
  if (!server_) {
    return;
  }
  // Fast shutdown: active sessions end, then the postmaster; an immediate one if it lingers.
  server_->signal(SIGINT);
  if (!server_->wait_for_exit(kStopGrace)) {
    server_->signal(SIGQUIT);
    (void)server_->wait_for_exit(kStopGrace);
  }
  server_.reset();
}

void PostgresFixture::restart() {
  stop();
  if (!start_on(port_)) {
    throw std::runtime_error("PostgresFixture: postgres did not restart: " +
                             tail(read_file(log_path())));
  }
}

bool PostgresFixture::running() { return server_ && server_->running(); }

std::string PostgresFixture::url(std::string_view database) const {
  return fmt::format("postgresql://healer:{}@127.0.0.1:{}/{}", password_, port_, database);
}

std::string PostgresFixture::fresh_database_url() {
  schema_ = fmt::format("t{}_{}", ::getpid(), ++schemas_);
  query("CREATE SCHEMA " + schema_);
  return url() + "?options=-csearch_path%3D" + schema_;
}

std::string PostgresFixture::query(std::string_view sql, std::string_view database) const {
  const std::string conninfo =
      fmt::format("host={} port={} dbname={} user=healer", dir_.path().string(), port_, database);
  std::unique_ptr<PGconn, ConnFinish> conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("PostgresFixture: connecting: " +
                             std::string(PQerrorMessage(conn.get())));
  }
  const std::string text(sql);
  std::unique_ptr<PGresult, ResultClear> result(PQexec(conn.get(), text.c_str()));
  const auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error("PostgresFixture: " + text + ": " +
                             PQresultErrorMessage(result.get()));
  }
  if (status == PGRES_TUPLES_OK && PQntuples(result.get()) > 0) {
    return std::string(PQgetvalue(result.get(), 0, 0),
                       static_cast<std::size_t>(PQgetlength(result.get(), 0, 0)));
  }
  return {};
}

}  // namespace healer::test
