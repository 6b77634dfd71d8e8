#include "assets.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace healer::daemon {
namespace embedded {
struct File {
  std::string_view path;
  std::string_view body;
};
extern const File kFiles[];
extern const std::size_t kFileCount;
}  // namespace embedded

namespace {

std::string_view content_type_of(std::string_view path) {
  constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
  };
  for (const auto& [suffix, type] : kTypes) {
    if (path.ends_with(suffix)) {
      return type;
    }
  }
  return "application/octet-stream";
}

std::optional<std::string_view> find(std::string_view path) {
  for (std::size_t i = 0; i < embedded::kFileCount; ++i) {
    if (embedded::kFiles[i].path == path) {
      return embedded::kFiles[i].body;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Asset> dashboard_asset(std::string_view path) {
  // Only the dashboard's own files: the lookup is an exact match in a fixed table, so no path
  // (".." or otherwise) reaches the file system.
  const std::string full =
      path == "/" || path.empty() ? std::string("/web/index.html") : "/web" + std::string(path);
  if (auto body = find(full)) {
    return Asset{*body, content_type_of(full)};
  }
  return std::nullopt;
}

std::string_view openapi_document() { return find("/openapi.json").value_or("{}"); }

}  // namespace healer::daemon
