// The `healer` binary as a user runs it, against a real sshd.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "child_process.hpp"
#include "healer/cli/exit_codes.hpp"
#include "poll_until.hpp"
#include "ports.hpp"
#include "sshd_fixture.hpp"

namespace healer {
namespace {

using test::SshdFixture;

std::vector<std::string> exec_argv(const SshdFixture& sshd, std::vector<std::string> extra,
                                   std::vector<std::string> command) {
  std::vector<std::string> argv{HEALER_BIN,      "exec",
                                "--host",        sshd.host(),
                                "--port",        std::to_string(sshd.port()),
                                "--user",        sshd.user(),
                                "--identity",    sshd.client_key_path().string(),
                                "--known-hosts", sshd.known_hosts_path().string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.emplace_back("--");
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

TEST(Cli, ExecPrintsOutputAndExitsWithTheRemoteStatus) {
  SshdFixture sshd;
  sshd.start();
  const auto run =
      test::run_command(exec_argv(sshd, {}, {"echo", "hello;", "echo oops >&2;", "exit 7"}));
  EXPECT_EQ(run.exit_code(), 7);
  EXPECT_EQ(run.out, "hello\n");
  EXPECT_EQ(run.err, "oops\n");
}

TEST(Cli, JsonOutputDescribesTheRun) {
  SshdFixture sshd;
  sshd.start();
  const auto run = test::run_command(exec_argv(sshd, {"--json"}, {"printf", "abc"}));
  ASSERT_EQ(run.exit_code(), 0) << run.err;
  const auto doc = nlohmann::json::parse(run.out);
  EXPECT_EQ(doc["ok"], true);
  EXPECT_EQ(doc["exit_status"], 0);
  EXPECT_EQ(doc["stdout"], "abc");
  EXPECT_EQ(doc["stdout_bytes"], 3);
  EXPECT_TRUE(doc["host_key_fingerprint"].get<std::string>().starts_with("SHA256:"));
  EXPECT_GT(doc["run_ms"].get<double>(), 0.0);
  EXPECT_EQ(doc["session_reused"], false);
}

TEST(Cli, RemoteSignalBecomes128PlusSignal) {
  SshdFixture sshd;
  sshd.start();
  const auto run = test::run_command(exec_argv(sshd, {}, {"kill -KILL $$"}));
  EXPECT_EQ(run.exit_code(), 128 + 9);
}

TEST(Cli, OutputCapIsReported) {
  SshdFixture sshd;
  sshd.start();
  const auto run =
      test::run_command(exec_argv(sshd, {"--max-output", "10"}, {"head -c 1000 /dev/zero"}));
  EXPECT_EQ(run.exit_code(), 0);
  EXPECT_EQ(run.out.size(), 10U);
  EXPECT_NE(run.err.find("truncated"), std::string::npos) << run.err;
}

TEST(Cli, ClosedPortIsOneClearLineAndItsExitCode) {
  SshdFixture sshd;  // not started: only its files are used
  const auto port = test::closed_port();
  auto argv = exec_argv(sshd, {}, {"true"});
  argv[5] = std::to_string(port);
  const auto run = test::run_command(argv);
  EXPECT_EQ(run.exit_code(), cli::kExitConnectRefused);
  EXPECT_EQ(run.out, "");
  EXPECT_NE(run.err.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << run.err;
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
}

TEST(Cli, UnknownHostAndChangedKeyHaveTheirExitCodes) {
  SshdFixture sshd;
  sshd.start();
  auto argv = exec_argv(sshd, {}, {"true"});
  argv[11] = (sshd.dir() / "nothing_known").string();
  const auto unknown = test::run_command(argv);
  EXPECT_EQ(unknown.exit_code(), cli::kExitHostUnknown) << unknown.err;
  EXPECT_NE(unknown.err.find("--accept-new-host-key"), std::string::npos) << unknown.err;

  sshd.regenerate_host_key();
  const auto changed = test::run_command(exec_argv(sshd, {}, {"true"}));
  EXPECT_EQ(changed.exit_code(), cli::kExitHostKeyChanged) << changed.err;
  const auto changed_tofu = test::run_command(exec_argv(sshd, {"--accept-new-host-key"}, {"true"}));
  EXPECT_EQ(changed_tofu.exit_code(), cli::kExitHostKeyChanged) << changed_tofu.err;
}

TEST(Cli, WrongKeyIsAuthFailed) {
  SshdFixture sshd;
  sshd.start();
  const auto stranger = sshd.add_client_key(SshdFixture::KeyType::ed25519, {}, false);
  auto argv = exec_argv(sshd, {}, {"true"});
  argv[9] = stranger.private_key.string();
  const auto run = test::run_command(argv);
  EXPECT_EQ(run.exit_code(), cli::kExitAuthFailed) << run.err;
}

TEST(Cli, PassphraseNeverAppearsInOutput) {
  SshdFixture sshd;
  sshd.start();
  const auto key = sshd.add_client_key(SshdFixture::KeyType::ed25519, "s3cret-passphrase", true);
  auto argv = exec_argv(sshd, {"--json"}, {"true"});
  argv[9] = key.private_key.string();
  std::vector<std::string> with_env{"env", "HEALER_KEY_PASSPHRASE=not-the-s3cret"};
  with_env.insert(with_env.end(), argv.begin(), argv.end());
  const auto run = test::run_command(with_env);
  EXPECT_EQ(run.exit_code(), cli::kExitKeyInvalid) << run.err;
  EXPECT_EQ(run.out.find("not-the-s3cret"), std::string::npos);
  EXPECT_EQ(run.err.find("not-the-s3cret"), std::string::npos);
}

TEST(Cli, SeveralCommandsShareOneConnection) {
  SshdFixture sshd;
  sshd.start();
  const auto run = test::run_command(
      exec_argv(sshd, {"--json", "--stats"}, {"echo", "one", ":::", "echo two", ":::", "exit 4"}));
  EXPECT_EQ(run.exit_code(), 4) << run.err;
  const auto doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc["results"].size(), 3U);
  EXPECT_EQ(doc["results"][0]["stdout"], "one\n");
  EXPECT_EQ(doc["results"][1]["stdout"], "two\n");
  EXPECT_EQ(doc["results"][2]["exit_status"], 4);
  EXPECT_EQ(doc["pool"]["handshakes_started"], 1);
  EXPECT_EQ(sshd.accepted_auth_count(), 1U);
  EXPECT_EQ(sshd.connection_count(), 1U);
}

TEST(Cli, CommandsFromAFileWithStats) {
  SshdFixture sshd;
  sshd.start();
  const auto file = sshd.dir() / "commands.txt";
  {
    std::ofstream out(file);
    out << "# the seed's checks\nuptime\ncat /proc/loadavg\nhead -5 /proc/meminfo\n";
  }
  const auto run = test::run_command(exec_argv(sshd, {"--commands", file.string(), "--stats"}, {}));
  EXPECT_EQ(run.exit_code(), 0) << run.err;
  EXPECT_NE(run.out.find("==> cat /proc/loadavg <== (exit 0)"), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("1 handshake(s)"), std::string::npos) << run.err;
  EXPECT_EQ(sshd.connection_count(), 1U);
}

TEST(Cli, InvalidPoolSettingNamesTheVariable) {
  SshdFixture sshd;
  sshd.start();
  auto argv = exec_argv(sshd, {}, {"true"});
  std::vector<std::string> with_env{"env", "SSH_POOL_MAX_SIZE=abc"};
  with_env.insert(with_env.end(), argv.begin(), argv.end());
  const auto run = test::run_command(with_env);
  EXPECT_EQ(run.exit_code(), cli::kExitUsage);
  EXPECT_NE(run.err.find("SSH_POOL_MAX_SIZE"), std::string::npos) << run.err;
  const auto negative = test::run_command(exec_argv(sshd, {"--idle-timeout-ms", "-5"}, {"true"}));
  EXPECT_EQ(negative.exit_code(), cli::kExitUsage);
  EXPECT_NE(negative.err.find("idle-timeout-ms"), std::string::npos) << negative.err;
  EXPECT_EQ(sshd.connection_count(), 0U);  // rejected at start-up, before any connection
}

TEST(Cli, BadInputIsAUsageError) {
  const auto no_host = test::run_command({HEALER_BIN, "exec", "--", "true"});
  EXPECT_EQ(no_host.exit_code(), cli::kExitUsage);
  EXPECT_NE(no_host.err.find("--host"), std::string::npos) << no_host.err;
  const auto bad_port =
      test::run_command({HEALER_BIN, "exec", "--host", "h", "--port", "99999", "--", "true"});
  EXPECT_EQ(bad_port.exit_code(), cli::kExitUsage);
  const auto bad_timeout =
      test::run_command({HEALER_BIN, "exec", "--host", "h", "--timeout", "-1", "--", "true"});
  EXPECT_EQ(bad_timeout.exit_code(), cli::kExitUsage);
  const auto no_command = test::run_command({HEALER_BIN, "exec", "--host", "h"});
  EXPECT_EQ(no_command.exit_code(), cli::kExitUsage);
  // Ports in decimal only (CLI11 would read 022 as octal 18 and 0x50 as 80).
  for (const char* port : {"022", "0x50", "0"}) {
    const auto octal =
        test::run_command({HEALER_BIN, "exec", "--host", "h", "--port", port, "--", "true"});
    EXPECT_EQ(octal.exit_code(), cli::kExitUsage) << port;
  }
  // Deadlines that are no deadline: NaN, infinity, more than a day.
  for (const char* timeout : {"nan", "inf", "86401", "0"}) {
    const auto bad =
        test::run_command({HEALER_BIN, "exec", "--host", "h", "--timeout", timeout, "--", "true"});
    EXPECT_EQ(bad.exit_code(), cli::kExitUsage) << timeout;
    EXPECT_NE(bad.err.find("--timeout"), std::string::npos) << bad.err;
  }
  // An unknown log level is an error, not silence.
  const auto level = test::run_command({"env", "HEALER_LOG=verbose", HEALER_BIN, "--version"});
  EXPECT_EQ(level.exit_code(), cli::kExitUsage);
  EXPECT_NE(level.err.find("HEALER_LOG"), std::string::npos);
  // A FIFO as --stdin-file or --config is refused, not waited on forever.
  const auto dir =
      std::filesystem::temp_directory_path() / ("healer-cli-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto stdin_fifo = test::run_command(
      {HEALER_BIN, "exec", "--host", "h", "--stdin-file", fifo.string(), "--", "true"});
  EXPECT_EQ(stdin_fifo.exit_code(), cli::kExitUsage);
  EXPECT_NE(stdin_fifo.err.find("not a regular file"), std::string::npos) << stdin_fifo.err;
  const auto config_fifo = test::run_command(
      {HEALER_BIN, "exec", "--host", "h", "--config", fifo.string(), "--", "true"});
  EXPECT_EQ(config_fifo.exit_code(), cli::kExitUsage);
  std::filesystem::remove_all(dir);
}

TEST(Cli, VersionIsPrintedAndInJson) {
  const auto version = test::run_command({HEALER_BIN, "--version"});
  EXPECT_EQ(version.exit_code(), 0);
  EXPECT_TRUE(version.out.starts_with("healer 0.")) << version.out;
  SshdFixture sshd;
  sshd.start();
  const auto run = test::run_command(exec_argv(sshd, {"--json"}, {"true"}));
  ASSERT_EQ(run.exit_code(), 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.out)["healer_version"],
            version.out.substr(7, version.out.size() - 8));
}

TEST(Cli, OutputFromTheServerNeverDrivesATerminalNorBreaksJson) {
  SshdFixture sshd;
  sshd.start();
  // Piped, the remote output is passed on byte for byte.
  const auto piped = test::run_command(exec_argv(sshd, {}, {"printf 'a\\033[2Jb\\377\\n'"}));
  EXPECT_EQ(piped.out, "a\033[2Jb\377\n");
  // JSON holds bytes that are not UTF-8 without failing.
  const auto json = test::run_command(exec_argv(sshd, {"--json"}, {"printf 'x\\377y'"}));
  ASSERT_EQ(json.exit_code(), 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["stdout"], "x\xef\xbf\xbdy");
  // On a terminal (script(1) gives it one), escapes and BEL are shown, not obeyed.
  const auto argv = exec_argv(sshd, {}, {"printf \"a\\033]0;owned\\007b\\n\""});
  std::string command;
  for (const auto& word : argv) {
    command += "'" + word + "' ";
  }
  const auto tty = test::run_command({"script", "-qec", command, "/dev/null"});
  EXPECT_EQ(tty.out.find("\033]0;"), std::string::npos) << tty.out;
  EXPECT_NE(tty.out.find("\\x1b]0;owned\\x07b"), std::string::npos) << tty.out;
}

TEST(Cli, SigintStopsTheRemoteCommandAndExits130) {
  SshdFixture sshd;
  sshd.start();
  auto argv = exec_argv(sshd, {}, {"sleep 31400"});
  auto process = test::ChildProcess::spawn(argv);
  ASSERT_TRUE(test::poll_until([&] { return sshd.remote_processes_matching("sleep 31400") == 1; },
                               std::chrono::seconds(10)));
  process.signal(SIGINT);
  const auto ended = process.wait_for_exit(std::chrono::seconds(5));
  ASSERT_TRUE(ended.has_value()) << "healer exec still running 5 s after SIGINT";
  EXPECT_EQ(ended->exit_code, 130);
  EXPECT_TRUE(test::poll_until([&] { return sshd.remote_processes_matching("sleep 31400") == 0; },
                               std::chrono::seconds(5)))
      << "the remote sleep outlived healer";
  sshd.kill_remote_processes_matching("sleep 31400");
}

}  // namespace
}  // namespace healer
