#include "healer/store/errors.hpp"

#include <string>

namespace healer::store {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "store"; }
  std::string message(int value) const override {
    switch (static_cast<Errc>(value)) {
      case Errc::not_found:
        return "not found";
      case Errc::duplicate_name:
        return "name already in use";
      case Errc::invalid_record:
        return "invalid record";
      case Errc::wrong_master_key:
        return "the master key does not match the one this database was created with";
      case Errc::master_key_missing:
        return "master key missing";
      case Errc::master_key_invalid:
        return "invalid master key";
      case Errc::master_key_insecure:
        return "master key file is accessible by other users";
      case Errc::secret_corrupt:
        return "stored secret failed to decrypt";
      case Errc::schema_too_new:
        return "database schema is newer than this healer";
      case Errc::migration_failed:
        return "database migration failed";
      case Errc::busy:
        return "database is locked";
      case Errc::io:
        return "database I/O error";
      case Errc::corrupt:
        return "database is damaged or not a healer database";
      case Errc::sqlite:
        return "database error";
      case Errc::closed:
        return "store is closed";
      case Errc::read_only:
        return "database is read-only";
      case Errc::schema_too_old:
        return "database schema is older than this healer and needs migrating";
      case Errc::invalid_url:
        return "invalid database URL";
      case Errc::unavailable:
        return "database server unavailable";
    }
    return "unknown store error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::not_found:
      return "not_found";
    case Errc::duplicate_name:
      return "duplicate_name";
    case Errc::invalid_record:
      return "invalid_record";
    case Errc::wrong_master_key:
      return "wrong_master_key";
    case Errc::master_key_missing:
      return "master_key_missing";
    case Errc::master_key_invalid:
      return "master_key_invalid";
    case Errc::master_key_insecure:
      return "master_key_insecure";
    case Errc::secret_corrupt:
      return "secret_corrupt";
    case Errc::schema_too_new:
      return "schema_too_new";
    case Errc::migration_failed:
      return "migration_failed";
    case Errc::busy:
      return "busy";
    case Errc::io:
      return "io";
    case Errc::corrupt:
      return "corrupt";
    case Errc::sqlite:
      return "sqlite";
    case Errc::closed:
      return "closed";
    case Errc::read_only:
      return "read_only";
    case Errc::schema_too_old:
      return "schema_too_old";
    case Errc::invalid_url:
      return "invalid_url";
    case Errc::unavailable:
      return "unavailable";
  }
  return "unknown";
}

}  // namespace healer::store
