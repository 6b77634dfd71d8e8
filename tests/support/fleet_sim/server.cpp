#include "server.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <libssh/callbacks.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <list>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

namespace healer::fleet_sim {
namespace {

using Clock = std::chrono::steady_clock;

struct SessionFree {
  void operator()(ssh_session session) const noexcept { ssh_free(session); }
};
struct EventFree {
  void operator()(ssh_event event) const noexcept { ssh_event_free(event); }
};
struct ChannelFree {
  void operator()(ssh_channel channel) const noexcept { ssh_channel_free(channel); }
};
using SessionHandle = std::unique_ptr<std::remove_pointer_t<ssh_session>, SessionFree>;
using EventHandle = std::unique_ptr<std::remove_pointer_t<ssh_event>, EventFree>;
using ChannelHandle = std::unique_ptr<std::remove_pointer_t<ssh_channel>, ChannelFree>;

// Polls of one session per wake-up: libssh reads at most 4 KiB per poll, and Asio's epoll is
// edge-triggered, so a wake-up polls until nothing is left (bounded, to stay fair).
constexpr int kPollsPerWakeup = 64;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Signals that end a process by default (what sh and sleep do); the others are ignored.
bool terminates(std::string_view signal) {
  static const std::set<std::string_view> kIgnored = {"CHLD", "CONT", "URG",  "WINCH",
                                                      "STOP", "TSTP", "TTIN", "TTOU"};
  return !kIgnored.contains(signal);
}

// A command line or signal name as it may appear in the log: printable ASCII only, cut short.
std::string printable(std::string_view text, std::size_t limit = 80) {
  std::string out;
  for (const char c : text.substr(0, limit)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > limit) {
    out += "...";
  }
  return out;
}

void reset_on_close(int fd) {
  if (fd >= 0) {
    const linger abort_now{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof(abort_now));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// A connection that is accepted and then never answered (stall rate): the socket is read and
// the bytes dropped until the client gives up.

class StalledConnection : public std::enable_shared_from_this<StalledConnection> {
 public:
  StalledConnection(Server& server, std::uint64_t id, asio::io_context& io, int fd)
      : server_(server), id_(id), socket_(io, fd) {}

  void start() { wait(); }
  void close() {
    std::error_code ignored;
    socket_.close(ignored);
  }

 private:
  void wait() {
    socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                       [self = shared_from_this()](std::error_code ec) { self->on_readable(ec); });
  }
  void on_readable(std::error_code ec) {
    if (ec == asio::error::operation_aborted) {
      return;  // closed by Server::stop()
    }
    char sink[4096];
    const ssize_t got = ec ? -1 : ::read(socket_.native_handle(), sink, sizeof sink);
    if (got > 0 || (got < 0 && !ec && (errno == EAGAIN || errno == EINTR))) {
      wait();
      return;
    }
    close();
    --server_.stats_.stalled_open;
    server_.stalled_.erase(id_);  // may destroy this object: nothing after
  }

  Server& server_;
  std::uint64_t id_;
  asio::posix::stream_descriptor socket_;  // owns the fd
};

// ---------------------------------------------------------------------------------------------
// One SSH session. libssh calls the callbacks from inside whichever libssh call reads the
// packets, so they only record; advance() then moves every channel on, outside libssh.

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, std::uint64_t id, std::size_t host, asio::io_context& io)
      : server_(server),
        id_(id),
        host_(host),
        io_(io),
        socket_(io),
        login_timer_(io),
        tag_(fmt::format("[{} #{}]", server.address(host), id)) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { teardown(false); }

  /// Takes `fd` into libssh with `bind` (already holding this host's key) and sends the banner.
  bool start(ssh_bind bind, int fd, bool fail_auth);
  /// Ends the session now: politely (disconnect message) or with a reset.
  void teardown(bool reset);

 private:
  struct Channel {
    Connection* owner = nullptr;
    std::uint64_t number = 0;
    ChannelHandle handle;
    ssh_channel_callbacks_struct callbacks{};
    enum class State { opened, waiting_input, running, answering, closing } state = State::opened;
    std::string command;
    bool exec_requested = false;
    std::string input;
    bool input_eof = false;
    bool remote_closed = false;
    std::string signal;  // last "signal" request not yet acted on
    Plan plan;
    bool drop = false;
    bool hang = false;
    double started = 0;
    std::optional<asio::steady_timer> timer;
    bool timer_fired = false;
    Reply reply;
    std::size_t out_sent = 0;
    std::size_t err_sent = 0;
  };

  // libssh callbacks (record only)
  static int on_auth_pubkey(ssh_session, const char* user, ssh_key_struct* key,
                            char signature_state, void* userdata);
  static ssh_channel on_channel_open(ssh_session session, void* userdata);
  static int on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                     void* userdata);
  static void on_eof(ssh_session, ssh_channel, void* userdata);
  static void on_close(ssh_session, ssh_channel, void* userdata);
  static void on_signal(ssh_session, ssh_channel, const char* signal, void* userdata);
  static int on_exec(ssh_session, ssh_channel, const char* command, void* userdata);
  static int on_write_wontblock(ssh_session, ssh_channel, uint32_t, void* userdata);
  static void on_connect_status(void* userdata, float status);

  void wait_readable();
  void wait_writable();
  void on_readable(std::error_code ec);
  // After any libssh activity: notices a closed socket, runs the channels, flushes, re-arms.
  void after_libssh();
  void advance_all();
  // Moves one channel on; returns false when it is finished and was freed.
  bool advance(Channel& channel);
  void start_command(Channel& channel);
  void schedule(Channel& channel);
  void send_reply(Channel& channel);
  void release_descriptor_if_closed();
  [[nodiscard]] bool session_closed() const;

  Server& server_;
  std::uint64_t id_;
  std::size_t host_;
  asio::io_context& io_;
  SessionHandle session_;
  EventHandle event_;
  ssh_server_callbacks_struct callbacks_{};
  ssh_callbacks_struct session_callbacks_{};  // only to learn when the key exchange is done
  // The same descriptor libssh reads and writes (libssh owns and closes it): only for waiting.
  asio::posix::stream_descriptor socket_;
  asio::steady_timer login_timer_;
  std::string tag_;
  // Channels in the order they were opened; a channel stays until both sides closed it, as
  // sshd counts it against MaxSessions.
  std::list<Channel> channels_;
  std::uint64_t next_channel_ = 1;
  bool fail_auth_ = false;
  bool authenticated_ = false;
  bool kex_done_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool in_after_ = false;
};

bool Connection::start(ssh_bind bind, int fd, bool fail_auth) {
  fail_auth_ = fail_auth;
  session_.reset(ssh_new());
  if (!session_) {
    ::close(fd);
    return false;
  }
  ssh_session s = session_.get();
  if (ssh_bind_accept_fd(bind, s, fd) != SSH_OK) {
    if (ssh_get_fd(s) != fd) {
      ::close(fd);  // libssh did not take it
    }
    server_.log(fmt::format("{} accept failed: {}", tag_, ssh_get_error(bind)));
    closed_ = true;
    return false;
  }
  // No compression: zlib state cost ~270 KiB per session (heaptrack) (sshd offers delayed zlib;
  // healer never asks for it).
  ssh_options_set(s, SSH_OPTIONS_COMPRESSION_C_S, "none");
  ssh_options_set(s, SSH_OPTIONS_COMPRESSION_S_C, "none");
  ssh_callbacks_init(&callbacks_);
  callbacks_.userdata = this;
  callbacks_.auth_pubkey_function = &Connection::on_auth_pubkey;
  callbacks_.channel_open_request_session_function = &Connection::on_channel_open;
  ssh_set_server_callbacks(s, &callbacks_);
  ssh_callbacks_init(&session_callbacks_);
  session_callbacks_.userdata = this;
  session_callbacks_.connect_status_function = &Connection::on_connect_status;
  ssh_set_callbacks(s, &session_callbacks_);
  ssh_set_auth_methods(s, SSH_AUTH_METHOD_PUBLICKEY);
  ssh_set_blocking(s, 0);
  // Sends the banner and our KEXINIT; the rest of the key exchange happens in later polls.
  if (ssh_handle_key_exchange(s) == SSH_ERROR) {
    closed_ = true;
    return false;
  }
  event_.reset(ssh_event_new());
  if (!event_ || ssh_event_add_session(event_.get(), s) != SSH_OK) {
    closed_ = true;
    return false;
  }
  socket_.assign(fd);
  ++server_.counters().sessions_open;
  server_.counters().sessions_peak =
      std::max(server_.counters().sessions_peak, server_.counters().sessions_open);
  login_timer_.expires_after(server_.options().login_grace);
  login_timer_.async_wait([self = weak_from_this()](std::error_code ec) {
    auto connection = self.lock();
    if (!ec && connection && !connection->authenticated_ && !connection->closed_) {
      ++connection->server_.counters().login_timeouts;
      connection->server_.log(fmt::format("{} login grace time over", connection->tag_));
      connection->teardown(false);
    }
  });
  after_libssh();
  return true;
}

void Connection::teardown(bool reset) {
  if (closed_ && !session_) {
    return;
  }
  const bool was_open = !closed_;
  closed_ = true;
  login_timer_.cancel();
  for (auto& channel : channels_) {
    if (channel.timer) {
      channel.timer->cancel();
    }
    if (channel.handle) {
      ssh_remove_channel_callbacks(channel.handle.get(), &channel.callbacks);
      // ssh_disconnect / ssh_free free libssh's channel structs: ours only forgets it.
      (void)channel.handle.release();
    }
    if (channel.state != Channel::State::closing && channel.exec_requested) {
      ++server_.counters().commands_abandoned;
    }
    --server_.counters().channels_open;
  }
  channels_.clear();
  if (event_ && session_) {
    ssh_event_remove_session(event_.get(), session_.get());
  }
  event_.reset();
  if (socket_.is_open()) {
    (void)socket_.release();  // libssh owns the descriptor and closes it below
  }
  if (session_) {
    ssh_session s = session_.get();
    const int fd = ssh_get_fd(s);
    if (reset) {
      reset_on_close(fd);
    } else if (fd != SSH_INVALID_SOCKET) {
      ssh_set_fd_towrite(s);  // the socket is writable: send the disconnect message now
      ssh_disconnect(s);
    }
    session_.reset();
  }
  if (was_open) {
    --server_.counters().sessions_open;
    ++server_.counters().disconnects;
    server_.forget(id_);  // may drop the last owner: the caller holds one
  }
}

void Connection::wait_readable() {
  if (reading_ || closed_ || !socket_.is_open()) {
    return;
  }
  reading_ = true;
  socket_.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this()](std::error_code ec) {
                       self->reading_ = false;
                       self->on_readable(ec);
                     });
}

void Connection::wait_writable() {
  if (writing_ || closed_ || !socket_.is_open() || !session_ ||
      (ssh_get_status(session_.get()) & SSH_WRITE_PENDING) == 0) {
    return;
  }
  writing_ = true;
  socket_.async_wait(asio::posix::stream_descriptor::wait_write,
                     [self = shared_from_this()](std::error_code ec) {
                       self->writing_ = false;
                       if (ec || self->closed_) {
                         return;
                       }
                       // A poll with POLLOUT armed writes what libssh queued.
                       ssh_event_dopoll(self->event_.get(), 0);
                       self->after_libssh();
                     });
}

void Connection::on_readable(std::error_code ec) {
  if (ec || closed_) {
    return;
  }
  auto self = shared_from_this();
  for (int polls = 0; polls < kPollsPerWakeup && !closed_ && event_; ++polls) {
    if (ssh_event_dopoll(event_.get(), 0) != SSH_OK) {
      break;
    }
    release_descriptor_if_closed();
    if (!socket_.is_open()) {
      break;
    }
  }
  after_libssh();
}

void Connection::release_descriptor_if_closed() {
  // libssh closes the socket itself on I/O errors: forget the number before anything can reuse
  // it (nothing else runs until we return to the loop).
  if (session_ && socket_.is_open() && ssh_get_fd(session_.get()) == SSH_INVALID_SOCKET) {
    (void)socket_.release();
  }
}

bool Connection::session_closed() const {
  return !session_ || !socket_.is_open() ||
         (ssh_get_status(session_.get()) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0;
}

void Connection::after_libssh() {
  if (closed_ || in_after_) {
    return;
  }
  auto self = shared_from_this();  // teardown() may drop the server's reference
  in_after_ = true;
  release_descriptor_if_closed();
  if (!session_closed()) {
    advance_all();
    release_descriptor_if_closed();
  }
  in_after_ = false;
  if (closed_) {
    return;
  }
  if (session_closed()) {
    server_.log(fmt::format("{} closed by the client", tag_));
    teardown(false);
    return;
  }
  wait_writable();
  wait_readable();
}

void Connection::advance_all() {
  // A libssh call in advance() can run callbacks that open channels (appended: list iterators
  // stay valid) or close them (flags only): loop until nothing moves.
  for (int round = 0; round < 8; ++round) {
    bool moved = false;
    for (auto it = channels_.begin(); it != channels_.end() && !closed_;) {
      const auto state = it->state;
      const bool finished = !advance(*it);
      if (closed_) {
        return;
      }
      if (finished) {
        it = channels_.erase(it);
        --server_.counters().channels_open;
        moved = true;
      } else {
        moved = moved || it->state != state;
        ++it;
      }
    }
    if (!moved) {
      break;
    }
  }
}

bool Connection::advance(Channel& channel) {
  using State = Channel::State;
  if (channel.remote_closed) {
    // The client closed its side: answer with our close (ssh_channel_free sends it) and free.
    if (channel.state != State::closing && channel.exec_requested) {
      ++server_.counters().commands_abandoned;
    }
    if (channel.timer) {
      channel.timer->cancel();
    }
    channel.handle.reset();
    return false;
  }
  if (channel.state == State::opened && channel.exec_requested) {
    start_command(channel);
  }
  if (channel.state == State::waiting_input && channel.input_eof) {
    schedule(channel);
  }
  if ((channel.state == State::waiting_input || channel.state == State::running) &&
      !channel.signal.empty()) {
    const std::string signal = std::exchange(channel.signal, {});
    if (terminates(signal)) {
      if (channel.timer) {
        channel.timer->cancel();
      }
      channel.reply = Reply{{}, {}, std::nullopt, signal};
      channel.state = State::answering;
      ++server_.counters().commands_signalled;
      server_.log(fmt::format("{} channel {} ended by SIG{}", tag_, channel.number, signal));
    }
  }
  if (channel.state == State::running && channel.timer_fired) {
    if (channel.drop) {
      ++server_.counters().commands_dropped;
      server_.log(fmt::format("{} dropping the connection mid-command", tag_));
      teardown(true);
      return true;
    }
    const HostModel host = server_.model(host_);
    const RunContext context{host, channel.started, unix_now(), channel.input};
    channel.reply = channel.plan.finish(context);
    channel.state = State::answering;
    ++server_.counters().commands_answered;
  }
  if (channel.state == State::answering) {
    send_reply(channel);
  }
  return true;
}

void Connection::start_command(Channel& channel) {
  const Behaviour behaviour = server_.behaviour().of(host_);
  const std::uint64_t count = server_.next_command(host_);
  const auto seed = server_.behaviour().seed();
  channel.plan = server_.commands().plan(channel.command);
  channel.drop = draw(seed, host_, Draw::drop, count) < behaviour.drop;
  channel.hang = !channel.drop && draw(seed, host_, Draw::hang, count) < behaviour.hang;
  channel.started = unix_now();
  ++server_.counters().commands;
  ++server_.counters().commands_by_kind[channel.plan.kind];
  if (channel.hang) {
    ++server_.counters().commands_hung;
  }
  server_.log(fmt::format("{} channel {} exec ({}): {}", tag_, channel.number, channel.plan.kind,
                          printable(channel.command)));
  channel.state = Channel::State::waiting_input;
  if (!channel.plan.needs_eof) {
    schedule(channel);
  }
}

void Connection::schedule(Channel& channel) {
  channel.state = Channel::State::running;
  if (channel.hang) {
    return;  // until a signal or the client's close
  }
  const auto delay = server_.behaviour().latency(host_) + channel.plan.duration;
  if (delay.count() == 0) {
    channel.timer_fired = true;
    return;
  }
  channel.timer.emplace(io_, delay);
  channel.timer->async_wait(
      [self = shared_from_this(), number = channel.number](std::error_code ec) {
        if (ec || self->closed_) {
          return;
        }
        for (auto& candidate : self->channels_) {
          if (candidate.number == number) {
            candidate.timer_fired = true;
            self->after_libssh();
            return;
          }
        }
      });
}

void Connection::send_reply(Channel& channel) {
  ssh_channel handle = channel.handle.get();
  // stdout, then stderr, within the client's window; the rest after its window adjust.
  for (const bool is_stderr : {false, true}) {
    const std::string& text = is_stderr ? channel.reply.err : channel.reply.out;
    std::size_t& sent = is_stderr ? channel.err_sent : channel.out_sent;
    while (sent < text.size()) {
      if ((ssh_get_status(session_.get()) & SSH_WRITE_PENDING) != 0) {
        return;  // the rest once libssh's socket buffer is written (wait_writable)
      }
      const std::size_t window = ssh_channel_window_size(handle);
      if (window == 0) {
        return;
      }
      const auto chunk = static_cast<std::uint32_t>(
          std::min({text.size() - sent, window, server_.options().write_chunk}));
      const int written = is_stderr ? ssh_channel_write_stderr(handle, text.data() + sent, chunk)
                                    : ssh_channel_write(handle, text.data() + sent, chunk);
      if (written < 0) {
        channel.state = Channel::State::closing;  // the channel or the session is gone
        return;
      }
      if (written == 0) {
        return;
      }
      sent += static_cast<std::size_t>(written);
    }
  }
  if (channel.reply.exit_status) {
    ssh_channel_request_send_exit_status(handle, *channel.reply.exit_status);
  } else {
    ssh_channel_request_send_exit_signal(handle, channel.reply.exit_signal.c_str(), 0, "", "");
  }
  ssh_channel_send_eof(handle);
  ssh_channel_close(handle);
  channel.state = Channel::State::closing;
}

// --- callbacks ---------------------------------------------------------------------------------

int Connection::on_auth_pubkey(ssh_session, const char* user, ssh_key_struct* key,
                               char signature_state, void* userdata) {
  auto* self = static_cast<Connection*>(userdata);
  Stats& stats = self->server_.counters();
  ++stats.auth_requests;
  const auto& wanted = self->server_.options().user;
  const bool accepted = (wanted.empty() || (user != nullptr && wanted == user)) &&
                        self->server_.authorized(self->host_, key);
  if (signature_state == SSH_PUBLICKEY_STATE_NONE) {
    return accepted && !self->fail_auth_ ? SSH_AUTH_SUCCESS : SSH_AUTH_DENIED;  // a query
  }
  if (accepted && !self->fail_auth_ && signature_state == SSH_PUBLICKEY_STATE_VALID) {
    self->authenticated_ = true;
    ++stats.auth_successes;
    self->server_.log(fmt::format("{} accepted publickey for {}", self->tag_,
                                  printable(user != nullptr ? user : "")));
    return SSH_AUTH_SUCCESS;
  }
  ++stats.auth_failures;
  if (accepted && self->fail_auth_) {
    ++stats.auth_failures_injected;
  }
  self->server_.log(fmt::format("{} failed publickey for {}", self->tag_,
                                printable(user != nullptr ? user : "")));
  return SSH_AUTH_DENIED;
}

ssh_channel Connection::on_channel_open(ssh_session session, void* userdata) {
  auto* self = static_cast<Connection*>(userdata);
  const std::size_t limit = self->server_.behaviour().of(self->host_).max_sessions;
  if (!self->authenticated_ || self->closed_ || self->channels_.size() >= limit) {
    ++self->server_.counters().channels_refused;
    self->server_.log(
        fmt::format("{} no more sessions ({} open)", self->tag_, self->channels_.size()));
    return nullptr;
  }
  ChannelHandle handle(ssh_channel_new(session));
  if (!handle) {
    return nullptr;
  }
  Channel& channel = self->channels_.emplace_back();
  channel.owner = self;
  channel.number = self->next_channel_++;
  channel.handle = std::move(handle);
  ssh_callbacks_init(&channel.callbacks);
  channel.callbacks.userdata = &channel;
  channel.callbacks.channel_data_function = &Connection::on_data;
  channel.callbacks.channel_eof_function = &Connection::on_eof;
  channel.callbacks.channel_close_function = &Connection::on_close;
  channel.callbacks.channel_signal_function = &Connection::on_signal;
  channel.callbacks.channel_exec_request_function = &Connection::on_exec;
  channel.callbacks.channel_write_wontblock_function = &Connection::on_write_wontblock;
  ssh_set_channel_callbacks(channel.handle.get(), &channel.callbacks);
  ++self->server_.counters().channels_opened;
  ++self->server_.counters().channels_open;
  return channel.handle.get();
}

int Connection::on_data(ssh_session, ssh_channel, void* data, uint32_t len, int is_stderr,
                        void* userdata) {
  auto* channel = static_cast<Channel*>(userdata);
  if (is_stderr == 0) {
    const std::size_t room =
        channel->owner->server_.options().max_input -
        std::min(channel->owner->server_.options().max_input, channel->input.size());
    channel->input.append(static_cast<const char*>(data), std::min<std::size_t>(room, len));
  }
  return static_cast<int>(len);  // consume everything: the window stays open
}

void Connection::on_eof(ssh_session, ssh_channel, void* userdata) {
  static_cast<Channel*>(userdata)->input_eof = true;
}

void Connection::on_close(ssh_session, ssh_channel, void* userdata) {
  static_cast<Channel*>(userdata)->remote_closed = true;
}

void Connection::on_signal(ssh_session, ssh_channel, const char* signal, void* userdata) {
  auto* channel = static_cast<Channel*>(userdata);
  ++channel->owner->server_.counters().signals;
  channel->signal = signal != nullptr ? signal : "";
}

int Connection::on_exec(ssh_session, ssh_channel, const char* command, void* userdata) {
  auto* channel = static_cast<Channel*>(userdata);
  if (channel->exec_requested || command == nullptr) {
    return 1;  // one command per channel
  }
  channel->exec_requested = true;
  channel->command = command;
  return 0;
}

void Connection::on_connect_status(void* userdata, float status) {
  auto* self = static_cast<Connection*>(userdata);
  // libssh reports 1.0 once the client's NEWKEYS arrived: the key exchange is complete.
  if (status >= 1.0F && !self->kex_done_) {
    self->kex_done_ = true;
    ++self->server_.counters().key_exchanges;
  }
}

int Connection::on_write_wontblock(ssh_session, ssh_channel, uint32_t, void*) {
  return 0;  // after_libssh() runs every channel after each poll anyway
}

// ---------------------------------------------------------------------------------------------
// Server

Server::Server(asio::io_context& io, ServerOptions options, ProcTemplates templates,
               CommandBook commands)
    : io_(io),
      options_(std::move(options)),
      templates_(std::move(templates)),
      commands_(std::move(commands)),
      behaviour_(options_.defaults, options_.profiles, options_.seed) {
  if (options_.hosts == 0) {
    throw std::invalid_argument("the fleet needs at least one host");
  }
  const std::uint64_t last = std::uint64_t{options_.first_address} + options_.hosts - 1;
  if ((options_.first_address >> 24U) != 127 || (last >> 24U) != 127 || last >= 0x7fffffffULL) {
    throw std::invalid_argument("every fleet address must be in 127.0.0.1 - 127.255.255.254");
  }
  const double now = unix_now();
  epoch_ = now - std::fmod(now, 3600.0);
  host_keys_.reserve(options_.hosts);
  for (std::size_t host = 0; host < options_.hosts; ++host) {
    host_keys_.push_back(derive_host_key(options_.host_key_seed, host));
  }
  host_counters_.resize(options_.hosts);
  bind_.reset(ssh_bind_new());
  if (!bind_) {
    throw std::runtime_error("ssh_bind_new failed");
  }
  const bool no_config = false;
  const int verbosity = options_.libssh_verbosity;
  ssh_bind_options_set(bind_.get(), SSH_BIND_OPTIONS_PROCESS_CONFIG, &no_config);
  ssh_bind_options_set(bind_.get(), SSH_BIND_OPTIONS_LOG_VERBOSITY, &verbosity);
}

Server::~Server() {
  stop();
  // Handlers still queued hold connections; they find them closed.
}

std::string Server::address(std::size_t host) const {
  const std::uint32_t value = htonl(options_.first_address + static_cast<std::uint32_t>(host));
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &value, text, sizeof text);
  return text;
}

HostModel Server::model(std::size_t host) const {
  return HostModel(templates_, options_.seed, host, epoch_);
}

bool Server::authorized(std::size_t host, ssh_key key) {
  const std::vector<KeyHandle>* keys = &options_.authorized_keys;
  if (!options_.host_authorized_keys_dir.empty()) {
    auto found = host_authorized_.find(host);
    if (found == host_authorized_.end()) {
      const auto file = options_.host_authorized_keys_dir / address(host);
      std::vector<KeyHandle> loaded;
      std::error_code ec;
      if (std::filesystem::exists(file, ec)) {
        try {
          loaded = read_authorized_keys(file);
        } catch (const std::exception& error) {
          log(fmt::format("cannot read {}: {}", file.string(), error.what()));
        }
      }
      found = host_authorized_.emplace(host, std::move(loaded)).first;
    }
    if (!found->second.empty()) {
      keys = &found->second;
    }
  }
  return std::any_of(keys->begin(), keys->end(), [key](const KeyHandle& allowed) {
    return ssh_key_cmp(allowed.get(), key, SSH_KEY_CMP_PUBLIC) == 0;
  });
}

void Server::forget(std::uint64_t id) { connections_.erase(id); }

void Server::log(std::string_view line) const {
  if (options_.verbose) {
    std::cerr << "healer-fleet-sim: " << line << '\n';
  }
}

void Server::start() {
  open_listener();
  write_known_hosts();
  wait_for_clients();
}

void Server::open_listener() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::system_error(errno, std::generic_category(), "socket");
  }
  listener_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  // Bound to the loopback device: the wildcard address then accepts every 127.x.y.z and nothing
  // from another interface.
  static constexpr char kLoopback[] = "lo";
  if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, kLoopback, sizeof kLoopback) != 0) {
    throw std::system_error(errno, std::generic_category(),
                            "SO_BINDTODEVICE lo (needs Linux >= 5.7 or CAP_NET_RAW)");
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = htons(options_.port);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {  // NOLINT
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("bind 0.0.0.0:{}", options_.port));
  }
  if (::listen(fd, 4096) != 0) {
    throw std::system_error(errno, std::generic_category(), "listen");
  }
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);  // NOLINT
  port_ = ntohs(address.sin_port);
}

void Server::write_known_hosts() const {
  if (options_.known_hosts_file.empty() && options_.known_hosts_dir.empty()) {
    return;
  }
  std::string all;
  if (!options_.known_hosts_dir.empty()) {
    std::filesystem::create_directories(options_.known_hosts_dir);
  }
  for (std::size_t host = 0; host < options_.hosts; ++host) {
    const std::string name =
        port_ == 22 ? address(host) : fmt::format("[{}]:{}", address(host), port_);
    const std::string line = fmt::format("{} {}\n", name, public_key_line(host_keys_[host].get()));
    all += line;
    if (!options_.known_hosts_dir.empty()) {
      write_file_atomically(options_.known_hosts_dir / address(host), line);
    }
  }
  if (!options_.known_hosts_file.empty()) {
    write_file_atomically(options_.known_hosts_file, all);
  }
}

void Server::wait_for_clients() {
  if (stopping_ || !listener_) {
    return;
  }
  listener_->async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec || stopping_) {
      return;
    }
    accept_ready();
  });
}

void Server::accept_ready() {
  for (int accepted = 0; accepted < 256; ++accepted) {
    const int fd =
        ::accept4(listener_->native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accept_one(fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) {
      continue;
    }
    if (errno == EMFILE || errno == ENFILE) {
      // Out of descriptors: leave the rest in the backlog and look again in a moment.
      std::cerr << "healer-fleet-sim: out of file descriptors; accepting again in 100 ms\n";
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](std::error_code) { wait_for_clients(); });
      return;
    }
    break;  // EAGAIN: all taken
  }
  if (stopping_) {
    return;
  }
  // More may be waiting: come back through the loop so sessions get their turn.
  asio::post(io_, [this] { wait_for_clients(); });
}

void Server::accept_one(int fd) {
  sockaddr_in local{};
  socklen_t length = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0 ||  // NOLINT
      local.sin_family != AF_INET) {
    ::close(fd);
    ++stats_.rejected;
    return;
  }
  const std::uint32_t dialed = ntohl(local.sin_addr.s_addr);
  if (dialed < options_.first_address || dialed - options_.first_address >= options_.hosts) {
    ::close(fd);
    ++stats_.rejected;
    return;
  }
  const std::size_t host = dialed - options_.first_address;
  ++stats_.connections;
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  const Behaviour behaviour = behaviour_.of(host);
  const std::uint64_t count = next_connection(host);
  const std::uint64_t id = next_id_++;
  if (draw(options_.seed, host, Draw::refuse, count) < behaviour.refuse) {
    ++stats_.refused;
    log(fmt::format("[{} #{}] refused (reset)", address(host), id));
    reset_on_close(fd);
    ::close(fd);
    return;
  }
  if (draw(options_.seed, host, Draw::stall, count) < behaviour.stall) {
    ++stats_.stalled;
    ++stats_.stalled_open;
    log(fmt::format("[{} #{}] stalled", address(host), id));
    auto stalled = std::make_shared<StalledConnection>(*this, id, io_, fd);
    stalled_.emplace(id, stalled);
    stalled->start();
    return;
  }
  const bool fail_auth = draw(options_.seed, host, Draw::auth_fail, count) < behaviour.auth_fail;
  // The bind hands its key to the session: this host's key, for this accept only.
  ssh_bind_options_set(bind_.get(), SSH_BIND_OPTIONS_IMPORT_KEY,
                       ssh_key_dup(host_keys_[host].get()));
  auto connection = std::make_shared<Connection>(*this, id, host, io_);
  connections_.emplace(id, connection);
  log(fmt::format("[{} #{}] connection", address(host), id));
  if (!connection->start(bind_.get(), fd, fail_auth)) {
    connections_.erase(id);
  }
}

void Server::stop() {
  if (stopping_) {
    return;
  }
  stopping_ = true;
  if (listener_) {
    std::error_code ignored;
    listener_->close(ignored);
  }
  auto sessions = connections_;  // teardown() erases from the map
  for (auto& [id, connection] : sessions) {
    connection->teardown(false);
  }
  connections_.clear();
  auto stalled = stalled_;
  for (auto& [id, connection] : stalled) {
    connection->close();
  }
  stalled_.clear();
  stats_.stalled_open = 0;
}

nlohmann::json Server::stats_json() const {
  nlohmann::json json = {
      {"connections", stats_.connections},
      {"rejected", stats_.rejected},
      {"refused", stats_.refused},
      {"stalled", stats_.stalled},
      {"key_exchanges", stats_.key_exchanges},
      {"auth_requests", stats_.auth_requests},
      {"auth_successes", stats_.auth_successes},
      {"auth_failures", stats_.auth_failures},
      {"auth_failures_injected", stats_.auth_failures_injected},
      {"channels_opened", stats_.channels_opened},
      {"channels_refused", stats_.channels_refused},
      {"commands", stats_.commands},
      {"commands_answered", stats_.commands_answered},
      {"commands_signalled", stats_.commands_signalled},
      {"commands_abandoned", stats_.commands_abandoned},
      {"commands_dropped", stats_.commands_dropped},
      {"commands_hung", stats_.commands_hung},
      {"signals", stats_.signals},
      {"disconnects", stats_.disconnects},
      {"login_timeouts", stats_.login_timeouts},
      {"sessions_open", stats_.sessions_open},
      {"sessions_peak", stats_.sessions_peak},
      {"stalled_open", stats_.stalled_open},
      {"channels_open", stats_.channels_open},
      {"commands_by_kind", stats_.commands_by_kind},
  };
  // The heap as malloc sees it: bytes in use and bytes it holds (RSS includes the latter).
  const auto heap = ::mallinfo2();
  json["heap_in_use_bytes"] = heap.uordblks + heap.hblkhd;
  json["heap_held_bytes"] = heap.arena + heap.hblkhd;
  return json;
}

void Server::write_stats() {
  if (options_.stats_file.empty()) {
    return;
  }
  auto json = stats_json();
  json["generation"] = ++stats_generation_;
  write_file_atomically(options_.stats_file, json.dump() + "\n");
}

}  // namespace healer::fleet_sim
