#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "host_model.hpp"

// What a simulated host answers to an exec request. Pure: a command string in, a plan out (how
// long it runs, whether it waits for stdin's EOF, and how to build its output when it ends).
// Recognised, in this order:
//   1. canned replies given to the simulator (--responses: exact command strings),
//   2. the metrics probe (`... sh -s` whose stdin carries the probe's marker): sections framed
//      `<marker> begin <name> <version>` ... `<marker> end <name> <exit code>` for every name in
//      metrics::kSectionNames, with the host model's /proc contents,
//   3. every command of checks::default_checks() and seed_checks(), recognised by its exact
//      command string and answered with output that parses to OK, and checks::batch_script()
//      of any list of them; after checks::kDrawMarker (the checks runner's prologue) a marker
//      is drawn, printed first and used for the framing lines, as the real prologue does,
//   4. a small shell: `;`, `&&`, `||`, NAME=value, export, true, false, :, exit N, echo [-n],
//      sleep N, cat [/proc files | stdin], date +%s[.%N], uptime, hostname, uname, nproc,
//      free -b, df -P /; anything else is `sh: 1: NAME: not found` with exit 127.
namespace healer::fleet_sim {

/// How a command ended.
struct Reply {
  std::string out;
  std::string err;
  std::optional<int> exit_status;  ///< unset when a signal ended it
  std::string exit_signal;         ///< "TERM"... when a signal ended it
};

/// What the reply may depend on.
struct RunContext {
  const HostModel& host;
  double started = 0;        ///< Unix seconds when the command started
  double now = 0;            ///< Unix seconds when it ends
  std::string_view input{};  ///< stdin received so far (all of it when the plan waits for EOF)
  /// The run's framing marker ("$HM"), drawn by the checks::kDrawMarker prologue; empty without
  /// one (HM unset: framing lines then start with a space, as the shell prints them).
  std::string_view marker{};
};

/// How one command runs.
struct Plan {
  std::string kind;        ///< for the stats: check, batch, canned, script, shell, unknown
  bool needs_eof = false;  ///< runs only once stdin reached EOF
  std::chrono::milliseconds duration{0};           ///< time it takes before it ends by itself
  std::function<Reply(const RunContext&)> finish;  ///< builds the reply when it ends
};

/// A reply fixed in advance for one exact command string.
struct CannedReply {
  std::string command;
  std::string out;
  std::string err;
  int exit_status = 0;
};

/// Reads canned replies from a JSON array of {"command", "out", "err", "exit_status"} objects;
/// throws std::runtime_error on a bad file.
[[nodiscard]] std::vector<CannedReply> read_canned_replies(const std::filesystem::path& file);

/// The command recogniser. Built once; used from the simulator's thread.
class CommandBook {
 public:
  explicit CommandBook(std::vector<CannedReply> canned = {});

  [[nodiscard]] Plan plan(std::string_view command) const;
  /// Names of catalog checks this simulator has no answer for (a check added to the catalog
  /// since): they get exit 127 and the simulator warns at start.
  [[nodiscard]] std::vector<std::string> unsimulated_checks() const;
  /// The check names of a checks::batch_script() (without the prologue), in its order; nullopt
  /// when `script` is not exactly the batch of catalog checks.
  [[nodiscard]] std::optional<std::vector<std::string>> batched_checks(
      std::string_view script) const;

 private:
  std::unordered_map<std::string, std::string> checks_;  // command -> check name
  std::unordered_map<std::string, CannedReply> canned_;  // command -> reply
};

/// The probe's marker in the script on stdin ("@@healer-metrics-<hex>"), empty if none.
[[nodiscard]] std::string find_probe_marker(std::string_view script);

/// The probe's output for `marker` (stdout and stderr, exit 0).
[[nodiscard]] Reply probe_reply(std::string_view marker, const RunContext& context);

}  // namespace healer::fleet_sim
