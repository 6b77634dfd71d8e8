#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

#include "temp_dir.hpp"

namespace healer::test {

/// A packet-level delayed link (tests/support/netdelay/netdelay_main.cpp): healer-netdelay as a
/// child process, which makes a network namespace joined to this one by a veth pair and holds
/// every packet across it for rtt/2 (NFQUEUE, FIFO). Unlike DelayProxy, TCP runs end to end, so a
/// connection's handshake costs a round trip, ACKs clock the sender and Nagle's algorithm acts.
/// Servers run inside the namespace (SshdFixture::Options::packet_link does that for sshd);
/// clients in this namespace connect to server_address() or to any host_address(i).
///
/// Needs root: check unavailable_reason() first and skip. The link dies with its owner: the
/// destructor stops it; if this process dies, healer-netdelay sees its stdin close (and gets
/// SIGTERM from PR_SET_PDEATHSIG) and removes the veth pair; if healer-netdelay is SIGKILLed the
/// kernel removes the namespace, its rules and the pair once the last process in it has exited.
/// Not thread-safe; drive it from one thread.
class PacketLink {
 public:
  /// Why a link cannot run on this machine (not root, healer-netdelay not built for lack of
  /// libnetfilter-queue, no iptables, no NFQUEUE in the kernel), or nullopt when it can. The first
  /// call starts and stops a real link (~0.1 s) and caches the outcome for the process.
  [[nodiscard]] static std::optional<std::string> unavailable_reason();

  /// Starts healer-netdelay with `rtt` (each direction rtt/2) and returns once it reported the
  /// link up (10 s at most). Throws std::runtime_error with its stderr when it fails.
  explicit PacketLink(std::chrono::milliseconds rtt);
  /// stop().
  ~PacketLink();
  PacketLink(const PacketLink&) = delete;
  PacketLink& operator=(const PacketLink&) = delete;
  PacketLink(PacketLink&&) = delete;
  PacketLink& operator=(PacketLink&&) = delete;

  /// SIGTERM, then waits up to 5 s for a clean exit (pair deleted, counters printed to the log),
  /// then SIGKILL. Idempotent.
  void stop();
  /// True while healer-netdelay runs.
  [[nodiscard]] bool running();

  [[nodiscard]] std::chrono::milliseconds rtt() const noexcept { return rtt_; }
  /// healer-netdelay's pid (it lives in the namespace), -1 once stopped.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// The namespace to setns() into: /proc/<pid>/ns/net.
  [[nodiscard]] const std::string& netns_path() const noexcept { return netns_path_; }
  /// This namespace's end of the link (the clients' source address), e.g. 10.208.0.1.
  [[nodiscard]] const std::string& client_address() const noexcept { return client_; }
  /// The namespace's end, e.g. 10.208.0.2.
  [[nodiscard]] const std::string& server_address() const noexcept { return server_; }
  /// The `index`th address (0-based, < kHostAddresses) of the /17 that is local inside the
  /// namespace: 10.B.128.1, 10.B.128.2, ... One server listening on 0.0.0.0 answers them all.
  [[nodiscard]] std::string host_address(std::size_t index) const;
  static constexpr std::size_t kHostAddresses = 32000;
  /// The veth ends: in this namespace (for tcpdump -i) and inside the link's namespace.
  [[nodiscard]] const std::string& root_interface() const noexcept { return root_if_; }
  [[nodiscard]] const std::string& namespace_interface() const noexcept { return ns_if_; }
  /// healer-netdelay's stderr (its counters after stop(); SIGUSR1 asks for them at any time).
  [[nodiscard]] std::filesystem::path log_path() const { return dir_.path() / "netdelay.log"; }

 private:
  TempDir dir_{"healer-netdelay-"};
  std::chrono::milliseconds rtt_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;  // our end of its stdin: closing it stops the link (--watch-stdin)
  std::string netns_path_;
  std::string client_;
  std::string server_;
  std::string hosts_prefix_;  // "10.B." of the /17
  std::string root_if_;
  std::string ns_if_;
};

/// Runs in a forked child before exec: joins the network namespace open on `netns_fd`. Returns
/// false when setns() fails. Async-signal-safe.
bool enter_netns(int netns_fd) noexcept;

}  // namespace healer::test
