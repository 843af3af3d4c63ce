// What the stores (the hub's store, the endpoints' disk buffers) share of
// SQLite: a prepared statement that throws std::runtime_error on failure and
// is finalized on scope exit, and how a store file is opened and checked.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

#include <sqlite3.h>

namespace hubflow::store {

class sqlite_statement {
public:
  sqlite_statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db));
  }
  ~sqlite_statement() {
    sqlite3_finalize(stmt_);
  }
  sqlite_statement(const sqlite_statement&) = delete;
  sqlite_statement& operator=(const sqlite_statement&) = delete;

  sqlite_statement& bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  sqlite_statement& bind_blob(int i, const std::string& bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  sqlite_statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  /// Runs a statement that returns no rows, ready to be bound again.
  void run() {
    auto rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (rc != SQLITE_DONE)
      throw std::runtime_error(sqlite3_errmsg(db_));
  }
  /// The next row; false at the end.
  bool next() {
    auto rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc != SQLITE_DONE)
      throw std::runtime_error(sqlite3_errmsg(db_));
    return false;
  }
  /// Ready to be bound and stepped again.
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    return p ? std::string{p, static_cast<std::size_t>(
                                sqlite3_column_bytes(stmt_, col))}
             : std::string{};
  }
  std::int64_t integer(int col) const {
    return sqlite3_column_int64(stmt_, col);
  }

private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// Runs `sql` (statements without results); throws on failure.
inline void sqlite_exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string what = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw std::runtime_error(what);
  }
}

/// A store file and its write-ahead log, in bytes.
std::uint64_t sqlite_file_bytes(const std::string& file);

/// How a store opens its file.
struct sqlite_file_kind {
  const char* what;   // "store", "buffer": what a damaged file is called
  const char* advice; // what to do about a file that does not open
  /// Run when the file is opened for writing: before WAL mode is set (what
  /// only a new file takes, e.g. its page size), then after (the schema).
  const char* before_wal;
  const char* schema;
  /// Checks the opened file (its format version; writing: a new file gets
  /// one); throws std::runtime_error saying what is wrong.
  std::function<void(sqlite3* db, bool writing)> check;
};

/// Opens `file` with sqlite3_open_v2's `flags`, reads every page (PRAGMA
/// quick_check: a truncated or damaged file fails here, at start, instead
/// of losing records later), sets it up when writing and checks it. Null
/// with `error` ("<file>: <what is wrong>; <advice>") when it cannot be used.
sqlite3* open_sqlite_file(const std::string& file, int flags,
                          const sqlite_file_kind& kind, std::string& error);

} // namespace hubflow::store
