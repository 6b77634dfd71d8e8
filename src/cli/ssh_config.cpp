#include "ssh_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <optional>
#include <set>

namespace healer::cli {
namespace {

struct Entry {
  std::size_t block = 0;  ///< 0: before any Host line (applies to every host)
  std::string keyword;    ///< as written
  std::string lower;      ///< lowercased, for matching
  std::vector<std::string> args;
  std::string origin;  ///< "file:line" for warnings
};

struct Block {
  std::vector<std::string> patterns;
  bool match_block = false;  ///< a Match block: never applied
};

// ssh(1)'s READCONF_MAX_DEPTH: deeper nesting is an error there too.
constexpr int kMaxIncludeDepth = 16;

struct Parsed {
  std::vector<Block> blocks{Block{{"*"}, false}};
  std::vector<Entry> entries;
  std::vector<std::string> aliases;
  std::vector<std::string> warnings;
  std::vector<std::string> chain;  ///< files being parsed, outermost first (lexically normal)
  std::size_t files = 0;           ///< files parsed so far, the top-level one included
  std::optional<std::string> error;
};

std::string normal_path(const std::string& path) {
  return std::filesystem::path(path).lexically_normal().string();
}

// Parses `content` of the Include'd `path` unless that would loop or exceed the limits (then
// records the error, which stops the whole parse).
void parse_into(Parsed& parsed, std::string_view text, const std::string& origin,
                const SshConfigContext& context, int depth);

void include_file(Parsed& parsed, const std::string& where, const std::string& path,
                  std::string_view content, const SshConfigContext& context, int depth) {
  const std::string normal = normal_path(path);
  if (std::find(parsed.chain.begin(), parsed.chain.end(), normal) != parsed.chain.end()) {
    std::string cycle;
    for (auto it = std::find(parsed.chain.begin(), parsed.chain.end(), normal);
         it != parsed.chain.end(); ++it) {
      cycle += *it + " -> ";
    }
    parsed.error = fmt::format("{}: Include cycle: {}{}", where, cycle, normal);
    return;
  }
  if (depth + 1 > kMaxIncludeDepth) {
    parsed.error = fmt::format("{}: Include of {} nested more than {} levels deep", where, path,
                               kMaxIncludeDepth);
    return;
  }
  if (parsed.files >= context.max_files) {
    parsed.error = fmt::format("{}: Include of {}: more than {} files to read; not importing",
                               where, path, context.max_files);
    return;
  }
  parse_into(parsed, content, path, context, depth + 1);
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Splits one line into keyword and arguments: "Key value", "Key=value", "Key = value",
// double-quoted arguments; an unquoted '#' starting a word ends the line.
std::vector<std::string> split_line(std::string_view line, bool& bad_quote) {
  std::vector<std::string> words;
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < line.size() && is_space(line[i])) {
      ++i;
    }
  };
  skip_spaces();
  if (i >= line.size() || line[i] == '#') {
    return words;
  }
  std::string keyword;
  while (i < line.size() && !is_space(line[i]) && line[i] != '=') {
    keyword += line[i++];
  }
  words.push_back(std::move(keyword));
  skip_spaces();
  if (i < line.size() && line[i] == '=') {
    ++i;
  }
  for (;;) {
    skip_spaces();
    if (i >= line.size() || line[i] == '#') {
      return words;
    }
    if (line[i] == '"') {
      const auto end = line.find('"', i + 1);
      if (end == std::string_view::npos) {
        bad_quote = true;
        return words;
      }
      words.emplace_back(line.substr(i + 1, end - i - 1));
      i = end + 1;
      continue;
    }
    std::string word;
    while (i < line.size() && !is_space(line[i])) {
      word += line[i++];
    }
    words.push_back(std::move(word));
  }
}

bool has_wildcard(std::string_view pattern) {
  return pattern.find_first_of("*?") != std::string_view::npos || pattern.starts_with('!');
}

bool glob_match(std::string_view text, std::string_view pattern) {
  // Iterative '*'/'?' matcher with backtracking to the last star (as OpenSSH's match_pattern).
  std::size_t t = 0;
  std::size_t p = 0;
  std::size_t star = std::string_view::npos;
  std::size_t resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() &&
        (pattern[p] == '?' || std::tolower(static_cast<unsigned char>(pattern[p])) ==
                                  std::tolower(static_cast<unsigned char>(text[t])))) {
      ++t;
      ++p;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

void parse_into(Parsed& parsed, std::string_view text, const std::string& origin,
                const SshConfigContext& context, int depth) {
  ++parsed.files;
  parsed.chain.push_back(normal_path(origin));
  std::size_t start = 0;
  int line_no = 0;
  while (start <= text.size() && !parsed.error) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    const auto line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    bool bad_quote = false;
    auto words = split_line(line, bad_quote);
    const auto where = fmt::format("{}:{}", origin, line_no);
    if (bad_quote) {
      parsed.warnings.push_back(fmt::format("{}: unterminated quote, line skipped", where));
      continue;
    }
    if (words.empty() || words.front().empty()) {
      continue;
    }
    const auto keyword = lowercase(words.front());
    std::vector<std::string> args(words.begin() + 1, words.end());
    if (keyword == "host") {
      if (args.empty()) {
        parsed.warnings.push_back(fmt::format("{}: Host without a pattern, block skipped", where));
        parsed.blocks.push_back(Block{{}, true});
        continue;
      }
      parsed.blocks.push_back(Block{args, false});
      for (const auto& pattern : args) {
        if (!has_wildcard(pattern) && std::find(parsed.aliases.begin(), parsed.aliases.end(),
                                                pattern) == parsed.aliases.end()) {
          parsed.aliases.push_back(pattern);
        }
      }
      continue;
    }
    if (keyword == "match") {
      parsed.warnings.push_back(
          fmt::format("{}: Match blocks are not supported; the block is skipped", where));
      parsed.blocks.push_back(Block{{}, true});
      continue;
    }
    if (keyword == "include") {
      if (!context.include) {
        parsed.warnings.push_back(fmt::format("{}: Include skipped", where));
        continue;
      }
      for (const auto& pattern : args) {
        if (parsed.error) {
          break;
        }
        const auto files = context.include(pattern);
        if (files.empty()) {
          parsed.warnings.push_back(
              fmt::format("{}: Include {} matched no readable file", where, pattern));
        }
        for (const auto& [path, content] : files) {
          include_file(parsed, where, path, content, context, depth);
          if (parsed.error) {
            break;
          }
        }
      }
      continue;
    }
    parsed.entries.push_back(
        Entry{parsed.blocks.size() - 1, words.front(), keyword, std::move(args), where});
  }
  parsed.chain.pop_back();
}

// Expands ~ and the % tokens ssh_config(5) defines for IdentityFile and UserKnownHostsFile.
std::string expand(std::string_view value, const ImportedHost& host,
                   const SshConfigContext& context, std::vector<std::string>& warnings) {
  std::string out;
  if (value.starts_with("~/") || value == "~") {
    out = context.home;
    value.remove_prefix(1);
  }
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%' || i + 1 == value.size()) {
      out += value[i];
      continue;
    }
    const char token = value[++i];
    switch (token) {
      case '%':
        out += '%';
        break;
      case 'd':
        out += context.home;
        break;
      case 'u':
        out += context.local_user;
        break;
      case 'h':
        out += host.hostname;
        break;
      case 'n':
        out += host.alias;
        break;
      case 'r':
        out += host.user.empty() ? context.local_user : host.user;
        break;
      case 'p':
        out += std::to_string(host.port);
        break;
      default:
        warnings.push_back(fmt::format("token %{} in '{}' is not supported, kept as is", token,
                                       std::string(value)));
        out += '%';
        out += token;
    }
  }
  return out;
}

}  // namespace

bool host_matches(std::string_view host, const std::vector<std::string>& patterns) {
  bool matched = false;
  for (const auto& pattern : patterns) {
    if (pattern.starts_with('!')) {
      if (glob_match(host, std::string_view(pattern).substr(1))) {
        return false;
      }
    } else if (glob_match(host, pattern)) {
      matched = true;
    }
  }
  return matched;
}

SshConfigImport parse_ssh_config(std::string_view text, const SshConfigContext& context) {
  Parsed parsed;
  parse_into(parsed, text, context.file_name, context, 0);
  SshConfigImport result;
  result.warnings = std::move(parsed.warnings);
  if (parsed.error) {
    // Nothing half-read is imported; the warning line lets a caller that only prints warnings
    // still show why.
    result.warnings.push_back(*parsed.error);
    result.error = std::move(parsed.error);
    return result;
  }
  for (const auto& alias : parsed.aliases) {
    ImportedHost host;
    host.alias = alias;
    std::optional<std::string> hostname;
    std::optional<std::string> port;
    std::optional<std::string> user;
    std::optional<std::string> identity;
    std::optional<std::string> known_hosts;
    std::set<std::string> skipped_seen;
    int identities = 0;
    for (const auto& entry : parsed.entries) {
      const auto& block = parsed.blocks[entry.block];
      if (block.match_block || !host_matches(alias, block.patterns)) {
        continue;
      }
      if (entry.args.empty()) {
        result.warnings.push_back(
            fmt::format("{}: {} without a value", entry.origin, entry.keyword));
        continue;
      }
      const auto& value = entry.args.front();
      if (entry.lower == "hostname") {
        hostname = hostname.value_or(value);
      } else if (entry.lower == "port") {
        port = port.value_or(value);
      } else if (entry.lower == "user") {
        user = user.value_or(value);
      } else if (entry.lower == "identityfile") {
        ++identities;
        identity = identity.value_or(value);
      } else if (entry.lower == "userknownhostsfile") {
        known_hosts = known_hosts.value_or(value);
      } else if (skipped_seen.insert(entry.lower).second) {
        host.skipped.push_back(entry.keyword);
        if (entry.lower == "proxyjump" || entry.lower == "proxycommand") {
          host.warnings.push_back(fmt::format(
              "{} is not supported: healer will connect to the host directly", entry.keyword));
        }
      }
    }
    host.hostname = alias;
    if (hostname) {
      std::string expanded;
      for (std::size_t i = 0; i < hostname->size(); ++i) {
        if ((*hostname)[i] == '%' && i + 1 < hostname->size()) {
          const char token = (*hostname)[++i];
          if (token == 'h') {
            expanded += alias;
          } else if (token == '%') {
            expanded += '%';
          } else {
            expanded += '%';
            expanded += token;
          }
        } else {
          expanded += (*hostname)[i];
        }
      }
      host.hostname = expanded;
    }
    if (port) {
      unsigned value = 0;
      const auto* first = port->data();
      const auto* last = first + port->size();
      const auto [ptr, ec] = std::from_chars(first, last, value);
      if (ec != std::errc() || ptr != last || value == 0 || value > 65535) {
        host.warnings.push_back(fmt::format("Port '{}' is not a port number; using 22", *port));
      } else {
        host.port = static_cast<std::uint16_t>(value);
      }
    }
    if (user) {
      host.user = *user;
    }
    if (identity) {
      if (lowercase(*identity) != "none") {
        host.identity_file = expand(*identity, host, context, host.warnings);
      }
      if (identities > 1) {
        host.warnings.push_back(
            fmt::format("{} IdentityFile lines apply; healer offers only the first", identities));
      }
    }
    if (known_hosts) {
      host.known_hosts_file = expand(*known_hosts, host, context, host.warnings);
    }
    result.hosts.push_back(std::move(host));
  }
  return result;
}

}  // namespace healer::cli
