#include "actors/store/state_db.hpp"

#include <chrono>
#include <memory>
#include <thread>

#include <sqlite3.h>

#include "bus/errc.hpp"

namespace cyto::store {

namespace {

caf::error db_error(sqlite3* db, const std::string& name, const std::string& what) {
  return make_error(errc::internal, name + ": " + what + ": " + sqlite3_errmsg(db));
}

/// A prepared statement that finalizes itself.
struct stmt {
  sqlite3_stmt* s = nullptr;
  ~stmt() {
    sqlite3_finalize(s);
  }
};

} // namespace

caf::expected<std::unique_ptr<state_db>> state_db::open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr)
      != SQLITE_OK) {
    auto err = make_error(errc::unavailable,
                          "open " + path + ": " + (db ? sqlite3_errmsg(db) : "out of memory"));
    sqlite3_close(db);
    return err;
  }
  std::unique_ptr<state_db> out{new state_db(db, path.substr(path.rfind('/') + 1))};
  // Several actors open state.db at start, each with a connection of its own. Switching
  // to WAL needs the file to itself and SQLite does not wait for that (no busy handler):
  // retry while another connection holds it.
  caf::error err;
  for (int attempt = 0; attempt < 250; ++attempt) {
    err = out->exec("PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                    "CREATE TABLE IF NOT EXISTS records ("
                    " kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,"
                    " data BLOB, PRIMARY KEY (kind, key));");
    auto code = sqlite3_errcode(db);
    if (!err || (code != SQLITE_BUSY && code != SQLITE_LOCKED))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (err)
    return err;
  return out;
}

state_db::~state_db() {
  sqlite3_close(db_);
}

caf::error state_db::exec(const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string text = msg ? msg : "unknown";
    sqlite3_free(msg);
    return make_error(errc::internal, name_ + ": " + text);
  }
  return {};
}

caf::error state_db::put(const record& r) {
  stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", -1, &st.s,
                         nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare insert");
  sqlite3_bind_text(st.s, 1, r.kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, r.key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 3, r.state.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st.s, 4, r.data.data(), static_cast<int>(r.data.size()), SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE)
    return db_error(db_, name_, "insert " + r.kind + " " + r.key);
  return {};
}

caf::error state_db::set_state(const std::string& kind, const std::string& key,
                               const std::string& state, const std::vector<char>* data) {
  stmt st;
  const char* sql = data ? "UPDATE records SET state = ?, data = ? WHERE kind = ? AND key = ?"
                         : "UPDATE records SET state = ? WHERE kind = ? AND key = ?";
  if (sqlite3_prepare_v2(db_, sql, -1, &st.s, nullptr) != SQLITE_OK)
    return db_error(db_, name_, "prepare update");
  int i = 1;
  sqlite3_bind_text(st.s, i++, state.c_str(), -1, SQLITE_TRANSIENT);
  if (data)
    sqlite3_bind_blob(st.s, i++, data->data(), static_cast<int>(data->size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, i++, kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, i++, key.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE)
    return db_error(db_, name_, "update " + kind + " " + key);
  return {};
}

caf::error state_db::erase(const std::string& kind, const std::string& key) {
  stmt st;
  if (sqlite3_prepare_v2(db_, "DELETE FROM records WHERE kind = ? AND key = ?", -1, &st.s, nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare delete");
  sqlite3_bind_text(st.s, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, key.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE)
    return db_error(db_, name_, "delete " + kind + " " + key);
  return {};
}

caf::expected<std::vector<record>> state_db::all(const std::string& kind) {
  stmt st;
  if (sqlite3_prepare_v2(db_, "SELECT key, state, data FROM records WHERE kind = ? ORDER BY key",
                         -1, &st.s, nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare select");
  sqlite3_bind_text(st.s, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<record> out;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    record r;
    r.kind = kind;
    r.key = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
    r.state = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 1));
    auto* blob = static_cast<const char*>(sqlite3_column_blob(st.s, 2));
    r.data.assign(blob, blob + sqlite3_column_bytes(st.s, 2));
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE)
    return db_error(db_, name_, "select " + kind);
  return out;
}

} // namespace cyto::store
