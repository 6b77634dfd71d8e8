#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

// How each simulated host behaves: latency, fault rates and limits, from flags, drawn
// deterministically from a seed. Pure code (no I/O): the simulator and its tests share it.
namespace healer::fleet_sim {

/// splitmix64: one well-mixed 64-bit value from another.
[[nodiscard]] constexpr std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27U)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31U);
}

/// What a draw is for: each kind has its own stream, so adding one kind never shifts another.
enum class Draw : std::uint64_t {
  latency = 1,
  refuse,
  stall,
  auth_fail,
  drop,
  hang,
  model,  ///< host model parameters (host_model.cpp adds its own sub-streams)
};

/// A number in [0, 1) that depends only on (seed, host, what, counter): the n-th connection
/// to host h gets the same fate in every run with the same seed, whatever the interleaving.
[[nodiscard]] constexpr double draw(std::uint64_t seed, std::size_t host, Draw what,
                                    std::uint64_t counter) noexcept {
  const std::uint64_t bits =
      mix(mix(mix(seed ^ static_cast<std::uint64_t>(host)) ^ static_cast<std::uint64_t>(what)) ^
          counter);
  return static_cast<double>(bits >> 11U) * 0x1.0p-53;
}

/// One host's settings. Rates are probabilities per connection (refuse, stall, auth_fail) or
/// per command (drop, hang).
struct Behaviour {
  std::chrono::milliseconds latency_min{0};  ///< delay before each command's answer
  std::chrono::milliseconds latency_max{0};  ///< the host's latency is drawn in [min, max]
  double refuse = 0.0;            ///< accept, then reset the connection before the SSH banner
  double stall = 0.0;             ///< accept and never send a byte (the client times out)
  double auth_fail = 0.0;         ///< refuse even an authorized key
  double drop = 0.0;              ///< reset the connection instead of answering a command
  double hang = 0.0;              ///< never answer a command (until a signal or the channel closes)
  std::size_t max_sessions = 10;  ///< channels per connection, like sshd's MaxSessions
};

/// Behaviour for a range of hosts: `first`..`last` (0-based, inclusive) get `settings` applied
/// as written in the flag ("3-5:latency=50,stall=1").
struct Profile {
  std::size_t first = 0;
  std::size_t last = 0;
  std::string settings;  ///< "key=value,..." as given
};

/// Parses "RANGE:key=value,..." (RANGE: "N", "N-M" or "*"); throws std::invalid_argument with
/// the reason on a bad flag.
[[nodiscard]] Profile parse_profile(std::string_view text);

/// `base` with the settings of `profile` ("latency=20-80,refuse=0.1,max_sessions=2") applied;
/// throws std::invalid_argument on an unknown key or a bad value.
[[nodiscard]] Behaviour apply_settings(Behaviour base, std::string_view settings);

/// "50" or "20-80" (milliseconds) into `min` and `max`; throws std::invalid_argument.
void parse_latency(std::string_view text, std::chrono::milliseconds& min,
                   std::chrono::milliseconds& max);

/// The behaviour of every host: defaults, then each profile that covers the host, in order.
class BehaviourTable {
 public:
  BehaviourTable(Behaviour defaults, std::vector<Profile> profiles, std::uint64_t seed);

  /// The settings of `host` (computed on each call: profiles are few).
  [[nodiscard]] Behaviour of(std::size_t host) const;
  /// The host's latency, drawn once in its [min, max].
  [[nodiscard]] std::chrono::milliseconds latency(std::size_t host) const;
  [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }

 private:
  Behaviour defaults_;
  std::vector<Profile> profiles_;
  std::uint64_t seed_;
};

}  // namespace healer::fleet_sim
