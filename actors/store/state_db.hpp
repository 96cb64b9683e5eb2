#pragma once
// Durable records in SQLite (state.db, images.db): one row per cell, executable, image,
// rootfs..., written before the kernel object exists and marked done after, so a
// restart can re-adopt what lives and clean up what a crash half made.
//
// Versions: each kind's blobs have a schema version (records.version; table
// schema_versions says what every kind was last loaded as). An actor declares the version
// it writes and the migrations from older ones; load_all migrates old rows in place and
// moves a row it cannot read (a blob that does not decode, a version with no migration,
// one written by a newer cytod) to the quarantine table, kept for an operator and listed
// by `cyto health`, instead of erasing it.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>

struct sqlite3;

namespace cyto::store {

/// One stored record: `kind` ("cell", "exe"), `key`, a state word and an opaque blob.
struct record {
  std::string kind;
  std::string key;
  std::string state;
  std::vector<char> data;
  /// The schema version of `data`: 0 for rows written before versions existed (their
  /// blobs have the layout of version 1). put() writes the kind's declared version.
  uint32_t version = 0;
};

/// A row load_all could not read, moved aside.
struct quarantined_record {
  std::string kind;
  std::string key;
  std::string state;
  uint32_t version = 0;
  std::string reason;
  int64_t unix_nanos = 0;
};

/// Turns a blob of schema version v into one of version v + 1.
using migration = std::function<caf::expected<std::vector<char>>(const std::vector<char>&)>;

/// Serializes an inspectable value into a record's blob.
template <class T>
std::vector<char> to_blob(T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  if (auto err = sink(x))
    throw std::logic_error("serialize: " + caf::to_string(err)); // our own types: a bug
  return buf;
}

/// Reads a blob written by to_blob; false if it does not parse as a T or has bytes
/// left over (a blob of another layout).
template <class T>
bool from_blob(const std::vector<char>& buf, T& x) {
  caf::binary_deserializer source{nullptr, buf};
  return !source(x) && source.remaining() == 0;
}

class state_db {
public:
  /// The layout of the file's tables (PRAGMA user_version): 0 had records without a
  /// version column, 1 adds it and the schema_versions and quarantine tables.
  static constexpr uint32_t layout_version = 1;

  /// Opens (creating) the database file; WAL mode, one writer. An older layout is
  /// upgraded in place; a newer one (a newer cytod's) is refused with failed_precondition.
  static caf::expected<std::unique_ptr<state_db>> open(const std::string& path);
  ~state_db();

  state_db(const state_db&) = delete;
  state_db& operator=(const state_db&) = delete;

  /// Says that this connection writes `kind` at schema `version` (> 0; undeclared kinds
  /// are version 1) and how to migrate older blobs: `steps[v]` turns version v into v + 1.
  void declare(const std::string& kind, uint32_t version, std::map<uint32_t, migration> steps = {});
  uint32_t version_of(const std::string& kind) const;

  /// Inserts or replaces a record, at its kind's declared version.
  caf::error put(const record& r);
  /// Changes only the state word (and the blob, if given).
  caf::error set_state(const std::string& kind, const std::string& key, const std::string& state,
                       const std::vector<char>* data = nullptr);
  caf::error erase(const std::string& kind, const std::string& key);
  /// Every record of a kind, ordered by key, as stored (not migrated).
  caf::expected<std::vector<record>> all(const std::string& kind);

  /// Brings `r` to its kind's declared version (rewriting the row if it changed). On
  /// failure the row is moved to quarantine and the reason returned.
  std::optional<std::string> upgrade(record& r);

  /// Every record of a kind, migrated to the declared version and decoded (from_blob) as
  /// T. A row that cannot be is moved to quarantine (kept, not erased) and its key added
  /// to `quarantined`. Records the kind's version in schema_versions.
  template <class T>
  caf::expected<std::vector<std::pair<record, T>>> load_all(const std::string& kind,
                                                           std::vector<std::string>& quarantined) {
    auto rows = all(kind);
    if (!rows)
      return rows.error();
    std::vector<std::pair<record, T>> out;
    for (auto& r : *rows) {
      if (upgrade(r)) {
        quarantined.push_back(r.key);
        continue;
      }
      T x;
      if (!from_blob(r.data, x)) {
        quarantine(r, "does not decode as schema v" + std::to_string(version_of(kind)));
        quarantined.push_back(r.key);
        continue;
      }
      out.emplace_back(std::move(r), std::move(x));
    }
    note_version(kind);
    return out;
  }

  /// Moves a row to the quarantine table (one transaction).
  caf::error quarantine(const record& r, const std::string& reason);
  /// Every quarantined row, oldest first.
  caf::expected<std::vector<quarantined_record>> quarantined();
  /// schema_versions: kind -> the version its rows were last loaded as.
  caf::expected<std::map<std::string, uint32_t>> kind_versions();

private:
  state_db(sqlite3* db, std::string name) : db_(db), name_(std::move(name)) {
  }
  caf::error exec(const char* sql);
  caf::error upgrade_layout();
  void note_version(const std::string& kind);
  struct kind_schema {
    uint32_t version = 1;
    std::map<uint32_t, migration> steps;
  };
  std::map<std::string, kind_schema> kinds_;
  sqlite3* db_;
  /// The file name, for error texts.
  std::string name_;
};

} // namespace cyto::store
