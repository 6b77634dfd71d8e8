#pragma once

#include <concepts>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "healer/checks/runner.hpp"
#include "healer/core/error.hpp"
#include "healer/core/result.hpp"
#include "healer/pool/pool.hpp"
#include "healer/service/collect.hpp"
#include "healer/service/connection_test.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/exec.hpp"
#include "healer/ssh/command_result.hpp"
#include "healer/store/records.hpp"

// One JSON shape for every outcome: `--json` output, the HTTP API and the control socket use
// these, so a field means the same everywhere. Text from servers (outputs, names, mount points)
// may be any bytes: dump() never throws (invalid UTF-8 becomes U+FFFD), and the control socket
// carries command output as base64 (`Wire::exact`) so it arrives byte for byte.
namespace healer::service {

using Json = nlohmann::json;

/// How command output is written: as text (people, the API) or exactly (the control socket).
enum class Wire { text, exact };

/// `document` as text; never throws on invalid UTF-8. `indent` < 0: one line.
[[nodiscard]] std::string dump(const Json& document, int indent = -1);

/// Writes JSON text straight into a string, for documents that are large and asked for often
/// (list pages of thousands of servers): no tree, no allocation per field. Strings come out as
/// dump() writes them (the same bytes, invalid UTF-8 replaced), numbers as dump() writes them.
/// The caller keeps the structure balanced: a key before each value inside an object.
class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  /// A member's name: our own field names, plain ASCII that needs no escape.
  JsonWriter& key(std::string_view name);
  JsonWriter& string(std::string_view text);
  template <std::integral T>
  JsonWriter& number(T value) {
    if constexpr (std::is_signed_v<T>) {
      return integer(static_cast<std::int64_t>(value));
    } else {
      return integer(static_cast<std::uint64_t>(value));
    }
  }
  JsonWriter& number(double value);         ///< null when not finite, as dump() writes it
  JsonWriter& number(bool value) = delete;  ///< boolean()
  JsonWriter& boolean(bool value);
  JsonWriter& null();
  /// A value given as a tree (for parts that are small or rare).
  JsonWriter& json(const Json& value);

 private:
  void separate();
  JsonWriter& integer(std::int64_t value);
  JsonWriter& integer(std::uint64_t value);
  std::string& out_;
  bool comma_ = false;  // a value was written in the current container: the next one needs ','
};

/// The version of this healer ("0.2.0"), as `healer --version` and `healer_version` say.
[[nodiscard]] const char* version() noexcept;

/// {category, code, name, message, detail}; null for no error.
[[nodiscard]] Json to_json(const Error& error);
[[nodiscard]] Json to_json(const std::optional<Error>& error);
/// The inverse of to_json(Error) (unknown categories become service::internal).
[[nodiscard]] Error error_from_json(const Json& document);

/// A server without its secret (has_secret says whether one is stored).
[[nodiscard]] Json to_json(const store::ServerRecord& record);

[[nodiscard]] Json to_json(const checks::Diagnosis& diagnosis);
[[nodiscard]] Result<checks::Diagnosis> diagnosis_from_json(const Json& document);
/// {"status", "exit_code", "servers": [diagnosis + run_id]} as `healer diagnose --json` prints.
[[nodiscard]] Json to_json(const DiagnoseOutcome& outcome);
[[nodiscard]] Result<DiagnoseOutcome> diagnose_outcome_from_json(const Json& document);

[[nodiscard]] Json to_json(const CollectedServer& server);
[[nodiscard]] Result<CollectedServer> collected_server_from_json(const Json& document);
[[nodiscard]] Json to_json(const CollectOutcome& outcome);
[[nodiscard]] Result<CollectOutcome> collect_outcome_from_json(const Json& document);

/// One command's result as `healer exec --json` prints it.
[[nodiscard]] Json to_json(const std::string& command, const Result<ssh::CommandResult>& result,
                           Wire wire);
[[nodiscard]] Result<Result<ssh::CommandResult>> command_result_from_json(const Json& document);
[[nodiscard]] Json to_json(const ExecOutcome& outcome, const std::vector<std::string>& commands,
                           Wire wire);
[[nodiscard]] Result<ExecOutcome> exec_outcome_from_json(const Json& document);

[[nodiscard]] Json to_json(const pool::PoolStats& stats);
[[nodiscard]] pool::PoolStats pool_stats_from_json(const Json& document);

[[nodiscard]] Json to_json(const ConnectionTestResult& result);
[[nodiscard]] Result<ConnectionTestResult> connection_test_from_json(const Json& document);

/// Prometheus-style labels as an object.
[[nodiscard]] Json to_json(const metrics::Metric& metric);

}  // namespace healer::service
