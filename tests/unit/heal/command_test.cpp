#include "healer/heal/command.hpp"

#include <gtest/gtest.h>

namespace healer::heal {
namespace {

const ActionSpec& builtin(std::string_view id) {
  for (const auto& action : builtin_actions()) {
    if (action.id == id) {
      return action;
    }
  }
  throw std::logic_error("no built-in action " + std::string(id));
}

// Splits shell text into words the way POSIX sh does for the only forms sh_quote produces:
// bare words of safe characters, '...' and \' between them. Anything else a shell would treat
// specially outside quotes (a metacharacter, $, `, a glob) makes the split fail.
std::optional<std::vector<std::string>> split_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ') {
      if (in_word) {
        words.push_back(word);
        word.clear();
        in_word = false;
      }
      continue;
    }
    in_word = true;
    if (c == '\'') {
      const auto close = text.find('\'', i + 1);
      if (close == std::string_view::npos) {
        return std::nullopt;
      }
      word.append(text.substr(i + 1, close - i - 1));
      i = close;
    } else if (c == '\\' && i + 1 < text.size()) {
      word += text[++i];
    } else if (std::string_view("$`\"|&;<>()*?[]#~{}\n\t!").find(c) != std::string_view::npos) {
      return std::nullopt;
    } else {
      word += c;
    }
  }
  if (in_word) {
    words.push_back(word);
  }
  return words;
}

TEST(HealQuoting, SafeWordsStayBareEverythingElseIsSingleQuoted) {
  EXPECT_EQ(sh_quote("nginx.service"), "nginx.service");
  EXPECT_EQ(sh_quote("--vacuum-size=500M"), "--vacuum-size=500M");
  EXPECT_EQ(sh_quote(""), "''");
  EXPECT_EQ(sh_quote("a b"), "'a b'");
  EXPECT_EQ(sh_quote("it's"), "'it'\\''s'");
}

TEST(HealQuoting, HostileWordsSurviveAsOneWord) {
  const std::vector<std::string> hostile{
      "$(reboot)", "`id`",    "a;b",   "a && rm -rf /", "'",    "''", "'\\''",
      "x\ny",      "*",       "~root", "$HOME",         "a\\b", "--", "-rf",
      "{unit}",    "!!",      "#c",    "a\"b",          "\t",   " ",  "a'b'c'",
      "${IFS}",    "\x1b[2J", "é"};
  for (const auto& word : hostile) {
    const auto quoted = sh_quote(word);
    const auto split = split_words(quoted);
    ASSERT_TRUE(split) << quoted;
    ASSERT_EQ(split->size(), 1u) << quoted;
    EXPECT_EQ(split->front(), word) << quoted;
  }
}

TEST(HealCommands, ArgvHasSudoAndTheValueAsOneElement) {
  const auto& restart = builtin("restart_unit");
  const std::map<std::string, std::string> params{{"unit", "web@a b.service"}};
  const auto sudo = render_argv(restart, params, Privilege::sudo);
  ASSERT_EQ(sudo.size(), 1u);
  EXPECT_EQ(sudo[0], (std::vector<std::string>{"sudo", "-n", "--", "systemctl", "restart", "--",
                                               "web@a b.service"}));
  const auto plain = render_argv(restart, params, Privilege::none);
  EXPECT_EQ(plain[0], (std::vector<std::string>{"systemctl", "restart", "--", "web@a b.service"}));

  const auto& vacuum = builtin("vacuum_journal");
  EXPECT_EQ(render_argv(vacuum, {{"size", "1G"}}, Privilege::none)[0],
            (std::vector<std::string>{"journalctl", "--vacuum-size=1G"}));
}

TEST(HealCommands, ShellTextIsTheArgvQuotedWordByWord) {
  const auto& reset = builtin("reset_failed_start");
  // Even a value no validator would pass stays one word: quoting does not rely on validation.
  const std::map<std::string, std::string> params{{"unit", "x.service; reboot #"}};
  const auto argv = render_argv(reset, params, Privilege::sudo);
  const auto text = shell_command(reset, params, argv);
  const auto environment = text.find("export PATH; ");
  ASSERT_NE(environment, std::string::npos);
  const auto commands = text.substr(environment + std::string("export PATH; ").size());
  const auto amp = commands.find(" && ");
  ASSERT_NE(amp, std::string::npos);
  const auto first = split_words(commands.substr(0, amp));
  const auto second = split_words(commands.substr(amp + 4));
  ASSERT_TRUE(first && second) << text;
  EXPECT_EQ(*first, argv[0]);
  EXPECT_EQ(*second, argv[1]);
}

TEST(HealCommands, KillGuardQuotesItsParametersAndRunsFirst) {
  const auto& kill = builtin("kill_process");
  const std::map<std::string, std::string> params{
      {"pid", "1234"}, {"start_time", "5678"}, {"signal", "TERM"}};
  const auto argv = render_argv(kill, params, Privilege::sudo);
  const auto text = shell_command(kill, params, argv);
  const auto guard = text.find("/proc/1234/stat");
  const auto command = text.find("sudo -n -- kill -s TERM 1234");
  ASSERT_NE(guard, std::string::npos);
  ASSERT_NE(command, std::string::npos);
  EXPECT_LT(guard, command);
  EXPECT_NE(text.find("= 5678 ]"), std::string::npos);
}

TEST(HealProbes, AskSudoForEachCommandWithoutRunningIt) {
  const auto& reset = builtin("reset_failed_start");
  const std::map<std::string, std::string> params{{"unit", "a'b.service"}};
  const auto text = probe_command(reset, params, Privilege::sudo);
  EXPECT_NE(text.find("sudo -n -l -- systemctl reset-failed -- 'a'\\''b.service'"),
            std::string::npos);
  EXPECT_NE(text.find("sudo -n -l -- systemctl start -- 'a'\\''b.service'"), std::string::npos);
  EXPECT_NE(text.find("systemctl show -p LoadState"), std::string::npos);
  EXPECT_EQ(text.find("sudo -n systemctl"), std::string::npos);
  const auto unprivileged = probe_command(reset, params, Privilege::none);
  EXPECT_EQ(unprivileged.find("sudo"), std::string::npos);
}

TEST(HealFacts, UntrustedOutputIsFilteredAndSanitised) {
  const std::string out =
      "systemd=yes\nfamily=debian\r\nprivilege=ok\nLoadState=loaded\nActiveState=failed\n"
      "ActiveState=active\nResult=exit-code\x1b[31m\nNRestarts=5\nSubState=failed\n"
      "Evil=1\n=x\nnot a fact\nLoad State=x\n" +
      std::string("Id=") + std::string(500, 'a') + "\n";
  const auto facts = parse_facts(out, ProbeKind::unit, Privilege::sudo);
  EXPECT_EQ(facts.state.at("systemd"), "yes");
  EXPECT_EQ(facts.state.at("family"), "debian");
  EXPECT_EQ(facts.state.at("privilege"), "ok");
  EXPECT_EQ(facts.state.at("ActiveState"), "failed");  // the first occurrence wins
  EXPECT_EQ(facts.state.at("Result"), "exit-code?[31m");
  EXPECT_EQ(facts.info.at("NRestarts"), "5");
  EXPECT_EQ(facts.info.at("SubState"), "failed");
  EXPECT_FALSE(facts.state.contains("Evil"));
  EXPECT_FALSE(facts.state.contains("Id"));
  EXPECT_FALSE(facts.info.contains("Id"));

  // Without sudo a server cannot claim a privilege fact.
  const auto none = parse_facts("privilege=ok\n", ProbeKind::unit, Privilege::none);
  EXPECT_FALSE(none.state.contains("privilege"));

  const auto long_value =
      parse_facts("ActiveState=" + std::string(1000, 'x'), ProbeKind::unit, Privilege::none);
  EXPECT_EQ(long_value.state.at("ActiveState").size(), 200u);
}

Facts unit_facts(std::string active, std::string privilege = "ok") {
  Facts facts;
  facts.state = {{"systemd", "yes"},      {"family", "debian"},    {"privilege", privilege},
                 {"LoadState", "loaded"}, {"ActiveState", active}, {"Result", "exit-code"}};
  return facts;
}

TEST(HealJudging, BlockedReasonsInOrder) {
  const auto& restart = builtin("restart_unit");
  auto facts = unit_facts("failed");
  auto conditions = judge(restart.precondition, facts);
  EXPECT_FALSE(blocked_reason(restart, Privilege::sudo, facts, conditions));

  facts = unit_facts("active");
  conditions = judge(restart.precondition, facts);
  auto reason = blocked_reason(restart, Privilege::sudo, facts, conditions);
  ASSERT_TRUE(reason);
  EXPECT_EQ(reason->rfind("precondition: ActiveState is active", 0), 0u) << *reason;

  facts = unit_facts("failed", "missing");
  conditions = judge(restart.precondition, facts);
  reason = blocked_reason(restart, Privilege::sudo, facts, conditions);
  ASSERT_TRUE(reason);
  EXPECT_EQ(reason->rfind("privilege_missing:", 0), 0u) << *reason;
  EXPECT_FALSE(blocked_reason(restart, Privilege::none, facts, conditions));

  facts = unit_facts("failed", "missing");
  facts.state["systemd"] = "no";
  reason = blocked_reason(restart, Privilege::sudo, facts, judge(restart.precondition, facts));
  ASSERT_TRUE(reason);
  EXPECT_EQ(reason->rfind("not_applicable:", 0), 0u) << *reason;

  facts.state.erase("ActiveState");
  const auto judged = judge(restart.precondition, facts);
  EXPECT_EQ(judged.size(), 2u);
  EXPECT_TRUE(judged[0].holds);
  EXPECT_FALSE(judged[1].holds);
  EXPECT_EQ(judged[1].actual, "");
}

TEST(HealExit, SudoRefusalsArePrivilegeMissingNotFailures) {
  EXPECT_EQ(classify_exit(0, "", Privilege::sudo), RunOutcome::succeeded);
  EXPECT_EQ(classify_exit(1, "sudo: a password is required\n", Privilege::sudo),
            RunOutcome::privilege_missing);
  EXPECT_EQ(classify_exit(1,
                          "Sorry, user healer is not allowed to execute '/usr/bin/systemctl "
                          "restart x' as root on host.\n",
                          Privilege::sudo),
            RunOutcome::privilege_missing);
  EXPECT_EQ(classify_exit(127, "sh: 1: sudo: not found\n", Privilege::sudo),
            RunOutcome::privilege_missing);
  // The same text from a command that does not use sudo is an ordinary failure.
  EXPECT_EQ(classify_exit(1, "sudo: a password is required\n", Privilege::none),
            RunOutcome::failed);
  EXPECT_EQ(classify_exit(1, "Job for x.service failed\n", Privilege::sudo), RunOutcome::failed);
  EXPECT_EQ(classify_exit(97, "healer: guard failed: process 5 is gone\n", Privilege::sudo),
            RunOutcome::precondition_failed);
  EXPECT_EQ(classify_exit(97, "something else\n", Privilege::sudo), RunOutcome::failed);
  EXPECT_EQ(classify_exit(std::nullopt, "", Privilege::sudo), RunOutcome::failed);
}

}  // namespace
}  // namespace healer::heal
