#pragma once

#include <chrono>
#include <cstddef>
#include <string>

namespace healer {

/// What acquire() does when a server's pool is full and cannot grow.
enum class OnExhausted {
  queue,   ///< wait in the priority queue until the deadline (default)
  fail,    ///< fail at once with pool_exhausted
  direct,  ///< RISKY: open an unpooled one-off connection (the seed's fallback); it bypasses every
           ///< limit and is what trips MaxStartups, PerSourceMaxStartups and fail2ban
};

/// Settings of the connection pool and the executor. Defaults follow the seed design; every
/// field can come from a flag, an environment variable or the config file (in that precedence).
struct PoolConfig {
  PoolConfig() = default;

  // --- size and limits ---------------------------------------------------------------------
  /// SSH connections per server at most (env SSH_POOL_MAX_SIZE).
  std::size_t max_connections = 20;
  /// Concurrent channels per connection before the server says otherwise (OpenSSH MaxSessions;
  /// env HEALER_MAX_CHANNELS).
  std::size_t max_channels = 10;
  /// Spare channels per connection at most (env HEALER_SPARE_CHANNELS): channels opened ahead of
  /// time, so that a warm command needs only its exec round trip. Each holds one of the
  /// connection's max_channels (a MaxSessions slot on the server). A connection keeps as many as
  /// it recently had commands at once (decaying to 0 within two minutes without a command);
  /// 0 disables them.
  std::size_t spare_channels = 10;
  /// Concurrent operations per server (env HEALER_MAX_CONCURRENT; the seed's semaphore).
  std::size_t max_concurrent = 10;
  /// Concurrent operations over all servers (env HEALER_MAX_CONCURRENT_TOTAL).
  std::size_t max_concurrent_total = 4096;
  /// Handshakes in flight per server (env HEALER_MAX_HANDSHAKES), so bursts stay under MaxStartups.
  std::size_t max_handshakes_per_server = 1;
  /// Handshakes in flight over all servers (env HEALER_MAX_HANDSHAKES_TOTAL).
  std::size_t max_handshakes_total = 64;
  /// Pause between commands started on one server (env HEALER_COMMAND_DELAY; the seed's
  /// DELAY_BETWEEN_COMMANDS). Zero: none.
  std::chrono::milliseconds command_delay{0};
  OnExhausted on_exhausted = OnExhausted::queue;  ///< env HEALER_ON_EXHAUSTED

  // --- timers ----------------------------------------------------------------------------
  /// Idle connections older than this are closed (env SSH_POOL_TIMEOUT, ms).
  std::chrono::milliseconds idle_timeout{300000};
  /// How often idle connections are looked for (env SSH_POOL_CLEANUP_INTERVAL, ms).
  std::chrono::milliseconds cleanup_interval{300000};
  /// Keepalive request interval (env SSH_KEEPALIVE_INTERVAL, ms); zero disables it.
  std::chrono::milliseconds keepalive_interval{10000};
  /// Unanswered keepalives before a connection is declared dead (env SSH_KEEPALIVE_MAX_MISSED).
  int keepalive_max_missed = 3;
  /// Connections are drained and replaced after this long, +-10% jitter (env
  /// HEALER_MAX_LIFETIME, ms); zero: no limit.
  std::chrono::milliseconds max_lifetime{1800000};
  /// A connection idle for longer than this is pinged before reuse (env HEALER_HEALTH_CHECK_IDLE,
  /// ms); zero: never.
  std::chrono::milliseconds health_check_idle{30000};
  /// Idle connections kept open per server (env HEALER_MIN_IDLE): connection warming.
  std::size_t min_idle = 0;
  /// Deadline of one connect + authenticate (env HEALER_CONNECT_TIMEOUT, ms).
  std::chrono::milliseconds connect_timeout{10000};
  /// First wait after a failed connect; doubles per failure up to backoff_max, with jitter (env
  /// HEALER_BACKOFF_INITIAL / HEALER_BACKOFF_MAX, ms). Auth and host-key failures open a circuit
  /// for backoff_max.
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{60000};
};

}  // namespace healer
