#pragma once

// A process-wide index of known_hosts files, so a connect reads no file.
//
// libssh 0.10 reads the whole known_hosts file twice per connection (once to order the host key
// algorithms of the key exchange, once to check the key), parsing every line and computing an
// HMAC per hashed line. With one shared file for a fleet that is O(servers) per connect and
// O(servers²) per cold sweep: 0.7 ms of client CPU per connect at 1,000 servers, ~7 ms at 10,000.
// Here each file is read once per change (stat: device, inode, size, mtime, ctime) and indexed by
// host name (the check looks at the file on every call; the algorithm order reuses a look up to
// a second old); a lookup parses only the lines that name the host (plus hashed and wildcard lines,
// which cannot be indexed) with libssh's own line parser, so matching stays libssh's. What a
// lookup finds for a host is remembered until the file changes.
//
// One deliberate difference from libssh: a line libssh cannot parse (an unknown key type, a
// damaged key) is skipped. libssh instead fails the whole file and reports every host in it as
// unknown, which with trust-on-first-use would record a new key for a host whose recorded key
// differs — the one case host-key checking exists for. OpenSSH skips such lines too.

#include <libssh/libssh.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace healer::ssh::detail {

/// The verdict of one known_hosts check, as ssh_session_is_known_server gives it.
enum class KnownHostsVerdict {
  ok,       ///< a recorded key of this host equals the server's key
  changed,  ///< a recorded key of the same type differs
  other,    ///< only keys of other types are recorded
  unknown,  ///< nothing is recorded for this host
};

/// Counters for tests and benches: how much file work the index did.
struct KnownHostsStats {
  std::size_t file_reads = 0;    ///< whole-file reads (first use or after a change)
  std::size_t lines_parsed = 0;  ///< lines handed to libssh's parser
  std::size_t lookups = 0;       ///< host lookups
  std::size_t file_checks = 0;   ///< looks at a file on disk (stat), whether or not it changed
};

class KnownHostsIndex {
 public:
  /// The process's index. Thread-safe (one mutex; libssh's line parser uses strtok).
  static KnownHostsIndex& instance();

  /// The host key algorithms to offer to `host_port` ("host" for port 22, "[host]:port"
  /// otherwise, lowercase, as libssh forms it): the algorithms of the keys recorded for it in
  /// `user_file` and `global_file`, in libssh's default order, followed by libssh's other
  /// default algorithms; empty when nothing is recorded (then libssh's default applies). This is
  /// what libssh's ssh_client_select_hostkeys computes, without reading a file.
  std::string host_key_algorithms(const std::string& user_file, const std::string& global_file,
                                  const std::string& host_port);

  /// ssh_session_is_known_server's verdict for `server_key` at `host_port`: the user file first;
  /// the global file decides when it lists the host.
  KnownHostsVerdict check(const std::string& user_file, const std::string& global_file,
                          const std::string& host_port, ssh_key server_key);

  /// Forget what is known about `file` (after this process appended to it).
  void invalidate(const std::string& file);

  [[nodiscard]] KnownHostsStats stats();

  KnownHostsIndex();
  ~KnownHostsIndex();
  KnownHostsIndex(const KnownHostsIndex&) = delete;
  KnownHostsIndex& operator=(const KnownHostsIndex&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// "host" for port 22 (or 0), "[host]:port" otherwise; the host lowercased. libssh's form.
std::string known_hosts_name(const std::string& host, unsigned int port);

}  // namespace healer::ssh::detail
