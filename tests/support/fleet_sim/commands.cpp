#include "commands.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "healer/checks/catalog.hpp"
#include "healer/checks/runner.hpp"
#include "healer/metrics/probe.hpp"

namespace healer::fleet_sim {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kMarkerPrefix = "@@healer-metrics-";

// --- check answers ------------------------------------------------------------------------------

// `apt-get -s dist-upgrade` with nothing to upgrade (tests/data/proc/apt_simulate_none).
constexpr std::string_view kAptNothing =
    "NOTE: This is only a simulation!\n"
    "      apt-get needs root privileges for real execution.\n"
    "Reading package lists...\n"
    "Building dependency tree...\n"
    "Reading state information...\n"
    "Calculating upgrade...\n"
    "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n";

// `ss -ltn` of a small web server (tests/data/proc/ss_ltn).
constexpr std::string_view kListening =
    "State  Recv-Q Send-Q                Local Address:Port    Peer Address:Port Process\n"
    "LISTEN 0      4096                  127.0.0.53%lo:53           0.0.0.0:*\n"
    "LISTEN 0      128                         0.0.0.0:22           0.0.0.0:*\n"
    "LISTEN 0      511                         0.0.0.0:80           0.0.0.0:*\n"
    "LISTEN 0      511                         0.0.0.0:443          0.0.0.0:*\n"
    "LISTEN 0      128                            [::]:22              [::]:*\n"
    "LISTEN 0      4096                              *:9100               *:*\n";

std::string first_lines(std::string_view text, std::size_t count) {
  std::size_t end = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const auto newline = text.find('\n', end);
    if (newline == std::string_view::npos) {
      return std::string(text);
    }
    end = newline + 1;
  }
  return std::string(text.substr(0, end));
}

// `ps -e -o stat= -o pid= -o comm=`: sleeping kernel threads and daemons, one running.
std::string process_table(std::size_t count) {
  static constexpr std::string_view kNames[] = {"kworker/0:1", "systemd-journal", "sshd",
                                                "cron",        "rsyslogd",        "nginx",
                                                "postgres",    "containerd",      "bash"};
  std::string out = "Ss         1 systemd\n";
  for (std::size_t pid = 2; pid <= count; ++pid) {
    const auto name = kNames[pid % std::size(kNames)];
    out += fmt::format("{:<4} {:>7} {}\n", pid == count ? "R" : (pid < 40 ? "I<" : "S"), pid * 7,
                       name);
  }
  return out;
}

// "<marker> <tag>": a check's framing line, as its `echo "$HM <tag>"` prints it (" <tag>" when
// the command ran without the kDrawMarker prologue, HM then being unset).
std::string frame(const RunContext& c, std::string_view tag) {
  return fmt::format("{} {}\n", c.marker, tag);
}

// What each catalog check's command prints on a healthy Debian host with systemd (timesyncd,
// apt, nothing failed, no kernel errors, nothing to reboot for), the measured parts from the
// host model. Every one exits 0 with nothing on stderr.
struct CheckAnswer {
  std::string_view name;
  std::string (*out)(const RunContext&);
};

constexpr CheckAnswer kCheckAnswers[] = {
    {"disk_space", [](const RunContext& c) { return c.host.df(false); }},
    {"disk_inodes", [](const RunContext& c) { return c.host.df(true); }},
    {"memory", [](const RunContext& c) { return c.host.meminfo(c.now); }},
    {"swap", [](const RunContext& c) { return c.host.meminfo(c.now); }},
    {"load",
     [](const RunContext& c) {
       return c.host.loadavg(c.now) + frame(c, "cores") + fmt::format("{}\n", c.host.cpus());
     }},
    {"cpu",
     [](const RunContext& c) {
       return frame(c, "sample") + c.host.cpu_total_line(c.started) + "\n" + frame(c, "sample") +
              c.host.cpu_total_line(c.now) + "\n";
     }},
    {"oom_kills",
     [](const RunContext& c) {
       const auto vmstat = c.host.vmstat(c.now);
       const auto at = vmstat.find("oom_kill ");
       return at == std::string::npos ? std::string()
                                      : vmstat.substr(at, vmstat.find('\n', at) - at + 1);
     }},
    {"failed_units", [](const RunContext&) { return std::string(); }},
    {"time_sync",
     [](const RunContext& c) { return frame(c, "timedatectl") + "NTPSynchronized=yes\n"; }},
    {"clock_skew", [](const RunContext& c) { return fmt::format("{:.9f}\n", c.now); }},
    {"reboot_required", [](const RunContext& c) { return frame(c, "debian-clear"); }},
    {"security_updates",
     [](const RunContext& c) { return frame(c, "apt") + std::string(kAptNothing); }},
    {"kernel_errors", [](const RunContext& c) { return frame(c, "journal"); }},  // -q: no entries
    {"read_only_mounts", [](const RunContext& c) { return c.host.mounts(); }},
    {"processes", [](const RunContext& c) { return process_table(c.host.process_count(c.now)); }},
    {"file_descriptors", [](const RunContext& c) { return c.host.file_nr(c.now); }},
    {"uptime", [](const RunContext& c) { return c.host.uptime(c.now); }},
    {"listening_ports",
     [](const RunContext& c) { return frame(c, "ss") + std::string(kListening); }},
    {"seed.uptime", [](const RunContext& c) { return c.host.uptime_line(c.now); }},
    {"seed.df_root", [](const RunContext& c) { return c.host.df_root(); }},
    {"seed.free", [](const RunContext& c) { return c.host.free_bytes(c.now); }},
    {"seed.loadavg", [](const RunContext& c) { return c.host.loadavg(c.now); }},
    {"seed.system_state", [](const RunContext&) { return std::string("running\n"); }},
    {"seed.processes",  // `ps -e | wc -l` counts ps's header too
     [](const RunContext& c) { return fmt::format("{}\n", c.host.process_count(c.now) + 1); }},
    {"seed.meminfo", [](const RunContext& c) { return first_lines(c.host.meminfo(c.now), 5); }},
};

const CheckAnswer* find_answer(std::string_view name) {
  const auto* found =
      std::find_if(std::begin(kCheckAnswers), std::end(kCheckAnswers),
                   [name](const CheckAnswer& answer) { return answer.name == name; });
  return found == std::end(kCheckAnswers) ? nullptr : found;
}

// The reply of the catalog check `name`; exit 127 when the simulator does not know it.
Reply check_reply(std::string_view name, const RunContext& c) {
  if (const auto* answer = find_answer(name)) {
    return Reply{answer->out(c), {}, 0, {}};
  }
  return Reply{{}, fmt::format("healer-fleet-sim: check {} not simulated\n", name), 127, {}};
}

milliseconds check_duration(std::string_view name) {
  return name == "cpu" ? milliseconds(1000) : milliseconds(0);  // its `sleep 1` between samples
}

// checks::batch_script's output for the checks `names` (their commands in that order): each
// one's stdout framed by the run's marker with its exit code, its stderr framed on stderr, in
// the checks' order, as the script's `cat`s print them after `wait`.
Reply batch_reply(const std::vector<std::string>& names, const RunContext& c) {
  Reply reply{{}, {}, 0, {}};
  for (std::size_t i = 0; i < names.size(); ++i) {
    const Reply section = check_reply(names[i], c);
    reply.out += fmt::format("{0} begin {1}\n{2}\n{0} end {1} {3}\n", c.marker, i, section.out,
                             section.exit_status.value_or(0));
    reply.err += fmt::format("{0} begin {1}\n{2}\n{0} end {1}\n", c.marker, i, section.err);
  }
  return reply;
}

// A marker as kDrawMarker draws it from /proc/sys/kernel/random/uuid: "@@healer-" and a
// version 4 UUID.
std::string draw_marker() {
  static std::mt19937_64 random{std::random_device{}()};
  const std::uint64_t high = random();
  const std::uint64_t low = random();
  return fmt::format("@@healer-{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}", high >> 32,
                     (high >> 16) & 0xffffU, high & 0xfffU, 0x8000U | ((low >> 48) & 0x3fffU),
                     low & 0xffff'ffff'ffffU);
}

// --- a small shell ----------------------------------------------------------------------------

struct Token {
  enum class Kind { word, sequence, and_then, or_else } kind = Kind::word;
  std::string text;
};

// Splits a command line into words and `;` `&&` `||`; nullopt for syntax this shell does not
// simulate (pipes, redirections, expansions, subshells, background jobs).
std::optional<std::vector<Token>> tokenize(std::string_view line) {
  std::vector<Token> tokens;
  std::string word;
  bool in_word = false;
  const auto end_word = [&] {
    if (in_word) {
      tokens.push_back({Token::Kind::word, word});
      word.clear();
      in_word = false;
    }
  };
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == ' ' || c == '\t') {
      end_word();
    } else if (c == ';' || c == '\n') {
      end_word();
      tokens.push_back({Token::Kind::sequence, {}});
    } else if (c == '&' || c == '|') {
      if (i + 1 >= line.size() || line[i + 1] != c) {
        return std::nullopt;
      }
      end_word();
      tokens.push_back({c == '&' ? Token::Kind::and_then : Token::Kind::or_else, {}});
      ++i;
    } else if (c == '#' && !in_word) {
      while (i + 1 < line.size() && line[i + 1] != '\n') {
        ++i;
      }
    } else if (c == '\'') {
      const auto close = line.find('\'', i + 1);
      if (close == std::string_view::npos) {
        return std::nullopt;
      }
      word.append(line.substr(i + 1, close - i - 1));
      in_word = true;
      i = close;
    } else if (c == '"') {
      in_word = true;
      for (++i;; ++i) {
        if (i >= line.size()) {
          return std::nullopt;
        }
        if (line[i] == '"') {
          break;
        }
        if (line[i] == '$' || line[i] == '`') {
          return std::nullopt;
        }
        if (line[i] == '\\' && i + 1 < line.size() &&
            std::string_view("\"\\$`").find(line[i + 1]) != std::string_view::npos) {
          ++i;
        }
        word += line[i];
      }
    } else if (c == '\\') {
      if (i + 1 < line.size()) {
        word += line[++i];
        in_word = true;
      }
    } else if (std::string_view("<>$`(){}").find(c) != std::string_view::npos) {
      return std::nullopt;
    } else {
      word += c;
      in_word = true;
    }
  }
  end_word();
  return tokens;
}

bool is_assignment(std::string_view word) {
  const auto equals = word.find('=');
  if (equals == 0 || equals == std::string_view::npos) {
    return false;
  }
  return std::all_of(word.begin(), word.begin() + static_cast<std::ptrdiff_t>(equals),
                     [](char c) {
                       return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9');
                     }) &&
         !(word[0] >= '0' && word[0] <= '9');
}

std::optional<double> parse_seconds(std::string_view text) {
  double factor = 1.0;
  if (!text.empty() && std::string_view("smhd").find(text.back()) != std::string_view::npos) {
    factor = text.back() == 'm' ? 60 : text.back() == 'h' ? 3600 : text.back() == 'd' ? 86400 : 1;
    text.remove_suffix(1);
  }
  double value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value) || value < 0) {
    return std::nullopt;
  }
  return value * factor;
}

// dash's echo: arguments joined by spaces, backslash escapes interpreted, -n drops the newline.
std::string echo(const std::vector<std::string>& args) {
  std::size_t first = 1;
  bool newline = true;
  if (args.size() > 1 && args[1] == "-n") {
    newline = false;
    first = 2;
  }
  std::string joined;
  for (std::size_t i = first; i < args.size(); ++i) {
    joined += (i > first ? " " : "") + args[i];
  }
  std::string out;
  for (std::size_t i = 0; i < joined.size(); ++i) {
    if (joined[i] != '\\' || i + 1 >= joined.size()) {
      out += joined[i];
      continue;
    }
    const char next = joined[++i];
    if (next == 'n') {
      out += '\n';
    } else if (next == 't') {
      out += '\t';
    } else if (next == '\\') {
      out += '\\';
    } else if (next == 'c') {
      return out;  // no further output, not even the newline
    } else {
      out += '\\';
      out += next;
    }
  }
  if (newline) {
    out += '\n';
  }
  return out;
}

std::string date(const std::vector<std::string>& args, double now) {
  const auto seconds = static_cast<std::time_t>(std::floor(now));
  const auto nanos = static_cast<long>((now - std::floor(now)) * 1e9);
  std::string format =
      args.size() > 1 && args[1].starts_with('+') ? args[1].substr(1) : "%a %b %e %H:%M:%S UTC %Y";
  std::string expanded;
  for (std::size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size() && format[i + 1] == 's') {
      expanded += std::to_string(seconds);
      ++i;
    } else if (format[i] == '%' && i + 1 < format.size() && format[i + 1] == 'N') {
      expanded += fmt::format("{:09}", nanos);
      ++i;
    } else {
      expanded += format[i];
    }
  }
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[256];
  const auto length = std::strftime(buffer, sizeof buffer, expanded.c_str(), &utc);
  return std::string(buffer, length) + "\n";
}

std::string uname(const std::vector<std::string>& args, const HostModel& host) {
  const auto lines = host.uname();  // -s, -r, -v, -m, -n
  std::vector<std::string> part;
  std::size_t start = 0;
  for (int i = 0; i < 5; ++i) {
    const auto end = lines.find('\n', start);
    part.push_back(lines.substr(start, end - start));
    start = end + 1;
  }
  if (args.size() < 2 || args[1] == "-s") {
    return part[0] + "\n";
  }
  if (args[1] == "-a") {
    return fmt::format("{} {} {} {} {} GNU/Linux\n", part[0], part[4], part[1], part[2], part[3]);
  }
  const std::string flags = "srvmn";
  std::string out;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const auto at = args[i].size() == 2 ? flags.find(args[i][1]) : std::string::npos;
    if (at != std::string::npos) {
      out += (out.empty() ? "" : " ") + part[at];
    }
  }
  return out + "\n";
}

// One run of a parsed command line: what it printed and how it ended.
struct Outcome {
  std::string out;
  std::string err;
  int status = 0;
  double seconds = 0;  // time spent in sleep
  bool reads_stdin = false;
  bool unknown = false;  // ran a command this shell does not know
};

void run_simple(std::vector<std::string> args, const RunContext& c, Outcome& o, bool& exited);

void run_line(const std::vector<Token>& tokens, const RunContext& c, Outcome& o, bool& exited) {
  Token::Kind connector = Token::Kind::sequence;
  std::vector<std::string> words;
  const auto flush = [&](Token::Kind next) {
    const bool run = connector == Token::Kind::sequence ||
                     (connector == Token::Kind::and_then && o.status == 0) ||
                     (connector == Token::Kind::or_else && o.status != 0);
    if (run && !words.empty() && !exited) {
      run_simple(words, c, o, exited);
    }
    words.clear();
    connector = next;
  };
  for (const auto& token : tokens) {
    if (token.kind == Token::Kind::word) {
      words.push_back(token.text);
    } else {
      flush(token.kind);
    }
  }
  flush(Token::Kind::sequence);
}

void run_simple(std::vector<std::string> args, const RunContext& c, Outcome& o, bool& exited) {
  while (!args.empty() && is_assignment(args.front())) {
    args.erase(args.begin());
  }
  if (args.empty()) {
    o.status = 0;
    return;
  }
  const std::string& name = args[0];
  if (name == "true" || name == ":" || name == "export" || name == "unset" || name == "cd") {
    o.status = 0;
  } else if (name == "false") {
    o.status = 1;
  } else if (name == "exit") {
    int status = o.status;
    if (args.size() > 1) {
      status = 0;
      std::from_chars(args[1].data(), args[1].data() + args[1].size(), status);
    }
    o.status = status & 0xff;
    exited = true;
  } else if (name == "echo") {
    o.out += echo(args);
    o.status = 0;
  } else if (name == "sleep") {
    const auto seconds = args.size() == 2 ? parse_seconds(args[1]) : std::nullopt;
    if (!seconds) {
      o.err += fmt::format("sleep: invalid time interval '{}'\n", args.size() > 1 ? args[1] : "");
      o.status = 1;
    } else {
      o.seconds += *seconds;
      o.status = 0;
    }
  } else if (name == "cat") {
    o.status = 0;
    if (args.size() == 1) {
      o.reads_stdin = true;
      o.out += c.input;
    }
    for (std::size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "-") {
        o.reads_stdin = true;
        o.out += c.input;
      } else if (auto text = c.host.read_file(args[i], c.now)) {
        o.out += *text;
      } else {
        o.err += fmt::format("cat: {}: No such file or directory\n", args[i]);
        o.status = 1;
      }
    }
  } else if (name == "date") {
    o.out += date(args, c.now);
    o.status = 0;
  } else if (name == "uptime") {
    o.out += c.host.uptime_line(c.now);
    o.status = 0;
  } else if (name == "hostname") {
    o.out += c.host.hostname() + "\n";
    o.status = 0;
  } else if (name == "uname") {
    o.out += uname(args, c.host);
    o.status = 0;
  } else if (name == "nproc") {
    o.out += fmt::format("{}\n", c.host.cpus());
    o.status = 0;
  } else if (name == "free") {
    o.out += c.host.free_bytes(c.now);
    o.status = 0;
  } else if (name == "df") {
    const bool root_only = std::find(args.begin(), args.end(), "/") != args.end();
    const bool inodes = std::find(args.begin(), args.end(), "-i") != args.end();
    o.out += root_only ? c.host.df_root() : c.host.df(inodes);
    o.status = 0;
  } else if (name == "sh" && args.size() >= 3 && args[1] == "-c") {
    const auto tokens = tokenize(args[2]);
    if (!tokens) {
      o.err += "healer-fleet-sim: cannot simulate this shell syntax\n";
      o.status = 2;
      o.unknown = true;
      return;
    }
    bool inner_exited = false;
    run_line(*tokens, c, o, inner_exited);
  } else {
    o.err += fmt::format("sh: 1: {}: not found\n", name);
    o.status = 127;
    o.unknown = true;
  }
}

// `sh -s` (after NAME=value words): the probe, when stdin carries a marker.
bool is_stdin_shell(const std::vector<Token>& tokens) {
  std::vector<std::string_view> words;
  for (const auto& token : tokens) {
    if (token.kind != Token::Kind::word) {
      return false;
    }
    if (words.empty() && is_assignment(token.text)) {
      continue;
    }
    words.push_back(token.text);
  }
  return words.size() == 2 && (words[0] == "sh" || words[0] == "/bin/sh") && words[1] == "-s";
}

Reply script_reply(const RunContext& c) {
  const auto marker = find_probe_marker(c.input);
  if (marker.empty()) {
    return Reply{{}, "healer-fleet-sim: only the metrics probe runs under sh -s\n", 2, {}};
  }
  return probe_reply(marker, c);
}

}  // namespace

std::vector<CannedReply> read_canned_replies(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) {
    throw std::runtime_error("cannot read " + file.string());
  }
  std::vector<CannedReply> replies;
  try {
    const auto json = nlohmann::json::parse(in);
    for (const auto& item : json) {
      CannedReply reply;
      reply.command = item.at("command").get<std::string>();
      reply.out = item.value("out", "");
      reply.err = item.value("err", "");
      reply.exit_status = item.value("exit_status", 0);
      replies.push_back(std::move(reply));
    }
  } catch (const nlohmann::json::exception& error) {
    throw std::runtime_error(fmt::format("{}: {}", file.string(), error.what()));
  }
  return replies;
}

CommandBook::CommandBook(std::vector<CannedReply> canned) {
  for (const auto& list : {checks::default_checks(), checks::seed_checks()}) {
    for (const auto& check : list) {
      checks_.emplace(check.command, check.name);
    }
  }
  for (auto& reply : canned) {
    auto command = reply.command;
    canned_.insert_or_assign(std::move(command), std::move(reply));
  }
}

std::vector<std::string> CommandBook::unsimulated_checks() const {
  std::vector<std::string> missing;
  for (const auto& [command, name] : checks_) {
    if (find_answer(name) == nullptr) {
      missing.push_back(name);
    }
  }
  std::sort(missing.begin(), missing.end());
  return missing;
}

std::optional<std::vector<std::string>> CommandBook::batched_checks(std::string_view script) const {
  // The script's lines that are check commands, in order; it is their batch if batch_script
  // gives exactly this text back for them (so a change to batch_script's framing shows as an
  // unrecognised command, not as a wrong answer).
  std::vector<std::string> names;
  std::vector<checks::CheckDefinition> batch;
  std::size_t start = 0;
  while (start < script.size()) {
    const auto end = std::min(script.find('\n', start), script.size());
    const std::string line(script.substr(start, end - start));
    if (const auto check = checks_.find(line); check != checks_.end()) {
      names.push_back(check->second);
      batch.emplace_back().command = line;
    }
    start = end + 1;
  }
  if (names.empty() || checks::batch_script(batch) != script) {
    return std::nullopt;
  }
  return names;
}

Plan CommandBook::plan(std::string_view command) const {
  Plan plan;
  const std::string key(command);
  // Before the prologue is taken off: a canned reply replays a real server's whole output, its
  // marker line included.
  if (const auto canned = canned_.find(key); canned != canned_.end()) {
    plan.kind = "canned";
    plan.finish = [reply = canned->second](const RunContext&) {
      return Reply{reply.out, reply.err, reply.exit_status, {}};
    };
    return plan;
  }
  // The checks runner puts a prologue before each check and batch (checks::kDrawMarker): it
  // draws a marker on the server, prints it as stdout's first line and frames the output with
  // it ("$HM"). The simulator draws one per run too and hands it to the reply.
  if (command.starts_with(checks::kDrawMarker)) {
    Plan inner = this->plan(command.substr(checks::kDrawMarker.size()));
    auto finish = std::move(inner.finish);
    inner.finish = [finish = std::move(finish)](const RunContext& c) {
      const std::string marker = draw_marker();
      RunContext drawn = c;
      drawn.marker = marker;
      Reply reply = finish(drawn);
      reply.out.insert(0, marker + "\n");
      return reply;
    };
    return inner;
  }
  if (const auto check = checks_.find(key); check != checks_.end()) {
    plan.kind = "check";
    plan.duration = check_duration(check->second);
    plan.finish = [name = check->second](const RunContext& c) { return check_reply(name, c); };
    return plan;
  }
  if (auto names = batched_checks(command)) {
    plan.kind = "batch";  // the checks run in parallel: as long as the longest
    for (const auto& name : *names) {
      plan.duration = std::max(plan.duration, check_duration(name));
    }
    plan.finish = [names = std::move(*names)](const RunContext& c) {
      return batch_reply(names, c);
    };
    return plan;
  }
  auto tokens = tokenize(command);
  if (!tokens) {
    plan.kind = "unknown";
    plan.finish = [](const RunContext&) {
      return Reply{{}, "healer-fleet-sim: cannot simulate this shell syntax\n", 2, {}};
    };
    return plan;
  }
  if (command == metrics::kProbeCommand || is_stdin_shell(*tokens)) {
    plan.kind = "script";  // the probe, if stdin carries its marker
    plan.needs_eof = true;
    plan.finish = script_reply;
    return plan;
  }
  // A dry run decides how long it sleeps and whether it reads stdin; the real run happens at the
  // end, so time-dependent output (date, /proc counters) is taken then.
  const ProcTemplates empty;
  const HostModel dry_host(empty, 0, 0, 0);
  Outcome dry;
  bool exited = false;
  run_line(*tokens, RunContext{dry_host, 0, 0, {}}, dry, exited);
  plan.kind = dry.unknown ? "unknown" : "shell";
  plan.needs_eof = dry.reads_stdin;
  plan.duration = milliseconds(static_cast<std::int64_t>(std::llround(dry.seconds * 1000.0)));
  plan.finish = [tokens = std::move(*tokens)](const RunContext& c) {
    Outcome outcome;
    bool ended = false;
    run_line(tokens, c, outcome, ended);
    return Reply{std::move(outcome.out), std::move(outcome.err), outcome.status, {}};
  };
  return plan;
}

std::string find_probe_marker(std::string_view script) {
  const auto at = script.find(kMarkerPrefix);
  if (at == std::string_view::npos) {
    return {};
  }
  auto end = at + kMarkerPrefix.size();
  while (end < script.size() && std::isxdigit(static_cast<unsigned char>(script[end])) != 0) {
    ++end;
  }
  if (end == at + kMarkerPrefix.size()) {
    return {};
  }
  return std::string(script.substr(at, end - at));
}

Reply probe_reply(std::string_view marker, const RunContext& c) {
  const HostModel& h = c.host;
  Reply reply;
  reply.exit_status = 0;
  for (const auto name : metrics::kSectionNames) {
    std::string body;
    int status = 0;
    if (name == "clk_tck") {
      body = "100\n";
    } else if (name == "stat") {
      body = h.stat(c.now);
    } else if (name == "loadavg") {
      body = h.loadavg(c.now);
    } else if (name == "meminfo") {
      body = h.meminfo(c.now);
    } else if (name == "vmstat") {
      body = h.vmstat(c.now);
    } else if (name == "filefd") {
      body = h.file_nr(c.now);
    } else if (name == "diskstats") {
      body = h.diskstats(c.now);
    } else if (name == "netdev") {
      body = h.net_dev(c.now);
    } else if (name == "filesystems") {
      body = h.filesystems(c.now);
    } else if (name == "uname") {
      body = h.uname();
    } else if (name == "time") {
      body = fmt::format("{}\n", static_cast<std::int64_t>(c.now));
    } else {
      status = 127;  // a section added to the probe since: the parser reports it failed
    }
    reply.out += fmt::format("{} begin {} {}\n{}\n{} end {} {}\n", marker, name,
                             metrics::kSectionVersion, body, marker, name, status);
    reply.err += fmt::format("{} begin {} {}\n", marker, name, metrics::kSectionVersion);
    if (status != 0) {
      reply.err += fmt::format("sh: 1: section {} not simulated\n", name);
    }
  }
  return reply;
}

}  // namespace healer::fleet_sim
