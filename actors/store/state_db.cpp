#include "actors/store/state_db.hpp"

#include <chrono>
#include <memory>
#include <string_view>
#include <thread>

#include <sqlite3.h>

#include "bus/errc.hpp"

namespace cyto::store {

namespace {

caf::error db_error(sqlite3* db, const std::string& name, const std::string& what) {
  // A full disk is the caller's resource, not our fault.
  auto code = sqlite3_errcode(db) == SQLITE_FULL ? errc::resource_exhausted : errc::internal;
  return make_error(code, name + ": " + what + ": " + sqlite3_errmsg(db));
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
  if (auto e = out->upgrade_layout())
    return e;
  return out;
}

caf::error state_db::upgrade_layout() {
  // One connection upgrades; the others wait on the write lock and then see it done.
  if (auto err = exec("BEGIN IMMEDIATE"))
    return err;
  auto fail = [this](caf::error err) {
    exec("ROLLBACK");
    return err;
  };
  uint32_t have = 0;
  {
    stmt st;
    if (sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &st.s, nullptr) != SQLITE_OK
        || sqlite3_step(st.s) != SQLITE_ROW)
      return fail(db_error(db_, name_, "read user_version"));
    have = static_cast<uint32_t>(sqlite3_column_int64(st.s, 0));
  }
  if (have > layout_version)
    return fail(make_error(errc::failed_precondition,
                           name_ + " has table layout v" + std::to_string(have)
                             + ", newer than this cytod's v" + std::to_string(layout_version)
                             + ": run the cytod that wrote it"));
  if (have == layout_version)
    return exec("COMMIT");
  bool has_version = false;
  {
    stmt st;
    if (sqlite3_prepare_v2(db_, "PRAGMA table_info(records)", -1, &st.s, nullptr) != SQLITE_OK)
      return fail(db_error(db_, name_, "read the records table's columns"));
    while (sqlite3_step(st.s) == SQLITE_ROW)
      if (std::string_view{reinterpret_cast<const char*>(sqlite3_column_text(st.s, 1))}
          == "version")
        has_version = true;
  }
  if (!has_version)
    if (auto err = exec("ALTER TABLE records ADD COLUMN version INTEGER NOT NULL DEFAULT 0"))
      return fail(std::move(err));
  if (auto err = exec("CREATE TABLE IF NOT EXISTS schema_versions ("
                      " kind TEXT PRIMARY KEY, version INTEGER NOT NULL);"
                      "CREATE TABLE IF NOT EXISTS quarantine ("
                      " kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,"
                      " version INTEGER NOT NULL, data BLOB, reason TEXT NOT NULL,"
                      " unix_nanos INTEGER NOT NULL);"
                      "PRAGMA user_version = 1;"))
    return fail(std::move(err));
  return exec("COMMIT");
}

void state_db::declare(const std::string& kind, uint32_t version,
                       std::map<uint32_t, migration> steps) {
  kinds_[kind] = kind_schema{std::max<uint32_t>(version, 1), std::move(steps)};
}

uint32_t state_db::version_of(const std::string& kind) const {
  auto i = kinds_.find(kind);
  return i == kinds_.end() ? 1 : i->second.version;
}

std::optional<std::string> state_db::upgrade(record& r) {
  auto want = version_of(r.kind);
  auto give_up = [&](std::string reason) -> std::optional<std::string> {
    if (auto err = quarantine(r, reason))
      reason += " (and moving it to quarantine failed: " + render(err) + ")";
    return reason;
  };
  if (r.version > want)
    return give_up("written at schema v" + std::to_string(r.version)
                   + " by a newer cytod; this one knows v" + std::to_string(want));
  // Version 0 rows predate versions; their blobs are version 1's.
  uint32_t v = std::max<uint32_t>(r.version, 1);
  if (v == want) {
    r.version = want;
    return std::nullopt;
  }
  auto blob = r.data;
  auto k = kinds_.find(r.kind);
  for (; v < want; ++v) {
    const migration* step = nullptr;
    if (k != kinds_.end())
      if (auto s = k->second.steps.find(v); s != k->second.steps.end())
        step = &s->second;
    if (!step)
      return give_up("no migration from schema v" + std::to_string(v));
    auto next = (*step)(blob);
    if (!next)
      return give_up("migrate v" + std::to_string(v) + " -> v" + std::to_string(v + 1) + ": "
                     + render(next.error()));
    blob = std::move(*next);
  }
  stmt st;
  if (sqlite3_prepare_v2(db_, "UPDATE records SET data = ?, version = ? WHERE kind = ? AND key = ?",
                         -1, &st.s, nullptr)
      != SQLITE_OK)
    return give_up("rewrite: " + std::string{sqlite3_errmsg(db_)});
  sqlite3_bind_blob(st.s, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 2, want);
  sqlite3_bind_text(st.s, 3, r.kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 4, r.key.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE)
    return give_up("rewrite: " + std::string{sqlite3_errmsg(db_)});
  r.data = std::move(blob);
  r.version = want;
  return std::nullopt;
}

void state_db::note_version(const std::string& kind) {
  stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO schema_versions VALUES (?, ?)", -1, &st.s,
                         nullptr)
      != SQLITE_OK)
    return;
  sqlite3_bind_text(st.s, 1, kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 2, version_of(kind));
  sqlite3_step(st.s);
}

caf::error state_db::quarantine(const record& r, const std::string& reason) {
  if (auto err = exec("BEGIN IMMEDIATE"))
    return err;
  stmt st;
  if (sqlite3_prepare_v2(db_, "INSERT INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &st.s,
                         nullptr)
      != SQLITE_OK) {
    auto err = db_error(db_, name_, "prepare quarantine");
    exec("ROLLBACK");
    return err;
  }
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  sqlite3_bind_text(st.s, 1, r.kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, r.key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 3, r.state.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 4, r.version);
  sqlite3_bind_blob(st.s, 5, r.data.data(), static_cast<int>(r.data.size()), SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 6, reason.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 7, now);
  if (sqlite3_step(st.s) != SQLITE_DONE) {
    auto err = db_error(db_, name_, "quarantine " + r.kind + " " + r.key);
    exec("ROLLBACK");
    return err;
  }
  if (auto err = erase(r.kind, r.key)) {
    exec("ROLLBACK");
    return err;
  }
  return exec("COMMIT");
}

caf::expected<std::vector<quarantined_record>> state_db::quarantined() {
  stmt st;
  if (sqlite3_prepare_v2(db_,
                         "SELECT kind, key, state, version, reason, unix_nanos FROM quarantine"
                         " ORDER BY unix_nanos",
                         -1, &st.s, nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare select quarantine");
  std::vector<quarantined_record> out;
  int rc;
  auto text = [&](int i) { return std::string{reinterpret_cast<const char*>(sqlite3_column_text(st.s, i))}; };
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW)
    out.push_back({text(0), text(1), text(2), static_cast<uint32_t>(sqlite3_column_int64(st.s, 3)),
                   text(4), sqlite3_column_int64(st.s, 5)});
  if (rc != SQLITE_DONE)
    return db_error(db_, name_, "select quarantine");
  return out;
}

caf::expected<std::map<std::string, uint32_t>> state_db::kind_versions() {
  stmt st;
  if (sqlite3_prepare_v2(db_, "SELECT kind, version FROM schema_versions", -1, &st.s, nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare select schema_versions");
  std::map<std::string, uint32_t> out;
  while (sqlite3_step(st.s) == SQLITE_ROW)
    out[reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0))] =
      static_cast<uint32_t>(sqlite3_column_int64(st.s, 1));
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
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO records (kind, key, state, data, version)"
                         " VALUES (?, ?, ?, ?, ?)",
                         -1, &st.s, nullptr)
      != SQLITE_OK)
    return db_error(db_, name_, "prepare insert");
  sqlite3_bind_text(st.s, 1, r.kind.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 2, r.key.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 3, r.state.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st.s, 4, r.data.data(), static_cast<int>(r.data.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 5, version_of(r.kind));
  if (sqlite3_step(st.s) != SQLITE_DONE)
    return db_error(db_, name_, "insert " + r.kind + " " + r.key);
  return {};
}

caf::error state_db::set_state(const std::string& kind, const std::string& key,
                               const std::string& state, const std::vector<char>* data) {
  stmt st;
  const char* sql = data ? "UPDATE records SET state = ?, data = ?, version = ?"
                           " WHERE kind = ? AND key = ?"
                         : "UPDATE records SET state = ? WHERE kind = ? AND key = ?";
  if (sqlite3_prepare_v2(db_, sql, -1, &st.s, nullptr) != SQLITE_OK)
    return db_error(db_, name_, "prepare update");
  int i = 1;
  sqlite3_bind_text(st.s, i++, state.c_str(), -1, SQLITE_TRANSIENT);
  if (data) {
    sqlite3_bind_blob(st.s, i++, data->data(), static_cast<int>(data->size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st.s, i++, version_of(kind));
  }
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
  if (sqlite3_prepare_v2(db_, "SELECT key, state, data, version FROM records WHERE kind = ? ORDER BY key",
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
    r.version = static_cast<uint32_t>(sqlite3_column_int64(st.s, 3));
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE)
    return db_error(db_, name_, "select " + kind);
  return out;
}

} // namespace cyto::store
