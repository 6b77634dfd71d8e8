#include "host_keys.hpp"

#include <fmt/format.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string_view>

namespace healer::fleet_sim {
namespace {

struct CStringFree {
  void operator()(char* text) const noexcept { ssh_string_free_char(text); }
};
using CStringHandle = std::unique_ptr<char, CStringFree>;

// The OpenSSH private key format (PROTOCOL.key): big-endian lengths and strings.
void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> static_cast<unsigned>(shift)) & 0xffU));
  }
}

void put_string(std::string& out, std::string_view text) {
  put_u32(out, static_cast<std::uint32_t>(text.size()));
  out.append(text);
}

std::string_view bytes(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};  // NOLINT: byte buffers as text
}

std::string base64(std::string_view data) {
  std::string out(sodium_base64_ENCODED_LEN(data.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(data.data()),
                    data.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

// An unencrypted "openssh-key-v1" file for the ed25519 pair (public, secret = seed || public).
std::string openssh_private_key(const std::array<unsigned char, crypto_sign_PUBLICKEYBYTES>& pk,
                                const std::array<unsigned char, crypto_sign_SECRETKEYBYTES>& sk,
                                std::uint32_t check) {
  std::string public_blob;
  put_string(public_blob, "ssh-ed25519");
  put_string(public_blob, bytes(pk.data(), pk.size()));
  std::string private_blob;
  put_u32(private_blob, check);
  put_u32(private_blob, check);
  put_string(private_blob, "ssh-ed25519");
  put_string(private_blob, bytes(pk.data(), pk.size()));
  put_string(private_blob, bytes(sk.data(), sk.size()));
  put_string(private_blob, "healer-fleet-sim");
  for (char pad = 1; private_blob.size() % 8 != 0; ++pad) {
    private_blob.push_back(pad);
  }
  std::string blob("openssh-key-v1", sizeof("openssh-key-v1"));  // with its NUL
  put_string(blob, "none");
  put_string(blob, "none");
  put_string(blob, "");
  put_u32(blob, 1);
  put_string(blob, public_blob);
  put_string(blob, private_blob);
  const std::string encoded = base64(blob);
  std::string pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
  for (std::size_t offset = 0; offset < encoded.size(); offset += 70) {
    pem += encoded.substr(offset, 70);
    pem += '\n';
  }
  pem += "-----END OPENSSH PRIVATE KEY-----\n";
  sodium_memzero(blob.data(), blob.size());
  sodium_memzero(private_blob.data(), private_blob.size());
  return pem;
}

void ensure_sodium() {
  static const bool ready = sodium_init() >= 0;
  if (!ready) {
    throw std::runtime_error("libsodium failed to initialise");
  }
}

}  // namespace

KeyHandle derive_host_key(std::uint64_t seed, std::size_t index) {
  ensure_sodium();
  std::array<unsigned char, 8> key_material{};
  std::array<unsigned char, 8> message{};
  for (std::size_t i = 0; i < 8; ++i) {
    key_material[i] = static_cast<unsigned char>((seed >> (8 * i)) & 0xffU);
    message[i] = static_cast<unsigned char>((static_cast<std::uint64_t>(index) >> (8 * i)) & 0xffU);
  }
  std::array<unsigned char, crypto_sign_SEEDBYTES> secret_seed{};
  crypto_generichash(secret_seed.data(), secret_seed.size(), message.data(), message.size(),
                     key_material.data(), key_material.size());
  std::array<unsigned char, crypto_sign_PUBLICKEYBYTES> pk{};
  std::array<unsigned char, crypto_sign_SECRETKEYBYTES> sk{};
  crypto_sign_seed_keypair(pk.data(), sk.data(), secret_seed.data());
  std::string pem = openssh_private_key(pk, sk, static_cast<std::uint32_t>(index));
  ssh_key raw = nullptr;
  const int rc = ssh_pki_import_privkey_base64(pem.c_str(), nullptr, nullptr, nullptr, &raw);
  sodium_memzero(pem.data(), pem.size());
  sodium_memzero(sk.data(), sk.size());
  KeyHandle key(raw);
  if (rc != SSH_OK || !key) {
    throw std::runtime_error(fmt::format("libssh refused the derived host key of host {}", index));
  }
  return key;
}

std::string public_key_line(ssh_key key) {
  char* raw = nullptr;
  if (ssh_pki_export_pubkey_base64(key, &raw) != SSH_OK || raw == nullptr) {
    throw std::runtime_error("cannot export a public key");
  }
  const CStringHandle text(raw);
  return fmt::format("{} {}", ssh_key_type_to_char(ssh_key_type(key)), text.get());
}

std::vector<KeyHandle> read_authorized_keys(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) {
    throw std::runtime_error("cannot read " + file.string());
  }
  std::vector<KeyHandle> keys;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    const auto type_end = line.find(' ', first);
    const auto blob_end = type_end == std::string::npos ? type_end : line.find(' ', type_end + 1);
    if (type_end == std::string::npos) {
      throw std::runtime_error(fmt::format("{}:{}: not a public key", file.string(), number));
    }
    const std::string type = line.substr(first, type_end - first);
    const std::string blob = line.substr(
        type_end + 1, blob_end == std::string::npos ? std::string::npos : blob_end - type_end - 1);
    ssh_key raw = nullptr;
    const auto key_type = ssh_key_type_from_name(type.c_str());
    if (key_type == SSH_KEYTYPE_UNKNOWN ||
        ssh_pki_import_pubkey_base64(blob.c_str(), key_type, &raw) != SSH_OK) {
      throw std::runtime_error(
          fmt::format("{}:{}: not a public key of a known type", file.string(), number));
    }
    keys.emplace_back(raw);
  }
  return keys;
}

void write_file_atomically(const std::filesystem::path& file, const std::string& text) {
  const auto temporary = file.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      throw std::runtime_error("cannot write " + temporary);
    }
  }
  std::filesystem::rename(temporary, file);
}

}  // namespace healer::fleet_sim
