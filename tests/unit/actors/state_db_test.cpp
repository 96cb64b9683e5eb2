// state.db schema versions: a file of the layout before versions is upgraded in place,
// old blobs are migrated once, and rows that cannot be read are quarantined, not erased.

#define BOOST_TEST_MODULE state_db
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <unistd.h>

#include <sqlite3.h>

#include "actors/store/state_db.hpp"
#include "bus/errc.hpp"

namespace fs = std::filesystem;
using namespace cyto;
using store::state_db;

namespace {

struct tmp_dir {
  fs::path path = fs::temp_directory_path() / ("cyto-state-db-" + std::to_string(::getpid()));
  tmp_dir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~tmp_dir() {
    fs::remove_all(path);
  }
  std::string db() const {
    return (path / "state.db").string();
  }
};

/// Runs SQL on the file directly, as another program (or an older cytod) would.
void sql(const std::string& file, const std::string& text) {
  sqlite3* db = nullptr;
  BOOST_REQUIRE_EQUAL(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  char* msg = nullptr;
  int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &msg);
  std::string err = msg ? msg : "";
  sqlite3_free(msg);
  sqlite3_close(db);
  BOOST_REQUIRE_MESSAGE(rc == SQLITE_OK, text << ": " << err);
}

struct v1 {
  std::string name;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, v1& x) {
  return f(x.name);
}

struct v2 {
  std::string name;
  uint32_t size = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, v2& x) {
  return f(x.name, x.size);
}

caf::expected<std::vector<char>> v1_to_v2(const std::vector<char>& blob) {
  v1 old;
  if (!store::from_blob(blob, old))
    return make_error(errc::internal, "not a v1 row");
  v2 now{old.name, 7};
  return store::to_blob(now);
}

} // namespace

BOOST_AUTO_TEST_CASE(a_file_from_before_versions_is_upgraded_and_its_rows_migrated) {
  tmp_dir t;
  // The layout of the previous cytod: no version column, user_version 0.
  sql(t.db(), "CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL,"
              " data BLOB, PRIMARY KEY (kind, key));");
  {
    v1 a{"alpha"};
    auto blob = store::to_blob(a);
    std::string hex;
    for (unsigned char c : blob) {
      char b[3];
      std::snprintf(b, sizeof b, "%02x", c);
      hex += b;
    }
    sql(t.db(), "INSERT INTO records VALUES ('thing', 'a', 'ready', x'" + hex + "');"
                "INSERT INTO records VALUES ('thing', 'b', 'ready', x'ffff');");
  }
  auto db = state_db::open(t.db());
  BOOST_REQUIRE(db);
  (*db)->declare("thing", 2, {{1, v1_to_v2}});
  std::vector<std::string> quarantined;
  auto rows = (*db)->load_all<v2>("thing", quarantined);
  BOOST_REQUIRE(rows);
  BOOST_REQUIRE_EQUAL(rows->size(), 1u);
  BOOST_TEST(rows->front().second.name == "alpha");
  BOOST_TEST(rows->front().second.size == 7u);
  BOOST_TEST(rows->front().first.version == 2u);
  BOOST_REQUIRE_EQUAL(quarantined.size(), 1u);
  BOOST_TEST(quarantined.front() == "b");

  // Migrated once: the row is stored at v2 now, and b is kept in quarantine, not lost.
  auto raw = (*db)->all("thing");
  BOOST_REQUIRE(raw);
  BOOST_REQUIRE_EQUAL(raw->size(), 1u);
  BOOST_TEST(raw->front().version == 2u);
  auto q = (*db)->quarantined();
  BOOST_REQUIRE(q);
  BOOST_REQUIRE_EQUAL(q->size(), 1u);
  BOOST_TEST(q->front().kind == "thing");
  BOOST_TEST(q->front().key == "b");
  BOOST_TEST(q->front().version == 0u);
  BOOST_TEST(q->front().reason.find("v1") != std::string::npos, q->front().reason);
  auto versions = (*db)->kind_versions();
  BOOST_REQUIRE(versions);
  BOOST_TEST(versions->at("thing") == 2u);

  // A new record is written at the declared version.
  v2 c{"gamma", 3};
  BOOST_REQUIRE(!(*db)->put({"thing", "c", "ready", store::to_blob(c)}));
  raw = (*db)->all("thing");
  BOOST_REQUIRE_EQUAL(raw->size(), 2u);
  BOOST_TEST(raw->back().version == 2u);
}

BOOST_AUTO_TEST_CASE(rows_of_a_newer_cytod_or_without_a_migration_are_quarantined) {
  tmp_dir t;
  {
    auto db = state_db::open(t.db());
    BOOST_REQUIRE(db);
    (*db)->declare("thing", 3);
    v2 a{"a", 1};
    BOOST_REQUIRE(!(*db)->put({"thing", "new", "ready", store::to_blob(a)}));
    (*db)->declare("thing", 1);
    v1 b{"b"};
    BOOST_REQUIRE(!(*db)->put({"thing", "old", "ready", store::to_blob(b)}));
  }
  auto db = state_db::open(t.db());
  BOOST_REQUIRE(db);
  (*db)->declare("thing", 2); // no step from v1
  std::vector<std::string> quarantined;
  auto rows = (*db)->load_all<v2>("thing", quarantined);
  BOOST_REQUIRE(rows);
  BOOST_TEST(rows->empty());
  BOOST_TEST(quarantined.size() == 2u);
  auto q = (*db)->quarantined();
  BOOST_REQUIRE(q);
  BOOST_REQUIRE_EQUAL(q->size(), 2u);
  std::string reasons = q->at(0).reason + " | " + q->at(1).reason;
  BOOST_TEST(reasons.find("newer cytod") != std::string::npos, reasons);
  BOOST_TEST(reasons.find("no migration from schema v1") != std::string::npos, reasons);
}

BOOST_AUTO_TEST_CASE(a_file_of_a_newer_layout_is_refused_untouched) {
  tmp_dir t;
  { BOOST_REQUIRE(state_db::open(t.db())); }
  sql(t.db(), "PRAGMA user_version = 9;");
  auto db = state_db::open(t.db());
  BOOST_REQUIRE(!db);
  auto text = render(db.error());
  BOOST_TEST(text.find("cyto.failed_precondition") == 0u, text);
  BOOST_TEST(text.find("v9") != std::string::npos, text);
}

BOOST_AUTO_TEST_CASE(from_blob_refuses_left_over_bytes) {
  v2 x{"x", 5};
  auto blob = store::to_blob(x);
  v1 y;
  BOOST_TEST(!store::from_blob(blob, y)); // a v2 blob is not a v1 one
  v2 z;
  BOOST_TEST(store::from_blob(blob, z));
  BOOST_TEST(z.size == 5u);
}
