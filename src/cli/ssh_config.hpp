#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace healer::cli {

/// One concrete host of an OpenSSH client config, with the options healer honours resolved as
/// ssh(1) would resolve them for `ssh ALIAS`: every Host block whose patterns match the alias
/// applies, in file order, and the first value obtained for a keyword wins.
struct ImportedHost {
  std::string alias;     ///< the Host pattern (becomes the server's name)
  std::string hostname;  ///< HostName, with %h expanded; the alias when unset
  std::uint16_t port = 22;
  std::string user;                   ///< empty: unset (healer then uses the local user)
  std::string identity_file;          ///< first IdentityFile, ~ and tokens expanded; empty: unset
  std::string known_hosts_file;       ///< first UserKnownHostsFile path; empty: unset
  std::vector<std::string> skipped;   ///< other keywords that applied to this host, as written
  std::vector<std::string> warnings;  ///< e.g. a second IdentityFile, ProxyJump present
};

/// What an import found.
struct SshConfigImport {
  std::vector<ImportedHost> hosts;    ///< in the order their Host lines appear
  std::vector<std::string> warnings;  ///< file-level: Match blocks, unreadable Include, bad lines
  /// Set when the config cannot be imported at all: an Include cycle, Includes nested deeper
  /// than OpenSSH allows (16), or more than SshConfigContext::max_files files. It names the file
  /// and line; `hosts` is then empty and the same text ends `warnings`.
  std::optional<std::string> error;
};

/// Values the token expansion needs (%d, %u, ~), passed in so the parser stays pure.
struct SshConfigContext {
  std::string file_name = "config";  ///< names the top-level file in warnings
  std::string home;                  ///< for ~ and %d
  std::string local_user;            ///< for %u
  /// Reads an Include'd file (already resolved to an absolute path, globs expanded by the
  /// callee); nullopt when it cannot be read. Unset: Include lines are reported and skipped.
  std::function<std::vector<std::pair<std::string, std::string>>(const std::string& pattern)>
      include;
  /// At most this many files are parsed, the top-level one included: a config whose Includes
  /// fan out (the same file included several times at every level) is an error, not an
  /// exponential parse.
  std::size_t max_files = 512;
};

/// Parses the text of an OpenSSH client config (ssh_config(5)): keywords case-insensitive,
/// "Key value" or "Key=value", double-quoted arguments, '#' comments. Hosts whose patterns hold
/// wildcards or negations are not imported but their blocks apply to the concrete hosts they
/// match (e.g. `Host *`). `Match` blocks are skipped with a warning. An Include of a file that is
/// being parsed already (a cycle, compared by lexically normal path) is an error, as are more
/// than 16 nested levels (ssh(1)'s limit) and more than `max_files` files in all.
[[nodiscard]] SshConfigImport parse_ssh_config(std::string_view text,
                                               const SshConfigContext& context);

/// ssh_config(5) pattern matching: `*` and `?` wildcards, a leading `!` negates; a host matches a
/// pattern list when some positive pattern matches and no negated one does.
[[nodiscard]] bool host_matches(std::string_view host, const std::vector<std::string>& patterns);

}  // namespace healer::cli
