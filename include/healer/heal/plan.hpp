#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/heal/action.hpp"
#include "healer/heal/command.hpp"
#include "healer/heal/config.hpp"

// A heal plan: per server, which actions apply, the exact commands, what the probes saw and
// whether each step may run, with a content hash. `healer heal plan` prints it, `healer heal
// apply` and the API apply exactly it (and refuse when the hash or the server's state changed).
// Pure: the service gathers diagnoses and probe results, this decides and hashes.
namespace healer::heal {

/// An action asked for explicitly (`--action ID --param K=V`), not through a rule.
struct ActionRequest {
  std::string action;
  std::map<std::string, std::string> params;
};

/// Why a rule proposed a step: its check had one of its statuses.
struct Trigger {
  std::string rule;
  std::string check;
  std::string status;   ///< "CRITICAL", "WARNING"
  std::string message;  ///< the check's message (information; not hashed)
};

/// One action on one server.
struct Step {
  std::string action;
  std::string title;
  Risk risk = Risk::low;
  Privilege privilege = Privilege::sudo;  ///< effective (the action's and the server's)
  std::map<std::string, std::string> params;
  std::vector<std::vector<std::string>> argv;  ///< exactly what runs, `sudo -n --` included
  std::string command;                         ///< the shell text sent (shell_command)
  std::optional<Trigger> trigger;              ///< unset: asked for explicitly
  Facts facts;                                 ///< the probe's look before
  std::vector<Condition> conditions;           ///< the action's precondition, judged
  bool ready = false;                          ///< may run
  std::string blocked;  ///< why not ("not_applicable: ...", "privilege_missing: ...", ...)
  std::string rollback;
  std::chrono::seconds timeout{60};
  std::chrono::seconds grace{30};  ///< before verification
};

/// One server's part of a plan.
struct ServerPlan {
  std::string server;
  std::int64_t server_id = 0;
  std::optional<std::int64_t> run_id;        ///< the diagnosis it was built from
  std::optional<std::int64_t> diagnosed_at;  ///< Unix ms
  std::string status;                        ///< that diagnosis's status; "" without one
  /// The checks the rules consulted and their statuses: the server's state a plan stands on
  /// (apply runs them again).
  std::map<std::string, std::string> checks;
  std::vector<Step> steps;
  std::vector<std::string> notes;  ///< for a person (no diagnosis yet, no rule matched...)
};

/// Which rules take part.
enum class RuleSet {
  all,        ///< `healer heal plan`: every rule (manual and automatic)
  automatic,  ///< the daemon: `auto = true` rules only
  none,       ///< explicit actions only
};

/// "all", "automatic", "none".
[[nodiscard]] std::string_view to_string(RuleSet rules) noexcept;
[[nodiscard]] std::optional<RuleSet> parse_rule_set(std::string_view text) noexcept;

/// A whole plan.
struct Plan {
  RuleSet rules = RuleSet::all;  ///< which rules it was built with (apply rebuilds it alike)
  std::vector<ServerPlan> servers;
  std::string hash;             ///< plan_hash() of the content
  std::int64_t created_at = 0;  ///< Unix ms (not hashed)
  std::string created_by;       ///< "cli:USER", "api", "rule:NAME" (not hashed)

  /// Steps that may run.
  [[nodiscard]] std::size_t ready_steps() const;
  /// The highest risk among ready steps (low when none).
  [[nodiscard]] Risk highest_ready_risk() const;
};

/// What the planner knows of a server's latest diagnosis.
struct DiagnosisView {
  std::int64_t run_id = 0;
  std::int64_t at = 0;
  std::string status;
  struct Check {
    std::string status;
    std::string message;
  };
  std::map<std::string, Check> checks;
};

/// A server to plan for.
struct ServerInput {
  std::string name;
  std::int64_t id = 0;
  std::vector<std::string> tags;
  std::optional<DiagnosisView> diagnosis;
};

/// A step before the probe ran.
struct Candidate {
  const ActionSpec* action = nullptr;
  std::map<std::string, std::string> params;  ///< validated, defaults filled in
  std::optional<Trigger> trigger;
  std::chrono::seconds grace{30};
};

/// The steps `server` gets: every rule of `rules` that applies to it and whose check has one of
/// its statuses in the diagnosis, then every explicit request; duplicates (same action and
/// parameters) once. Also fills `consulted` with each applicable rule's check status. An
/// explicit request naming an unknown action or failing a validator is an error (nothing runs).
[[nodiscard]] Result<std::vector<Candidate>> candidates(
    const HealConfig& config, const ServerInput& server, const std::vector<ActionRequest>& requests,
    RuleSet rules, std::map<std::string, std::string>* consulted = nullptr);

/// The step of `candidate` on a server with privilege mode `privilege`, judged on `facts`;
/// `probe_failure` (a stable short reason) when the probe could not run.
[[nodiscard]] Step make_step(const Candidate& candidate, Privilege privilege, Facts facts,
                             const std::optional<std::string>& probe_failure);

/// The SHA-256 (hex) of the plan's content: the rule set; per server its name, id, consulted checks
/// and steps (action, parameters, risk, privilege, argv, command, trigger without its message,
/// state facts, ready, blocked). Not: times, author, messages, information facts, notes.
[[nodiscard]] std::string plan_hash(const Plan& plan);

/// The plan document (`healer heal plan --json`, the API, the plan file).
[[nodiscard]] nlohmann::json to_json(const Plan& plan);
[[nodiscard]] nlohmann::json to_json(const Step& step);
/// Reads a plan document; heal::Errc::invalid_plan when it is malformed or its hash does not
/// match its content (an edited plan).
[[nodiscard]] Result<Plan> plan_from_json(const nlohmann::json& document);

/// The step's argv without the privilege prefix (what the program itself receives).
[[nodiscard]] std::vector<std::vector<std::string>> program_argv(const Step& step);

}  // namespace healer::heal
