// One JSON shape everywhere: outcomes survive the control socket's round trip exactly, and text
// from servers (any bytes) never makes a document throw.
#include "healer/service/json.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <string>
#include <vector>

#include "healer/pool/errors.hpp"
#include "healer/service/errors.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::service {
namespace {

checks::Diagnosis sample_diagnosis() {
  checks::Diagnosis diagnosis;
  diagnosis.server_id = "web1";
  diagnosis.status = checks::Status::warning;
  diagnosis.started_at =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1700000000123));
  diagnosis.duration = std::chrono::microseconds(12345);
  checks::CheckRun disk;
  disk.result.name = "disk_space";
  disk.result.status = checks::Status::warning;
  disk.result.message = "/ 85% used \xff";  // a mount point with a byte that is not UTF-8
  checks::Perfdata perfdata;
  perfdata.label = "/";
  perfdata.value = 85;
  perfdata.unit = "%";
  perfdata.warn = 80;
  perfdata.crit = 90;
  perfdata.min = 0;
  disk.result.perfdata.push_back(perfdata);
  disk.duration = std::chrono::microseconds(3000);
  disk.exit_status = 0;
  diagnosis.checks.push_back(disk);
  checks::CheckRun load;
  load.result.name = "load";
  load.result.status = checks::Status::unknown;
  load.result.message = "timed out";
  load.error = Error{make_error_code(ssh::Errc::timeout), "web1: exec"};
  diagnosis.checks.push_back(load);
  return diagnosis;
}

TEST(Json, DiagnosisRoundTrip) {
  const auto original = sample_diagnosis();
  const auto text = dump(to_json(original));                // must not throw on 0xFF
  EXPECT_NE(text.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
  auto back = diagnosis_from_json(to_json(original));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->server_id, "web1");
  EXPECT_EQ(back->status, checks::Status::warning);
  EXPECT_EQ(back->started_at, original.started_at);
  EXPECT_EQ(back->duration, original.duration);
  ASSERT_EQ(back->checks.size(), 2U);
  EXPECT_EQ(back->checks[0].result.perfdata[0].warn, 80);
  EXPECT_FALSE(back->checks[0].result.perfdata[0].max.has_value());
  EXPECT_EQ(back->checks[0].exit_status, 0);
  ASSERT_TRUE(back->checks[1].error.has_value());
  EXPECT_EQ(back->checks[1].error->code, ssh::Errc::timeout);
  EXPECT_EQ(back->checks[1].error->message(), original.checks[1].error->message());
}

TEST(Json, ExactWireKeepsEveryByteOfCommandOutput) {
  ssh::CommandResult result;
  result.exit_status = 3;
  result.out = std::string("\x00\xff\x1b[2J binary\n", 14);
  result.err = "warn\r\n";
  result.out_bytes = result.out.size();
  result.timing.run = std::chrono::microseconds(1500);
  ExecOutcome outcome;
  outcome.servers.push_back(ExecServerResult{
      "web1",
      "u@h",
      {Result<ssh::CommandResult>(result),
       Result<ssh::CommandResult>(Error{make_error_code(pool::Errc::circuit_open), "web1"})}});
  const auto doc = to_json(outcome, {"cat x", "true"}, Wire::exact);
  auto back = exec_outcome_from_json(nlohmann::json::parse(dump(doc)));
  ASSERT_TRUE(back) << back.error().message();
  const auto& first = back->servers.at(0).results.at(0);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->out, result.out);
  EXPECT_EQ(first->err, result.err);
  EXPECT_EQ(first->exit_status, 3);
  EXPECT_EQ(first->timing.run, result.timing.run);
  const auto& second = back->servers.at(0).results.at(1);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, pool::Errc::circuit_open);
}

TEST(Json, CollectionRoundTrip) {
  CollectedServer server;
  server.server = "db\xff";
  server.server_id = 7;
  server.collected_at = 1700000000000;
  server.elapsed_ms = 12.5;
  server.metrics.push_back(metrics::Metric{"node_load1", {}, 0.5});
  server.metrics.push_back(
      metrics::Metric{"node_filesystem_size_bytes", {{"mountpoint", "/data\xfe"}}, 1e9});
  server.rates.push_back(metrics::Metric{"healer_cpu_busy_percent", {}, 3.5});
  server.failed_sections.emplace_back("netdev", "missing");
  server.headline = "load 0.50";
  CollectedServer failed;
  failed.server = "down";
  failed.error = Error{make_error_code(ssh::Errc::connect_refused), "down:22"};
  CollectOutcome outcome;
  outcome.servers = {server, failed};
  outcome.values_stored = 3;
  auto back = collect_outcome_from_json(to_json(outcome));
  ASSERT_TRUE(back) << back.error().message();
  ASSERT_EQ(back->servers.size(), 2U);
  EXPECT_EQ(back->servers[0].metrics.size(), 2U);
  EXPECT_EQ(back->servers[0].failed_sections.size(), 1U);
  EXPECT_EQ(back->servers[1].error->code, ssh::Errc::connect_refused);
  EXPECT_EQ(back->values_stored, 3U);
  EXPECT_NO_THROW((void)dump(to_json(outcome), 2));
}

// One JSON shape for the CLI's --json and the HTTP API: the pool's gauges and cancellation and
// retry counters and the spare channels' figures travel both ways (the CLI reads a daemon's answer
// with pool_stats_from_json).
TEST(Json, PoolStatsRoundTripKeepsGaugesAndCancellationCounters) {
  pool::PoolStats stats;
  stats.channels_in_use = 3;
  stats.channel_capacity = 20;
  stats.channel_limit = 10;
  stats.circuits_open = 1;
  stats.backing_off = 1;
  stats.circuit_retry_in = std::chrono::milliseconds(1500);
  stats.backoff_retry_in = std::chrono::milliseconds(250);
  stats.handshakes_started = 9;
  stats.handshakes_cancelled = 2;
  stats.handshakes_retried = 4;
  stats.acquires_cancelled = 5;
  stats.commands_cancelled = 6;
  stats.spare_channels = 2;
  stats.spare_channels_ready = 1;
  stats.spares_opened = 7;
  stats.leases_on_spare = 5;
  stats.spares_closed = 1;
  stats.spares_refused = 1;
  const Json doc = to_json(stats);
  EXPECT_EQ(doc.at("channel_capacity"), 20);
  EXPECT_EQ(doc.at("channel_limit"), 10);
  EXPECT_EQ(doc.at("circuits_open"), 1);
  EXPECT_EQ(doc.at("backing_off"), 1);
  EXPECT_EQ(doc.at("circuit_retry_in_ms"), 1500);
  EXPECT_EQ(doc.at("backoff_retry_in_ms"), 250);
  EXPECT_EQ(doc.at("handshakes_cancelled"), 2);
  EXPECT_EQ(doc.at("handshakes_retried"), 4);
  EXPECT_EQ(doc.at("acquires_cancelled"), 5);
  EXPECT_EQ(doc.at("commands_cancelled"), 6);
  const auto back = pool_stats_from_json(doc);
  EXPECT_EQ(back.channels_in_use, 3U);
  EXPECT_EQ(back.channel_capacity, 20U);
  EXPECT_EQ(back.channel_limit, 10U);
  EXPECT_EQ(back.circuits_open, 1U);
  EXPECT_EQ(back.backing_off, 1U);
  EXPECT_EQ(back.circuit_retry_in, std::chrono::milliseconds(1500));
  EXPECT_EQ(back.backoff_retry_in, std::chrono::milliseconds(250));
  EXPECT_EQ(back.handshakes_started, 9U);
  EXPECT_EQ(back.handshakes_cancelled, 2U);
  EXPECT_EQ(back.handshakes_retried, 4U);
  EXPECT_EQ(back.acquires_cancelled, 5U);
  EXPECT_EQ(back.commands_cancelled, 6U);
  EXPECT_EQ(doc.at("leases_on_spare"), 5);
  EXPECT_EQ(back.spare_channels, 2U);
  EXPECT_EQ(back.spare_channels_ready, 1U);
  EXPECT_EQ(back.spares_opened, 7U);
  EXPECT_EQ(back.leases_on_spare, 5U);
  EXPECT_EQ(back.spares_closed, 1U);
  EXPECT_EQ(back.spares_refused, 1U);
}

TEST(Json, MalformedDocumentsAreErrorsNotExceptions) {
  EXPECT_FALSE(diagnosis_from_json(nlohmann::json::object()));
  EXPECT_FALSE(diagnosis_from_json(nlohmann::json{{"server", 5}}));
  EXPECT_FALSE(exec_outcome_from_json(nlohmann::json{{"servers", {{{"server", "x"}}}}}));
  EXPECT_FALSE(collect_outcome_from_json(nlohmann::json::array()));
  const auto bad_base64 = nlohmann::json{{"ok", true},
                                         {"exit_status", 0},
                                         {"exit_signal", nullptr},
                                         {"stdout_base64", "!!!"},
                                         {"stderr_base64", ""}};
  EXPECT_FALSE(command_result_from_json(bad_base64));
}

TEST(Json, ErrorsKeepTheirCategoryAcrossTheWire) {
  for (const Error& error : {Error{make_error_code(ssh::Errc::auth_failed), "web1: rejected"},
                             Error{make_error_code(pool::Errc::pool_exhausted), "waited 2 s"},
                             make_error(Errc::not_found, "no server named 'x'"),
                             Error{std::make_error_code(std::errc::invalid_argument), "bad"}}) {
    const auto back = error_from_json(to_json(error));
    EXPECT_EQ(back.code, error.code);
    EXPECT_EQ(back.detail, error.detail);
    EXPECT_EQ(error_name(back), error_name(error));
  }
  EXPECT_EQ(error_from_json(nlohmann::json{{"category", "nope"}, {"code", 1}}).code,
            Errc::internal);
}

// JsonWriter writes what dump() writes for the same values: strings from servers (quotes,
// control characters, UTF-8, invalid bytes) and numbers byte for byte, structure that parses.
TEST(Json, WriterWritesTheBytesDumpWrites) {
  const std::vector<std::string> texts{"plain-name_01",
                                       "",
                                       "q\"uote\\slash",
                                       "tab\tnewline\nnul" + std::string(1, '\0'),
                                       "caf\xC3\xA9 \xE2\x9C\x93",
                                       "bad \xFF\xFE utf-8 \xC3",
                                       "del\x7F",
                                       "</script>"};
  for (const auto& text : texts) {
    std::string written;
    JsonWriter(written).string(text);
    EXPECT_EQ(written, dump(Json(text))) << text;
  }
  const std::vector<double> doubles{0.0,
                                    1.0,
                                    -2.5,
                                    0.1,
                                    1e300,
                                    12345.678,
                                    1e-7,
                                    std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity()};
  for (const double value : doubles) {
    std::string written;
    JsonWriter(written).number(value);
    EXPECT_EQ(written, dump(Json(value))) << value;
  }
  std::string written;
  JsonWriter out(written);
  out.begin_object();
  out.key("items").begin_array();
  for (int i = 0; i < 3; ++i) {
    out.begin_object().key("n").number(i).key("u").number(std::uint64_t{18446744073709551615U});
    out.key("tags").begin_array().string("a").string("b\"").end_array();
    out.key("none").null().key("yes").boolean(true);
    out.key("tree").json(Json{{"k", Json::array({1, "x"})}});
    out.key("empty").begin_object().end_object();
    out.end_object();
  }
  out.end_array().key("next").number(std::int64_t{-1}).end_object();
  const auto parsed = Json::parse(written);
  const Json item{
      {"n", 0},      {"u", 18446744073709551615U}, {"tags", {"a", "b\""}},   {"none", nullptr},
      {"yes", true}, {"tree", {{"k", {1, "x"}}}},  {"empty", Json::object()}};
  ASSERT_EQ(parsed["items"].size(), 3U) << written;
  EXPECT_EQ(parsed["items"][2]["n"], 2);
  Json first = parsed["items"][0];
  EXPECT_EQ(first, item) << written;
  EXPECT_EQ(parsed["next"], -1);
}

}  // namespace
}  // namespace healer::service
