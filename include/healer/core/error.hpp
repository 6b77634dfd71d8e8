#pragma once

#include <string>
#include <system_error>

namespace healer {

/// A failure as a value: a classified code plus a human-readable detail (host, phase, library
/// message). Never carries secrets.
struct Error {
  std::error_code code;
  std::string detail;

  /// "<category message>: <detail>", one line, for logs and the CLI.
  [[nodiscard]] std::string message() const;
};

}  // namespace healer
