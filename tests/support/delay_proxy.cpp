#include "delay_proxy.hpp"

#include <asio.hpp>
#include <atomic>
#include <deque>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace healer::test {
namespace {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Bytes read per syscall; an SSH packet is at most ~35 KB, so one read usually holds one or more.
constexpr std::size_t kReadChunkBytes = std::size_t{32} * 1024;

enum class ChunkKind { data, eof, reset };

// What arrived from one side at one instant, forwarded to the other side at `due`.
struct Chunk {
  ChunkKind kind = ChunkKind::data;
  Clock::time_point due;
  std::vector<char> bytes;
};

// One direction of a relayed connection.
struct Lane {
  explicit Lane(const asio::any_io_executor& executor)
      : writer_timer(executor), reader_timer(executor) {}

  // Chunks in arrival order, so due times never decrease; the writer sends the head once due.
  std::deque<Chunk> queue;
  // Sum of queue[i].bytes.size(); the reader parks while it is at max_in_flight_bytes.
  std::size_t queued_bytes = 0;
  // The writer waits here for the head's due time, or forever while the queue is empty (a push
  // onto an empty queue cancels the wait).
  asio::steady_timer writer_timer;
  // The reader waits here while the lane is full (the writer cancels the wait after each send).
  asio::steady_timer reader_timer;
  // EOF has been forwarded (half-close done).
  bool finished = false;

  void push(Chunk chunk) {
    const bool was_empty = queue.empty();
    queued_bytes += chunk.bytes.size();
    queue.push_back(std::move(chunk));
    if (was_empty) {
      writer_timer.cancel();
    }
  }
};

enum class Way { upstream, downstream };  // client -> target, target -> client

}  // namespace

class DelayProxy::Impl {
 public:
  class Link;

  explicit Impl(Options options) : options_(std::move(options)) {}

  void start();
  void stop();

  static asio::awaitable<void> accept_loop(Impl* proxy);
  static asio::awaitable<void> relay(std::shared_ptr<Link> link, tcp::endpoint target,
                                     std::chrono::microseconds delay, std::size_t max_in_flight);
  static asio::awaitable<void> read_lane(std::shared_ptr<Link> link, Way way,
                                         std::chrono::microseconds delay,
                                         std::size_t max_in_flight);
  static asio::awaitable<void> write_lane(std::shared_ptr<Link> link, Way way);

  // Set before the thread starts, read-only afterwards.
  Options options_;
  std::uint16_t port_ = 0;
  tcp::endpoint target_;

  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> active_{0};

  // Live links, so stop() can reset them; each Link removes itself when destroyed. Declared
  // before io_ so it outlives the coroutine frames that io_'s destructor may still destroy.
  std::unordered_map<Link*, std::weak_ptr<Link>> links_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
  bool started_ = false;
};

// One relayed connection: the accepted client socket, the socket to the target, and a Lane per
// direction. Shared by its four coroutines; only touched on the relay thread.
class DelayProxy::Impl::Link {
 public:
  Link(tcp::socket client, Impl& owner)
      : client_(std::move(client)),
        server_(client_.get_executor()),
        upstream_(client_.get_executor()),
        downstream_(client_.get_executor()),
        owner_(owner) {
    ++owner_.active_;
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  ~Link() {
    owner_.links_.erase(this);
    --owner_.active_;
  }

  tcp::socket& source(Way way) { return way == Way::upstream ? client_ : server_; }
  tcp::socket& sink(Way way) { return way == Way::upstream ? server_ : client_; }
  Lane& lane(Way way) { return way == Way::upstream ? upstream_ : downstream_; }
  Lane& other_lane(Way way) { return way == Way::upstream ? downstream_ : upstream_; }
  tcp::socket& client() { return client_; }
  tcp::socket& server() { return server_; }
  [[nodiscard]] bool closed() const { return closed_; }

  // Tears the connection down with a reset on both sides (what a peer's reset or a failed write
  // turns into), and wakes every coroutine so it can see closed().
  void abort() {
    if (closed_) {
      return;
    }
    asio::error_code ignored;
    for (tcp::socket* socket : {&client_, &server_}) {
      if (socket->is_open()) {
        socket->set_option(asio::socket_base::linger(true, 0), ignored);
      }
    }
    close();
  }

  // Closes both sockets normally: both directions have forwarded their EOF.
  void close() {
    closed_ = true;
    asio::error_code ignored;
    client_.close(ignored);
    server_.close(ignored);
    for (Lane* lane : {&upstream_, &downstream_}) {
      lane->writer_timer.cancel();
      lane->reader_timer.cancel();
    }
  }

 private:
  tcp::socket client_;
  tcp::socket server_;
  Lane upstream_;
  Lane downstream_;
  Impl& owner_;
  bool closed_ = false;
};

// Reads from the lane's source and queues each chunk with its due time; parks while the lane
// holds max_in_flight_bytes so memory stays bounded by what is in flight.
asio::awaitable<void> DelayProxy::Impl::read_lane(std::shared_ptr<Link> link, Way way,
                                                  std::chrono::microseconds delay,
                                                  std::size_t max_in_flight) {
  Lane& lane = link->lane(way);
  std::vector<char> buffer(kReadChunkBytes);
  asio::error_code ec;
  for (;;) {
    while (lane.queued_bytes >= max_in_flight && !link->closed()) {
      lane.reader_timer.expires_at(Clock::time_point::max());
      co_await lane.reader_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (link->closed()) {
      co_return;
    }
    const std::size_t n = co_await link->source(way).async_read_some(
        asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    if (link->closed()) {
      co_return;
    }
    const auto due = Clock::now() + delay;
    if (n > 0) {
      const auto first = buffer.begin();
      lane.push(Chunk{ChunkKind::data, due,
                      std::vector<char>(first, first + static_cast<std::ptrdiff_t>(n))});
    }
    if (ec) {
      lane.push(Chunk{ec == asio::error::eof ? ChunkKind::eof : ChunkKind::reset, due, {}});
      co_return;
    }
  }
}

// Sends each queued chunk to the lane's sink once it is due; forwards EOF as shutdown(send) and
// a reset as a reset of the whole connection.
asio::awaitable<void> DelayProxy::Impl::write_lane(std::shared_ptr<Link> link, Way way) {
  Lane& lane = link->lane(way);
  asio::error_code ec;
  for (;;) {
    if (link->closed()) {
      co_return;
    }
    if (lane.queue.empty() || Clock::now() < lane.queue.front().due) {
      lane.writer_timer.expires_at(lane.queue.empty() ? Clock::time_point::max()
                                                      : lane.queue.front().due);
      co_await lane.writer_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    // deque::push_back keeps references to existing elements valid, so `head` survives the
    // reader's pushes while the write is in progress.
    Chunk& head = lane.queue.front();
    switch (head.kind) {
      case ChunkKind::data: {
        co_await asio::async_write(link->sink(way), asio::buffer(head.bytes),
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (link->closed()) {
          co_return;
        }
        if (ec) {
          link->abort();
          co_return;
        }
        lane.queued_bytes -= head.bytes.size();
        lane.queue.pop_front();
        lane.reader_timer.cancel();
        break;
      }
      case ChunkKind::eof: {
        link->sink(way).shutdown(tcp::socket::shutdown_send, ec);
        lane.queue.pop_front();
        lane.finished = true;
        if (link->other_lane(way).finished) {
          link->close();
        }
        co_return;
      }
      case ChunkKind::reset: {
        link->abort();
        co_return;
      }
    }
  }
}

asio::awaitable<void> DelayProxy::Impl::relay(std::shared_ptr<Link> link, tcp::endpoint target,
                                              std::chrono::microseconds delay,
                                              std::size_t max_in_flight) {
  asio::error_code ec;
  co_await link->server().async_connect(target, asio::redirect_error(asio::use_awaitable, ec));
  if (ec || link->closed()) {
    // The target refused: the client sees its accepted connection reset.
    link->abort();
    co_return;
  }
  // Small SSH packets must not wait for Nagle on top of the simulated latency.
  link->client().set_option(tcp::no_delay(true), ec);
  link->server().set_option(tcp::no_delay(true), ec);
  const auto executor = link->client().get_executor();
  for (const Way way : {Way::upstream, Way::downstream}) {
    asio::co_spawn(executor, read_lane(link, way, delay, max_in_flight), asio::detached);
    asio::co_spawn(executor, write_lane(link, way), asio::detached);
  }
}

asio::awaitable<void> DelayProxy::Impl::accept_loop(Impl* proxy) {
  asio::steady_timer backoff(proxy->io_);
  asio::error_code ec;
  for (;;) {
    tcp::socket socket =
        co_await proxy->acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (!proxy->acceptor_.is_open()) {
      co_return;
    }
    if (ec) {
      // Out of descriptors, typically: retry later instead of spinning on the error.
      backoff.expires_after(std::chrono::milliseconds(10));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    ++proxy->accepted_;
    auto link = std::make_shared<Link>(std::move(socket), *proxy);
    proxy->links_.emplace(link.get(), link);
    asio::co_spawn(proxy->io_,
                   relay(std::move(link), proxy->target_, proxy->options_.one_way_delay,
                         proxy->options_.max_in_flight_bytes),
                   asio::detached);
  }
}

void DelayProxy::Impl::start() {
  if (started_) {
    throw std::logic_error("DelayProxy already started");
  }
  started_ = true;
  target_ = tcp::endpoint(asio::ip::make_address(options_.target_host), options_.target_port);
  const tcp::endpoint listen(asio::ip::make_address(options_.listen_host), options_.listen_port);
  acceptor_.open(listen.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(io_, accept_loop(this), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

void DelayProxy::Impl::stop() {
  if (!thread_.joinable()) {
    return;
  }
  asio::post(io_, [this] {
    asio::error_code ignored;
    acceptor_.close(ignored);
    std::vector<std::shared_ptr<Link>> live;
    for (auto& [raw, weak] : links_) {
      if (auto link = weak.lock()) {
        live.push_back(std::move(link));
      }
    }
    for (auto& link : live) {
      link->abort();
    }
    // Runs after the completions the closes just queued, so the coroutines get to finish.
    asio::post(io_, [this] { io_.stop(); });
  });
  thread_.join();
}

DelayProxy::Options DelayProxy::for_rtt(std::uint16_t target_port, std::chrono::milliseconds rtt) {
  Options options;
  options.target_port = target_port;
  options.one_way_delay = std::chrono::duration_cast<std::chrono::microseconds>(rtt) / 2;
  return options;
}

DelayProxy::DelayProxy(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

DelayProxy::~DelayProxy() { stop(); }

void DelayProxy::start() { impl_->start(); }

void DelayProxy::stop() { impl_->stop(); }

std::uint16_t DelayProxy::port() const noexcept { return impl_->port_; }

const std::string& DelayProxy::host() const noexcept { return impl_->options_.listen_host; }

std::size_t DelayProxy::accepted_count() const noexcept { return impl_->accepted_.load(); }

std::size_t DelayProxy::active_count() const noexcept { return impl_->active_.load(); }

}  // namespace healer::test
