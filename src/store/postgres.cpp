// The PostgreSQL backend of the store's SQL seam (sql.hpp), on libpq. Every wait for the server
// is bounded (non-blocking libpq + poll), errors carry the SQLSTATE's class, and no message holds
// the password: libpq may quote the connection string back.
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "healer/core/log.hpp"
#include "healer/store/errors.hpp"
#include "healer/store/paths.hpp"
#include "sql.hpp"

namespace healer::store::sql {
namespace {

using Clock = std::chrono::steady_clock;

// PostgreSQL's type oids (pg_type.dat) the reader needs to tell apart.
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;

struct ConnFinish {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
struct ResultClear {
  void operator()(PGresult* result) const noexcept { PQclear(result); }
};
using ConnHandle = std::unique_ptr<PGconn, ConnFinish>;
using ResultHandle = std::unique_ptr<PGresult, ResultClear>;

// Everything that could show the password in a message: the raw text from the URL and what
// libpq decoded it to.
struct Redactor {
  std::vector<std::string> secrets;

  std::string operator()(std::string text) const {
    for (const auto& secret : secrets) {
      if (secret.empty()) {
        continue;
      }
      for (std::size_t at = text.find(secret); at != std::string::npos;
           at = text.find(secret, at + 3)) {
        text.replace(at, secret.size(), "***");
      }
    }
    // libpq ends its messages with a newline and indents hints with a tab.
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
      text.pop_back();
    }
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::replace(text.begin(), text.end(), '\t', ' ');
    return text;
  }
};

// The password of a URL as typed (user info and password= parameters), before any decoding.
std::vector<std::string> raw_passwords(std::string_view url) {
  std::vector<std::string> found;
  const std::size_t scheme_end = url.find("://") + 3;
  const std::size_t authority_end = url.find_first_of("/?#", scheme_end);
  const std::string_view authority =
      url.substr(scheme_end, authority_end == std::string_view::npos ? std::string_view::npos
                                                                     : authority_end - scheme_end);
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    if (const std::size_t colon = authority.substr(0, at).find(':');
        colon != std::string_view::npos) {
      found.emplace_back(authority.substr(colon + 1, at - colon - 1));
    }
  }
  for (std::size_t from = url.find('?'); from != std::string_view::npos;
       from = url.find('&', from + 1)) {
    constexpr std::string_view kKey = "password=";
    if (url.substr(from + 1).starts_with(kKey)) {
      const std::size_t value = from + 1 + kKey.size();
      const std::size_t stop = url.find_first_of("&#", value);
      found.emplace_back(url.substr(
          value, stop == std::string_view::npos ? std::string_view::npos : stop - value));
    }
  }
  return found;
}

Errc classify(std::string_view sqlstate) {
  if (sqlstate == "23505") {
    return Errc::duplicate_name;
  }
  if (sqlstate == "23503") {
    return Errc::not_found;
  }
  // Other integrity violations (CHECK, NOT NULL), bad data (invalid JSON), and RAISE from the
  // append-only triggers: a record the schema refuses, as with SQLite.
  if (sqlstate.starts_with("23") || sqlstate.starts_with("22") || sqlstate == "P0001") {
    return Errc::invalid_record;
  }
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03" ||
      sqlstate == "57014") {  // serialization, deadlock, lock timeout, statement cancelled
    return Errc::busy;
  }
  if (sqlstate.starts_with("08") || sqlstate.starts_with("57") || sqlstate.starts_with("28") ||
      sqlstate == "3D000") {  // connection, shutdown, authentication, no such database
    return Errc::unavailable;
  }
  if (sqlstate.starts_with("53") || sqlstate.starts_with("58")) {  // out of resources, I/O
    return Errc::io;
  }
  if (sqlstate == "25006") {  // read-only transaction (a hot standby)
    return Errc::read_only;
  }
  return Errc::sqlite;  // "any other database failure"
}

// Text PostgreSQL accepts for a UTF-8 column: invalid sequences and NUL (which SQLite keeps and a
// remote host's output may hold) become U+FFFD.
std::string valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    if (byte >= 0x01 && byte < 0x80) {
      length = 1;
    } else if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
    }
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    }
    if (valid && length >= 3) {
      const auto second = static_cast<unsigned char>(text[i + 1]);
      // No overlong forms, no surrogates, nothing above U+10FFFF.
      valid = !(byte == 0xE0 && second < 0xA0) && !(byte == 0xED && second >= 0xA0) &&
              !(byte == 0xF0 && second < 0x90) && !(byte == 0xF4 && second >= 0x90);
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// `?N` placeholders as `$N`, outside quoted literals and identifiers; the highest N.
Result<std::pair<std::string, int>> to_postgres_placeholders(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  int highest = 0;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      out += c;
      if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out += c;
      continue;
    }
    if (c != '?') {
      out += c;
      continue;
    }
    std::size_t end = i + 1;
    while (end < sql.size() && sql[end] >= '0' && sql[end] <= '9') {
      ++end;
    }
    int number = 0;
    const auto parsed = std::from_chars(sql.data() + i + 1, sql.data() + end, number);
    if (end == i + 1 || parsed.ec != std::errc() || number < 1) {
      return make_error(Errc::sqlite, "preparing SQL: a placeholder without its number");
    }
    highest = std::max(highest, number);
    out += '$';
    out.append(sql.substr(i + 1, end - i - 1));
    i = end - 1;
  }
  return std::pair{std::move(out), highest};
}

class PostgresConnection;

class PostgresStatement final : public StatementBackend {
 public:
  PostgresStatement(PostgresConnection& connection, std::string sql, int parameters)
      : connection_(&connection),
        sql_(std::move(sql)),
        values_(static_cast<std::size_t>(parameters)),
        binary_(static_cast<std::size_t>(parameters), 0) {}

  void bind_int64(int index, std::int64_t value) override {
    set(index, std::to_string(value), false);
  }
  void bind_real(int index, double value) override {
    if (std::isinf(value)) {
      set(index, value > 0 ? "Infinity" : "-Infinity", false);
      return;
    }
    char buffer[64];
    const auto written = std::to_chars(buffer, buffer + sizeof buffer, value);  // shortest exact
    set(index, std::string(buffer, written.ptr), false);
  }
  void bind_text(int index, std::string_view text) override { set(index, valid_utf8(text), false); }
  void bind_blob(int index, std::span<const unsigned char> blob) override {
    set(index, std::string(reinterpret_cast<const char*>(blob.data()), blob.size()), true);
  }
  void bind_null(int index) override {
    if (check(index)) {
      values_[static_cast<std::size_t>(index - 1)].reset();
    }
  }

  Result<bool> step() override;

  void reset() noexcept override {
    result_.reset();
    row_ = -1;
    bind_error_ = false;
    for (auto& value : values_) {
      value.reset();
    }
    blobs_.clear();
  }

  bool is_null(int column) const noexcept override {
    return PQgetisnull(result_.get(), row_, column) != 0;
  }
  std::int64_t int64(int column) const noexcept override {
    const char* value = PQgetvalue(result_.get(), row_, column);
    if (PQftype(result_.get(), column) == kBoolOid) {
      return value[0] == 't' ? 1 : 0;
    }
    std::int64_t number = 0;
    std::from_chars(value, value + PQgetlength(result_.get(), row_, column), number);
    return number;
  }
  double real(int column) const noexcept override {
    const char* value = PQgetvalue(result_.get(), row_, column);
    return std::strtod(value, nullptr);  // accepts Infinity and -Infinity too
  }
  std::string text(int column) const override {
    return std::string(PQgetvalue(result_.get(), row_, column),
                       static_cast<std::size_t>(PQgetlength(result_.get(), row_, column)));
  }
  std::span<const unsigned char> blob(int column) const override {
    if (PQgetisnull(result_.get(), row_, column) != 0) {
      return {};
    }
    auto& bytes = blobs_[column];
    bytes.clear();
    const std::string_view value(
        PQgetvalue(result_.get(), row_, column),
        static_cast<std::size_t>(PQgetlength(result_.get(), row_, column)));
    if (PQftype(result_.get(), column) != kByteaOid || !value.starts_with("\\x")) {
      bytes.assign(value.begin(), value.end());
      return bytes;
    }
    // bytea's text output (bytea_output = hex, set at connect): \x then two digits a byte.
    auto digit = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    for (std::size_t i = 2; i + 1 < value.size(); i += 2) {
      bytes.push_back(static_cast<unsigned char>(digit(value[i]) * 16 + digit(value[i + 1])));
    }
    return bytes;
  }

 private:
  bool check(int index) {
    if (index < 1 || static_cast<std::size_t>(index) > values_.size()) {
      bind_error_ = true;
      return false;
    }
    return true;
  }
  void set(int index, std::string value, bool binary) {
    if (check(index)) {
      values_[static_cast<std::size_t>(index - 1)] = std::move(value);
      binary_[static_cast<std::size_t>(index - 1)] = binary ? 1 : 0;
    }
  }

  PostgresConnection* connection_;
  std::string sql_;
  std::vector<std::optional<std::string>> values_;  // by index - 1; nullopt is NULL
  std::vector<int> binary_;                         // 1: send the value as bytes (bytea)
  bool bind_error_ = false;
  ResultHandle result_;  // every row of the last execution
  int row_ = -1;
  mutable std::map<int, std::vector<unsigned char>> blobs_;  // decoded bytea of the current row
};

class PostgresConnection final : public ConnectionBackend {
 public:
  PostgresConnection(ConnHandle conn, std::string url, Redactor redact,
                     std::chrono::milliseconds lock_timeout,
                     std::chrono::milliseconds reply_timeout)
      : conn_(std::move(conn)),
        url_(std::move(url)),
        redact_(std::move(redact)),
        lock_timeout_(lock_timeout),
        reply_timeout_(reply_timeout) {}

  Dialect dialect() const noexcept override { return Dialect::postgres; }

  // Session settings, after connecting and after every reconnect.
  Result<void> configure() {
    PQsetNoticeProcessor(
        conn_.get(), [](void*, const char*) {}, nullptr);  // no stderr chatter
    if (PQsetnonblocking(conn_.get(), 1) != 0) {
      return make_error(Errc::unavailable, "cannot switch the connection to non-blocking mode");
    }
    const std::string settings = "SET lock_timeout = " + std::to_string(lock_timeout_.count()) +
                                 "; SET bytea_output = 'hex'; SET client_min_messages = warning";
    auto set = execute(settings.c_str(), nullptr);
    return set ? Result<void>() : Result<void>(std::move(set).error());
  }

  Result<void> exec(std::string_view sql) override {
    const std::string text(sql);
    const bool begins = text.starts_with("BEGIN");
    const bool ends = text == "COMMIT" || text == "ROLLBACK";
    if (ends && lost_in_transaction_) {
      // The server already dropped the transaction with the connection.
      lost_in_transaction_ = false;
      in_transaction_ = false;
      return text == "ROLLBACK" ? Result<void>()
                                : make_error(Errc::unavailable,
                                             "the connection to the database server was lost "
                                             "during the transaction (nothing was written)");
    }
    auto done = execute(text.c_str(), nullptr);
    if (!done) {
      return std::move(done).error();
    }
    if (begins) {
      in_transaction_ = true;
    } else if (ends) {
      in_transaction_ = false;
    }
    return {};
  }

  Result<std::unique_ptr<StatementBackend>> prepare(std::string_view sql) override {
    auto translated = to_postgres_placeholders(sql);
    if (!translated) {
      return std::move(translated).error();
    }
    return std::unique_ptr<StatementBackend>(std::make_unique<PostgresStatement>(
        *this, std::move(translated->first), translated->second));
  }

  std::int64_t changes() const noexcept override { return changes_; }

  struct Parameters {
    int count;
    const char* const* values;
    const int* lengths;
    const int* formats;
  };

  // Sends `sql` (with `parameters`, or as a simple multi-statement query) and waits up to the
  // reply timeout for every result; returns the last one, or the first error.
  Result<ResultHandle> execute(const char* sql, const Parameters* parameters) {
    if (auto connected = ensure_connected(); !connected) {
      return std::move(connected).error();
    }
    return round_trip([&] {
      return parameters == nullptr ? PQsendQuery(conn_.get(), sql)
                                   : PQsendQueryParams(conn_.get(), sql, parameters->count, nullptr,
                                                       parameters->values, parameters->lengths,
                                                       parameters->formats, 0);
    });
  }

  // Runs `sql` as a statement prepared on the server once per connection (PQprepare), so
  // PostgreSQL parses and plans it once; past kMaxPrepared distinct texts, unnamed as execute().
  Result<ResultHandle> execute_prepared(const std::string& sql, const Parameters& parameters) {
    if (auto connected = ensure_connected(); !connected) {
      return std::move(connected).error();
    }
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      if (prepared_.size() >= kMaxPrepared) {
        return execute(sql.c_str(), &parameters);
      }
      std::string name = "healer_" + std::to_string(++prepared_count_);
      auto made = round_trip([&] {
        return PQsendPrepare(conn_.get(), name.c_str(), sql.c_str(), parameters.count, nullptr);
      });
      if (!made) {
        return std::move(made).error();
      }
      it = prepared_.emplace(sql, std::move(name)).first;
    }
    return round_trip([&] {
      return PQsendQueryPrepared(conn_.get(), it->second.c_str(), parameters.count,
                                 parameters.values, parameters.lengths, parameters.formats, 0);
    });
  }

  // Server-prepared statements per connection, at most.
  static constexpr std::size_t kMaxPrepared = 256;

 private:
  // A usable connection: reconnects outside a transaction (which forgets prepared statements).
  Result<void> ensure_connected() {
    if (lost_in_transaction_) {
      return make_error(Errc::unavailable,
                        "the connection to the database server was lost during the transaction");
    }
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      if (in_transaction_) {
        // A fresh connection would run the rest of the transaction in autocommit.
        lost_in_transaction_ = true;
        return make_error(Errc::unavailable,
                          "the connection to the database server was lost during the transaction");
      }
      if (auto reconnected = reconnect(); !reconnected) {
        return std::move(reconnected).error();
      }
    }
    return {};
  }

  // Sends with `send` and waits up to the reply timeout for every result; returns the last one,
  // or the first error.
  template <class Send>
  Result<ResultHandle> round_trip(Send send) {
    if (send() == 0) {
      return lost("sending a query");
    }
    const auto deadline = Clock::now() + reply_timeout_;
    for (;;) {
      const int flushed = PQflush(conn_.get());
      if (flushed < 0) {
        return lost("sending a query");
      }
      if (flushed == 0) {
        break;
      }
      if (!wait(POLLIN | POLLOUT, deadline)) {
        return timed_out();
      }
      if (PQconsumeInput(conn_.get()) == 0) {
        return lost("sending a query");
      }
    }
    ResultHandle last;
    std::optional<Error> first_error;
    for (;;) {
      while (PQisBusy(conn_.get()) != 0) {
        if (!wait(POLLIN, deadline)) {
          return timed_out();
        }
        if (PQconsumeInput(conn_.get()) == 0) {
          return lost("reading a reply");
        }
      }
      ResultHandle result(PQgetResult(conn_.get()));
      if (!result) {
        break;
      }
      const auto status = PQresultStatus(result.get());
      if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
          status == PGRES_NONFATAL_ERROR) {
        if (!first_error) {
          first_error = error_of(result.get());
        }
        continue;
      }
      last = std::move(result);
    }
    if (first_error) {
      if (PQstatus(conn_.get()) != CONNECTION_OK && in_transaction_) {
        lost_in_transaction_ = true;
      }
      return *first_error;
    }
    if (last && PQresultStatus(last.get()) == PGRES_COMMAND_OK) {
      const char* tuples = PQcmdTuples(last.get());
      changes_ = tuples != nullptr && *tuples != '\0' ? std::atoll(tuples) : 0;
    }
    return last;
  }

  Error error_of(const PGresult* result) const {
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    // Only the primary message: DETAIL quotes the offending row's values.
    std::string message = primary != nullptr ? primary : PQerrorMessage(conn_.get());
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      return make_error(Errc::unavailable,
                        "the database server closed the connection: " + redact_(message));
    }
    return make_error(state != nullptr ? classify(state) : Errc::sqlite,
                      "running SQL: " + redact_(message));
  }

  bool wait(short events, Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return false;
    }
    pollfd fd{PQsocket(conn_.get()), events, 0};
    const int ready = ::poll(&fd, 1, static_cast<int>(left));
    return ready > 0 || (ready < 0 && errno == EINTR);
  }

  Error lost(std::string_view what) {
    const std::string message = redact_(PQerrorMessage(conn_.get()));
    if (in_transaction_) {
      lost_in_transaction_ = true;
    }
    return make_error(Errc::unavailable, "the database server connection failed " +
                                             std::string(what) + ": " + message);
  }

  Error timed_out() {
    // The connection is in an unknown state (a reply may still come): drop it; the next
    // statement outside a transaction connects again.
    if (in_transaction_) {
      lost_in_transaction_ = true;
    }
    conn_.reset();
    return make_error(Errc::unavailable, "the database server did not answer within " +
                                             std::to_string(reply_timeout_.count()) + " ms");
  }

  Result<void> reconnect();

  ConnHandle conn_;  // null after a reply timed out, until the next statement reconnects
  std::string url_;  // to connect again; never shown
  Redactor redact_;
  std::chrono::milliseconds lock_timeout_;
  std::chrono::milliseconds reply_timeout_;
  std::int64_t changes_ = 0;
  bool in_transaction_ = false;
  // The connection broke inside BEGIN ... COMMIT: every statement fails until the ROLLBACK, so
  // nothing of the transaction's second half runs on a fresh connection in autocommit.
  bool lost_in_transaction_ = false;
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> name, on this connection
  std::uint64_t prepared_count_ = 0;
};

// Connects to `url` with healer's defaults (a connect timeout, UTF-8, an application name); the
// URL's own settings win over the defaults.
ConnHandle connect_to(const std::string& url) {
  const char* keywords[] = {"connect_timeout", "application_name", "dbname", "client_encoding",
                            nullptr};
  const char* values[] = {"10", "healer", url.c_str(), "UTF8", nullptr};
  return ConnHandle(PQconnectdbParams(keywords, values, 1));
}

Result<void> PostgresConnection::reconnect() {
  prepared_.clear();  // a new server session knows none of them
  if (!conn_) {
    conn_ = connect_to(url_);
  } else {
    PQreset(conn_.get());
  }
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    return make_error(Errc::unavailable, "cannot reconnect to the database server: " +
                                             redact_(PQerrorMessage(conn_.get())));
  }
  log::get("store")->info("reconnected to the database server");
  return configure();
}

Result<bool> PostgresStatement::step() {
  if (!result_) {
    if (bind_error_) {
      return make_error(Errc::sqlite, "binding a parameter: no such placeholder");
    }
    std::vector<const char*> values(values_.size());
    std::vector<int> lengths(values_.size());
    for (std::size_t i = 0; i < values_.size(); ++i) {
      if (values_[i]) {
        values[i] = values_[i]->data();
        lengths[i] = static_cast<int>(values_[i]->size());
      }
    }
    const PostgresConnection::Parameters parameters{static_cast<int>(values_.size()), values.data(),
                                                    lengths.data(), binary_.data()};
    auto executed = connection_->execute_prepared(sql_, parameters);
    if (!executed) {
      return std::move(executed).error();
    }
    result_ = std::move(executed).value();
    row_ = -1;
  }
  blobs_.clear();
  if (!result_ || PQresultStatus(result_.get()) != PGRES_TUPLES_OK) {
    return false;
  }
  ++row_;
  return row_ < PQntuples(result_.get());
}

}  // namespace

Result<Connection> Connection::open_postgres(std::string_view url,
                                             std::chrono::milliseconds lock_timeout,
                                             std::chrono::milliseconds reply_timeout) {
  const std::string text(url);
  Redactor redact{raw_passwords(url)};
  const std::string shown = display_location(url);
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(text.c_str(), &parse_error);
  if (options == nullptr) {
    std::string why = parse_error != nullptr ? redact(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return make_error(Errc::invalid_url, shown + ": " + why);
  }
  for (const PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (std::string_view(option->keyword) == "password" && option->val != nullptr) {
      redact.secrets.emplace_back(option->val);
    }
  }
  PQconninfoFree(options);
  // Longest first, so a password that contains another secret is hidden whole.
  std::sort(redact.secrets.begin(), redact.secrets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });

  ConnHandle conn = connect_to(text);
  if (!conn) {
    return make_error(Errc::unavailable, shown + ": out of memory");
  }
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return make_error(Errc::unavailable,
                      "cannot connect to " + shown + ": " + redact(PQerrorMessage(conn.get())));
  }
  auto backend = std::make_unique<PostgresConnection>(std::move(conn), text, redact, lock_timeout,
                                                      reply_timeout);
  if (auto configured = backend->configure(); !configured) {
    return std::move(configured).error();
  }
  return Connection(std::move(backend));
}

}  // namespace healer::store::sql
