#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "healer/core/result.hpp"
#include "healer/service/runtime.hpp"
#include "healer/service/settings.hpp"
#include "healer/service/targets.hpp"
#include "pool_options.hpp"

namespace CLI {
class App;
}  // namespace CLI

// What every command shares: where the inventory is, which servers, how to report a failure,
// and how text reaches a terminal.
namespace healer::cli {

/// Where the inventory lives: --db FILE, else HEALER_DB, else the XDG data directory.
struct StoreArgs {
  std::string db;
};

/// Registers --db on `app`.
void add_store_options(CLI::App& app, StoreArgs& args);

/// Registers the positional SERVER... and --tag/--all on `app`.
void add_selection_options(CLI::App& app, service::Selection& selection);

/// The settings of this command: the config file (--config, $HEALER_CONFIG, the XDG default),
/// the environment and the pool flags.
[[nodiscard]] Result<service::Settings> load_settings(const PoolOptionValues& pool);

/// A runtime for one command: settings, the inventory (unless `open_store` is false) and the
/// secrets from the environment (then removed from it).
[[nodiscard]] Result<std::unique_ptr<service::Runtime>> open_runtime(const StoreArgs& store,
                                                                     const PoolOptionValues& pool,
                                                                     bool open_store = true);

/// Prints "healer: <message>" to stderr; returns the usage exit code (2).
int usage(const std::string& message);
/// An error as one line for a person (service errors by their detail alone).
[[nodiscard]] std::string user_message(const Error& error);
/// Prints "healer: <error>" to stderr; returns its exit code.
int fail(const Error& error);

/// `items` joined with `separator`.
[[nodiscard]] std::string join(const std::vector<std::string>& items,
                               std::string_view separator = ", ");

/// `text` fit for a terminal: control characters (ESC, BEL, CR, backspace...) and invalid UTF-8
/// shown as \xNN escapes, so nothing a server or a name holds can move the cursor, change
/// colours or retitle the window. With `keep_newlines`, '\n' and '\t' pass (multi-line output).
[[nodiscard]] std::string terminal_safe(std::string_view text, bool keep_newlines = false);

/// Whether stdout / stderr is a terminal.
[[nodiscard]] bool stdout_is_terminal();
[[nodiscard]] bool stderr_is_terminal();

/// Reads a file the user named (--stdin-file, --commands): a regular file (or '-', stdin) of at
/// most `max_bytes`; never a FIFO or device that could block or never end.
[[nodiscard]] Result<std::string> read_user_file(const std::string& path, std::size_t max_bytes,
                                                 std::string_view flag);

}  // namespace healer::cli
