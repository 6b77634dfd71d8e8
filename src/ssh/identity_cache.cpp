#include "identity_cache.hpp"

#include <sodium.h>
#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace healer::ssh::detail {
namespace {

using Digest = std::array<unsigned char, crypto_generichash_BYTES>;

// BLAKE2b of the parts, each prefixed by its length so ("ab", "c") and ("a", "bc") differ.
Digest digest_of(std::initializer_list<const std::string*> parts) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, crypto_generichash_BYTES);
  for (const std::string* part : parts) {
    const std::uint64_t length = part->size();
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(&length),
                              sizeof(length));
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(part->data()),
                              part->size());
  }
  Digest digest{};
  crypto_generichash_final(&state, digest.data(), digest.size());
  return digest;
}

struct KeyFree {
  void operator()(ssh_key key) const noexcept { ssh_key_free(key); }
};

}  // namespace

struct IdentityCache::Impl {
  std::mutex mutex;
  std::map<Digest, SharedPrivateKey> keys;
  IdentityCacheStats stats;

  SharedPrivateKey find_or_load(const Digest& digest, const std::function<ssh_key()>& load) {
    std::lock_guard lock(mutex);
    if (auto it = keys.find(digest); it != keys.end()) {
      ++stats.reused;
      return it->second;
    }
    ssh_key raw = load();
    if (raw == nullptr) {
      return nullptr;
    }
    ++stats.parsed;
    SharedPrivateKey key(raw, KeyFree{});
    keys.emplace(digest, key);
    return key;
  }
};

IdentityCache& IdentityCache::instance() {
  static IdentityCache cache;
  return cache;
}

IdentityCache::IdentityCache() : impl_(std::make_unique<Impl>()) {}
IdentityCache::~IdentityCache() = default;

SharedPrivateKey IdentityCache::from_file(const std::string& path, const std::string& passphrase,
                                          const std::function<ssh_key()>& load) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return nullptr;  // no such file: nothing to parse; the caller says why
  }
  const std::string version =
      std::to_string(info.st_dev) + ":" + std::to_string(info.st_ino) + ":" +
      std::to_string(info.st_size) + ":" + std::to_string(info.st_mtim.tv_sec) + "." +
      std::to_string(info.st_mtim.tv_nsec) + ":" + std::to_string(info.st_ctim.tv_sec) + "." +
      std::to_string(info.st_ctim.tv_nsec);
  const std::string kind = "file";
  return impl_->find_or_load(digest_of({&kind, &path, &version, &passphrase}), load);
}

SharedPrivateKey IdentityCache::from_text(const std::string& text, const std::string& passphrase,
                                          const std::function<ssh_key()>& load) {
  const std::string kind = "text";
  return impl_->find_or_load(digest_of({&kind, &text, &passphrase}), load);
}

IdentityCacheStats IdentityCache::stats() {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

}  // namespace healer::ssh::detail
