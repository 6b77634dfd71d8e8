// The OpenSSH client config importer: ssh(1)'s resolution rules (first value wins, every matching
// Host block applies in order, wildcards and negation), token expansion and what is reported.
#include "ssh_config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

namespace healer::cli {
namespace {

SshConfigContext context() {
  SshConfigContext ctx;
  ctx.home = "/home/ann";
  ctx.local_user = "ann";
  return ctx;
}

const ImportedHost* find(const SshConfigImport& result, const std::string& alias) {
  for (const auto& host : result.hosts) {
    if (host.alias == alias) {
      return &host;
    }
  }
  return nullptr;
}

TEST(SshConfig, FirstValueWinsAcrossMatchingBlocks) {
  const auto result = parse_ssh_config(R"(
# fleet
Host web1
  HostName 10.0.0.1
  User deploy
Host web*
  User ignored
  Port 2222
Host *
  User fallback
  Port 22
  IdentityFile ~/.ssh/fleet_ed25519
)",
                                       context());
  ASSERT_EQ(result.hosts.size(), 1u);
  const auto& web1 = result.hosts.front();
  EXPECT_EQ(web1.alias, "web1");
  EXPECT_EQ(web1.hostname, "10.0.0.1");
  EXPECT_EQ(web1.user, "deploy");
  EXPECT_EQ(web1.port, 2222);
  EXPECT_EQ(web1.identity_file, "/home/ann/.ssh/fleet_ed25519");
  EXPECT_TRUE(web1.skipped.empty());
  EXPECT_TRUE(result.warnings.empty());
}

TEST(SshConfig, GlobalOptionsBeforeAnyHostApplyToAll) {
  const auto result = parse_ssh_config("User early\nHost a\n  User late\n", context());
  ASSERT_EQ(result.hosts.size(), 1u);
  EXPECT_EQ(result.hosts[0].user, "early");
}

TEST(SshConfig, SeveralAliasesOnOneLineAndHostnameToken) {
  const auto result =
      parse_ssh_config("Host app1 app2 *.corp\n  HostName %h.example.com\n", context());
  ASSERT_EQ(result.hosts.size(), 2u);
  EXPECT_EQ(result.hosts[0].hostname, "app1.example.com");
  EXPECT_EQ(result.hosts[1].hostname, "app2.example.com");
  EXPECT_EQ(result.hosts[1].port, 22);
}

TEST(SshConfig, NegatedPatternExcludesAHost) {
  const auto result = parse_ssh_config(R"(
Host db1 db2
Host db* !db2
  Port 5022
)",
                                       context());
  ASSERT_NE(find(result, "db1"), nullptr);
  EXPECT_EQ(find(result, "db1")->port, 5022);
  EXPECT_EQ(find(result, "db2")->port, 22);
}

TEST(SshConfig, PatternMatching) {
  EXPECT_TRUE(host_matches("web01", {"web??"}));
  EXPECT_FALSE(host_matches("web1", {"web??"}));
  EXPECT_TRUE(host_matches("a.b.corp", {"*.corp"}));
  EXPECT_TRUE(host_matches("WEB1", {"web1"}));  // host names compare case-insensitively
  EXPECT_FALSE(host_matches("x", {"!x", "*"}));
  EXPECT_FALSE(host_matches("y", {"!x"}));  // negation alone matches nothing
  EXPECT_TRUE(host_matches("abcabc", {"*abc"}));
}

TEST(SshConfig, EqualsSignsQuotesCommentsAndCase) {
  const auto result = parse_ssh_config(
      "host=q\n  hostname = 192.0.2.7\n  PORT=2201 # trailing comment\n  identityfile \"/keys/my "
      "key\"\n",
      context());
  ASSERT_EQ(result.hosts.size(), 1u);
  EXPECT_EQ(result.hosts[0].hostname, "192.0.2.7");
  EXPECT_EQ(result.hosts[0].port, 2201);
  EXPECT_EQ(result.hosts[0].identity_file, "/keys/my key");
}

TEST(SshConfig, TokensInIdentityAndKnownHosts) {
  const auto result = parse_ssh_config(R"(
Host h1
  HostName real.example
  User ops
  Port 2022
  IdentityFile %d/.ssh/%r@%h-%p-%n-%u%%
  UserKnownHostsFile ~/.ssh/known_fleet ~/.ssh/known_hosts2
)",
                                       context());
  ASSERT_EQ(result.hosts.size(), 1u);
  EXPECT_EQ(result.hosts[0].identity_file, "/home/ann/.ssh/ops@real.example-2022-h1-ann%");
  EXPECT_EQ(result.hosts[0].known_hosts_file, "/home/ann/.ssh/known_fleet");
}

TEST(SshConfig, ReportsSkippedOptionsAndUnsupportedOnes) {
  const auto result = parse_ssh_config(R"(
Host jumpy
  ProxyJump bastion
  ForwardAgent yes
  IdentityFile ~/.ssh/a
  IdentityFile ~/.ssh/b
  IdentityFile %C
Host *
  ServerAliveInterval 30
)",
                                       context());
  ASSERT_EQ(result.hosts.size(), 1u);
  const auto& host = result.hosts[0];
  EXPECT_EQ(host.skipped,
            (std::vector<std::string>{"ProxyJump", "ForwardAgent", "ServerAliveInterval"}));
  EXPECT_EQ(host.identity_file, "/home/ann/.ssh/a");
  ASSERT_EQ(host.warnings.size(), 2u);
  EXPECT_NE(host.warnings[0].find("ProxyJump"), std::string::npos);
  EXPECT_NE(host.warnings[1].find("3 IdentityFile"), std::string::npos);
}

TEST(SshConfig, MatchBlocksAreSkippedWithAWarning) {
  const auto result = parse_ssh_config(R"(
Host a
Match user root
  Port 9999
Host b
)",
                                       context());
  ASSERT_EQ(result.hosts.size(), 2u);
  EXPECT_EQ(result.hosts[0].port, 22);
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("config:3: Match"), std::string::npos);
}

TEST(SshConfig, BadPortAndBadLinesAreReportedNotFatal) {
  const auto result = parse_ssh_config(
      "Host a\n  Port http\n  User \"unterminated\nHost b\n  Port 70000\n", context());
  ASSERT_EQ(result.hosts.size(), 2u);
  EXPECT_EQ(result.hosts[0].port, 22);
  EXPECT_EQ(result.hosts[0].user, "");
  EXPECT_NE(result.hosts[0].warnings.at(0).find("'http'"), std::string::npos);
  EXPECT_EQ(result.hosts[1].port, 22);
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("unterminated quote"), std::string::npos);
}

TEST(SshConfig, IncludeIsExpandedInPlace) {
  auto ctx = context();
  std::map<std::string, std::string> files{{"fleet/*", "Host inc1\n  Port 2001\n"}};
  ctx.include = [&files](const std::string& pattern) {
    std::vector<std::pair<std::string, std::string>> out;
    if (auto it = files.find(pattern); it != files.end()) {
      out.emplace_back("/home/ann/.ssh/fleet/a", it->second);
    }
    return out;
  };
  const auto result =
      parse_ssh_config("Include fleet/*\nInclude missing\nHost top\n  Port 2002\n", ctx);
  ASSERT_EQ(result.hosts.size(), 2u);
  EXPECT_EQ(result.hosts[0].alias, "inc1");
  EXPECT_EQ(result.hosts[0].port, 2001);
  EXPECT_EQ(result.hosts[1].port, 2002);
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("missing"), std::string::npos);
}

// A fake file system for Include: pattern -> (path, text); counts the reads.
struct IncludeFiles {
  std::map<std::string, std::pair<std::string, std::string>> files;
  int reads = 0;
  // Stops answering after this many reads, so a parser that loops still ends (and fails).
  int give_up_after = 2000;

  SshConfigContext context_for(std::string top_level) {
    auto ctx = context();
    ctx.file_name = std::move(top_level);
    ctx.include = [this](const std::string& pattern) {
      std::vector<std::pair<std::string, std::string>> out;
      if (++reads > give_up_after) {
        return out;
      }
      if (auto it = files.find(pattern); it != files.end()) {
        out.push_back(it->second);
      }
      return out;
    };
    return ctx;
  }
};

bool contains(const std::vector<std::string>& lines, const std::string& part) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& line) { return line.find(part) != std::string::npos; });
}

TEST(SshConfig, SelfIncludeIsAnErrorNamingTheFile) {
  // ssh(1) itself would recurse 16 levels deep: three self-Includes per level were 3^16 parses.
  const std::string text = "Include config\nInclude config\nInclude config\nHost a\n";
  IncludeFiles fs;
  fs.files["config"] = {"/home/ann/.ssh/config", text};
  const auto result = parse_ssh_config(text, fs.context_for("/home/ann/.ssh/config"));
  EXPECT_EQ(fs.reads, 1);
  EXPECT_TRUE(result.hosts.empty());
  ASSERT_TRUE(result.error.has_value());
  EXPECT_NE(result.error->find("/home/ann/.ssh/config:1: Include cycle: /home/ann/.ssh/config -> "
                               "/home/ann/.ssh/config"),
            std::string::npos)
      << *result.error;
  EXPECT_TRUE(contains(result.warnings, "Include cycle"));
}

TEST(SshConfig, IncludeCycleThroughOtherFilesAndSpellingsIsFound) {
  IncludeFiles fs;
  fs.files["a.conf"] = {"/home/ann/.ssh/conf.d/../a.conf", "Host from-a\nInclude b.conf\n"};
  fs.files["b.conf"] = {"/home/ann/.ssh/b.conf", "Host from-b\n  Include a.conf\n"};
  const auto result = parse_ssh_config("Include a.conf\n", fs.context_for("/home/ann/.ssh/config"));
  EXPECT_EQ(fs.reads, 3);
  EXPECT_TRUE(result.hosts.empty());
  ASSERT_TRUE(result.error.has_value());
  EXPECT_NE(result.error->find("/home/ann/.ssh/b.conf:2: Include cycle: /home/ann/.ssh/a.conf -> "
                               "/home/ann/.ssh/b.conf -> /home/ann/.ssh/a.conf"),
            std::string::npos)
      << *result.error;
}

TEST(SshConfig, FanOutOfIncludesIsCappedByFileCount) {
  // No cycle: each level includes the next three times (a diamond), 3^12 files in all.
  IncludeFiles fs;
  for (int level = 0; level < 12; ++level) {
    const std::string next = "level" + std::to_string(level + 1);
    fs.files["level" + std::to_string(level)] = {
        "/home/ann/.ssh/level" + std::to_string(level),
        "Include " + next + "\nInclude " + next + "\nInclude " + next + "\n"};
  }
  fs.files["level12"] = {"/home/ann/.ssh/level12", "Host leaf\n"};
  auto ctx = fs.context_for("/home/ann/.ssh/config");
  ctx.max_files = 100;
  const auto result = parse_ssh_config("Include level0\n", ctx);
  EXPECT_LE(fs.reads, 100);
  EXPECT_TRUE(result.hosts.empty());
  ASSERT_TRUE(result.error.has_value());
  EXPECT_NE(result.error->find("more than 100 files"), std::string::npos) << *result.error;
  EXPECT_NE(result.error->find("/home/ann/.ssh/level"), std::string::npos) << *result.error;
}

TEST(SshConfig, IncludesNestedDeeperThanSshAllowsAreAnError) {
  IncludeFiles fs;
  for (int level = 0; level < 20; ++level) {
    fs.files["d" + std::to_string(level)] = {"/home/ann/.ssh/d" + std::to_string(level),
                                             "Include d" + std::to_string(level + 1) + "\n"};
  }
  const auto result = parse_ssh_config("Include d0\n", fs.context_for("/home/ann/.ssh/config"));
  EXPECT_EQ(fs.reads, 17);  // 16 levels below the top-level file are fine, as in ssh(1)
  ASSERT_TRUE(result.error.has_value());
  EXPECT_NE(result.error->find("/home/ann/.ssh/d15:1: Include of /home/ann/.ssh/d16 nested more "
                               "than 16 levels"),
            std::string::npos)
      << *result.error;
}

TEST(SshConfig, TheSameFileIncludedTwiceWithoutACycleIsFine) {
  IncludeFiles fs;
  fs.files["common"] = {"/home/ann/.ssh/common", "Host shared\n  Port 2200\n"};
  const auto result = parse_ssh_config("Include common\nHost top\nInclude common\n",
                                       fs.context_for("/home/ann/.ssh/config"));
  EXPECT_FALSE(result.error.has_value());
  EXPECT_EQ(fs.reads, 2);
  ASSERT_NE(find(result, "shared"), nullptr);
  EXPECT_EQ(find(result, "shared")->port, 2200);
  ASSERT_NE(find(result, "top"), nullptr);
}

TEST(SshConfig, OnlyPatternsMeansNoHosts) {
  const auto result = parse_ssh_config("Host *\n  User x\nHost *.corp\n", context());
  EXPECT_TRUE(result.hosts.empty());
}

}  // namespace
}  // namespace healer::cli
