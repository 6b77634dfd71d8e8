#pragma once

#include <functional>

namespace CLI {
class App;
}  // namespace CLI

namespace healer::cli {

/// A registered subcommand: its CLI11 node and what runs when it was the one parsed. Each
/// command file exposes `Command add_<name>_command(CLI::App& app)`; the state its options fill
/// lives in the `run` closure, so it outlives parsing.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

}  // namespace healer::cli
