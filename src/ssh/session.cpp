#include "healer/ssh/session.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>  // ssh_send_keepalive lives here but serves clients too
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sodium.h>
#include <string.h>  // explicit_bzero
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <list>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "agent_filter.hpp"
#include "healer/core/log.hpp"
#include "healer/ssh/cancellation.hpp"
#include "identity_cache.hpp"
#include "known_hosts.hpp"
#include "wait_list.hpp"

namespace healer::ssh {
namespace {

using asio::awaitable;
using asio::use_awaitable;
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
// libssh's default global known_hosts file (SSH_OPTIONS_GLOBAL_KNOWNHOSTS).
constexpr const char* kGlobalKnownHosts = "/etc/ssh/ssh_known_hosts";

// One owner per libssh handle, each with a stateless deleter.
struct SessionFree {
  void operator()(ssh_session s) const noexcept { ssh_free(s); }
};
struct KeyFree {
  void operator()(ssh_key k) const noexcept { ssh_key_free(k); }
};
struct EventFree {
  void operator()(ssh_event e) const noexcept { ssh_event_free(e); }
};
struct ChannelFree {
  void operator()(ssh_channel c) const noexcept { ssh_channel_free(c); }
};
struct HashFree {
  void operator()(unsigned char* h) const noexcept { ssh_clean_pubkey_hash(&h); }
};
struct CStringFree {
  void operator()(char* s) const noexcept { ssh_string_free_char(s); }
};
using SessionHandle = std::unique_ptr<std::remove_pointer_t<ssh_session>, SessionFree>;
using KeyHandle = std::unique_ptr<std::remove_pointer_t<ssh_key>, KeyFree>;
using EventHandle = std::unique_ptr<std::remove_pointer_t<ssh_event>, EventFree>;
using ChannelHandle = std::unique_ptr<std::remove_pointer_t<ssh_channel>, ChannelFree>;
using HashHandle = std::unique_ptr<unsigned char, HashFree>;
using CStringHandle = std::unique_ptr<char, CStringFree>;

std::atomic<std::uint64_t> g_next_session_id{1};

// Environment variable that marks a root login's command processes (see Session::Impl::reap).
constexpr const char* kRunMarker = "HEALER_RUN";

// The longest keepalive silence a session tracks: a century fits steady_clock's nanoseconds with
// room to spare, so interval x max_missed set in code can never overflow a time_point.
constexpr std::chrono::milliseconds kLongestKeepalive = std::chrono::hours(24 * 365 * 100);

// A small stdin goes out in pieces of at most kStdinPiece bytes. libssh keeps each of its packet
// buffers at its largest size for the connection's life (it shrinks one only past 64 KiB), in
// powers of two: the metrics probe written at once (~5.6 KiB) left three of them at 8 KiB on
// every pooled session. Pieces that fit a 1 KiB buffer with the packet's header, padding and MAC
// cost a few more packets per command (seven for the probe) and ~20 KiB less per kept session
// than one write: 1,900-byte pieces (2 KiB buffers) kept 2.1 KiB more per session, 420-byte
// pieces saved nothing more (healer-fleet-bench, docs/scaling.md). A large stdin goes in large
// pieces: libssh flushes after every write, and 8 MiB in small pieces took seconds longer.
constexpr std::size_t kStdinPiece = 900;
constexpr std::size_t kSmallStdin = 64 * 1024;
constexpr std::size_t kLargeStdinPiece = 1U << 20;

// A run id for the HEALER_RUN marker: 128 random bits from libsodium's CSPRNG, in hex. Random,
// not derived from the pid or a counter, so nobody on the server can predict the value and have a
// timeout kill their own processes, or hide theirs from it.
std::string random_run_id() {
  static const bool ready = sodium_init() >= 0;  // idempotent and thread-safe; 1 = was ready
  if (!ready) {
    throw std::runtime_error("libsodium could not be initialised (no entropy source)");
  }
  std::array<unsigned char, 16> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  std::array<char, 2 * 16 + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), bytes.data(), bytes.size());
  return std::string(hex.data());
}

// The local account as libssh 0.10 finds it (ssh_get_user_home_dir, ssh_get_local_username):
// getpwuid_r of the real uid, $HOME when that fails. Looked up once per process.
struct LocalAccount {
  std::string ssh_dir;  // "<home>/.ssh", libssh's "~/.ssh"; empty: let libssh look
  std::string name;     // empty: let libssh look
};

const LocalAccount& local_account() {
  static const LocalAccount account = [] {
    LocalAccount found;
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* result = nullptr;
    const bool known =
        ::getpwuid_r(::getuid(), &entry, buffer.data(), buffer.size(), &result) == 0 &&
        result != nullptr;
    std::string home;
    if (known && result->pw_dir != nullptr) {
      home = result->pw_dir;
    } else if (const char* from_env = std::getenv("HOME"); from_env != nullptr) {
      home = from_env;
    }
    if (!home.empty()) {
      found.ssh_dir = home + "/.ssh";
    }
    if (known && result->pw_name != nullptr) {
      found.name = result->pw_name;
    }
    return found;
  }();
  return account;
}

std::shared_ptr<spdlog::logger> logger() {
  static const auto instance = log::get("ssh");
  return instance;
}

// Overwrites a secret's bytes (the compiler may not drop it as a dead store), then empties it.
void wipe_secret(std::string& secret) noexcept {
  if (!secret.empty()) {
    ::explicit_bzero(secret.data(), secret.size());
  }
  secret.clear();
}

std::int64_t ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count();
}

std::chrono::microseconds us_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration_cast<std::chrono::microseconds>(to - from);
}

// Everything one command channel accumulates. libssh calls the callbacks from inside whichever
// libssh call happens to read the channel's packets, so they only record: no libssh calls here.
struct ChannelState {
  explicit ChannelState(std::size_t cap) : max_output(cap) {}
  ChannelState(const ChannelState&) = delete;
  ChannelState& operator=(const ChannelState&) = delete;
  ~ChannelState() { free_channel(); }

  // libssh keeps a channel we freed before the server closed it until its close arrives, and
  // calls its callbacks then: they are removed first, so they never reach a freed state.
  void free_channel() {
    if (channel) {
      ssh_remove_channel_callbacks(channel.get(), &callbacks);
      channel.reset();
    }
  }

  ssh_channel_callbacks_struct callbacks{};
  ChannelHandle channel;
  std::size_t max_output;
  std::string out;
  std::string err;
  bool out_truncated = false;
  bool err_truncated = false;
  std::uint64_t out_bytes = 0;
  std::uint64_t err_bytes = 0;
  bool opened = false;        // the server confirmed the channel
  bool spare = false;         // opened ahead of time for a command to come (see spares_)
  bool open_failed = false;   // a spare's open was refused or failed
  bool adopted = false;       // a command took this spare while its open was in flight
  bool doomed = false;        // a spare nobody will use: closed as soon as its open is answered
  bool exec_started = false;  // the server accepted the exec request: a process may run
  bool cut = false;           // a closing session stopped waiting for it (see close())
  bool reaping = false;       // reap() is signalling it
  bool reaper = false;        // the root-login kill command of reap(): a close never cuts it
  std::chrono::milliseconds kill_grace{500};
  std::string run_id;  // root logins: marks the command's processes for the kill fallback
  bool remote_eof = false;
  bool remote_closed = false;
  std::optional<int> exit_status;
  std::string exit_signal;

  static int on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                     void* userdata) {
    auto* self = static_cast<ChannelState*>(userdata);
    const bool to_err = is_stderr != 0;
    std::string& sink = to_err ? self->err : self->out;
    (to_err ? self->err_bytes : self->out_bytes) += len;
    const std::size_t room = self->max_output - std::min(self->max_output, sink.size());
    const std::size_t kept = std::min<std::size_t>(room, len);
    sink.append(static_cast<const char*>(data), kept);
    if (kept < len) {
      (to_err ? self->err_truncated : self->out_truncated) = true;
    }
    // Consume everything: libssh then keeps the window open, so a command with huge output
    // never stalls and nothing accumulates beyond the cap.
    return static_cast<int>(len);
  }
  static void on_eof(ssh_session, ssh_channel, void* userdata) {
    static_cast<ChannelState*>(userdata)->remote_eof = true;
  }
  static void on_close(ssh_session, ssh_channel, void* userdata) {
    static_cast<ChannelState*>(userdata)->remote_closed = true;
  }
  static void on_exit_status(ssh_session, ssh_channel, int status, void* userdata) {
    static_cast<ChannelState*>(userdata)->exit_status = status;
  }
  static void on_exit_signal(ssh_session, ssh_channel, const char* signal, int, const char*,
                             const char*, void* userdata) {
    static_cast<ChannelState*>(userdata)->exit_signal = signal != nullptr ? signal : "";
  }

  void install() {
    ssh_callbacks_init(&callbacks);
    callbacks.userdata = this;
    callbacks.channel_data_function = &ChannelState::on_data;
    callbacks.channel_eof_function = &ChannelState::on_eof;
    callbacks.channel_close_function = &ChannelState::on_close;
    callbacks.channel_exit_status_function = &ChannelState::on_exit_status;
    callbacks.channel_exit_signal_function = &ChannelState::on_exit_signal;
    ssh_set_channel_callbacks(channel.get(), &callbacks);
  }
};

}  // namespace

class Session::Impl : public std::enable_shared_from_this<Session::Impl> {
 public:
  // Session states; changed only by connect(), close() and teardown().
  enum class State { connecting, ready, closing, closed };

  Impl(asio::any_io_executor executor, Endpoint endpoint, ConnectOptions options)
      : executor_(std::move(executor)),
        endpoint_(std::move(endpoint)),
        options_(std::move(options)),
        peer_(fmt::format("{}:{}", endpoint_.host, endpoint_.port)),
        id_(g_next_session_id.fetch_add(1)),
        waiters_(executor_),
        keepalive_timer_(executor_) {}

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() { teardown(make_error(Errc::cancelled, "session destroyed")); }

  static awaitable<Result<void>> connect(std::shared_ptr<Impl> self, Deadline deadline);
  // A new session through connect(), with the phase a failure stopped in.
  static awaitable<ConnectAttempt> attempt(Endpoint endpoint, ConnectOptions options,
                                           Deadline deadline);
  static awaitable<Result<Session>> connect_session(Endpoint endpoint, ConnectOptions options,
                                                    Deadline deadline);
  /// `while_closing`: also during a graceful close (the timeout reaper's kill command).
  static awaitable<Result<CommandResult>> exec(std::shared_ptr<Impl> self, std::string command,
                                               ExecOptions options, Deadline deadline,
                                               bool while_closing = false);
  static awaitable<Result<void>> ping(std::shared_ptr<Impl> self, Deadline deadline);
  static awaitable<void> close(std::shared_ptr<Impl> self, Deadline deadline);

  // Ends the session at once: frees channels, sends a disconnect, wakes every waiter.
  void teardown(Error reason);

  [[nodiscard]] bool alive() const { return state_ == State::ready; }
  [[nodiscard]] std::size_t active_channel_count() const { return channels_.size(); }
  [[nodiscard]] std::size_t open_channel_count() const {
    return static_cast<std::size_t>(std::count_if(
        channels_.begin(), channels_.end(),
        [](const auto& channel) { return channel->opened && !channel->remote_closed; }));
  }
  [[nodiscard]] std::string tag() const { return fmt::format("[{} #{}]", peer_, id_); }

  void start_spare();
  [[nodiscard]] std::size_t unreserved_spares() const {
    return spares_.size() - std::min(reserved_spares_, spares_.size());
  }
  [[nodiscard]] std::size_t ready_spares() const {
    return static_cast<std::size_t>(std::count_if(
        spares_.begin(), spares_.end(),
        [](const auto& channel) { return channel->opened && !channel->remote_closed; }));
  }
  bool reserve_spare() {
    if (unreserved_spares() == 0) {
      return false;
    }
    ++reserved_spares_;
    return true;
  }
  void limit_reservations(std::size_t at_most) {
    reserved_spares_ = std::min({reserved_spares_, at_most, spares_.size()});
  }
  std::size_t close_spares(std::size_t keep);

  asio::any_io_executor executor_;
  Endpoint endpoint_;
  ConnectOptions options_;
  std::string peer_;
  std::uint64_t id_;
  State state_ = State::connecting;
  Error failure_;
  std::string fingerprint_;
  SessionStats stats_;
  ConnectPhase phase_ = ConnectPhase::setup;  // how far connect() got

 private:
  // Runs a non-blocking libssh call until it stops returning SSH_AGAIN, waiting for socket
  // progress in between. Fails with timeout at the deadline or with the session's failure.
  // `cancellable`: a cancellation request ends the wait with Errc::cancelled; otherwise the call
  // is driven to its end (a request the server must answer, or it keeps state we forgot).
  template <class Op>
  awaitable<Result<int>> drive(Op op, Deadline deadline, int again_code, bool cancellable = true);
  // Called after every libssh call: wakes waiters if packets arrived, flushes pending output.
  void after_libssh_call();
  void start_io();
  void ack_quickly();
  void send_keepalive();
  void forget_socket_libssh_closed();
  void close_socket();
  static awaitable<void> pump(std::shared_ptr<Impl> self);
  static awaitable<void> flush_output(std::shared_ptr<Impl> self);
  static awaitable<void> keepalive(std::shared_ptr<Impl> self);
  static awaitable<void> reap(std::shared_ptr<Impl> self, std::shared_ptr<ChannelState> channel);
  // Starts reap() for a channel whose command may still run (at most once per channel).
  void start_reap(const std::shared_ptr<ChannelState>& channel);
  void release_channel(const std::shared_ptr<ChannelState>& channel);
  static awaitable<void> open_spare(std::shared_ptr<Impl> self,
                                    std::shared_ptr<ChannelState> channel);
  // A spare for a command: the oldest open one, else the oldest still opening, whose answer it
  // awaits (the open went out before any the command could send). nullptr when none is usable.
  // Returns a raw pointer (the spare stays in channels_): GCC 12 destroys a shared_ptr returned
  // through an awaitable twice.
  static awaitable<ChannelState*> take_spare(std::shared_ptr<Impl> self, Deadline deadline);
  // Drops spares the server closed (ChannelTimeout, a remote close): they hold no slot anymore.
  void prune_spares();
  Error connection_error(const char* phase);
  Result<void> verify_host_key();
  // Host keys are checked against the process's known_hosts index (known_hosts.hpp) when the
  // file is named and no ssh_config is read (a config may name other files or algorithms).
  [[nodiscard]] bool indexed_known_hosts() const {
    return !options_.known_hosts_file.empty() && !options_.process_ssh_config;
  }
  [[nodiscard]] std::string known_hosts_name() const {
    return detail::known_hosts_name(endpoint_.host, endpoint_.port);
  }
  // ssh_session_is_known_server's verdict, from the index when indexed_known_hosts().
  ssh_known_hosts_e known_server(ssh_key server_key);
  // Appends the server's key to the known_hosts file; the reason on failure, empty on success.
  std::string record_host_key();
  Result<void> load_identity();
  Result<void> load_key_data();
  awaitable<Result<void>> authenticate(Deadline deadline);
  awaitable<Result<void>> tcp_connect(Deadline deadline);

  // Loaded before connecting (a bad key never reaches the server); shared with the process's
  // IdentityCache, dropped by this session once authenticated.
  detail::SharedPrivateKey private_key_;
  detail::AgentFilter agent_filter_;  // relays to ssh-agent during authentication only
  SessionHandle session_;
  EventHandle event_;
  // libssh's socket, for waits: the same descriptor, not a dup (one descriptor per session).
  // libssh closes it itself on an I/O error; socket_id_ tells whether the number is still ours.
  std::optional<asio::posix::stream_descriptor> wait_fd_;
  std::pair<dev_t, ino_t> socket_id_{};
  ssh_counter_struct rx_counter_{};
  ssh_counter_struct tx_counter_{};
  std::uint64_t seen_rx_packets_ = 0;
  Clock::time_point last_rx_ = Clock::now();
  Clock::time_point last_keepalive_ = Clock::time_point::min();
  detail::WaitList waiters_;
  // Channels open, opening or being reaped after a timeout; freed before the session is.
  std::list<std::shared_ptr<ChannelState>> channels_;
  // Spares (opened ahead of time, no command yet), oldest first; each is in channels_ too. The
  // first reserved_spares_ of them are promised to commands about to start (counts, not which).
  std::list<std::shared_ptr<ChannelState>> spares_;
  std::size_t reserved_spares_ = 0;  // <= spares_.size()
  bool flushing_ = false;            // flush_output runs
  bool root_login_ = false;          // sshd refuses "signal" requests for root logins
  int reaping_ = 0;                  // timed-out commands still being killed
  asio::steady_timer keepalive_timer_;
};

// ---------------------------------------------------------------------------------------------
// I/O plumbing

void Session::Impl::after_libssh_call() {
  forget_socket_libssh_closed();
  if (rx_counter_.in_packets != seen_rx_packets_) {
    seen_rx_packets_ = rx_counter_.in_packets;
    last_rx_ = Clock::now();
    waiters_.notify_all();
  }
  stats_.bytes_in = rx_counter_.in_bytes;
  stats_.bytes_out = tx_counter_.out_bytes;
  if (session_ && !flushing_ && state_ != State::closed &&
      (ssh_get_poll_flags(session_.get()) & SSH_WRITE_PENDING) != 0) {
    flushing_ = true;
    asio::co_spawn(executor_, flush_output(shared_from_this()), asio::detached);
  }
}

template <class Op>
awaitable<Result<int>> Session::Impl::drive(Op op, Deadline deadline, int again_code,
                                            bool cancellable) {
  for (;;) {
    if (state_ == State::closed) {
      co_return failure_;
    }
    const int rc = op();
    after_libssh_call();
    if (rc != again_code) {
      co_return rc;
    }
    if (deadline.expired()) {
      co_return make_error(Errc::timeout, "deadline passed");
    }
    const bool cancel = cancel_requested(co_await asio::this_coro::cancellation_state);
    if (cancellable && cancel) {
      co_return make_error(Errc::cancelled, fmt::format("{}: cancelled", peer_));
    }
    co_await waiters_.wait(deadline);
  }
}

// sshd leaves Nagle on for non-interactive sessions, so each of its small replies waits for our
// ACK of the previous one; with delayed ACKs that costs ~40 ms per exchange. Quick ACKs avoid
// it; Linux clears the flag after a while, so it is set again on every read.
void Session::Impl::ack_quickly() {
  if (wait_fd_ && wait_fd_->is_open()) {
    const int on = 1;
    ::setsockopt(wait_fd_->native_handle(), IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
  }
}

void Session::Impl::start_io() {
  asio::co_spawn(executor_, pump(shared_from_this()), asio::detached);
}

// The one reader of the socket while no libssh call is running: when bytes arrive it lets libssh
// process them (during the handshake the waiting call does that itself), then wakes every waiter,
// because one call can consume another channel's packets.
awaitable<void> Session::Impl::pump(std::shared_ptr<Impl> self) {
  while (self->state_ != State::closed && self->wait_fd_ && self->wait_fd_->is_open()) {
    auto [ec] =
        co_await self->wait_fd_->async_wait(asio::posix::descriptor_base::wait_read, kNoThrow);
    if (ec || self->state_ == State::closed) {
      break;
    }
    self->ack_quickly();
    if (self->event_) {
      ssh_event_dopoll(self->event_.get(), 0);
      self->after_libssh_call();
      const int status = ssh_get_status(self->session_.get());
      if ((status & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) {
        self->teardown(self->connection_error("connection lost"));
        break;
      }
      self->prune_spares();
    } else {
      // Handshake phase: the pending libssh call reads; just wake it.
      self->waiters_.notify_all();
      // Let the woken call run before waiting for readability again.
      co_await asio::post(self->executor_, use_awaitable);
    }
  }
  // The socket is gone (libssh closed it on an I/O error, see close_socket) and nothing tore the
  // session down: it is dead now, not at the next keepalive. During the handshake the pending
  // call reports its own error.
  if (self->state_ != State::closed && self->event_) {
    self->teardown(self->connection_error("connection lost"));
  }
  self->waiters_.notify_all();
}

awaitable<void> Session::Impl::flush_output(std::shared_ptr<Impl> self) {
  while (self->state_ != State::closed && self->wait_fd_ && self->wait_fd_->is_open() &&
         (ssh_get_poll_flags(self->session_.get()) & SSH_WRITE_PENDING) != 0) {
    auto [ec] =
        co_await self->wait_fd_->async_wait(asio::posix::descriptor_base::wait_write, kNoThrow);
    if (ec || self->state_ == State::closed) {
      break;
    }
    if (self->event_) {
      // A poll with POLLOUT armed writes what libssh buffered and clears the flag; libssh re-arms
      // POLLOUT after every write, so ssh_blocking_flush alone would leave it set forever.
      ssh_event_dopoll(self->event_.get(), 0);
      self->after_libssh_call();
    } else {
      self->waiters_.notify_all();
      co_await asio::post(self->executor_, use_awaitable);
    }
  }
  self->flushing_ = false;
}

// Keepalive: a global request that wants a reply, sent when the connection has been quiet for an
// interval. Any packet received counts as an answer. Quiet for interval x max_missed = dead.
awaitable<void> Session::Impl::keepalive(std::shared_ptr<Impl> self) {
  const auto interval = std::min(self->options_.keepalive_interval, kLongestKeepalive);
  const int missed = std::max(1, self->options_.keepalive_max_missed);
  const auto dead_after =
      interval.count() > kLongestKeepalive.count() / missed ? kLongestKeepalive : interval * missed;
  while (self->state_ != State::closed) {
    const auto quiet_since = self->last_rx_;
    const auto next_send = std::max(quiet_since, self->last_keepalive_) + interval;
    const auto death = quiet_since + dead_after;
    self->keepalive_timer_.expires_at(std::min(next_send, death));
    co_await self->keepalive_timer_.async_wait(kNoThrow);
    if (self->state_ == State::closed) {
      break;
    }
    const auto now = Clock::now();
    if (now >= self->last_rx_ + dead_after) {
      self->teardown(make_error(
          Errc::disconnected, fmt::format("{} no answer to keepalive for {} ms ({} x {} ms)",
                                          self->peer_, ms_between(self->last_rx_, now),
                                          self->options_.keepalive_max_missed, interval.count())));
      break;
    }
    if (now >= std::max(self->last_rx_, self->last_keepalive_) + interval) {
      self->send_keepalive();
      self->last_keepalive_ = now;
      const int status = ssh_get_status(self->session_.get());
      if ((status & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) {
        self->teardown(self->connection_error("connection lost"));
        break;
      }
    }
  }
}

void Session::Impl::send_keepalive() {
  // libssh only sends a new global request once the previous one's reply was consumed; a second
  // call sends when the first just collected an old reply.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto sent_before = tx_counter_.out_packets;
    ssh_send_keepalive(session_.get());
    after_libssh_call();
    if (tx_counter_.out_packets != sent_before) {
      break;
    }
  }
  ++stats_.keepalives_sent;
}

Error Session::Impl::connection_error(const char* phase) {
  const char* library = session_ ? ssh_get_error(session_.get()) : "";
  return make_error(Errc::disconnected,
                    fmt::format("{} {}{}{}", peer_, phase, *library != '\0' ? ": " : "", library));
}

void Session::Impl::teardown(Error reason) {
  if (state_ == State::closed) {
    return;
  }
  const bool was_ready = state_ == State::ready || state_ == State::closing;
  state_ = State::closed;
  failure_ = std::move(reason);
  // Channels first: ssh_disconnect frees libssh's channel structs behind our handles.
  for (auto& channel : channels_) {
    channel->free_channel();
  }
  channels_.clear();
  spares_.clear();
  reserved_spares_ = 0;
  if (event_ && session_) {
    ssh_event_remove_session(event_.get(), session_.get());
  }
  event_.reset();
  if (session_) {
    ssh_session s = session_.get();
    if (ssh_get_fd(s) != SSH_INVALID_SOCKET) {
      // The loop knows the socket is writable: let libssh write the disconnect message now
      // instead of queueing it behind a poll that will never come.
      ssh_set_fd_towrite(s);
      ssh_disconnect(s);
    }
  }
  close_socket();
  keepalive_timer_.cancel();
  waiters_.notify_all();
  if (was_ready) {
    logger()->debug("{} closed: {}", tag(), failure_.message());
  }
}

// libssh 0.10 closes a socket given with SSH_OPTIONS_FD when an I/O error hits it (and then
// marks it invalid), but merely forgets it in ssh_disconnect. The wait descriptor is that same
// socket, so once libssh closed it the number may already name another file: the descriptor is
// then released from the loop, never closed, and never waited on again.
void Session::Impl::forget_socket_libssh_closed() {
  if (wait_fd_ && wait_fd_->is_open() && session_ &&
      ssh_get_fd(session_.get()) == SSH_INVALID_SOCKET && state_ != State::closed) {
    // Not during teardown: ssh_disconnect forgets the socket without closing it.
    close_socket();
  }
}

// Closes the socket if its number still names it (same inode as at connect; a socket's inode is
// unique while it is open), else only releases it from the loop: libssh closed it (also possible
// while ssh_disconnect writes its goodbye) and the process may have reused the number.
void Session::Impl::close_socket() {
  if (!wait_fd_ || !wait_fd_->is_open()) {
    return;
  }
  struct stat now {};
  const int fd = wait_fd_->native_handle();
  const bool ours =
      ::fstat(fd, &now) == 0 && now.st_dev == socket_id_.first && now.st_ino == socket_id_.second;
  std::error_code ignored;
  if (ours) {
    wait_fd_->close(ignored);
  } else {
    (void)wait_fd_->release();
  }
}

void Session::Impl::release_channel(const std::shared_ptr<ChannelState>& channel) {
  if (state_ != State::closed) {
    channel->free_channel();
    after_libssh_call();
  }
  channels_.remove(channel);
}

// ---------------------------------------------------------------------------------------------
// Spare channels: opened ahead of time, so that a command needs only its exec round trip

// How long a spare's open may take before it is given up (a server that slow is not worth a
// spare; the keepalive judges the connection itself).
constexpr auto kSpareOpenTimeout = std::chrono::seconds(30);

void Session::Impl::start_spare() {
  if (state_ != State::ready) {
    return;
  }
  auto spare = std::make_shared<ChannelState>(0);
  spare->channel.reset(ssh_channel_new(session_.get()));
  if (!spare->channel) {
    return;
  }
  spare->install();
  spare->spare = true;
  // Counted at once (active_channels, spare_channels): the open is as good as sent.
  channels_.push_back(spare);
  spares_.push_back(spare);
  asio::co_spawn(executor_, open_spare(shared_from_this(), std::move(spare)), asio::detached);
}

awaitable<void> Session::Impl::open_spare(std::shared_ptr<Impl> self,
                                          std::shared_ptr<ChannelState> spare) {
  ssh_channel channel = spare->channel.get();
  // Not cancellable (nothing cancels it) and driven to the server's answer: a channel the server
  // confirms after we forgot it would hold a MaxSessions slot for the connection's life.
  auto opened = co_await self->drive([channel] { return ssh_channel_open_session(channel); },
                                     Deadline::after(kSpareOpenTimeout), SSH_AGAIN, false);
  const bool ok = opened && *opened == SSH_OK;
  if (ok) {
    spare->opened = true;
    ++self->stats_.channels_opened;
    ++self->stats_.spares_opened;
  } else {
    spare->open_failed = true;
    if (self->state_ == State::ready) {
      ++self->stats_.spares_dropped;
      const bool connection_fine =
          opened && (ssh_get_status(self->session_.get()) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
      if (connection_fine) {
        ++self->stats_.spares_refused;
      }
      logger()->debug("{} spare channel not opened: {}", self->tag(),
                      opened ? ssh_get_error(self->session_.get()) : opened.error().message());
    }
  }
  // Whoever took it over goes on with it (or falls back to its own open when it failed).
  if (!ok || spare->doomed || (!spare->adopted && self->state_ != State::ready)) {
    if (spare->spare) {
      self->spares_.remove(spare);
      self->limit_reservations(self->reserved_spares_);
    }
    self->release_channel(spare);
  }
  self->waiters_.notify_all();  // a command that took it over waits for this answer
}

awaitable<ChannelState*> Session::Impl::take_spare(std::shared_ptr<Impl> self, Deadline deadline) {
  if (!self->spares_.empty() && self->event_) {
    // Read what already arrived first: a spare skips the open that would have found a connection
    // the server closed while it sat idle (then the command did not start and may go elsewhere).
    ssh_event_dopoll(self->event_.get(), 0);
    self->after_libssh_call();
    if ((ssh_get_status(self->session_.get()) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) {
      self->teardown(self->connection_error("connection lost"));
    }
  }
  for (;;) {
    self->prune_spares();
    if (self->state_ != State::ready || self->spares_.empty()) {
      co_return nullptr;
    }
    auto found = std::find_if(self->spares_.begin(), self->spares_.end(),
                              [](const auto& channel) { return channel->opened; });
    if (found == self->spares_.end()) {
      found = self->spares_.begin();  // the oldest open still in flight
    }
    auto spare = *found;
    self->spares_.erase(found);
    spare->spare = false;
    if (self->reserved_spares_ > 0) {
      --self->reserved_spares_;  // whichever command was promised one: they are alike
    }
    self->limit_reservations(self->reserved_spares_);
    if (spare->opened) {
      co_return spare.get();
    }
    spare->adopted = true;
    while (!spare->opened && !spare->open_failed && self->state_ == State::ready &&
           !deadline.expired() && !spare->cut) {
      if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
        break;
      }
      co_await self->waiters_.wait(deadline);
    }
    if (spare->opened && !spare->remote_closed) {
      co_return spare.get();
    }
    if (!spare->opened && !spare->open_failed && self->state_ != State::closed) {
      spare->doomed = true;  // open_spare closes it when the answer comes
      spare->adopted = false;
      co_return nullptr;  // deadline, cancellation or close: exec() says which
    }
    if (spare->opened) {
      ++self->stats_.spares_dropped;
      self->release_channel(spare);
    }
    // Failed or closed: a spare's trouble is never the command's; try the next one.
  }
}

void Session::Impl::prune_spares() {
  for (auto it = spares_.begin(); it != spares_.end();) {
    auto spare = *it;
    if (spare->opened && spare->remote_closed) {
      it = spares_.erase(it);
      ++stats_.spares_dropped;
      logger()->debug("{} spare channel closed by the server", tag());
      release_channel(spare);
    } else {
      ++it;
    }
  }
  limit_reservations(reserved_spares_);
}

std::size_t Session::Impl::close_spares(std::size_t keep) {
  std::size_t closed = 0;
  // Newest open ones first. One still opening is left alone: closing it as soon as the server
  // answers would free its slot on the server at a moment the caller cannot see (the pool counts
  // a close from when it asked for it); a later call closes it once open.
  for (auto it = spares_.end(); it != spares_.begin() && unreserved_spares() > keep;) {
    --it;
    if (!(*it)->opened) {
      continue;
    }
    auto spare = *it;
    it = spares_.erase(it);
    spare->spare = false;
    ++closed;
    release_channel(spare);
  }
  limit_reservations(reserved_spares_);
  return closed;
}

// ---------------------------------------------------------------------------------------------
// Connect

awaitable<Result<void>> Session::Impl::tcp_connect(Deadline deadline) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, deadline.at());
  asio::ip::tcp::resolver resolver(executor);
  asio::ip::tcp::socket socket(executor);
  bool timed_out = false;
  // One timer bounds resolve and connect; it cancels whichever is pending.
  timer.async_wait([&timed_out, &resolver, &socket](std::error_code ec) {
    if (!ec) {
      timed_out = true;
      resolver.cancel();
      std::error_code ignored;
      socket.cancel(ignored);
    }
  });
  auto [resolve_ec, endpoints] =
      co_await resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port),
                                      asio::ip::resolver_base::numeric_service, kNoThrow);
  if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
    timer.cancel();
    co_await asio::post(executor, use_awaitable);  // let the timer handler finish
    co_return make_error(Errc::cancelled, fmt::format("{}: cancelled while resolving", peer_));
  }
  if (resolve_ec) {
    timer.cancel();
    co_await asio::post(executor, use_awaitable);  // let the timer handler finish
    if (timed_out) {
      co_return make_error(Errc::connect_timeout,
                           fmt::format("{}: name resolution did not finish in time", peer_));
    }
    co_return make_error(Errc::resolve_failed,
                         fmt::format("{}: {}", endpoint_.host, resolve_ec.message()));
  }
  std::error_code connect_ec = asio::error::host_not_found;
  for (const auto& entry : endpoints) {
    std::error_code ignored;
    socket.close(ignored);
    auto [ec] = co_await socket.async_connect(entry.endpoint(), kNoThrow);
    connect_ec = ec;
    const bool cancel = cancel_requested(co_await asio::this_coro::cancellation_state);
    if (!ec || timed_out || cancel) {
      break;
    }
  }
  timer.cancel();
  co_await asio::post(executor, use_awaitable);  // let the timer handler finish
  if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
    co_return make_error(Errc::cancelled,
                         fmt::format("{}: cancelled while opening the TCP connection", peer_));
  }
  if (connect_ec) {
    if (timed_out) {
      co_return make_error(Errc::connect_timeout,
                           fmt::format("{}: no TCP connection within the deadline", peer_));
    }
    if (connect_ec == asio::error::connection_refused) {
      co_return make_error(Errc::connect_refused,
                           fmt::format("{}: nothing accepts SSH connections there", peer_));
    }
    co_return make_error(Errc::connect_refused, fmt::format("{}: {}", peer_, connect_ec.message()));
  }
  std::error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  struct stat identity {};
  if (::fstat(socket.native_handle(), &identity) != 0) {
    co_return make_error(Errc::protocol, fmt::format("{}: fstat of the socket failed", peer_));
  }
  socket_id_ = {identity.st_dev, identity.st_ino};
  // One descriptor, shared: libssh reads and writes it, the loop waits on it. libssh may close
  // it on errors (see close_socket).
  socket_t fd = socket.release();
  wait_fd_.emplace(executor, fd);
  session_.reset(ssh_new());
  if (!session_) {
    close_socket();
    co_return make_error(Errc::protocol, "ssh_new failed");
  }
  ssh_session s = session_.get();
  const int verbosity = SSH_LOG_NOLOG;
  const unsigned int port = endpoint_.port;
  const int process_config = options_.process_ssh_config ? 1 : 0;
  ssh_options_set(s, SSH_OPTIONS_FD, &fd);
  ssh_options_set(s, SSH_OPTIONS_HOST, endpoint_.host.c_str());
  ssh_options_set(s, SSH_OPTIONS_PORT, &port);
  ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
  ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config);
  // What libssh would look up through NSS (getpwuid_r: /etc/nsswitch.conf and /etc/passwd read)
  // on every connect: the local user's ~/.ssh and, when no user is given, the login name.
  const LocalAccount& local = local_account();
  if (!local.ssh_dir.empty()) {
    ssh_options_set(s, SSH_OPTIONS_SSH_DIR, local.ssh_dir.c_str());
  }
  if (!options_.user.empty()) {
    ssh_options_set(s, SSH_OPTIONS_USER, options_.user.c_str());
  } else if (!local.name.empty()) {
    ssh_options_set(s, SSH_OPTIONS_USER, local.name.c_str());
  }
  if (indexed_known_hosts()) {
    // libssh reads no known_hosts file: the index orders the host key algorithms as libssh
    // would (recorded types first) and verify_host_key checks the key against it.
    const std::string algorithms = detail::KnownHostsIndex::instance().host_key_algorithms(
        options_.known_hosts_file, kGlobalKnownHosts, known_hosts_name());
    // (libssh still opens both to order the algorithms: an empty path would mean its default.)
    ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
    ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
    if (!algorithms.empty()) {
      ssh_options_set(s, SSH_OPTIONS_HOSTKEYS, algorithms.c_str());
    }
  } else if (!options_.known_hosts_file.empty()) {
    ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, options_.known_hosts_file.c_str());
  }
  ssh_set_counters(s, &tx_counter_, &rx_counter_);
  ssh_set_blocking(s, 0);
  co_return Result<void>{};
}

ssh_known_hosts_e Session::Impl::known_server(ssh_key server_key) {
  if (!indexed_known_hosts()) {
    return ssh_session_is_known_server(session_.get());
  }
  switch (detail::KnownHostsIndex::instance().check(options_.known_hosts_file, kGlobalKnownHosts,
                                                    known_hosts_name(), server_key)) {
    case detail::KnownHostsVerdict::ok:
      return SSH_KNOWN_HOSTS_OK;
    case detail::KnownHostsVerdict::changed:
      return SSH_KNOWN_HOSTS_CHANGED;
    case detail::KnownHostsVerdict::other:
      return SSH_KNOWN_HOSTS_OTHER;
    case detail::KnownHostsVerdict::unknown:
      break;
  }
  return SSH_KNOWN_HOSTS_UNKNOWN;
}

std::string Session::Impl::record_host_key() {
  ssh_session s = session_.get();
  if (!indexed_known_hosts()) {
    return ssh_session_update_known_hosts(s) == SSH_OK ? std::string() : ssh_get_error(s);
  }
  char* raw_line = nullptr;
  if (ssh_session_export_known_hosts_entry(s, &raw_line) != SSH_OK || raw_line == nullptr) {
    return ssh_get_error(s);
  }
  const std::string line(raw_line);
  ssh_string_free_char(raw_line);
  // One write(2) of the whole line with O_APPEND: lines from concurrent writers never interleave.
  const int fd = ::open(options_.known_hosts_file.c_str(),
                        O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return std::strerror(errno);
  }
  const ssize_t written = ::write(fd, line.data(), line.size());
  const int write_errno = errno;
  ::close(fd);
  detail::KnownHostsIndex::instance().invalidate(options_.known_hosts_file);
  if (written != static_cast<ssize_t>(line.size())) {
    return written < 0 ? std::strerror(write_errno) : "short write";
  }
  return {};
}

Result<void> Session::Impl::verify_host_key() {
  ssh_session s = session_.get();
  ssh_key raw_key = nullptr;
  if (ssh_get_server_publickey(s, &raw_key) != SSH_OK) {
    return make_error(Errc::protocol, fmt::format("{}: server sent no host key", peer_));
  }
  KeyHandle key(raw_key);
  unsigned char* raw_hash = nullptr;
  size_t hash_len = 0;
  if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &raw_hash, &hash_len) != 0) {
    return make_error(Errc::protocol, fmt::format("{}: cannot hash the host key", peer_));
  }
  HashHandle hash(raw_hash);
  CStringHandle printable(
      ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash.get(), hash_len));
  fingerprint_ = printable ? printable.get() : "";
  const char* key_type = ssh_key_type_to_char(ssh_key_type(key.get()));
  if (options_.on_host_key) {
    options_.on_host_key(key_type != nullptr ? key_type : "", fingerprint_);
  }
  const std::string file =
      options_.known_hosts_file.empty() ? "~/.ssh/known_hosts" : options_.known_hosts_file;

  switch (known_server(key.get())) {
    case SSH_KNOWN_HOSTS_OK:
      return {};
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      return make_error(
          Errc::host_key_changed,
          fmt::format("{} presented {} key {} which does not match {}: someone may be "
                      "intercepting the connection, or the host was reinstalled; verify the new "
                      "key out of band, then remove the old entry (ssh-keygen -R)",
                      peer_, key_type, fingerprint_, file));
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
      if (options_.host_key_policy == HostKeyPolicy::accept_new) {
        if (!options_.accept_fingerprint.empty() && options_.accept_fingerprint != fingerprint_) {
          return make_error(
              Errc::host_key_changed,
              fmt::format("{} presented {} key {}, not the key that was accepted "
                          "({}); nothing was recorded in {}",
                          peer_, key_type, fingerprint_, options_.accept_fingerprint, file));
        }
        if (!options_.known_hosts_file.empty()) {
          std::error_code ignored;
          const auto parent = std::filesystem::path(options_.known_hosts_file).parent_path();
          if (!parent.empty()) {
            std::filesystem::create_directories(parent, ignored);
          }
        }
        if (const std::string why = record_host_key(); !why.empty()) {
          return make_error(Errc::protocol, fmt::format("{}: cannot record the host key in {}: {}",
                                                        peer_, file, why));
        }
        logger()->warn("{} recorded new {} host key {} in {}", tag(), key_type, fingerprint_, file);
        return {};
      }
      return make_error(Errc::host_unknown,
                        fmt::format("{} is not in {} ({} key {}); verify the fingerprint, then "
                                    "accept it once (--accept-new-host-key) or add it with "
                                    "ssh-keyscan",
                                    peer_, file, key_type, fingerprint_));
    case SSH_KNOWN_HOSTS_ERROR:
      break;
  }
  return make_error(Errc::protocol,
                    fmt::format("{}: cannot check {}: {}", peer_, file, ssh_get_error(s)));
}

Result<void> Session::Impl::load_identity() {
  if (options_.auth == AuthMethod::key_data) {
    return load_key_data();
  }
  if (options_.auth != AuthMethod::key_file) {
    return {};
  }
  private_key_ = detail::IdentityCache::instance().from_file(
      options_.identity_file, options_.passphrase, [this]() -> ssh_key {
        ssh_key raw = nullptr;
        const int rc = ssh_pki_import_privkey_file(
            options_.identity_file.c_str(),
            options_.passphrase.empty() ? nullptr : options_.passphrase.c_str(), nullptr, nullptr,
            &raw);
        if (rc != SSH_OK) {
          ssh_key_free(raw);
          return nullptr;
        }
        return raw;
      });
  if (private_key_) {
    return {};
  }
  std::string why;
  if (options_.identity_file.empty()) {
    why = "no identity file given";
  } else if (!std::filesystem::exists(options_.identity_file)) {
    why = fmt::format("identity file {} does not exist", options_.identity_file);
  } else if (options_.passphrase.empty()) {
    why = fmt::format(
        "cannot load {}: unreadable, not a private key, or encrypted (give its "
        "passphrase)",
        options_.identity_file);
  } else {
    why = fmt::format("cannot load {}: wrong passphrase or not a private key",
                      options_.identity_file);
  }
  return make_error(Errc::key_invalid, std::move(why));
}

// The key text is parsed in memory (libssh's "base64" import takes the whole file's text, PEM or
// OpenSSH), then wiped from this session's options: nothing else needs it, and a core dump or a
// later heap read should not find it. No message quotes the text, not even a prefix.
Result<void> Session::Impl::load_key_data() {
  const std::size_t length = options_.private_key.size();
  const bool armored = options_.private_key.find("-----BEGIN ") != std::string::npos &&
                       options_.private_key.find("PRIVATE KEY-----") != std::string::npos;
  const bool has_passphrase = !options_.passphrase.empty();
  if (armored) {
    private_key_ = detail::IdentityCache::instance().from_text(
        options_.private_key, options_.passphrase, [&]() -> ssh_key {
          ssh_key raw = nullptr;
          const int rc = ssh_pki_import_privkey_base64(
              options_.private_key.c_str(), has_passphrase ? options_.passphrase.c_str() : nullptr,
              nullptr, nullptr, &raw);
          if (rc != SSH_OK || raw == nullptr || ssh_key_is_private(raw) != 1) {
            ssh_key_free(raw);
            return nullptr;
          }
          return raw;
        });
  }
  wipe_secret(options_.private_key);
  wipe_secret(options_.passphrase);
  if (private_key_) {
    return {};
  }
  std::string why;
  if (length == 0) {
    why =
        "the in-memory private key is empty (AuthMethod::key_data needs "
        "ConnectOptions::private_key)";
  } else if (!armored) {
    why = fmt::format(
        "the in-memory private key ({} bytes) is not a private key: no \"-----BEGIN ... PRIVATE "
        "KEY-----\" line",
        length);
  } else if (!has_passphrase) {
    why = fmt::format(
        "cannot load the in-memory private key ({} bytes): damaged, of an unsupported type, or "
        "encrypted (give its passphrase)",
        length);
  } else {
    why = fmt::format(
        "cannot load the in-memory private key ({} bytes): wrong passphrase, damaged, or of an "
        "unsupported type",
        length);
  }
  return make_error(Errc::key_invalid, std::move(why));
}

// The base64 blob of the public half of `identity` (a .pub file, or a private key with a .pub
// file beside it), as it appears in authorized_keys and in the agent's listing.
static Result<std::string> public_key_base64(const std::string& identity) {
  for (const std::string& path : {identity + ".pub", identity}) {
    ssh_key raw = nullptr;
    if (std::filesystem::exists(path) && ssh_pki_import_pubkey_file(path.c_str(), &raw) == SSH_OK) {
      KeyHandle key(raw);
      char* raw_base64 = nullptr;
      if (ssh_pki_export_pubkey_base64(key.get(), &raw_base64) == SSH_OK) {
        CStringHandle base64(raw_base64);
        return std::string(base64.get());
      }
    }
    if (raw != nullptr) {
      ssh_key_free(raw);
    }
  }
  return make_error(
      Errc::key_invalid,
      fmt::format("no public key at {0}.pub or {0} to pick the agent identity", identity));
}

awaitable<Result<void>> Session::Impl::authenticate(Deadline deadline) {
  ssh_session s = session_.get();
  ssh_key private_key = private_key_.get();
  Result<int> rc;
  switch (options_.auth) {
    case AuthMethod::key_file:
    case AuthMethod::key_data:
      // libssh picks rsa-sha2-512/256 for RSA keys from the server's server-sig-algs.
      rc = co_await drive([&] { return ssh_userauth_publickey(s, nullptr, private_key); }, deadline,
                          SSH_AUTH_AGAIN);
      break;
    case AuthMethod::agent: {
      std::string agent_socket = options_.agent_socket;
      if (agent_socket.empty()) {
        const char* from_env = std::getenv("SSH_AUTH_SOCK");
        agent_socket = from_env != nullptr ? from_env : "";
      }
      if (!options_.identity_file.empty()) {
        // Show libssh only the configured key, so no other agent key is ever offered.
        auto allowed = public_key_base64(options_.identity_file);
        if (!allowed) {
          co_return allowed.error();
        }
        auto fd = agent_filter_.start(agent_socket, std::move(*allowed));
        if (!fd) {
          co_return fd.error();
        }
        ssh_set_agent_socket(s, *fd);
      } else if (!agent_socket.empty()) {
        ssh_options_set(s, SSH_OPTIONS_IDENTITY_AGENT, agent_socket.c_str());
      }
      rc = co_await drive([&] { return ssh_userauth_agent(s, nullptr); }, deadline, SSH_AUTH_AGAIN);
      agent_filter_.stop();
      break;
    }
    case AuthMethod::password:
      rc = co_await drive(
          [&] { return ssh_userauth_password(s, nullptr, options_.password.c_str()); }, deadline,
          SSH_AUTH_AGAIN);
      break;
  }
  if (!rc) {
    co_return rc.error();
  }
  switch (*rc) {
    case SSH_AUTH_SUCCESS:
      co_return Result<void>{};
    case SSH_AUTH_DENIED:
    case SSH_AUTH_PARTIAL: {
      const char* what = options_.auth == AuthMethod::agent      ? "agent keys"
                         : options_.auth == AuthMethod::password ? "password"
                                                                 : "key";
      const std::string user = options_.user.empty() ? "the current user" : options_.user;
      co_return make_error(
          Errc::auth_failed,
          fmt::format("{} rejected the {} for {}{}; check the user and {} (not retried, to "
                      "stay clear of ban lists)",
                      peer_, what, user,
                      *rc == SSH_AUTH_PARTIAL ? " (more authentication methods required)" : "",
                      options_.auth == AuthMethod::password ? "the password" : "authorized_keys"));
    }
    default:
      co_return connection_error("authentication failed");
  }
}

awaitable<Result<void>> Session::Impl::connect(std::shared_ptr<Impl> self, Deadline deadline) {
  const auto started = Clock::now();
  self->phase_ = ConnectPhase::setup;
  if (auto identity = self->load_identity(); !identity) {
    self->teardown(identity.error());
    co_return identity.error();
  }
  self->phase_ = ConnectPhase::tcp;
  if (auto tcp = co_await self->tcp_connect(deadline); !tcp) {
    self->teardown(tcp.error());
    co_return tcp.error();
  }
  self->start_io();
  ssh_session s = self->session_.get();
  self->phase_ = ConnectPhase::handshake;
  auto handshake = co_await self->drive([s] { return ssh_connect(s); }, deadline, SSH_AGAIN);
  if (!handshake || *handshake != SSH_OK) {
    Error error;
    if (!handshake && handshake.error().code == Errc::timeout) {
      error = make_error(Errc::connect_timeout,
                         fmt::format("{}: SSH handshake did not finish within the deadline (the "
                                     "server accepted TCP but is not answering)",
                                     self->peer_));
    } else if (!handshake) {
      error = handshake.error();
    } else if ((ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) {
      error = make_error(Errc::disconnected,
                         fmt::format("{}: the server closed the connection during the handshake "
                                     "(MaxStartups, a per-source limit, or not an SSH server?): {}",
                                     self->peer_, ssh_get_error(s)));
    } else {
      error = make_error(Errc::protocol,
                         fmt::format("{}: handshake failed: {}", self->peer_, ssh_get_error(s)));
    }
    self->teardown(error);
    co_return error;
  }
  // A changed or unknown key stops here, before any credential leaves this process.
  self->phase_ = ConnectPhase::host_key;
  if (auto verified = self->verify_host_key(); !verified) {
    self->teardown(verified.error());
    co_return verified.error();
  }
  self->phase_ = ConnectPhase::auth;
  if (auto auth = co_await self->authenticate(deadline); !auth) {
    Error error = auth.error();
    if (error.code == Errc::timeout) {
      error = make_error(
          Errc::connect_timeout,
          fmt::format("{}: authentication did not finish within the deadline", self->peer_));
    }
    self->teardown(error);
    co_return error;
  }
  self->private_key_.reset();
  char* login = nullptr;
  if (ssh_options_get(s, SSH_OPTIONS_USER, &login) == SSH_OK && login != nullptr) {
    self->root_login_ = std::string_view(login) == "root";
    ssh_string_free_char(login);
  }
  // From now on the pump reads the socket through an event, even when no call is pending.
  self->event_.reset(ssh_event_new());
  if (!self->event_ || ssh_event_add_session(self->event_.get(), s) != SSH_OK) {
    Error error = make_error(Errc::protocol, "cannot register the session for polling");
    self->teardown(error);
    co_return error;
  }
  self->state_ = State::ready;
  self->phase_ = ConnectPhase::ready;
  self->last_rx_ = Clock::now();
  if (self->options_.keepalive_interval.count() > 0) {
    asio::co_spawn(self->executor_, keepalive(self), asio::detached);
  }
  logger()->debug("{} connected in {} ms, host key {}", self->tag(),
                  ms_between(started, Clock::now()), self->fingerprint_);
  co_return Result<void>{};
}

// ---------------------------------------------------------------------------------------------
// Exec

awaitable<Result<CommandResult>> Session::Impl::exec(std::shared_ptr<Impl> self,
                                                     std::string command, ExecOptions options,
                                                     Deadline deadline, bool while_closing) {
  if (self->state_ != State::ready && !(while_closing && self->state_ == State::closing)) {
    co_return make_error(self->state_ == State::closed ? Errc::not_started : Errc::cancelled,
                         self->state_ == State::closed ? self->failure_.message()
                                                       : fmt::format("{} is closing", self->peer_));
  }
  if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
    co_return make_error(Errc::cancelled,
                         fmt::format("{}: cancelled before the command started", self->peer_));
  }
  const auto started = Clock::now();
  std::string run_id;
  if (self->root_login_) {
    // sshd ignores "signal" requests after a root login; mark the command's processes so a
    // timeout can find and kill them from a second channel (see reap()).
    run_id = random_run_id();
    command = fmt::format("export {}={}; {}", kRunMarker, run_id, command);
  }
  // A spare first (no open round trip); a spare the server closed before it took the command
  // is dropped and the command goes on a channel of its own: never the caller's error.
  bool spares_allowed = !while_closing;
  std::shared_ptr<ChannelState> state;
  bool on_spare = false;
  Clock::time_point opened_at{};
  for (;;) {
    state.reset();
    if (spares_allowed) {
      ChannelState* const taken = co_await take_spare(self, deadline);
      for (const auto& channel : self->channels_) {
        if (channel.get() == taken && taken != nullptr) {
          state = channel;
          break;
        }
      }
    }
    on_spare = state != nullptr;
    if (!state) {
      if (self->state_ == State::closed) {
        co_return make_error(Errc::not_started, self->failure_.message());
      }
      if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
        co_return make_error(Errc::cancelled,
                             fmt::format("{}: cancelled before the command started", self->peer_));
      }
      if (deadline.expired()) {
        co_return make_error(
            Errc::timeout, fmt::format("{}: channel not opened within the deadline", self->peer_));
      }
      if (self->state_ != State::ready && !(while_closing && self->state_ == State::closing)) {
        co_return make_error(Errc::cancelled, fmt::format("{} is closing", self->peer_));
      }
      state = std::make_shared<ChannelState>(options.max_output);
      state->channel.reset(ssh_channel_new(self->session_.get()));
      if (!state->channel) {
        co_return make_error(Errc::protocol,
                             fmt::format("{}: ssh_channel_new failed", self->peer_));
      }
      state->install();
      self->channels_.push_back(state);
      ssh_channel fresh = state->channel.get();
      // Not cancellable: a channel the server confirms after we forgot it would hold one of its
      // MaxSessions slots for the connection's life. A cancellation waits for the answer (one
      // round trip), then closes the channel.
      auto opened = co_await self->drive([fresh] { return ssh_channel_open_session(fresh); },
                                         deadline, SSH_AGAIN, false);
      if (!opened || *opened != SSH_OK) {
        Error error;
        if (!opened) {
          error = opened.error();
          if (error.code == Errc::timeout) {
            error.detail = fmt::format("{}: channel not opened within the deadline", self->peer_);
          }
        } else if (self->state_ == State::ready &&
                   (ssh_get_status(self->session_.get()) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0) {
          ++self->stats_.channels_refused;
          error = make_error(
              Errc::channel_refused,
              fmt::format("{} refused a new channel with {} open (MaxSessions?): {}", self->peer_,
                          self->channels_.size() - 1, ssh_get_error(self->session_.get())));
        } else {
          self->teardown(self->connection_error("connection lost while opening a channel"));
        }
        if (self->state_ == State::closed) {
          // The command never reached the server: the caller may retry it elsewhere.
          error = make_error(Errc::not_started, self->failure_.message());
        }
        self->release_channel(state);
        co_return error;
      }
      ++self->stats_.channels_opened;
      state->opened = true;
    }
    state->max_output = options.max_output;
    state->kill_grace = options.kill_grace;
    state->reaper = while_closing;
    state->run_id = run_id;
    ssh_channel channel = state->channel.get();
    opened_at = Clock::now();
    const bool cancel_before_exec = cancel_requested(co_await asio::this_coro::cancellation_state);
    if (state->cut || cancel_before_exec) {
      self->release_channel(state);
      co_return make_error(Errc::cancelled,
                           fmt::format("{}: {} before the command started", self->peer_,
                                       state->cut ? "the session closed" : "cancelled"));
    }

    // Not cancellable either: once sent, the command may start; a cancellation waits for the
    // server's answer, then signals the command like a timed-out one. A channel the server closed
    // without answering never ran it (answers come in order, before the close).
    constexpr int kClosedUnanswered = -1000;
    // A raw pointer: a lambda holding a shared_ptr, built inside a co_await expression, is
    // destroyed twice by GCC 12 (the temporary lives in the coroutine frame).
    const ChannelState* watched = state.get();
    auto requested = co_await self->drive(
        [channel, &command, watched] {
          const int rc = ssh_channel_request_exec(channel, command.c_str());
          return rc == SSH_AGAIN && watched->remote_closed ? kClosedUnanswered : rc;
        },
        deadline, SSH_AGAIN, false);
    if (requested && *requested != SSH_OK && on_spare && state->remote_closed &&
        self->state_ == State::ready) {
      ++self->stats_.spares_dropped;
      logger()->debug("{} spare channel closed by the server before the command; opening another",
                      self->tag());
      self->release_channel(state);
      spares_allowed = false;
      continue;
    }
    if (!requested || *requested != SSH_OK) {
      Error error = !requested ? requested.error()
                               : make_error(Errc::protocol,
                                            fmt::format("{} refused to run the "
                                                        "command: {}",
                                                        self->peer_,
                                                        *requested == kClosedUnanswered
                                                            ? "the channel was closed"
                                                            : ssh_get_error(self->session_.get())));
      self->release_channel(state);
      co_return error;
    }
    if (on_spare) {
      ++self->stats_.spares_used;
    }
    break;
  }
  ssh_channel channel = state->channel.get();
  state->exec_started = true;

  // stdin, within the peer's window, then EOF.
  std::size_t sent = 0;
  bool cancelled = false;
  while (sent < options.stdin_data.size() && self->state_ != State::closed && !deadline.expired() &&
         !state->remote_closed && !state->cut) {
    if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
      cancelled = true;
      break;
    }
    const std::uint32_t window = ssh_channel_window_size(channel);
    if (window == 0) {
      co_await self->waiters_.wait(deadline);
      continue;
    }
    const auto chunk = static_cast<std::uint32_t>(std::min<std::size_t>(
        {options.stdin_data.size() - sent, window,
         options.stdin_data.size() <= kSmallStdin ? kStdinPiece : kLargeStdinPiece}));
    const int written = ssh_channel_write(channel, options.stdin_data.data() + sent, chunk);
    self->after_libssh_call();
    if (written < 0) {
      break;
    }
    sent += static_cast<std::size_t>(written);
    if (written == 0) {
      co_await self->waiters_.wait(deadline);
    }
  }
  if (self->state_ != State::closed && !state->remote_closed) {
    ssh_channel_send_eof(channel);
    self->after_libssh_call();
  }

  while (!cancelled && !state->remote_closed && self->state_ != State::closed &&
         !deadline.expired() && !state->cut) {
    if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
      cancelled = true;
      break;
    }
    co_await self->waiters_.wait(deadline);
  }
  if (self->state_ == State::closed) {
    co_return self->failure_;
  }
  if (!state->remote_closed) {
    const auto ran_ms = ms_between(started, Clock::now());
    // Still running: TERM, then KILL, then its channel is closed. close() may have started that
    // already; a command whose exec request was in flight when close() looked is reaped here.
    self->start_reap(state);
    if (state->cut) {
      co_return make_error(Errc::cancelled,
                           fmt::format("{}: the connection was closed while the command ran ({} "
                                       "ms); sent SIGTERM, then SIGKILL",
                                       self->peer_, ran_ms));
    }
    if (cancelled) {
      ++self->stats_.commands_cancelled;
      co_return make_error(Errc::cancelled,
                           fmt::format("{}: command cancelled after {} ms; sent SIGTERM, then "
                                       "SIGKILL",
                                       self->peer_, ran_ms));
    }
    ++self->stats_.commands_timed_out;
    co_return make_error(Errc::timeout,
                         fmt::format("{}: command still running at its deadline ({} ms); sent "
                                     "SIGTERM, then SIGKILL",
                                     self->peer_, ran_ms));
  }
  const auto finished = Clock::now();
  CommandResult result;
  result.exit_status = state->exit_status;
  result.exit_signal = std::move(state->exit_signal);
  result.out = std::move(state->out);
  result.err = std::move(state->err);
  result.out_truncated = state->out_truncated;
  result.err_truncated = state->err_truncated;
  result.out_bytes = state->out_bytes;
  result.err_bytes = state->err_bytes;
  result.timing.open = us_between(started, opened_at);
  result.timing.run = us_between(opened_at, finished);
  result.host_key_fingerprint = self->fingerprint_;
  result.on_spare_channel = on_spare;
  self->release_channel(state);
  co_return result;
}

void Session::Impl::start_reap(const std::shared_ptr<ChannelState>& channel) {
  if (channel->reaping) {
    return;
  }
  channel->reaping = true;
  ++reaping_;  // counted now, so a close() that starts before reap() runs waits for it
  asio::co_spawn(executor_, reap(shared_from_this(), channel), asio::detached);
}

// After a timeout, a cancellation or a close that cut the command: TERM, a grace period, KILL, a
// grace period, then the channel is closed (root logins: the marked processes are killed from a
// second channel instead). The channel keeps its slot until then so the session is never
// over-committed.
awaitable<void> Session::Impl::reap(std::shared_ptr<Impl> self,
                                    std::shared_ptr<ChannelState> channel) {
  const auto grace = channel->kill_grace;
  for (const char* signal : {"TERM", "KILL"}) {
    if (self->state_ == State::closed || channel->remote_closed || !channel->channel ||
        !channel->run_id.empty()) {  // root login: sshd would refuse the signal
      break;
    }
    ssh_channel_request_send_signal(channel->channel.get(), signal);
    self->after_libssh_call();
    const auto until = Deadline::after(grace);
    while (!channel->remote_closed && self->state_ != State::closed && !until.expired()) {
      co_await self->waiters_.wait(until);
    }
  }
  const bool still_running = !channel->remote_closed && self->state_ != State::closed;
  self->release_channel(channel);
  if (still_running && !channel->run_id.empty()) {
    // Root login: the signals were refused. Kill the marked processes from a fresh channel (the
    // timed-out one is closed first, so a full MaxSessions still has room).
    const std::string pids =
        fmt::format("grep -lzx '{}={}' /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3", kRunMarker,
                    channel->run_id);
    std::string killer = fmt::format(
        "p=$({0}); [ -z \"$p\" ] || kill -TERM $p; sleep {1}; p=$({0}); "
        "[ -z \"$p\" ] || kill -KILL $p; true",
        pids, static_cast<double>(grace.count()) / 1000.0);
    ExecOptions options;
    const auto deadline = Deadline::after(2 * grace + std::chrono::seconds(5));
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto killed = co_await exec(self, killer, options, deadline, true);
      if (killed || killed.error().code != Errc::channel_refused) {
        if (!killed) {
          logger()->warn("{} could not kill a timed-out command: {}", self->tag(),
                         killed.error().message());
        }
        break;
      }
    }
  } else if (still_running) {
    logger()->warn("{} command ignored SIGTERM and SIGKILL for {} ms; closed its channel",
                   self->tag(), 2 * grace.count());
  }
  --self->reaping_;
  self->waiters_.notify_all();  // a graceful close may be waiting for us
}

awaitable<Result<void>> Session::Impl::ping(std::shared_ptr<Impl> self, Deadline deadline) {
  if (self->state_ != State::ready) {
    co_return make_error(Errc::not_started, self->state_ == State::closed
                                                ? self->failure_.message()
                                                : fmt::format("{} is closing", self->peer_));
  }
  const auto received_before = self->rx_counter_.in_packets;
  self->send_keepalive();
  while (self->rx_counter_.in_packets == received_before && self->state_ == State::ready &&
         !deadline.expired()) {
    if (cancel_requested(co_await asio::this_coro::cancellation_state)) {
      co_return make_error(Errc::cancelled, fmt::format("{}: ping cancelled", self->peer_));
    }
    co_await self->waiters_.wait(deadline);
  }
  if (self->state_ == State::closed) {
    co_return self->failure_;
  }
  if (self->rx_counter_.in_packets == received_before) {
    co_return make_error(Errc::timeout, fmt::format("{}: no answer to a ping", self->peer_));
  }
  co_return Result<void>{};
}

awaitable<void> Session::Impl::close(std::shared_ptr<Impl> self, Deadline deadline) {
  if (self->state_ == State::closed) {
    co_return;
  }
  if (self->state_ == State::ready) {
    self->state_ = State::closing;
  }
  // Spares first: no command will take them (one still opening closes when answered).
  self->reserved_spares_ = 0;
  self->close_spares(0);
  for (auto& spare : self->spares_) {
    spare->spare = false;
    spare->doomed = true;  // still opening: open_spare() closes it once answered
  }
  self->spares_.clear();
  // Let running commands finish until the deadline; no new ones start.
  while ((!self->channels_.empty() || self->reaping_ > 0) && self->state_ != State::closed &&
         !deadline.expired()) {
    co_await self->waiters_.wait(deadline);
  }
  // Commands still running are signalled before the connection goes: sshd sends no SIGHUP to a
  // command without a terminal, so closing alone would leave it running on the server.
  if (self->state_ != State::closed && (!self->channels_.empty() || self->reaping_ > 0)) {
    std::chrono::milliseconds longest{0};
    std::size_t signalled = 0;
    for (const auto& channel : std::vector<std::shared_ptr<ChannelState>>(self->channels_.begin(),
                                                                          self->channels_.end())) {
      if (channel->reaper) {
        continue;  // killing a command for a reap() that the wait below lets finish
      }
      channel->cut = true;  // an open or exec request in flight: its exec() reaps or releases it
      if (channel->exec_started && !channel->remote_closed && !channel->reaping) {
        self->start_reap(channel);
        ++signalled;
      }
      longest = std::max(longest, channel->kill_grace);
    }
    if (signalled > 0) {
      logger()->info("{} closing with {} commands still running: sent SIGTERM", self->tag(),
                     signalled);
    }
    self->waiters_.notify_all();  // their exec() calls stop waiting
    const auto until = Deadline::after(2 * longest + std::chrono::seconds(5));
    while ((!self->channels_.empty() || self->reaping_ > 0) && self->state_ != State::closed &&
           !until.expired()) {
      co_await self->waiters_.wait(until);
    }
  }
  self->teardown(make_error(Errc::cancelled, fmt::format("{} closed", self->peer_)));
}

// ---------------------------------------------------------------------------------------------
// Public handle

Session::Session(std::shared_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    if (impl_) {
      impl_->teardown(make_error(Errc::cancelled, "session replaced"));
    }
    impl_ = std::move(other.impl_);
  }
  return *this;
}
Session::~Session() {
  if (impl_) {
    impl_->teardown(make_error(Errc::cancelled, fmt::format("{} session abandoned", impl_->peer_)));
  }
}

const char* phase_name(ConnectPhase phase) noexcept {
  switch (phase) {
    case ConnectPhase::setup:
      return "setup";
    case ConnectPhase::tcp:
      return "tcp";
    case ConnectPhase::handshake:
      return "handshake";
    case ConnectPhase::host_key:
      return "host_key";
    case ConnectPhase::auth:
      return "auth";
    case ConnectPhase::ready:
      return "ready";
  }
  return "unknown";
}

ConnectAttempt::ConnectAttempt(Result<Session> connected, ConnectPhase reached)
    : session(std::move(connected)), phase(reached) {}

bool ConnectAttempt::dropped_before_auth() const noexcept {
  return !session && session.error().code == Errc::disconnected &&
         (phase == ConnectPhase::tcp || phase == ConnectPhase::handshake);
}

awaitable<ConnectAttempt> Session::Impl::attempt(Endpoint endpoint, ConnectOptions options,
                                                 Deadline deadline) {
  auto executor = co_await asio::this_coro::executor;
  auto impl = std::make_shared<Impl>(executor, std::move(endpoint), std::move(options));
  auto connected = co_await connect(impl, deadline);
  const ConnectPhase phase = impl->phase_;
  if (!connected) {
    Error error = std::move(connected).error();
    if (error.code == Errc::cancelled) {
      error.detail = fmt::format("{}: connection attempt cancelled during the {} phase",
                                 impl->peer_, phase_name(phase));
    }
    co_return ConnectAttempt(std::move(error), phase);
  }
  co_return ConnectAttempt(Session(std::move(impl)), phase);
}

awaitable<Result<Session>> Session::Impl::connect_session(Endpoint endpoint, ConnectOptions options,
                                                          Deadline deadline) {
  auto outcome = co_await attempt(std::move(endpoint), std::move(options), deadline);
  co_return std::move(outcome.session);
}

asio::awaitable<Result<Session>> Session::async_connect(Endpoint endpoint, ConnectOptions options,
                                                        Deadline deadline) {
  return async_no_cancel_throw(
      Impl::connect_session(std::move(endpoint), std::move(options), deadline));
}

asio::awaitable<ConnectAttempt> Session::async_attempt(Endpoint endpoint, ConnectOptions options,
                                                       Deadline deadline) {
  return async_no_cancel_throw(Impl::attempt(std::move(endpoint), std::move(options), deadline));
}

asio::awaitable<Result<CommandResult>> Session::async_exec(std::string command, ExecOptions options,
                                                           Deadline deadline) {
  return async_no_cancel_throw(
      Impl::exec(impl_, std::move(command), std::move(options), deadline, false));
}

asio::awaitable<Result<void>> Session::async_ping(Deadline deadline) {
  return async_no_cancel_throw(Impl::ping(impl_, deadline));
}

asio::awaitable<void> Session::async_close(Deadline deadline) {
  return async_no_cancel_throw(Impl::close(impl_, deadline));
}

bool Session::alive() const noexcept { return impl_ && impl_->alive(); }
const Error& Session::failure() const noexcept { return impl_->failure_; }
std::size_t Session::active_channels() const noexcept { return impl_->active_channel_count(); }
void Session::open_spare_channel() { impl_->start_spare(); }
std::size_t Session::spare_channels() const noexcept { return impl_->unreserved_spares(); }
std::size_t Session::ready_spare_channels() const noexcept { return impl_->ready_spares(); }
bool Session::reserve_spare_channel() noexcept { return impl_->reserve_spare(); }
void Session::limit_spare_reservations(std::size_t at_most) noexcept {
  impl_->limit_reservations(at_most);
}
std::size_t Session::close_spare_channels(std::size_t keep) { return impl_->close_spares(keep); }
std::size_t Session::open_channels() const noexcept { return impl_->open_channel_count(); }
const std::string& Session::host_key_fingerprint() const noexcept { return impl_->fingerprint_; }
const std::string& Session::peer() const noexcept { return impl_->peer_; }
std::uint64_t Session::id() const noexcept { return impl_->id_; }
SessionStats Session::stats() const noexcept { return impl_->stats_; }
asio::any_io_executor Session::executor() const noexcept { return impl_->executor_; }

}  // namespace healer::ssh
