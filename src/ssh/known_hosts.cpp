#include "known_hosts.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace healer::ssh::detail {
namespace {

// How old a look at a file may be when only the host key algorithms' order depends on it: a
// fleet sweep starts many connects per second, and the check after the key exchange, which
// decides, always looks again (a file changed in between at worst orders the offer by its old
// lines, and then the check reports the key of the other type).
constexpr std::chrono::steady_clock::duration kOrderingMaxAge = std::chrono::seconds(1);

// libssh 0.10's default host key algorithms without the certificate types (which its
// ssh_client_select_hostkeys removes): kex.c, DEFAULT_HOSTKEYS.
constexpr std::array<std::string_view, 8> kDefaultHostKeyAlgorithms = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp256",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
};

// The signature algorithms a recorded key can make (libssh's
// ssh_known_host_sigs_from_hostkey_type).
std::vector<std::string_view> signature_algorithms(ssh_keytypes_e type) {
  switch (type) {
    case SSH_KEYTYPE_RSA:
      return {"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"};
    case SSH_KEYTYPE_ED25519:
      return {"ssh-ed25519"};
    case SSH_KEYTYPE_ECDSA_P256:
      return {"ecdsa-sha2-nistp256"};
    case SSH_KEYTYPE_ECDSA_P384:
      return {"ecdsa-sha2-nistp384"};
    case SSH_KEYTYPE_ECDSA_P521:
      return {"ecdsa-sha2-nistp521"};
    default:
      return {};
  }
}

struct KeyFree {
  void operator()(ssh_key key) const noexcept { ssh_key_free(key); }
};
using SharedKey = std::shared_ptr<std::remove_pointer_t<ssh_key>>;

struct Signature {
  bool exists = false;
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;

  bool operator==(const Signature&) const = default;
};

Signature signature_of(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return {};
  }
  return {true,
          info.st_dev,
          info.st_ino,
          info.st_size,
          info.st_mtim.tv_sec * 1'000'000'000LL + info.st_mtim.tv_nsec,
          info.st_ctim.tv_sec * 1'000'000'000LL + info.st_ctim.tv_nsec};
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct FileIndex {
  Signature signature;
  bool loaded = false;
  std::chrono::steady_clock::time_point checked_at{};  // when `signature` was last compared
  std::vector<std::string> lines;                      // the lines that can name a host, as read
  std::unordered_map<std::string, std::vector<std::uint32_t>> by_name;
  std::vector<std::uint32_t> unindexed;  // hashed names and wildcard patterns
  std::unordered_map<std::string, std::vector<SharedKey>> found;  // host -> its recorded keys
};

}  // namespace

struct KnownHostsIndex::Impl {
  std::mutex mutex;
  std::unordered_map<std::string, FileIndex> files;
  KnownHostsStats stats;

  // Reads `path` again if it changed since the last read. `max_age`: how old the last look at
  // the file may be before it is looked at again (zero: now).
  FileIndex& file(const std::string& path, std::chrono::steady_clock::duration max_age) {
    FileIndex& index = files[path];
    const auto checked = std::chrono::steady_clock::now();
    if (index.loaded && max_age.count() > 0 && checked - index.checked_at < max_age) {
      return index;
    }
    ++stats.file_checks;
    const Signature now = signature_of(path);
    if (index.loaded && index.signature == now) {
      index.checked_at = checked;
      return index;
    }
    index = FileIndex{};
    index.signature = now;
    index.loaded = true;
    index.checked_at = checked;
    if (!now.exists) {
      return index;
    }
    ++stats.file_reads;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      // As libssh's reader: leading white space, comments, empty lines and marker lines
      // (@cert-authority, @revoked, which libssh does not support) name no host.
      std::size_t start = 0;
      while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start])) != 0) {
        ++start;
      }
      if (start == line.size() || line[start] == '#' || line[start] == '@') {
        continue;
      }
      const std::size_t end = line.find(' ', start);
      const std::string_view names =
          std::string_view(line).substr(start, end == std::string::npos ? end : end - start);
      const auto number = static_cast<std::uint32_t>(index.lines.size());
      bool indexable = names.front() != '|';
      std::vector<std::string> keys;
      for (std::size_t at = 0; indexable && at <= names.size();) {
        const std::size_t comma = std::min(names.find(',', at), names.size());
        const std::string_view name = names.substr(at, comma - at);
        if (name.find_first_of("*?!") != std::string_view::npos) {
          indexable = false;
        } else if (!name.empty()) {
          keys.push_back(lowercase(name));
        }
        at = comma + 1;
      }
      if (indexable) {
        for (auto& key : keys) {
          index.by_name[std::move(key)].push_back(number);
        }
      } else {
        index.unindexed.push_back(number);
      }
      index.lines.push_back(std::move(line));
    }
    return index;
  }

  // The keys `path` records for `host`, parsed by libssh from the lines that can name it.
  const std::vector<SharedKey>& keys(const std::string& path, const std::string& host,
                                     std::chrono::steady_clock::duration max_age = {}) {
    FileIndex& index = file(path, max_age);
    ++stats.lookups;
    if (auto known = index.found.find(host); known != index.found.end()) {
      return known->second;
    }
    std::vector<std::uint32_t> candidates = index.unindexed;
    auto add = [&](const std::string& name) {
      if (auto it = index.by_name.find(name); it != index.by_name.end()) {
        candidates.insert(candidates.end(), it->second.begin(), it->second.end());
      }
    };
    add(host);
    if (!host.empty() && host.front() != '[') {
      add("[" + host + "]:22");  // libssh matches a bracketed :22 pattern for the standard port
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
    std::vector<SharedKey> keys;
    for (const std::uint32_t number : candidates) {
      ++stats.lines_parsed;
      ssh_knownhosts_entry* entry = nullptr;
      const int rc = ssh_known_hosts_parse_line(host.c_str(), index.lines[number].c_str(), &entry);
      if (rc == SSH_OK && entry != nullptr && entry->publickey != nullptr) {
        keys.emplace_back(entry->publickey, KeyFree{});
        entry->publickey = nullptr;
      }
      if (entry != nullptr) {
        ssh_knownhosts_entry_free(entry);
      }
    }
    return index.found.emplace(host, std::move(keys)).first->second;
  }

  KnownHostsVerdict check_file(const std::string& path, const std::string& host, ssh_key key) {
    KnownHostsVerdict verdict = KnownHostsVerdict::unknown;
    for (const SharedKey& recorded : keys(path, host)) {
      if (ssh_key_cmp(key, recorded.get(), SSH_KEY_CMP_PUBLIC) == 0) {
        return KnownHostsVerdict::ok;
      }
      if (ssh_key_type(key) == ssh_key_type(recorded.get())) {
        verdict = KnownHostsVerdict::changed;
      } else if (verdict != KnownHostsVerdict::changed) {
        verdict = KnownHostsVerdict::other;
      }
    }
    return verdict;
  }
};

KnownHostsIndex& KnownHostsIndex::instance() {
  static KnownHostsIndex index;
  return index;
}

KnownHostsIndex::KnownHostsIndex() : impl_(std::make_unique<Impl>()) {}
KnownHostsIndex::~KnownHostsIndex() = default;

std::string KnownHostsIndex::host_key_algorithms(const std::string& user_file,
                                                 const std::string& global_file,
                                                 const std::string& host_port) {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string_view> recorded;
  for (const std::string* path : {&user_file, &global_file}) {
    for (const SharedKey& key : impl_->keys(*path, host_port, kOrderingMaxAge)) {
      for (std::string_view algorithm : signature_algorithms(ssh_key_type(key.get()))) {
        recorded.push_back(algorithm);
      }
    }
  }
  std::string out;
  std::vector<std::string_view> listed;
  auto append = [&](std::string_view algorithm) {
    if (std::find(listed.begin(), listed.end(), algorithm) != listed.end()) {
      return;
    }
    listed.push_back(algorithm);
    if (!out.empty()) {
      out += ',';
    }
    out += algorithm;
  };
  for (std::string_view algorithm : kDefaultHostKeyAlgorithms) {
    if (std::find(recorded.begin(), recorded.end(), algorithm) != recorded.end()) {
      append(algorithm);
    }
  }
  if (out.empty()) {
    return out;
  }
  for (std::string_view algorithm : kDefaultHostKeyAlgorithms) {
    append(algorithm);
  }
  return out;
}

KnownHostsVerdict KnownHostsIndex::check(const std::string& user_file,
                                         const std::string& global_file,
                                         const std::string& host_port, ssh_key server_key) {
  std::lock_guard lock(impl_->mutex);
  // ssh_session_get_known_hosts_entry: the user file decides unless the global file lists the
  // host.
  const KnownHostsVerdict user = impl_->check_file(user_file, host_port, server_key);
  if (user == KnownHostsVerdict::ok) {
    return user;
  }
  const KnownHostsVerdict global = impl_->check_file(global_file, host_port, server_key);
  return global == KnownHostsVerdict::unknown ? user : global;
}

void KnownHostsIndex::invalidate(const std::string& file) {
  std::lock_guard lock(impl_->mutex);
  impl_->files.erase(file);
}

KnownHostsStats KnownHostsIndex::stats() {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

std::string known_hosts_name(const std::string& host, unsigned int port) {
  std::string name = lowercase(host);
  if (port == 0 || port == 22) {
    return name;
  }
  return "[" + name + "]:" + std::to_string(port);
}

}  // namespace healer::ssh::detail
