#pragma once
// Durable records in SQLite (state.db, images.db): one row per cell, executable, image,
// rootfs..., written before the kernel object exists and marked done after, so a
// restart can re-adopt what lives and clean up what a crash half made.

#include <cstdint>
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
};

/// Serializes an inspectable value into a record's blob.
template <class T>
std::vector<char> to_blob(T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{nullptr, buf};
  if (auto err = sink(x))
    throw std::logic_error("serialize: " + caf::to_string(err)); // our own types: a bug
  return buf;
}

/// Reads a blob written by to_blob; false if it does not parse as a T.
template <class T>
bool from_blob(const std::vector<char>& buf, T& x) {
  caf::binary_deserializer source{nullptr, buf};
  return !source(x);
}

class state_db {
public:
  /// Opens (creating) the database file; WAL mode, one writer.
  static caf::expected<std::unique_ptr<state_db>> open(const std::string& path);
  ~state_db();

  state_db(const state_db&) = delete;
  state_db& operator=(const state_db&) = delete;

  /// Inserts or replaces a record.
  caf::error put(const record& r);
  /// Changes only the state word (and the blob, if given).
  caf::error set_state(const std::string& kind, const std::string& key, const std::string& state,
                       const std::vector<char>* data = nullptr);
  caf::error erase(const std::string& kind, const std::string& key);
  /// Every record of a kind, ordered by key.
  caf::expected<std::vector<record>> all(const std::string& kind);

  /// Every record of a kind decoded (from_blob) as T. Records that do not decode are
  /// erased, their keys added to `dropped`.
  template <class T>
  caf::expected<std::vector<std::pair<record, T>>> load_all(const std::string& kind,
                                                           std::vector<std::string>& dropped) {
    auto rows = all(kind);
    if (!rows)
      return rows.error();
    std::vector<std::pair<record, T>> out;
    for (auto& r : *rows) {
      T x;
      if (!from_blob(r.data, x)) {
        dropped.push_back(r.key);
        erase(kind, r.key);
        continue;
      }
      out.emplace_back(std::move(r), std::move(x));
    }
    return out;
  }

private:
  state_db(sqlite3* db, std::string name) : db_(db), name_(std::move(name)) {
  }
  caf::error exec(const char* sql);
  sqlite3* db_;
  /// The file name, for error texts.
  std::string name_;
};

} // namespace cyto::store
