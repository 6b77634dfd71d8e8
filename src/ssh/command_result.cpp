#include "healer/ssh/command_result.hpp"

#include <array>
#include <string_view>

namespace healer::ssh {
namespace {

// Signal names as the SSH protocol carries them (RFC 4254 6.10), with their Linux numbers.
constexpr std::array<std::pair<std::string_view, int>, 13> kSignals{{{"ABRT", 6},
                                                                     {"ALRM", 14},
                                                                     {"FPE", 8},
                                                                     {"HUP", 1},
                                                                     {"ILL", 4},
                                                                     {"INT", 2},
                                                                     {"KILL", 9},
                                                                     {"PIPE", 13},
                                                                     {"QUIT", 3},
                                                                     {"SEGV", 11},
                                                                     {"TERM", 15},
                                                                     {"USR1", 10},
                                                                     {"USR2", 12}}};

}  // namespace

int CommandResult::shell_exit_code() const {
  if (exit_status) {
    return *exit_status;
  }
  for (const auto& [name, number] : kSignals) {
    if (name == exit_signal) {
      return 128 + number;
    }
  }
  return 255;
}

}  // namespace healer::ssh
