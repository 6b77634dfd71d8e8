#pragma once

#include <map>
#include <string>
#include <vector>

#include "healer/heal/action.hpp"

// The least-privilege side of healing: one sudoers rule per action command, allowing exactly the
// argv healer sends and nothing else. Pure.
namespace healer::heal {

/// What the snippet is for. Not an aggregate on purpose.
struct SudoersOptions {
  SudoersOptions() = default;

  std::string user = "healer";  ///< the login user healer connects as
  /// Absolute paths of programs on the servers (name -> path); defaults for the built-ins'
  /// programs are Debian's (/usr/bin/systemctl, /usr/sbin/logrotate, ...).
  std::map<std::string, std::string> paths;
  ValidationContext context;  ///< cleanup_dirs and logrotate_configs become literal alternatives
};

/// The default absolute path of a program the built-in actions run ("" when unknown).
[[nodiscard]] std::string default_program_path(const std::string& program);

/// Sudoers lines for `actions`: a comment per action (id, risk, title), then one
/// `USER ALL=(root) NOPASSWD: PATH ARGS` line per command. Arguments with parameters are one
/// sudo regular expression (`^...$`, sudo >= 1.9.10) built from each parameter's validator, so
/// sudo lets through only what healer's validators let through; literal words are escaped for
/// sudoers. Actions that need no sudo get a comment only.
[[nodiscard]] std::string sudoers_snippet(const std::vector<const ActionSpec*>& actions,
                                          const SudoersOptions& options);

/// The sudoers regular expression (already escaped for sudoers) matching a value of `type`.
[[nodiscard]] std::string sudoers_pattern(ParamType type, const ValidationContext& context);

}  // namespace healer::heal
