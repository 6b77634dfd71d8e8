#include "healer/store/master_key.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "healer/store/errors.hpp"
#include "secret_box.hpp"

namespace healer::store {
namespace {

constexpr std::size_t kHexSize = MasterKey::kSize * 2;  // 64
constexpr std::size_t kBase64Size = 44;                 // 32 bytes, padded
constexpr std::size_t kMaxKeyFileSize = 4096;

std::string errno_text(int error) { return std::generic_category().message(error); }

std::string_view trim(std::string_view text) noexcept {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) {
    return {};
  }
  const auto last = text.find_last_not_of(kSpace);
  return text.substr(first, last - first + 1);
}

// Closes a descriptor when it leaves scope.
struct Fd {
  int fd = -1;
  explicit Fd(int value) noexcept : fd(value) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

Result<void> write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) {
        continue;
      }
      return make_error(Errc::io, errno_text(errno));
    }
    bytes.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

// Writes the key's text form into a new file (O_EXCL, 0600) and fsyncs it.
Result<void> write_new_key_file(const std::filesystem::path& path, std::string_view contents) {
  Fd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (file.fd < 0) {
    return make_error(Errc::io, "creating key file " + path.string() + ": " + errno_text(errno));
  }
  if (auto written = write_all(file.fd, contents); !written) {
    return make_error(Errc::io,
                      "writing key file " + path.string() + ": " + written.error().detail);
  }
  if (::fsync(file.fd) != 0) {
    return make_error(Errc::io, "syncing key file " + path.string() + ": " + errno_text(errno));
  }
  return {};
}

}  // namespace

MasterKey::MasterKey(const MasterKey& other) noexcept : bytes_(other.bytes_) {}

MasterKey& MasterKey::operator=(const MasterKey& other) noexcept {
  bytes_ = other.bytes_;
  return *this;
}

MasterKey::~MasterKey() { sodium_memzero(bytes_.data(), bytes_.size()); }

Result<MasterKey> MasterKey::generate() {
  if (!crypto::init()) {
    return make_error(Errc::master_key_invalid, "libsodium failed to initialise");
  }
  MasterKey key;
  randombytes_buf(key.bytes_.data(), key.bytes_.size());
  return key;
}

Result<MasterKey> MasterKey::parse(std::string_view text, std::string_view origin) {
  if (!crypto::init()) {
    return make_error(Errc::master_key_invalid, "libsodium failed to initialise");
  }
  const std::string_view trimmed = trim(text);
  const std::string expected = "expected 32 bytes as 64 hex digits or 44 base64 characters, got " +
                               std::to_string(trimmed.size()) + " characters";
  MasterKey key;
  std::size_t decoded = 0;
  int rc = -1;
  if (trimmed.size() == kHexSize) {
    rc = sodium_hex2bin(key.bytes_.data(), key.bytes_.size(), trimmed.data(), trimmed.size(),
                        nullptr, &decoded, nullptr);
  } else if (trimmed.size() == kBase64Size) {
    rc = sodium_base642bin(key.bytes_.data(), key.bytes_.size(), trimmed.data(), trimmed.size(),
                           nullptr, &decoded, nullptr, sodium_base64_VARIANT_ORIGINAL);
  } else {
    return make_error(Errc::master_key_invalid, std::string(origin) + ": " + expected);
  }
  if (rc != 0 || decoded != kSize) {
    return make_error(Errc::master_key_invalid,
                      std::string(origin) + ": not valid hex or base64 (" + expected + ")");
  }
  return key;
}

Result<MasterKey> MasterKey::load_file(const std::filesystem::path& path) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return make_error(Errc::master_key_missing, "key file " + path.string() + " does not exist");
    }
    return make_error(Errc::io, "opening key file " + path.string() + ": " + errno_text(error));
  }
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) {
    return make_error(Errc::io, "reading key file " + path.string() + ": " + errno_text(errno));
  }
  if (!S_ISREG(info.st_mode)) {
    return make_error(Errc::master_key_invalid, path.string() + " is not a regular file");
  }
  if ((info.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
    return make_error(Errc::master_key_insecure,
                      "key file " + path.string() + " has mode " + mode +
                          "; it must be accessible by its owner only (chmod 600 " + path.string() +
                          ")");
  }
  if (info.st_uid != ::geteuid()) {
    return make_error(Errc::master_key_insecure,
                      "key file " + path.string() + " is owned by another user");
  }
  std::array<char, kMaxKeyFileSize> buffer{};
  std::size_t size = 0;
  while (size < buffer.size()) {
    const ssize_t got = ::read(file.fd, buffer.data() + size, buffer.size() - size);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int error = errno;
      crypto::wipe(std::span<char>(buffer));
      return make_error(Errc::io, "reading key file " + path.string() + ": " + errno_text(error));
    }
    if (got == 0) {
      break;
    }
    size += static_cast<std::size_t>(got);
  }
  auto key = parse(std::string_view(buffer.data(), size), path.string());
  crypto::wipe(std::span<char>(buffer));
  return key;
}

Result<MasterKey> MasterKey::create_file(const std::filesystem::path& path) {
  auto key = generate();
  if (!key) {
    return key;
  }
  std::array<char, kHexSize + 2> hex{};
  sodium_bin2hex(hex.data(), hex.size(), key->bytes_.data(), key->bytes_.size());
  hex[kHexSize] = '\n';
  const std::string_view contents(hex.data(), kHexSize + 1);

  // Write a private temporary file, then link() it into place: link fails if the key file exists
  // (like O_EXCL) and another process never sees a half-written key.
  std::array<unsigned char, 8> suffix{};
  randombytes_buf(suffix.data(), suffix.size());
  std::array<char, suffix.size() * 2 + 1> suffix_hex{};
  sodium_bin2hex(suffix_hex.data(), suffix_hex.size(), suffix.data(), suffix.size());
  std::filesystem::path temporary = path;
  temporary += ".tmp-";
  temporary += suffix_hex.data();

  auto written = write_new_key_file(temporary, contents);
  if (!written) {
    crypto::wipe(std::span<char>(hex));
    return std::move(written).error();
  }
  int link_error = ::link(temporary.c_str(), path.c_str()) == 0 ? 0 : errno;
  ::unlink(temporary.c_str());
  if (link_error == EPERM || link_error == EOPNOTSUPP || link_error == EXDEV) {
    // A file system without hard links: create the key file directly (still O_EXCL, 0600).
    auto direct = write_new_key_file(path, contents);
    link_error = direct ? 0 : EEXIST;
    if (!direct) {
      crypto::wipe(std::span<char>(hex));
      return std::move(direct).error();
    }
  }
  crypto::wipe(std::span<char>(hex));
  if (link_error != 0) {
    return make_error(Errc::io,
                      "creating key file " + path.string() + ": " + errno_text(link_error));
  }
  return key;
}

KeySource KeySource::from_environment(std::filesystem::path key_file) {
  KeySource source;
  if (const char* value = std::getenv("HEALER_MASTER_KEY"); value != nullptr) {
    source.env_value = std::string(value);
  }
  source.key_file = std::move(key_file);
  return source;
}

Result<MasterKey> resolve_master_key(const KeySource& source, KeyCreation creation) {
  if (source.env_value) {
    return MasterKey::parse(*source.env_value, "HEALER_MASTER_KEY");
  }
  auto loaded = MasterKey::load_file(source.key_file);
  if (loaded || loaded.error().code != make_error_code(Errc::master_key_missing)) {
    return loaded;
  }
  if (creation == KeyCreation::forbidden) {
    return make_error(Errc::master_key_missing,
                      "HEALER_MASTER_KEY is not set and the key file " + source.key_file.string() +
                          " does not exist; this database needs the key it was created with "
                          "(restore the key file or set HEALER_MASTER_KEY)");
  }
  auto created = MasterKey::create_file(source.key_file);
  std::error_code ignored;
  if (!created && std::filesystem::exists(source.key_file, ignored)) {
    // Another process created it first: use theirs.
    return MasterKey::load_file(source.key_file);
  }
  return created;
}

}  // namespace healer::store
