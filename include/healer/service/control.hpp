#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>

#include "healer/core/deadline.hpp"
#include "healer/core/result.hpp"
#include "healer/service/collect.hpp"
#include "healer/service/connection_test.hpp"
#include "healer/service/diagnose.hpp"
#include "healer/service/exec.hpp"
#include "healer/service/json.hpp"

// The control socket between the CLI and a running `healer serve` for the same database: a Unix
// stream socket "<database>.sock" (mode 0600, the daemon's user only). Each message is a frame:
// 4 bytes of length (big-endian) and that many bytes of JSON. The CLI sends one request
// {"op": "diagnose" | "collect" | "exec" | "test", "request": {...}, "healer_version": "..."};
// the daemon answers with zero or more {"progress": {"done": N, "total": M}} frames and one
// {"outcome": {...}} or {"error": {...}}, then closes. Closing the socket early cancels.
namespace healer::service::control {

/// The largest frame either side accepts (an exec outcome carries up to 1 MiB per stream per
/// command, base64).
inline constexpr std::size_t kMaxFrame = std::size_t{256} << 20;

/// Where the daemon for the database at `db` listens: `<db>.sock` next to a database file; for a
/// database URL `healer-<hash of the URL without password>.sock` in store::state_directory().
[[nodiscard]] std::filesystem::path socket_path(const std::filesystem::path& db);

/// The frame of `message`.
[[nodiscard]] std::string frame(const Json& message);

/// A frame's length from its 4-byte header; an error when it is over kMaxFrame.
[[nodiscard]] Result<std::size_t> frame_length(const unsigned char header[4]);

// Requests as JSON (the CLI sends them; the daemon reads them back with the same limits the
// CLI applies).
[[nodiscard]] Json to_json(const DiagnoseRequest& request);
[[nodiscard]] Result<DiagnoseRequest> diagnose_request_from_json(const Json& document);
[[nodiscard]] Json to_json(const CollectRequest& request);
[[nodiscard]] Result<CollectRequest> collect_request_from_json(const Json& document);
[[nodiscard]] Json to_json(const ExecRequest& request);
[[nodiscard]] Result<ExecRequest> exec_request_from_json(const Json& document);
[[nodiscard]] Json to_json(const ConnectionTestRequest& request);
[[nodiscard]] Result<ConnectionTestRequest> test_request_from_json(const Json& document);

/// A blocking client for the CLI: one request, its progress and its answer.
class Client {
 public:
  /// Connects to the daemon's socket; nullopt when no daemon listens there (no socket file, or
  /// nobody accepting: a stale file of a stopped daemon), an error for anything else (a socket
  /// of another user, a permission problem).
  [[nodiscard]] static Result<std::optional<Client>> connect(const std::filesystem::path& path);

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  [[nodiscard]] Result<void> send(const Json& message);
  /// The next message; unavailable when the daemon closed the connection (it stopped).
  [[nodiscard]] Result<Json> receive();

 private:
  explicit Client(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace healer::service::control
