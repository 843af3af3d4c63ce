#include "store/sqlite_statement.hpp"

#include <filesystem>
#include <system_error>

namespace hubflow::store {

std::uint64_t sqlite_file_bytes(const std::string& file) {
  std::uint64_t total = 0;
  for (auto suffix : {"", "-wal"}) {
    std::error_code ec;
    auto n = std::filesystem::file_size(file + suffix, ec);
    if (!ec)
      total += n;
  }
  return total;
}

sqlite3* open_sqlite_file(const std::string& file, int flags,
                          const sqlite_file_kind& kind, std::string& error) {
  sqlite3* db = nullptr;
  auto fail = [&](const std::string& what) -> sqlite3* {
    error = file + ": " + what + "; " + kind.advice;
    sqlite3_close(db);
    return nullptr;
  };
  if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK)
    return fail(db ? sqlite3_errmsg(db) : "cannot open");
  sqlite3_busy_timeout(db, 2000);
  try {
    {
      sqlite_statement check{db, "PRAGMA quick_check"};
      if (!check.next() || check.text(0) != "ok")
        return fail(std::string{"damaged "} + kind.what + " (" + check.text(0)
                    + ")");
    } // finalized: its read transaction ends before WAL mode is set
    bool writing = (flags & SQLITE_OPEN_READWRITE) != 0;
    if (writing) {
      sqlite_exec(db, kind.before_wal);
      sqlite_exec(db, "PRAGMA journal_mode=WAL");
      sqlite_exec(db, kind.schema);
    }
    kind.check(db, writing);
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return db;
}

} // namespace hubflow::store
