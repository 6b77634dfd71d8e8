#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "healer/core/result.hpp"

namespace healer::config {

/// A TOML config file, read and parsed once. Each part of healer reads its own top-level table
/// from it (the pool loader [pool], the service [checks], [store], [schedule], ...), so one file
/// has one parser and one set of error messages. Cheap to copy (the document is shared).
class ConfigFile {
 public:
  /// The parsed document; its definition (toml++) is in healer/core/config_document.hpp, which only
  /// the section parsers include.
  struct Document;

  /// Reads and parses `path`: a regular file (not a FIFO or device: they could block or never
  /// end) of at most 1 MiB. Errors (config::Errc file_unreadable / parse_error) name the file and
  /// the line.
  [[nodiscard]] static Result<ConfigFile> read(const std::filesystem::path& path);
  /// Parses `text` as if read from `origin` (tests, the daemon's reload check).
  [[nodiscard]] static Result<ConfigFile> parse(std::string text, std::filesystem::path origin);

  /// Where the file was read from.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Fails (config::Errc::unknown_key) on the first top-level key that is not one of `known`,
  /// naming it with its line and a near miss, so a misspelt table is an error, not ignored.
  [[nodiscard]] Result<void> check_tables(std::span<const std::string_view> known) const;
  /// The parsed document (for section parsers).
  [[nodiscard]] const Document& document() const noexcept { return *document_; }
  /// "(FILE line N)" for a message about something at `line`.
  [[nodiscard]] std::string place(std::size_t line) const;

 private:
  ConfigFile(std::shared_ptr<const Document> document, std::filesystem::path path)
      : document_(std::move(document)), path_(std::move(path)) {}

  std::shared_ptr<const Document> document_;
  std::filesystem::path path_;
};

}  // namespace healer::config
