#include "common.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <iterator>

#include "healer/cli/exit_codes.hpp"
#include "healer/service/errors.hpp"

namespace healer::cli {

void add_store_options(CLI::App& app, StoreArgs& args) {
  app.add_option("--db", args.db,
                 "Inventory database: a SQLite file, or postgresql://user@host:port/dbname "
                 "(default: $HEALER_DB, else $XDG_DATA_HOME/healer/healer.db or "
                 "~/.local/share/healer/healer.db); secrets in it are encrypted under "
                 "HEALER_MASTER_KEY or master.key next to the file (for a URL: in "
                 "$XDG_DATA_HOME/healer or ~/.local/share/healer)")
      ->type_name("FILE|URL");
}

void add_selection_options(CLI::App& app, service::Selection& selection) {
  app.add_option("servers", selection.names, "Server names (see `healer server list`)")
      ->type_name("SERVER");
  app.add_option("--tag,-t", selection.tags, "Every server with this tag (repeatable)");
  app.add_flag("--all,-a", selection.all, "Every server in the inventory");
}

Result<service::Settings> load_settings(const PoolOptionValues& pool) {
  service::SettingsSources sources;
  sources.config_file = pool.config_file;
  sources.pool_flags = pool.flags;
  return service::load_settings(config::Environment::process(), sources);
}

Result<std::unique_ptr<service::Runtime>> open_runtime(const StoreArgs& store,
                                                       const PoolOptionValues& pool,
                                                       bool open_store) {
  auto settings = load_settings(pool);
  if (!settings) {
    return std::move(settings).error();
  }
  service::RuntimeOptions options;
  options.settings = std::move(*settings);
  if (!store.db.empty()) {
    options.db = store.db;
  }
  options.open_store = open_store;
  options.secrets = service::LocalSecrets::from_environment(true);
  return service::Runtime::open(std::move(options));
}

int usage(const std::string& message) {
  std::cerr << "healer: " << terminal_safe(message) << '\n';
  return kExitUsage;
}

std::string user_message(const Error& error) {
  // The service's own errors say everything in their detail ("no server named 'x'"); others
  // keep their category ("authentication failed: ...").
  const bool plain = error.code.category() == service::error_category() && !error.detail.empty();
  return plain ? error.detail : error.message();
}

int fail(const Error& error) {
  std::cerr << "healer: " << terminal_safe(user_message(error)) << '\n';
  return exit_code_for(error);
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += separator;
    }
    out += item;
  }
  return out;
}

std::string terminal_safe(std::string_view text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  auto escape = [&out](unsigned char byte) { out += fmt::format("\\x{:02x}", byte); };
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80) {
      if ((byte < 0x20 && !(keep_newlines && (byte == '\n' || byte == '\t'))) || byte == 0x7f) {
        escape(byte);
      } else {
        out += static_cast<char>(byte);
      }
      ++i;
      continue;
    }
    // A whole, valid UTF-8 sequence passes; C1 controls (U+0080-U+009F, which some terminals
    // obey as CSI and OSC) and anything malformed are escaped byte by byte.
    std::size_t length = byte >= 0xf0 && byte <= 0xf4   ? 4
                         : byte >= 0xe0 && byte <= 0xef ? 3
                         : byte >= 0xc2 && byte <= 0xdf ? 2
                                                        : 0;
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    if (valid && byte == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) {
      valid = false;  // U+0080..U+009F
    }
    if (!valid) {
      escape(byte);
      ++i;
      continue;
    }
    out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) != 0; }
bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }

Result<std::string> read_user_file(const std::string& path, std::size_t max_bytes,
                                   std::string_view flag) {
  const auto bad = [&](const std::string& why) {
    return service::make_error(service::Errc::invalid_input,
                               fmt::format("{} {}: {}", flag, path, why));
  };
  int fd = STDIN_FILENO;
  if (path != "-") {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      return bad(std::strerror(errno));
    }
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      return bad("not a regular file (a FIFO, socket, device or directory)");
    }
    // Back to blocking reads for a regular file.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  }
  std::string text;
  char buffer[65536];
  bool too_large = false;
  while (true) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > max_bytes) {
      too_large = true;
      break;
    }
  }
  if (fd != STDIN_FILENO) {
    ::close(fd);
  }
  if (too_large) {
    return bad(fmt::format("larger than {} bytes", max_bytes));
  }
  return text;
}

}  // namespace healer::cli
