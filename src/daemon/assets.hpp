#pragma once

#include <optional>
#include <string_view>

// Files embedded into the binary at build time (cmake/embed.cmake): the OpenAPI document and the
// dashboard's assets, so the daemon serves them with nothing installed and no network.
namespace healer::daemon {

/// An embedded file.
struct Asset {
  std::string_view body;
  std::string_view content_type;
};

/// The dashboard's file for a request path ("/" is index.html), or nullopt.
[[nodiscard]] std::optional<Asset> dashboard_asset(std::string_view path);

/// The OpenAPI 3 description of /api/v1.
[[nodiscard]] std::string_view openapi_document();

}  // namespace healer::daemon
