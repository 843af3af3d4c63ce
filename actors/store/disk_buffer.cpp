#include "store/disk_buffer.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <msgpack.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "store/message_record.hpp"
#include "store/sqlite_statement.hpp"

namespace hubflow::store {

namespace fs = std::filesystem;

namespace {

const char* const buffer_schema = R"(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY,
                                    bytes INTEGER NOT NULL,
                                    record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (seq INTEGER PRIMARY KEY,
                                         failed_ms INTEGER NOT NULL,
                                         reason TEXT NOT NULL,
                                         record BLOB NOT NULL);
)";

constexpr const char* file_prefix = "buffer-";
constexpr const char* file_suffix = ".db";

/// Buffer files in use by this process, each with how to ask its holder
/// to hand it over: a reload's new buffer actor takes a file only once the
/// one it replaces has let go, so one writer forwards a file.
std::mutex claimed_mutex;
std::map<std::string, std::function<void()>> claimed_files;

/// Claims `file` for a holder that `ask` asks to hand it over; false, with
/// `holder` set to how to ask the current holder, when it is taken.
bool claim(const std::string& file, const std::function<void()>& ask,
           std::function<void()>& holder) {
  std::lock_guard<std::mutex> guard{claimed_mutex};
  auto [at, fresh] = claimed_files.emplace(file, ask);
  if (!fresh)
    holder = at->second;
  return fresh;
}

void release(const std::string& file) {
  std::lock_guard<std::mutex> guard{claimed_mutex};
  claimed_files.erase(file);
}


buffered_record unpack_buffered(std::uint64_t seq, const std::string& blob) {
  auto handle = msgpack::unpack(blob.data(), blob.size());
  auto& o = handle.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 3)
    throw std::runtime_error("a record of an unexpected shape");
  auto f = o.via.array.ptr;
  if (f[0].as<int>() != buffer_format)
    throw std::runtime_error("a record of another format version");
  return buffered_record{seq, f[1].as<std::string>(), unpack_message(f[2]),
                         blob.size()};
}

/// Opens `file` and checks it is a buffer file of this format; null with
/// `error` naming the file otherwise. `endpoint` is written into a new
/// file (so hubflowctl store names it) when it is opened for writing.
sqlite3* open_checked(const std::string& file, int flags,
                      const std::string& endpoint, std::string& error) {
  auto check = [&](sqlite3* db, bool writing) {
    sqlite_statement version{db, "SELECT value FROM meta WHERE key = 'format'"};
    if (version.next()) {
      if (version.text(0) != std::to_string(buffer_format))
        throw std::runtime_error("a buffer of format version "
                                 + version.text(0) + "; this hubflow reads "
                                 + std::to_string(buffer_format));
    } else if (writing) {
      sqlite_statement set{db, "INSERT INTO meta (key, value) VALUES "
                               "('format', ?), ('endpoint', ?)"};
      set.bind(1, std::to_string(buffer_format)).bind(2, endpoint).run();
    }
  };
  return open_sqlite_file(
    file, flags,
    {"buffer", "move it aside to start without its records", "",
     buffer_schema, check},
    error);
}

/// What `db` holds; throws on failure.
buffer_summary summary_of(sqlite3* db, const std::string& file,
                          std::uint64_t* last_seq) {
  buffer_summary s;
  s.file = file;
  sqlite_statement endpoint{db, "SELECT value FROM meta WHERE key = 'endpoint'"};
  if (endpoint.next())
    s.endpoint = endpoint.text(0);
  sqlite_statement records{db, "SELECT count(*), coalesce(sum(bytes), 0), "
                               "coalesce(max(seq), 0) FROM records"};
  records.next();
  s.records = static_cast<std::uint64_t>(records.integer(0));
  s.bytes = static_cast<std::uint64_t>(records.integer(1));
  sqlite_statement dead{db, "SELECT count(*), coalesce(max(seq), 0) FROM "
                            "dead_letters"};
  dead.next();
  s.dead_letters = static_cast<std::uint64_t>(dead.integer(0));
  if (last_seq)
    *last_seq = static_cast<std::uint64_t>(
      std::max(records.integer(2), dead.integer(1)));
  s.file_bytes = sqlite_file_bytes(file);
  return s;
}

/// Opens the buffer file `file` of `endpoint` for writing (creating it and
/// its directory when missing) and reads what it holds; null with `error`
/// naming the file when it cannot be used.
sqlite3* open_writable(const persistence_config& cfg, const std::string& file,
                       const std::string& endpoint, buffer_summary& held,
                       std::uint64_t& last_seq, std::string& error) {
  std::error_code ec;
  fs::create_directories(cfg.path, ec);
  if (ec) {
    error = cfg.path + ": " + ec.message();
    return nullptr;
  }
  auto db = open_checked(file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                         endpoint, error);
  if (!db)
    return nullptr;
  try {
    // batch and always: a commit returns once the log is on disk.
    sqlite_exec(db, cfg.sync == persistence_sync::off
                      ? "PRAGMA synchronous=OFF"
                      : "PRAGMA synchronous=FULL");
    held = summary_of(db, file, &last_seq);
    return db;
  } catch (const std::exception& e) {
    error = file + ": " + e.what();
    sqlite3_close(db);
    return nullptr;
  }
}

} // namespace

// -- the owner's side -----------------------------------------------------------

bool disk_buffer::check(const persistence_config& cfg,
                        const std::string& endpoint, std::string& error) {
  buffer_summary held;
  std::uint64_t last_seq = 0;
  auto db = open_writable(cfg, file_of(cfg, endpoint), endpoint, held,
                          last_seq, error);
  if (!db)
    return false;
  sqlite3_close(db);
  return true;
}

struct disk_buffer::op {
  enum kind_t { append, remove, dead_letter, read } kind;
  std::uint64_t seq = 0;
  std::string bytes;         // append: the record; dead_letter: the reason
  std::size_t limit = 0;     // read
  std::uint64_t through = 0; // read
};

std::string pack_buffered(const std::string& target, const message& msg) {
  msgpack::sbuffer buf;
  record_packer p{buf};
  p.pack_array(3);
  p.pack(buffer_format);
  p.pack(target);
  pack_message(p, msg);
  return std::string{buf.data(), buf.size()};
}

std::string disk_buffer::file_of(const persistence_config& cfg,
                                 const std::string& endpoint) {
  // The endpoint name as a file name: what is not [A-Za-z0-9._-] becomes _.
  std::string name = endpoint;
  for (auto& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_'
        && c != '-')
      c = '_';
  return (fs::path{cfg.path} / (file_prefix + name + file_suffix)).string();
}

std::unique_ptr<disk_buffer> disk_buffer::start(const persistence_config& cfg,
                                                const std::string& endpoint,
                                                listener events) {
  std::unique_ptr<disk_buffer> b{
    new disk_buffer(cfg, endpoint, std::move(events))};
  b->writer_ = std::thread{[raw = b.get()] { raw->run(); }};
  return b;
}

disk_buffer::disk_buffer(const persistence_config& cfg, std::string endpoint,
                         listener events)
  : cfg_(cfg),
    endpoint_(std::move(endpoint)),
    file_(file_of(cfg, endpoint_)),
    events_(std::move(events)) {
}

void disk_buffer::close() {
  queue_.stop();
  if (writer_.joinable())
    writer_.join();
}

disk_buffer::~disk_buffer() {
  close();
}

void disk_buffer::append(std::uint64_t seq, std::string packed) {
  queue_.push(op{op::append, seq, std::move(packed), 0, 0});
}

void disk_buffer::remove(std::uint64_t seq) {
  queue_.push(op{op::remove, seq, {}, 0, 0});
}

void disk_buffer::dead_letter(std::uint64_t seq, std::string reason) {
  queue_.push(op{op::dead_letter, seq, std::move(reason), 0, 0});
}

void disk_buffer::read(std::uint64_t from, std::size_t limit,
                       std::uint64_t through) {
  queue_.push(op{op::read, from, {}, limit, through});
}

// -- the writer thread ------------------------------------------------------------

bool disk_buffer::open_file() {
  // The buffer this one replaces (a reload) is asked once to hand the
  // file over, and waited for.
  bool asked = false;
  std::function<void()> holder;
  while (!claim(file_, events_.handover, holder)) {
    if (!asked) {
      spdlog::info("buffer {}: {} is used by the buffer this one replaces; "
                   "asking it to hand over",
                   endpoint_, file_);
      if (holder)
        holder();
      asked = true;
    }
    if (queue_.stopped_within(std::chrono::milliseconds(50)))
      return false;
  }
  std::string error;
  buffer_summary held;
  std::uint64_t last_seq = 0;
  db_ = open_writable(cfg_, file_, endpoint_, held, last_seq, error);
  if (db_) {
    events_.opened(held, last_seq);
    return true;
  }
  release(file_);
  events_.failed(error);
  return false;
}

void disk_buffer::run() {
  if (!open_file())
    return;
  std::vector<op> batch;
  while (queue_.take(batch)) { // until closed and everything is applied
    apply(batch);
    batch.clear();
  }
  sqlite3_close(std::exchange(db_, nullptr));
  release(file_);
}

void disk_buffer::apply(std::vector<op>& ops) {
  // Writes go in one transaction per run of writes (sync always: one per
  // append); a read runs after the commit of what was asked before it.
  bool one_per_append = cfg_.sync == persistence_sync::always;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == op::read) {
      if (i > begin)
        commit(ops, begin, i);
      answer_read(ops[i]);
      begin = i + 1;
    } else if (one_per_append && ops[i].kind == op::append && i > begin) {
      commit(ops, begin, i);
      begin = i;
    }
  }
  if (begin < ops.size())
    commit(ops, begin, ops.size());
}

void disk_buffer::commit(std::vector<op>& ops, std::size_t begin,
                         std::size_t end) {
  std::uint64_t first_append = 0, last_append = 0;
  for (auto i = begin; i < end; ++i)
    if (ops[i].kind == op::append) {
      if (first_append == 0)
        first_append = ops[i].seq;
      last_append = ops[i].seq;
    }
  try {
    sqlite_exec(db_, "BEGIN");
    sqlite_statement put{db_, "INSERT OR REPLACE INTO records (seq, bytes, "
                              "record) VALUES (?, ?, ?)"};
    sqlite_statement remove{db_, "DELETE FROM records WHERE seq = ?"};
    sqlite_statement keep{db_, "INSERT OR REPLACE INTO dead_letters (seq, "
                               "failed_ms, reason, record) SELECT seq, ?, ?, "
                               "record FROM records WHERE seq = ?"};
    for (auto i = begin; i < end; ++i) {
      auto& o = ops[i];
      auto seq = static_cast<std::int64_t>(o.seq);
      switch (o.kind) {
        case op::append:
          put.bind(1, seq)
            .bind(2, static_cast<std::int64_t>(o.bytes.size()))
            .bind_blob(3, o.bytes)
            .run();
          break;
        case op::dead_letter:
          keep.bind(1, wall_clock_ms()).bind(2, o.bytes).bind(3, seq).run();
          remove.bind(1, seq).run();
          break;
        case op::remove:
          remove.bind(1, seq).run();
          break;
        case op::read:
          break; // never inside a commit (apply)
      }
    }
    sqlite_exec(db_, "COMMIT");
  } catch (const std::exception& e) {
    spdlog::error("buffer {}: {}: a commit of {} changes failed: {}",
                  endpoint_, file_, end - begin, e.what());
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    if (first_append != 0)
      events_.committed(0, first_append, last_append);
    return;
  }
  if (last_append != 0)
    events_.committed(last_append, 0, 0);
}

void disk_buffer::answer_read(const op& o) {
  std::vector<buffered_record> records;
  std::vector<std::pair<std::uint64_t, std::string>> unreadable;
  try {
    {
      sqlite_statement select{db_, "SELECT seq, record FROM records WHERE "
                                   "seq >= ? ORDER BY seq LIMIT ?"};
      select.bind(1, static_cast<std::int64_t>(o.seq))
        .bind(2, static_cast<std::int64_t>(o.limit));
      while (select.next()) {
        auto seq = static_cast<std::uint64_t>(select.integer(0));
        try {
          records.push_back(unpack_buffered(seq, select.text(1)));
        } catch (const std::exception& e) {
          unreadable.emplace_back(seq, e.what());
        }
      }
    }
    // Kept, never forwarded as something else: a damaged record becomes a
    // dead letter.
    for (auto& [seq, why] : unreadable) {
      spdlog::error("buffer {}: {}: record {} cannot be read ({}); kept as "
                    "a dead letter",
                    endpoint_, file_, seq, why);
      std::vector<op> move{op{op::dead_letter, seq, "unreadable: " + why, 0, 0}};
      commit(move, 0, 1);
    }
  } catch (const std::exception& e) {
    spdlog::error("buffer {}: {}: reading records from {} failed: {}",
                  endpoint_, file_, o.seq, e.what());
    events_.read({}, false, o.through);
    return;
  }
  bool complete = records.size() + unreadable.size() < o.limit;
  events_.read(std::move(records), complete, o.through);
}

// -- reading without a broker -------------------------------------------------------

bool disk_buffer::summarize(const std::string& dir,
                            std::vector<buffer_summary>& out,
                            std::string& error) {
  std::error_code ec;
  std::vector<std::string> files;
  for (auto& entry : fs::directory_iterator{dir, ec}) {
    auto name = entry.path().filename().string();
    if (name.starts_with(file_prefix) && name.ends_with(file_suffix))
      files.push_back(entry.path().string());
  }
  if (ec) {
    error = dir + ": " + ec.message();
    return false;
  }
  std::sort(files.begin(), files.end());
  for (auto& file : files) {
    auto db = open_checked(file, SQLITE_OPEN_READONLY, {}, error);
    if (!db)
      return false;
    try {
      out.push_back(summary_of(db, file, nullptr));
    } catch (const std::exception& e) {
      error = file + ": " + e.what();
      sqlite3_close(db);
      return false;
    }
    sqlite3_close(db);
  }
  return true;
}

} // namespace hubflow::store
