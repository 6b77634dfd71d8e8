// Report rendering: table, summary line, Nagios exit code over servers, JSON; plus the batched
// runner's pure framing (split_batch_output).
#include "healer/checks/report.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "healer/checks/parsers.hpp"
#include "healer/checks/runner.hpp"
#include "healer/pool/errors.hpp"
#include "healer/ssh/errors.hpp"

namespace healer::checks {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

CheckRun run_of(std::string name, Status status, std::string message,
                std::chrono::microseconds duration = 12ms) {
  CheckRun run;
  run.result.name = std::move(name);
  run.result.status = status;
  run.result.message = std::move(message);
  run.duration = duration;
  run.exit_status = 0;
  return run;
}

Diagnosis diagnosis_of(std::string server, std::vector<CheckRun> runs) {
  Diagnosis diagnosis;
  diagnosis.server_id = std::move(server);
  diagnosis.status = Status::ok;
  for (const auto& run : runs) {
    diagnosis.status = worst(diagnosis.status, run.result.status);
  }
  diagnosis.checks = std::move(runs);
  diagnosis.duration = 1234ms;
  diagnosis.started_at = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  return diagnosis;
}

Diagnosis healthy() {
  auto memory = run_of("memory", Status::ok, "23.4% available (3.7 GiB of 15.6 GiB)");
  memory.result.perfdata.push_back(Perfdata{.label = "available",
                                            .value = 23.4,
                                            .unit = "%",
                                            .warn = 10.0,
                                            .crit = 5.0,
                                            .min = 0.0,
                                            .max = 100.0,
                                            .lower_is_worse = true});
  return diagnosis_of(
      "web1", {run_of("disk_space", Status::ok, "all filesystems below 85%"), std::move(memory)});
}

Diagnosis unreachable(std::string server) {
  Error error = make_error(ssh::Errc::auth_failed, "127.0.0.1:2222 as bob: publickey rejected");
  auto run = run_of("memory", Status::unknown, "server unreachable: " + error.message(), 3ms);
  run.error = error;
  run.exit_status = std::nullopt;
  auto diagnosis = diagnosis_of(std::move(server), {std::move(run)});
  diagnosis.server_error = error;
  return diagnosis;
}

// --- table ----------------------------------------------------------------------------------

TEST(ReportTable, OneRowPerCheckInOrderWithoutColour) {
  auto diagnosis = healthy();
  diagnosis.checks.push_back(run_of("load", Status::warning, "load5 2.5 per CPU", 1500ms));
  diagnosis.status = Status::warning;
  const std::string table = render_table(diagnosis, RenderOptions(false));
  EXPECT_EQ(table.find('\033'), std::string::npos) << table;
  EXPECT_EQ(table,
            "web1: WARNING - 2 OK, 1 WARNING, 0 CRITICAL, 0 UNKNOWN (1.23 s)\n"
            "  CHECK       STATUS     DURATION  MESSAGE\n"
            "  disk_space  OK            12 ms  all filesystems below 85%\n"
            "  memory      OK            12 ms  23.4% available (3.7 GiB of 15.6 GiB)\n"
            "  load        WARNING      1.50 s  load5 2.5 per CPU\n");
}

TEST(ReportTable, ColourOnlyWhenAskedAndNotInPadding) {
  auto diagnosis = healthy();
  diagnosis.checks.push_back(run_of("cpu", Status::critical, "busy 99%"));
  diagnosis.status = Status::critical;
  const std::string table = render_table(diagnosis, RenderOptions(true));
  EXPECT_NE(table.find("\033[1;31mCRITICAL\033[0m"), std::string::npos) << table;
  EXPECT_NE(table.find("\033[32mOK      \033[0m"), std::string::npos) << table;
  EXPECT_NE(table.find("\033[1;31m1 CRITICAL\033[0m"), std::string::npos) << table;
  // Same text once the escapes are gone.
  std::string stripped;
  for (std::size_t i = 0; i < table.size(); ++i) {
    if (table[i] == '\033') {
      i = table.find('m', i);
      continue;
    }
    stripped.push_back(table[i]);
  }
  EXPECT_EQ(stripped, render_table(diagnosis, RenderOptions(false)));
}

TEST(ReportTable, PerfdataLineAndCachedAndCutMessages) {
  auto diagnosis = healthy();
  diagnosis.checks[0].cached = true;
  RenderOptions options;
  options.show_perfdata = true;
  options.max_message = 20;
  const std::string table = render_table(diagnosis, options);
  EXPECT_NE(table.find("'available'=23.4%;10:;5:;0;100"), std::string::npos) << table;
  EXPECT_NE(table.find("cached"), std::string::npos) << table;
  EXPECT_EQ(table.find("(3.7 GiB of 15.6 GiB)"), std::string::npos) << table;
  EXPECT_NE(table.find("..."), std::string::npos) << table;
}

// --- summary --------------------------------------------------------------------------------

TEST(ReportSummary, CountsPerStatus) {
  EXPECT_EQ(render_summary(healthy(), RenderOptions()),
            "web1: OK - 2 OK, 0 WARNING, 0 CRITICAL, 0 UNKNOWN (1.23 s)");
}

TEST(ReportSummary, UnreachableServerSaysWhy) {
  EXPECT_EQ(render_summary(unreachable("db1"), RenderOptions()),
            "db1: UNKNOWN - unreachable: authentication failed: 127.0.0.1:2222 as bob: publickey "
            "rejected (1.23 s)");
}

TEST(ReportSummary, NoChecks) {
  Diagnosis diagnosis;
  diagnosis.server_id = "x";
  diagnosis.duration = 20ms;
  EXPECT_EQ(render_summary(diagnosis, RenderOptions()), "x: UNKNOWN - no checks (20 ms)");
}

// --- Nagios exit code -------------------------------------------------------------------------

TEST(ReportExitCode, WorstOverServersWithUnknownBelowWarning) {
  EXPECT_EQ(nagios_exit_code({}), 0);
  EXPECT_EQ(nagios_exit_code({healthy()}), 0);
  EXPECT_EQ(nagios_exit_code({healthy(), unreachable("db1")}), 3);
  auto warning = diagnosis_of("w", {run_of("load", Status::warning, "high")});
  EXPECT_EQ(nagios_exit_code({unreachable("db1"), warning, healthy()}), 1);
  auto critical = diagnosis_of("c", {run_of("disk_space", Status::critical, "full")});
  EXPECT_EQ(nagios_exit_code({warning, critical, unreachable("db1")}), 2);
  EXPECT_EQ(overall_status({warning, critical}), Status::critical);
}

TEST(ReportExitCode, ADiagnosisWithoutChecksIsUnknown) {
  Diagnosis empty;
  empty.server_id = "e";
  EXPECT_EQ(nagios_exit_code({healthy(), empty}), 3);
}

TEST(ReportExitCode, UsesCheckStatusesEvenIfDiagnosisStatusIsStale) {
  auto diagnosis = healthy();
  diagnosis.checks[0].result.status = Status::critical;  // status field not recomputed
  EXPECT_EQ(nagios_exit_code({diagnosis}), 2);
}

// --- JSON -----------------------------------------------------------------------------------

TEST(ReportJson, DiagnosisWithStructuredPerfdata) {
  const json doc = json::parse(render_json(healthy()));
  EXPECT_EQ(doc["server"], "web1");
  EXPECT_EQ(doc["status"], "OK");
  EXPECT_EQ(doc["exit_code"], 0);
  EXPECT_EQ(doc["reachable"], true);
  EXPECT_TRUE(doc["error"].is_null());
  EXPECT_EQ(doc["started_at"], "2023-11-14T22:13:20.000Z");
  EXPECT_DOUBLE_EQ(doc["duration_ms"].get<double>(), 1234.0);
  EXPECT_EQ(doc["mode"], "concurrent");
  ASSERT_EQ(doc["checks"].size(), 2U);
  const auto& memory = doc["checks"][1];
  EXPECT_EQ(memory["name"], "memory");
  EXPECT_EQ(memory["status"], "OK");
  EXPECT_EQ(memory["cached"], false);
  EXPECT_EQ(memory["exit_status"], 0);
  EXPECT_DOUBLE_EQ(memory["duration_ms"].get<double>(), 12.0);
  ASSERT_EQ(memory["perfdata"].size(), 1U);
  const auto& available = memory["perfdata"][0];
  EXPECT_EQ(available["label"], "available");
  EXPECT_DOUBLE_EQ(available["value"].get<double>(), 23.4);
  EXPECT_EQ(available["unit"], "%");
  EXPECT_DOUBLE_EQ(available["warn"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(available["crit"].get<double>(), 5.0);
  EXPECT_EQ(available["lower_is_worse"], true);
  EXPECT_TRUE(doc["checks"][0]["perfdata"].empty());
}

TEST(ReportJson, AbsentPerfdataLevelsAreNull) {
  auto diagnosis = healthy();
  diagnosis.checks[0].result.perfdata.push_back(Perfdata{.label = "x", .value = 1});
  const json doc = json::parse(render_json(diagnosis));
  const auto& x = doc["checks"][0]["perfdata"][0];
  EXPECT_TRUE(x["warn"].is_null());
  EXPECT_TRUE(x["crit"].is_null());
  EXPECT_TRUE(x["min"].is_null());
  EXPECT_TRUE(x["max"].is_null());
}

TEST(ReportJson, TypedServerErrorAndSetOfServers) {
  auto pool_down = unreachable("db2");
  pool_down.server_error = make_error(pool::Errc::circuit_open, "db2");
  const json doc = json::parse(render_json({healthy(), unreachable("db1"), pool_down}, 2));
  EXPECT_EQ(doc["status"], "UNKNOWN");
  EXPECT_EQ(doc["exit_code"], 3);
  ASSERT_EQ(doc["servers"].size(), 3U);
  const auto& db1 = doc["servers"][1];
  EXPECT_EQ(db1["reachable"], false);
  EXPECT_EQ(db1["error"]["category"], "ssh");
  EXPECT_EQ(db1["error"]["name"], "auth_failed");
  EXPECT_EQ(db1["error"]["code"], static_cast<int>(ssh::Errc::auth_failed));
  EXPECT_NE(db1["error"]["message"].get<std::string>().find("publickey rejected"),
            std::string::npos);
  EXPECT_EQ(db1["checks"][0]["error"]["name"], "auth_failed");
  EXPECT_TRUE(db1["checks"][0]["exit_status"].is_null());
  EXPECT_EQ(doc["servers"][2]["error"]["category"], "pool");
  EXPECT_EQ(doc["servers"][2]["error"]["name"], "circuit_open");
}

TEST(ReportJson, InvalidUtf8IsReplacedNotThrown) {
  auto diagnosis = healthy();
  diagnosis.checks[0].result.message = "bad \xff byte";
  std::string text;
  EXPECT_NO_THROW(text = render_json(diagnosis));
  EXPECT_TRUE(json::accept(text)) << text;
}

TEST(ReportJson, BytesThatAreNotUtf8AnywhereFromAServerNeverThrow) {
  // A mount point as df prints it (a Latin-1 name), through the real parser: its message and
  // perfdata label carry the byte, and one_line() may cut a multibyte character in half.
  CheckInput input;
  const std::string df =
      "Filesystem Type 1024-blocks Used Available Capacity Mounted on\n"
      "/dev/sdb1 ext4 1000 990 10 99% /srv/caf\xe9\n"
      "/dev/sda1 ext4 1000 10 990 1% /\n";
  input.out = df;
  input.exit_status = 0;
  CheckRun disk;
  disk.result = parse_disk_space(input, CheckSettings{});
  ASSERT_EQ(disk.result.status, Status::critical) << disk.result.message;
  ASSERT_NE(disk.result.message.find("caf\xe9"), std::string::npos);
  CheckRun cut = run_of("kernel_errors", Status::warning, std::string(299, 'x') + "\xc3\xa9");
  cut.result.message = cut.result.message.substr(0, 300);  // half of "é"
  CheckRun odd = run_of("n\xffme", Status::unknown, "bad \xff\xfe byte");
  odd.error = make_error(ssh::Errc::protocol, "banner \xff\x80");
  odd.result.perfdata.push_back(Perfdata{.label = "/mnt/\xff", .value = 1.0});
  auto diagnosis = diagnosis_of(
      "web\xff"
      "1",
      {disk, cut, odd});
  diagnosis.server_error = make_error(ssh::Errc::auth_failed, "as \xfe");

  std::string one;
  std::string all;
  ASSERT_NO_THROW(one = render_json(diagnosis, 2));
  ASSERT_NO_THROW(all = render_json(std::vector<Diagnosis>{diagnosis, healthy()}));
  for (const auto* text : {&one, &all}) {
    ASSERT_TRUE(json::accept(*text)) << *text;
    EXPECT_NE(text->find("\xef\xbf\xbd"), std::string::npos) << "U+FFFD replaces the bad bytes";
  }
  const json doc = json::parse(one);
  EXPECT_EQ(doc["server"],
            "web\xef\xbf\xbd"
            "1");
  EXPECT_EQ(doc["checks"][0]["perfdata"][0]["label"], "/srv/caf\xef\xbf\xbd");
  EXPECT_EQ(doc["checks"][2]["name"], "n\xef\xbf\xbdme");
}

// --- batched framing ----------------------------------------------------------------------------

TEST(BatchFraming, SplitsSectionsByteForByteWithExitCodes) {
  const std::string m = "@@healer-abc";
  const std::string out = m + " begin 0\nline1\nline2\n\n" + m + " end 0 0\n" + m +
                          " begin 1\nno newline\n" + m + " end 1 3\n" + m + " begin 2\n\n" + m +
                          " end 2 \n";
  const std::string err = m + " begin 0\n\n" + m + " end 0\n" + m + " begin 1\noops\n\n" + m +
                          " end 1\n" + m + " begin 2\n\n" + m + " end 2\n";
  const auto sections = split_batch_output(out, err, m, 4);
  ASSERT_EQ(sections.size(), 4U);
  EXPECT_EQ(sections[0].out, "line1\nline2\n");
  EXPECT_EQ(sections[0].exit_status, 0);
  EXPECT_EQ(sections[0].err, "");
  EXPECT_EQ(sections[1].out, "no newline");
  EXPECT_EQ(sections[1].exit_status, 3);
  EXPECT_EQ(sections[1].err, "oops\n");
  EXPECT_FALSE(sections[2].exit_status);  // killed: no exit code
  EXPECT_FALSE(sections[3].exit_status);  // never printed
}

TEST(BatchFraming, ScriptRunsEveryCommandInItsOwnSubshell) {
  CheckDefinition a;
  a.command = "echo a; exit 4";
  CheckDefinition b;
  b.command = "echo b";
  const std::string script = batch_script({a, b});
  EXPECT_NE(script.find("(\necho a; exit 4\n)"), std::string::npos) << script;
  EXPECT_NE(script.find("(\necho b\n)"), std::string::npos) << script;
  EXPECT_NE(script.find("wait"), std::string::npos);
  // Framed by the marker the prologue draws on the server, never by a marker written into the
  // script (a command line other users of the server can read).
  EXPECT_NE(script.find("printf '%s begin 1\\n' \"$HM\""), std::string::npos) << script;
  EXPECT_EQ(script.find("@@"), std::string::npos) << script;
}

TEST(BatchFraming, ALineWithAnotherMarkerIsPartOfTheSection) {
  // What a check prints cannot end its section or fake another's exit code: only the run's
  // marker frames, and the server never sees it on a command line.
  const std::string m = "@@healer-00112233445566778899aabbccddeeff";
  const std::string forged = "@@healer-ffffffffffffffffffffffffffffffff";
  const std::string out = m + " begin 0\ndata\n" + forged + " end 0 0\n" + forged + " begin 1\n" +
                          "\n" + m + " end 0 2\n" + m + " begin 1\nok\n\n" + m + " end 1 0\n";
  const auto sections = split_batch_output(out, "", m, 2);
  EXPECT_EQ(sections[0].out, "data\n" + forged + " end 0 0\n" + forged + " begin 1\n");
  EXPECT_EQ(sections[0].exit_status, 2);
  EXPECT_EQ(sections[1].out, "ok\n");
  EXPECT_EQ(sections[1].exit_status, 0);
}

TEST(Markers, TheMarkerLineIsTakenOffTheOutput) {
  const std::string uuid = "@@healer-3b043b74-f2d8-4f4e-aa45-2781740e054b";
  std::string out = "motd from a login script\n" + uuid + "\nFilesystem ...\n" + uuid + " mounts\n";
  EXPECT_EQ(take_marker(out), uuid);
  EXPECT_EQ(out, "Filesystem ...\n" + uuid + " mounts\n") << "noise dropped, framing kept";

  const std::string hex = "@@healer-6078f3ee2d5972feef02732fcbcb7e9c";  // the /dev/urandom form
  std::string glued = "no newline from .bashrc" + hex + "\nbody";
  EXPECT_EQ(take_marker(glued), hex);
  EXPECT_EQ(glued, "body");

  std::string lookalike = "@@healer-not-a-marker\n" + uuid + "\nbody";
  EXPECT_EQ(take_marker(lookalike), uuid);
  EXPECT_EQ(lookalike, "body");
}

TEST(Markers, NoMarkerLineLeavesTheOutputAsItIs) {
  for (const std::string& text :
       {std::string("plain output\n"), std::string("@@healer unavailable forged\n"),
        std::string("@@healer-unavailable forged by a mount\n"),
        std::string("@@healer-0123456789abcdef\n"),                            // too short
        std::string("@@healer-0123456789abcdef0123456789abcdef0123456789\n"),  // too long
        std::string("@@healer-3b043b74-f2d8-4f4e-aa45-2781740e054b")}) {       // no line end
    SCOPED_TRACE(text);
    std::string out = text;
    EXPECT_EQ(take_marker(out), "");
    EXPECT_EQ(out, text);
  }
}

TEST(Markers, ThePrologueDrawsTheMarkerOnTheServerAndPrintsItFirst) {
  const std::string_view prologue = kDrawMarker;
  EXPECT_NE(prologue.find("</proc/sys/kernel/random/uuid"), std::string_view::npos);
  EXPECT_NE(prologue.find("/dev/urandom"), std::string_view::npos);
  EXPECT_NE(prologue.find("|| exit 125"), std::string_view::npos);
  EXPECT_TRUE(prologue.ends_with("echo \"$HM\"; "));
  EXPECT_EQ(prologue.find("export"), std::string_view::npos) << "HM stays out of environments";
}

}  // namespace
}  // namespace healer::checks
