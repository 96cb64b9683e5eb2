#pragma once
// The cells actor's durable records in SQLite (state.db): one row per cell and per
// executable, written before the kernel object exists and marked done after, so a
// restart can re-adopt what lives and clean up what a crash half made.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

struct sqlite3;

namespace cyto::cells {

/// One stored record: `kind` ("cell", "exe"), `key`, a state word and an opaque blob.
struct record {
  std::string kind;
  std::string key;
  std::string state;
  std::vector<char> data;
};

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

private:
  explicit state_db(sqlite3* db) : db_(db) {
  }
  caf::error exec(const char* sql);
  sqlite3* db_;
};

} // namespace cyto::cells
