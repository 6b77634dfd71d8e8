#include "healer/service/json.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iterator>

#include "healer/service/errors.hpp"
#include "healer/service/inventory.hpp"

namespace healer::service {
namespace {

using std::chrono::microseconds;

Error malformed(std::string_view what) {
  return make_error(Errc::internal, fmt::format("malformed {} in a JSON document", what));
}

Json optional_number(const std::optional<double>& value) {
  return value ? Json(*value) : Json(nullptr);
}

std::optional<double> number_or_null(const Json& value) {
  if (value.is_number()) {
    return value.get<double>();
  }
  return std::nullopt;
}

std::string iso8601(std::chrono::system_clock::time_point at) {
  const auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(at);
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(at - seconds).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

double ms(microseconds duration) { return static_cast<double>(duration.count()) / 1000.0; }

microseconds from_ms(double value) {
  return microseconds(static_cast<std::int64_t>(value * 1000.0 + (value >= 0 ? 0.5 : -0.5)));
}

std::optional<checks::Status> status_named(std::string_view name) {
  for (const auto status : {checks::Status::ok, checks::Status::warning, checks::Status::critical,
                            checks::Status::unknown}) {
    if (checks::status_name(status) == name) {
      return status;
    }
  }
  return std::nullopt;
}

std::string base64(std::string_view bytes) {
  if (bytes.empty()) {
    return {};
  }
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &length, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return std::nullopt;
  }
  out.resize(length);
  return out;
}

Json labels_json(const metrics::Labels& labels) {
  Json object = Json::object();
  for (const auto& [key, value] : labels) {
    object[key] = value;
  }
  return object;
}

metrics::Metric metric_from_json(const Json& document) {
  metrics::Metric metric;
  metric.name = document.at("name").get<std::string>();
  metric.value = document.at("value").get<double>();
  for (const auto& [key, value] : document.at("labels").items()) {
    metric.labels.emplace_back(key, value.get<std::string>());
  }
  return metric;
}

// Runs `parse`, turning nlohmann's exceptions (missing keys, wrong types) into an Error.
template <class F>
auto parsed(std::string_view what, F parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const Json::exception&) {
    return malformed(what);
  }
}

}  // namespace

std::string dump(const Json& document, int indent) {
  return document.dump(indent, ' ', false, Json::error_handler_t::replace);
}

void JsonWriter::separate() {
  if (comma_) {
    out_ += ',';
  }
  comma_ = true;
}

JsonWriter& JsonWriter::begin_object() {
  separate();
  out_ += '{';
  comma_ = false;
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  out_ += '}';
  comma_ = true;
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  separate();
  out_ += '[';
  comma_ = false;
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  out_ += ']';
  comma_ = true;
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  separate();
  out_ += '"';
  out_ += name;
  out_ += "\":";
  comma_ = false;  // its value follows
  return *this;
}

JsonWriter& JsonWriter::string(std::string_view text) {
  separate();
  // Printable ASCII but for the quote and the backslash stands for itself; anything else (escapes,
  // UTF-8, invalid bytes from a server) is left to dump(), so the bytes are the same either way.
  const bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
  });
  if (plain) {
    out_ += '"';
    out_ += text;
    out_ += '"';
  } else {
    out_ += dump(Json(std::string(text)));
  }
  return *this;
}

JsonWriter& JsonWriter::integer(std::int64_t value) {
  separate();
  fmt::format_to(std::back_inserter(out_), "{}", value);
  return *this;
}

JsonWriter& JsonWriter::integer(std::uint64_t value) {
  separate();
  fmt::format_to(std::back_inserter(out_), "{}", value);
  return *this;
}

JsonWriter& JsonWriter::number(double value) {
  separate();
  out_ += Json(value).dump();  // its shortest form that reads back the same, "1.0" for 1
  return *this;
}

JsonWriter& JsonWriter::boolean(bool value) {
  separate();
  out_ += value ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  separate();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::json(const Json& value) {
  separate();
  out_ += dump(value);
  return *this;
}

const char* version() noexcept { return HEALER_VERSION; }

Json to_json(const Error& error) {
  return Json{{"category", error.code.category().name()},
              {"code", error.code.value()},
              {"name", error_name(error)},
              {"message", error.message()},
              {"detail", error.detail}};
}

Json to_json(const std::optional<Error>& error) { return error ? to_json(*error) : Json(nullptr); }

Error error_from_json(const Json& document) {
  const auto category_text = document.value("category", std::string());
  const auto* category = category_named(category_text);
  std::string detail = document.value("detail", document.value("message", std::string()));
  if (category == nullptr) {
    return make_error(Errc::internal, std::move(detail));
  }
  return Error{std::error_code(document.value("code", 0), *category), std::move(detail)};
}

Json to_json(const store::ServerRecord& record) {
  return Json{
      {"id", record.id},
      {"name", record.name},
      {"host", record.host},
      {"port", record.port},
      {"user", record.user},
      {"auth", auth_name(record.auth_method)},
      {"identity_file", record.identity_file},
      {"known_hosts_file", record.known_hosts_file},
      {"host_key_policy",
       record.host_key_policy == store::HostKeyPolicy::accept_new ? "accept-new" : "strict"},
      {"tags", record.tags},
      {"labels", record.labels},
      {"has_secret", record.has_secret},
      {"created_at", record.created_at},
      {"updated_at", record.updated_at}};
}

Json to_json(const checks::Diagnosis& diagnosis) {
  Json checks = Json::array();
  for (const auto& run : diagnosis.checks) {
    Json perfdata = Json::array();
    for (const auto& value : run.result.perfdata) {
      perfdata.push_back(Json{{"label", value.label},
                              {"value", value.value},
                              {"unit", value.unit},
                              {"warn", optional_number(value.warn)},
                              {"crit", optional_number(value.crit)},
                              {"min", optional_number(value.min)},
                              {"max", optional_number(value.max)},
                              {"lower_is_worse", value.lower_is_worse}});
    }
    checks.push_back(Json{
        {"name", run.result.name},
        {"status", checks::status_name(run.result.status)},
        {"message", run.result.message},
        {"duration_ms", ms(run.duration)},
        {"cached", run.cached},
        {"exit_status", run.exit_status ? Json(*run.exit_status) : Json(nullptr)},
        {"error", to_json(run.error)},
        {"perfdata", std::move(perfdata)},
    });
  }
  return Json{
      {"server", diagnosis.server_id},
      {"status", checks::status_name(diagnosis.status)},
      {"exit_code", static_cast<int>(diagnosis.status)},
      {"reachable", diagnosis.reachable()},
      {"error", to_json(diagnosis.server_error)},
      {"started_at", iso8601(diagnosis.started_at)},
      {"started_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                            diagnosis.started_at.time_since_epoch())
                            .count()},
      {"duration_ms", ms(diagnosis.duration)},
      {"mode", diagnosis.mode == checks::RunMode::batched ? "batched" : "concurrent"},
      {"checks", std::move(checks)},
  };
}

Result<checks::Diagnosis> diagnosis_from_json(const Json& document) {
  return parsed("diagnosis", [&]() -> Result<checks::Diagnosis> {
    checks::Diagnosis diagnosis;
    diagnosis.server_id = document.at("server").get<std::string>();
    const auto status = status_named(document.at("status").get<std::string>());
    if (!status) {
      return malformed("diagnosis status");
    }
    diagnosis.status = *status;
    if (!document.at("error").is_null()) {
      diagnosis.server_error = error_from_json(document.at("error"));
    }
    diagnosis.started_at = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(document.at("started_at_ms").get<std::int64_t>()));
    diagnosis.duration = from_ms(document.at("duration_ms").get<double>());
    diagnosis.mode = document.at("mode").get<std::string>() == "batched"
                         ? checks::RunMode::batched
                         : checks::RunMode::concurrent;
    for (const auto& item : document.at("checks")) {
      checks::CheckRun run;
      run.result.name = item.at("name").get<std::string>();
      const auto check_status = status_named(item.at("status").get<std::string>());
      if (!check_status) {
        return malformed("check status");
      }
      run.result.status = *check_status;
      run.result.message = item.at("message").get<std::string>();
      run.duration = from_ms(item.at("duration_ms").get<double>());
      run.cached = item.at("cached").get<bool>();
      if (item.at("exit_status").is_number_integer()) {
        run.exit_status = item.at("exit_status").get<int>();
      }
      if (!item.at("error").is_null()) {
        run.error = error_from_json(item.at("error"));
      }
      for (const auto& value : item.at("perfdata")) {
        checks::Perfdata perfdata;
        perfdata.label = value.at("label").get<std::string>();
        perfdata.value = value.at("value").get<double>();
        perfdata.unit = value.at("unit").get<std::string>();
        perfdata.warn = number_or_null(value.at("warn"));
        perfdata.crit = number_or_null(value.at("crit"));
        perfdata.min = number_or_null(value.at("min"));
        perfdata.max = number_or_null(value.at("max"));
        perfdata.lower_is_worse = value.at("lower_is_worse").get<bool>();
        run.result.perfdata.push_back(std::move(perfdata));
      }
      diagnosis.checks.push_back(std::move(run));
    }
    return diagnosis;
  });
}

Json to_json(const DiagnoseOutcome& outcome) {
  Json servers = Json::array();
  std::vector<checks::Diagnosis> diagnoses;
  for (const auto& server : outcome.servers) {
    Json entry = to_json(server.diagnosis);
    entry["server_id"] = server.server_id;
    entry["app_id"] = server.app_id ? Json(*server.app_id) : Json(nullptr);
    entry["run_id"] = server.run_id == 0 ? Json(nullptr) : Json(server.run_id);
    servers.push_back(std::move(entry));
    diagnoses.push_back(server.diagnosis);
  }
  const int exit_code = nagios_exit_code(outcome);
  static constexpr const char* kNames[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
  return Json{{"status", kNames[exit_code]},
              {"exit_code", exit_code},
              {"servers", std::move(servers)},
              {"store_errors", outcome.store_errors},
              {"healer_version", version()}};
}

Result<DiagnoseOutcome> diagnose_outcome_from_json(const Json& document) {
  return parsed("diagnosis outcome", [&]() -> Result<DiagnoseOutcome> {
    DiagnoseOutcome outcome;
    for (const auto& entry : document.at("servers")) {
      auto diagnosis = diagnosis_from_json(entry);
      if (!diagnosis) {
        return std::move(diagnosis).error();
      }
      DiagnosedServer server;
      server.diagnosis = std::move(*diagnosis);
      server.server_id = entry.value("server_id", std::int64_t{0});
      if (entry.contains("app_id") && entry.at("app_id").is_number_integer()) {
        server.app_id = entry.at("app_id").get<std::int64_t>();
      }
      if (entry.contains("run_id") && entry.at("run_id").is_number_integer()) {
        server.run_id = entry.at("run_id").get<std::int64_t>();
      }
      outcome.servers.push_back(std::move(server));
    }
    outcome.store_errors = document.at("store_errors").get<std::vector<std::string>>();
    return outcome;
  });
}

Json to_json(const metrics::Metric& metric) {
  return Json{
      {"name", metric.name}, {"labels", labels_json(metric.labels)}, {"value", metric.value}};
}

Json to_json(const CollectedServer& server) {
  Json entry{{"server", server.server},
             {"server_id", server.server_id},
             {"ok", server.ok()},
             {"elapsed_ms", server.elapsed_ms}};
  if (!server.ok()) {
    entry["error"] = to_json(server.error);
    return entry;
  }
  entry["collected_at"] = server.collected_at;
  entry["headline"] = server.headline;
  entry["metrics"] = Json::array();
  for (const auto& metric : server.metrics) {
    entry["metrics"].push_back(to_json(metric));
  }
  entry["rates"] = Json::array();
  for (const auto& metric : server.rates) {
    entry["rates"].push_back(to_json(metric));
  }
  entry["failed_sections"] = Json::array();
  for (const auto& [section, message] : server.failed_sections) {
    entry["failed_sections"].push_back({{"section", section}, {"message", message}});
  }
  return entry;
}

Result<CollectedServer> collected_server_from_json(const Json& document) {
  return parsed("collection", [&]() -> Result<CollectedServer> {
    CollectedServer server;
    server.server = document.at("server").get<std::string>();
    server.server_id = document.value("server_id", std::int64_t{0});
    server.elapsed_ms = document.at("elapsed_ms").get<double>();
    if (!document.at("ok").get<bool>()) {
      server.error = error_from_json(document.at("error"));
      return server;
    }
    server.collected_at = document.at("collected_at").get<std::int64_t>();
    server.headline = document.at("headline").get<std::string>();
    for (const auto& metric : document.at("metrics")) {
      server.metrics.push_back(metric_from_json(metric));
    }
    for (const auto& metric : document.at("rates")) {
      server.rates.push_back(metric_from_json(metric));
    }
    for (const auto& failure : document.at("failed_sections")) {
      server.failed_sections.emplace_back(failure.at("section").get<std::string>(),
                                          failure.at("message").get<std::string>());
    }
    return server;
  });
}

Json to_json(const CollectOutcome& outcome) {
  Json servers = Json::array();
  for (const auto& server : outcome.servers) {
    servers.push_back(to_json(server));
  }
  return Json{{"servers", std::move(servers)},
              {"values_stored", outcome.values_stored},
              {"store_failures", outcome.store_failures},
              {"healer_version", version()}};
}

Result<CollectOutcome> collect_outcome_from_json(const Json& document) {
  return parsed("collection outcome", [&]() -> Result<CollectOutcome> {
    CollectOutcome outcome;
    for (const auto& entry : document.at("servers")) {
      auto server = collected_server_from_json(entry);
      if (!server) {
        return std::move(server).error();
      }
      outcome.servers.push_back(std::move(*server));
    }
    outcome.values_stored = document.at("values_stored").get<std::size_t>();
    outcome.store_failures = document.at("store_failures").get<std::size_t>();
    return outcome;
  });
}

Json to_json(const std::string& command, const Result<ssh::CommandResult>& result, Wire wire) {
  Json doc;
  doc["command"] = command;
  if (!result) {
    doc["ok"] = false;
    doc["error"] = to_json(result.error());
    return doc;
  }
  const auto& r = *result;
  doc["ok"] = true;
  doc["exit_status"] = r.exit_status ? Json(*r.exit_status) : Json(nullptr);
  doc["exit_signal"] = r.exit_signal.empty() ? Json(nullptr) : Json(r.exit_signal);
  if (wire == Wire::exact) {
    doc["stdout_base64"] = base64(r.out);
    doc["stderr_base64"] = base64(r.err);
  } else {
    doc["stdout"] = r.out;
    doc["stderr"] = r.err;
  }
  doc["stdout_truncated"] = r.out_truncated;
  doc["stderr_truncated"] = r.err_truncated;
  doc["stdout_bytes"] = r.out_bytes;
  doc["stderr_bytes"] = r.err_bytes;
  doc["host_key_fingerprint"] = r.host_key_fingerprint;
  doc["session_reused"] = r.session_reused;
  doc["queue_ms"] = ms(r.timing.queue);
  doc["open_ms"] = ms(r.timing.open);
  doc["run_ms"] = ms(r.timing.run);
  return doc;
}

Result<Result<ssh::CommandResult>> command_result_from_json(const Json& document) {
  return parsed("command result", [&]() -> Result<Result<ssh::CommandResult>> {
    if (!document.at("ok").get<bool>()) {
      return Result<ssh::CommandResult>(error_from_json(document.at("error")));
    }
    ssh::CommandResult r;
    if (document.at("exit_status").is_number_integer()) {
      r.exit_status = document.at("exit_status").get<int>();
    }
    if (document.at("exit_signal").is_string()) {
      r.exit_signal = document.at("exit_signal").get<std::string>();
    }
    if (document.contains("stdout_base64")) {
      auto out = unbase64(document.at("stdout_base64").get<std::string>());
      auto err = unbase64(document.at("stderr_base64").get<std::string>());
      if (!out || !err) {
        return malformed("command output");
      }
      r.out = std::move(*out);
      r.err = std::move(*err);
    } else {
      r.out = document.at("stdout").get<std::string>();
      r.err = document.at("stderr").get<std::string>();
    }
    r.out_truncated = document.at("stdout_truncated").get<bool>();
    r.err_truncated = document.at("stderr_truncated").get<bool>();
    r.out_bytes = document.at("stdout_bytes").get<std::uint64_t>();
    r.err_bytes = document.at("stderr_bytes").get<std::uint64_t>();
    r.host_key_fingerprint = document.at("host_key_fingerprint").get<std::string>();
    r.session_reused = document.at("session_reused").get<bool>();
    r.timing.queue = from_ms(document.at("queue_ms").get<double>());
    r.timing.open = from_ms(document.at("open_ms").get<double>());
    r.timing.run = from_ms(document.at("run_ms").get<double>());
    return Result<ssh::CommandResult>(std::move(r));
  });
}

Json to_json(const ExecOutcome& outcome, const std::vector<std::string>& commands, Wire wire) {
  Json servers = Json::array();
  for (const auto& server : outcome.servers) {
    Json results = Json::array();
    for (std::size_t i = 0; i < server.results.size(); ++i) {
      results.push_back(
          to_json(i < commands.size() ? commands[i] : std::string(), server.results[i], wire));
    }
    servers.push_back(Json{
        {"server", server.server}, {"target", server.target}, {"results", std::move(results)}});
  }
  Json doc{{"servers", std::move(servers)}, {"healer_version", version()}};
  if (outcome.stats) {
    doc["pool"] = to_json(*outcome.stats);
  }
  return doc;
}

Result<ExecOutcome> exec_outcome_from_json(const Json& document) {
  return parsed("exec outcome", [&]() -> Result<ExecOutcome> {
    ExecOutcome outcome;
    for (const auto& entry : document.at("servers")) {
      ExecServerResult server;
      server.server = entry.at("server").get<std::string>();
      server.target = entry.at("target").get<std::string>();
      for (const auto& result : entry.at("results")) {
        auto parsed_result = command_result_from_json(result);
        if (!parsed_result) {
          return std::move(parsed_result).error();
        }
        server.results.push_back(std::move(*parsed_result));
      }
      outcome.servers.push_back(std::move(server));
    }
    if (document.contains("pool")) {
      outcome.stats = pool_stats_from_json(document.at("pool"));
    }
    return outcome;
  });
}

Json to_json(const pool::PoolStats& stats) {
  Json evictions = Json::object();
  static constexpr const char* kEvictions[] = {"idle", "lifetime", "dead", "error", "shutdown"};
  for (std::size_t i = 0; i < pool::kEvictionKinds; ++i) {
    evictions[kEvictions[i]] = stats.evictions[i];
  }
  auto quantile_ms = [](const pool::Histogram& histogram, double q) {
    return static_cast<double>(histogram.quantile_us(q)) / 1000.0;
  };
  return Json{{"sessions_connecting", stats.sessions_connecting},
              {"sessions_ready", stats.sessions_ready},
              {"sessions_draining", stats.sessions_draining},
              {"sessions_opened", stats.sessions_opened},
              {"channels_in_use", stats.channels_in_use},
              {"channel_capacity", stats.channel_capacity},
              {"channel_limit", stats.channel_limit},
              {"waiters", stats.waiters},
              {"circuits_open", stats.circuits_open},
              {"backing_off", stats.backing_off},
              {"circuit_retry_in_ms", stats.circuit_retry_in.count()},
              {"backoff_retry_in_ms", stats.backoff_retry_in.count()},
              {"handshakes_started", stats.handshakes_started},
              {"handshakes_failed", stats.handshakes_failed},
              {"handshakes_cancelled", stats.handshakes_cancelled},
              {"handshakes_retried", stats.handshakes_retried},
              {"acquisitions", stats.acquisitions},
              {"served_by_existing", stats.served_by_existing},
              {"commands", stats.commands},
              {"hit_rate", stats.hit_rate()},
              {"reuse", stats.reuse()},
              {"exhausted", stats.exhausted},
              {"timeouts", stats.timeouts},
              {"acquires_cancelled", stats.acquires_cancelled},
              {"commands_cancelled", stats.commands_cancelled},
              {"channels_refused", stats.channels_refused},
              {"channel_limit_lowered", stats.channel_limit_lowered},
              {"spare_channels", stats.spare_channels},
              {"spare_channels_ready", stats.spare_channels_ready},
              {"spares_opened", stats.spares_opened},
              {"leases_on_spare", stats.leases_on_spare},
              {"spares_closed", stats.spares_closed},
              {"spares_refused", stats.spares_refused},
              {"health_checks", stats.health_checks},
              {"health_check_failures", stats.health_check_failures},
              {"direct_connections", stats.direct_connections},
              {"cleanup_runs", stats.cleanup_runs},
              {"sessions_cleaned", stats.sessions_cleaned},
              {"evictions", std::move(evictions)},
              {"handshake_ms_p50", quantile_ms(stats.handshake_time, 0.5)},
              {"handshake_ms_p99", quantile_ms(stats.handshake_time, 0.99)},
              {"wait_ms_p50", quantile_ms(stats.wait_time, 0.5)},
              {"wait_ms_p99", quantile_ms(stats.wait_time, 0.99)}};
}

pool::PoolStats pool_stats_from_json(const Json& document) {
  pool::PoolStats stats;
  auto get = [&](const char* key, auto& field) {
    if (document.contains(key) && document.at(key).is_number()) {
      field = document.at(key).get<std::remove_reference_t<decltype(field)>>();
    }
  };
  get("sessions_connecting", stats.sessions_connecting);
  get("sessions_ready", stats.sessions_ready);
  get("sessions_draining", stats.sessions_draining);
  get("sessions_opened", stats.sessions_opened);
  get("channels_in_use", stats.channels_in_use);
  get("channel_capacity", stats.channel_capacity);
  get("channel_limit", stats.channel_limit);
  get("waiters", stats.waiters);
  get("circuits_open", stats.circuits_open);
  get("backing_off", stats.backing_off);
  std::chrono::milliseconds::rep circuit_ms = 0;
  std::chrono::milliseconds::rep backoff_ms = 0;
  get("circuit_retry_in_ms", circuit_ms);
  get("backoff_retry_in_ms", backoff_ms);
  stats.circuit_retry_in = std::chrono::milliseconds(circuit_ms);
  stats.backoff_retry_in = std::chrono::milliseconds(backoff_ms);
  get("handshakes_started", stats.handshakes_started);
  get("handshakes_failed", stats.handshakes_failed);
  get("handshakes_cancelled", stats.handshakes_cancelled);
  get("handshakes_retried", stats.handshakes_retried);
  get("acquisitions", stats.acquisitions);
  get("served_by_existing", stats.served_by_existing);
  get("commands", stats.commands);
  get("exhausted", stats.exhausted);
  get("timeouts", stats.timeouts);
  get("acquires_cancelled", stats.acquires_cancelled);
  get("commands_cancelled", stats.commands_cancelled);
  get("channels_refused", stats.channels_refused);
  get("channel_limit_lowered", stats.channel_limit_lowered);
  get("spare_channels", stats.spare_channels);
  get("spare_channels_ready", stats.spare_channels_ready);
  get("spares_opened", stats.spares_opened);
  get("leases_on_spare", stats.leases_on_spare);
  get("spares_closed", stats.spares_closed);
  get("spares_refused", stats.spares_refused);
  get("health_checks", stats.health_checks);
  get("health_check_failures", stats.health_check_failures);
  get("direct_connections", stats.direct_connections);
  get("cleanup_runs", stats.cleanup_runs);
  get("sessions_cleaned", stats.sessions_cleaned);
  return stats;
}

Json to_json(const ConnectionTestResult& result) {
  Json doc{{"server", result.server},
           {"target", result.target},
           {"ok", result.ok()},
           {"known_hosts_file", result.known_hosts_file},
           {"host_key_type", result.key_type},
           {"host_key_fingerprint", result.fingerprint}};
  if (result.ok()) {
    doc["connect_ms"] = result.connect_ms;
    doc["round_trip_ms"] = result.round_trip_ms;
    doc["exec_ms"] = result.exec_ms;
  } else {
    doc["error"] = to_json(result.error);
  }
  return doc;
}

Result<ConnectionTestResult> connection_test_from_json(const Json& document) {
  return parsed("connection test", [&]() -> Result<ConnectionTestResult> {
    ConnectionTestResult result;
    result.server = document.at("server").get<std::string>();
    result.target = document.at("target").get<std::string>();
    result.known_hosts_file = document.at("known_hosts_file").get<std::string>();
    result.key_type = document.at("host_key_type").get<std::string>();
    result.fingerprint = document.at("host_key_fingerprint").get<std::string>();
    if (document.at("ok").get<bool>()) {
      result.connect_ms = document.at("connect_ms").get<double>();
      result.round_trip_ms = document.at("round_trip_ms").get<double>();
      result.exec_ms = document.at("exec_ms").get<double>();
    } else {
      result.error = error_from_json(document.at("error"));
    }
    return result;
  });
}

}  // namespace healer::service
