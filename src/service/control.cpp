#include "healer/service/control.hpp"

#include <fmt/format.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "healer/service/errors.hpp"
#include "healer/service/inventory.hpp"
#include "healer/store/paths.hpp"

namespace healer::service::control {
namespace {

constexpr std::int64_t kMaxTimeoutMs = 86'400'000;  // one day, as the CLI allows
constexpr std::size_t kMaxOutput = std::size_t{64} << 20;

Error bad(std::string detail) { return make_error(Errc::invalid_input, std::move(detail)); }

const char* priority_name(pool::Priority priority) {
  switch (priority) {
    case pool::Priority::critical:
      return "critical";
    case pool::Priority::normal:
      return "normal";
    case pool::Priority::background:
      return "background";
  }
  return "normal";
}

Result<pool::Priority> priority_from(const Json& document) {
  const auto text = document.value("priority", std::string("normal"));
  for (const auto priority :
       {pool::Priority::critical, pool::Priority::normal, pool::Priority::background}) {
    if (text == priority_name(priority)) {
      return priority;
    }
  }
  return bad("unknown priority '" + text + "'");
}

Json selection_json(const Selection& selection) {
  return Json{{"names", selection.names}, {"tags", selection.tags}, {"all", selection.all}};
}

Selection selection_from(const Json& document) {
  Selection selection;
  if (document.contains("selection")) {
    const auto& s = document.at("selection");
    selection.names = s.value("names", std::vector<std::string>{});
    selection.tags = s.value("tags", std::vector<std::string>{});
    selection.all = s.value("all", false);
  }
  return selection;
}

Result<std::chrono::milliseconds> timeout_from(const Json& document, std::int64_t fallback) {
  const auto ms = document.value("timeout_ms", fallback);
  if (ms <= 0 || ms > kMaxTimeoutMs) {
    return bad("timeout_ms must be 1 to 86400000");
  }
  return std::chrono::milliseconds(ms);
}

Result<std::size_t> parallel_from(const Json& document, std::size_t fallback) {
  const auto parallel = document.value("parallel", fallback);
  if (parallel < 1 || parallel > 10000) {
    return bad("parallel must be 1 to 10000");
  }
  return parallel;
}

std::string base64(std::string_view bytes) {
  if (bytes.empty()) {
    return {};
  }
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);
  return out;
}

std::optional<std::string> unbase64(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &length, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return std::nullopt;
  }
  out.resize(length);
  return out;
}

// Runs `parse`, turning nlohmann's exceptions (missing keys, wrong types) into bad input.
template <class F>
auto parsed(std::string_view what, F parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const Json::exception&) {
    return bad(fmt::format("malformed {} request", what));
  }
}

}  // namespace

std::filesystem::path socket_path(const std::filesystem::path& db) {
  if (store::is_database_url(db.native())) {
    // A server database: the socket goes in the state directory, named after the URL without
    // its password (FNV-1a), so every CLI run with the same --db finds the same daemon.
    std::uint64_t hash = 14695981039346656037ULL;
    for (const char c : store::display_location(db.native())) {
      hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    }
    auto directory = store::state_directory(db);
    return (directory ? *directory : std::filesystem::path()) /
           fmt::format("healer-{:016x}.sock", hash);
  }
  auto path = db;
  path += ".sock";
  return path;
}

std::string frame(const Json& message) {
  const std::string text = dump(message);
  const auto size = static_cast<std::uint32_t>(text.size());
  std::string out;
  out.reserve(4 + text.size());
  for (const int shift : {24, 16, 8, 0}) {
    out.push_back(static_cast<char>((size >> static_cast<unsigned>(shift)) & 0xffU));
  }
  out += text;
  return out;
}

Result<std::size_t> frame_length(const unsigned char header[4]) {
  const std::size_t size = (std::size_t{header[0]} << 24U) | (std::size_t{header[1]} << 16U) |
                           (std::size_t{header[2]} << 8U) | std::size_t{header[3]};
  if (size > kMaxFrame) {
    return make_error(Errc::too_large, fmt::format("a control frame of {} bytes", size));
  }
  return size;
}

Json to_json(const DiagnoseRequest& request) {
  return Json{{"selection", selection_json(request.selection)},
              {"app", request.app},
              {"checks", request.checks},
              {"seed", request.seed},
              {"thresholds", request.thresholds},
              {"batched", request.batched},
              {"fresh", request.fresh},
              {"store_runs", request.store_runs},
              {"timeout_ms", request.timeout.count()},
              {"parallel", request.parallel},
              {"priority", priority_name(request.priority)}};
}

// A request's deadline, fan-out and priority, each with its default when absent.
template <typename Request>
Result<void> read_limits(const Json& document, std::int64_t timeout_ms, std::size_t parallel,
                         Request& request) {
  auto timeout = timeout_from(document, timeout_ms);
  if (!timeout) {
    return timeout.error();
  }
  auto fan_out = parallel_from(document, parallel);
  if (!fan_out) {
    return fan_out.error();
  }
  auto priority = priority_from(document);
  if (!priority) {
    return priority.error();
  }
  request.timeout = *timeout;
  request.parallel = *fan_out;
  request.priority = *priority;
  return {};
}

Result<DiagnoseRequest> diagnose_request_from_json(const Json& document) {
  return parsed("diagnose", [&]() -> Result<DiagnoseRequest> {
    DiagnoseRequest request;
    request.selection = selection_from(document);
    request.app = document.value("app", std::string());
    request.checks = document.value("checks", std::vector<std::string>{});
    request.seed = document.value("seed", false);
    request.thresholds = document.value("thresholds", std::vector<std::string>{});
    request.batched = document.value("batched", false);
    request.fresh = document.value("fresh", false);
    request.store_runs = document.value("store_runs", true);
    if (auto limits = read_limits(document, 60000, 32, request); !limits) {
      return limits.error();
    }
    return request;
  });
}

Json to_json(const CollectRequest& request) {
  return Json{{"selection", selection_json(request.selection)},
              {"store_samples", request.store_samples},
              {"timeout_ms", request.timeout.count()},
              {"parallel", request.parallel},
              {"priority", priority_name(request.priority)}};
}

Result<CollectRequest> collect_request_from_json(const Json& document) {
  return parsed("collect", [&]() -> Result<CollectRequest> {
    CollectRequest request;
    request.selection = selection_from(document);
    request.store_samples = document.value("store_samples", true);
    if (auto limits = read_limits(document, 15000, 64, request); !limits) {
      return limits.error();
    }
    return request;
  });
}

Json to_json(const ExecRequest& request) {
  Json doc{{"selection", selection_json(request.selection)}, {"commands", request.commands},
           {"stdin_base64", base64(request.stdin_data)},     {"max_output", request.max_output},
           {"timeout_ms", request.timeout.count()},          {"parallel", request.parallel},
           {"priority", priority_name(request.priority)},    {"with_stats", request.with_stats}};
  if (request.host) {
    const auto& host = *request.host;
    doc["host"] = Json{{"host", host.host},
                       {"port", host.port},
                       {"user", host.user},
                       {"auth", auth_name(host.auth)},
                       {"identity", host.identity},
                       {"known_hosts", host.known_hosts},
                       {"accept_new_host_key", host.accept_new_host_key}};
  }
  return doc;
}

Result<ExecRequest> exec_request_from_json(const Json& document) {
  return parsed("exec", [&]() -> Result<ExecRequest> {
    ExecRequest request;
    request.selection = selection_from(document);
    request.commands = document.at("commands").get<std::vector<std::string>>();
    auto data = unbase64(document.value("stdin_base64", std::string()));
    if (!data) {
      return bad("stdin_base64 is not base64");
    }
    request.stdin_data = std::move(*data);
    request.max_output = document.value("max_output", std::size_t{1} << 20);
    if (request.max_output < 1 || request.max_output > kMaxOutput) {
      return bad("max_output must be 1 to 64 MiB");
    }
    if (auto limits = read_limits(document, 30000, 64, request); !limits) {
      return limits.error();
    }
    request.with_stats = document.value("with_stats", false);
    if (document.contains("host")) {
      const auto& host = document.at("host");
      AdHocTarget target;
      target.host = host.at("host").get<std::string>();
      const auto port = host.at("port").get<int>();
      if (port < 1 || port > 65535) {
        return bad("port must be 1-65535");
      }
      target.port = static_cast<std::uint16_t>(port);
      target.user = host.value("user", std::string());
      const auto auth = parse_auth(host.value("auth", std::string("key")));
      if (!auth || *auth == store::AuthMethod::stored_key) {
        return bad("auth must be key, agent or password");
      }
      target.auth = *auth;
      target.identity = host.value("identity", std::string());
      target.known_hosts = host.value("known_hosts", std::string());
      target.accept_new_host_key = host.value("accept_new_host_key", false);
      if (auto why = bad_word(target.host, 255)) {
        return bad("the host " + *why);
      }
      request.host = std::move(target);
    }
    return request;
  });
}

Json to_json(const ConnectionTestRequest& request) {
  Json pinned = Json::object();
  for (const auto& [name, fingerprint] : request.pinned_fingerprints) {
    pinned[name] = fingerprint;
  }
  return Json{{"names", request.names},
              {"accept_new_host_key", request.accept_new_host_key},
              {"pinned_fingerprints", std::move(pinned)},
              {"timeout_ms", request.timeout.count()}};
}

Result<ConnectionTestRequest> test_request_from_json(const Json& document) {
  return parsed("test", [&]() -> Result<ConnectionTestRequest> {
    ConnectionTestRequest request;
    request.names = document.at("names").get<std::vector<std::string>>();
    request.accept_new_host_key = document.value("accept_new_host_key", false);
    if (document.contains("pinned_fingerprints")) {
      for (const auto& [name, fingerprint] : document.at("pinned_fingerprints").items()) {
        request.pinned_fingerprints[name] = fingerprint.get<std::string>();
      }
    }
    auto timeout = timeout_from(document, 15000);
    if (!timeout) {
      return timeout.error();
    }
    request.timeout = *timeout;
    return request;
  });
}

// --- Client ---------------------------------------------------------------------------------

Result<std::optional<Client>> Client::connect(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof(address.sun_path)) {
    return std::optional<Client>();  // no daemon can listen on a path this long
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return make_error(Errc::internal, fmt::format("socket: {}", std::strerror(errno)));
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == ENOENT || error == ECONNREFUSED) {
      return std::optional<Client>();
    }
    return make_error(Errc::unavailable,
                      fmt::format("the daemon's socket {}: {}", text, std::strerror(error)));
  }
  return std::optional<Client>(Client(fd));
}

Client::Client(Client&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<void> Client::send(const Json& message) {
  const std::string bytes = frame(message);
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return make_error(Errc::unavailable,
                        fmt::format("the daemon went away: {}", std::strerror(errno)));
    }
    sent += static_cast<std::size_t>(n);
  }
  return {};
}

Result<Json> Client::receive() {
  auto read_exactly = [this](char* data, std::size_t size) -> Result<void> {
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::recv(fd_, data + got, size - got, 0);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return make_error(Errc::unavailable, "the daemon closed the connection (it stopped?)");
      }
      got += static_cast<std::size_t>(n);
    }
    return {};
  };
  unsigned char header[4];
  if (auto read = read_exactly(reinterpret_cast<char*>(header), 4); !read) {
    return std::move(read).error();
  }
  auto length = frame_length(header);
  if (!length) {
    return std::move(length).error();
  }
  std::string text(*length, '\0');
  if (auto read = read_exactly(text.data(), text.size()); !read) {
    return std::move(read).error();
  }
  auto message = Json::parse(text, nullptr, false);
  if (message.is_discarded()) {
    return make_error(Errc::internal, "the daemon sent a frame that is not JSON");
  }
  return message;
}

}  // namespace healer::service::control
