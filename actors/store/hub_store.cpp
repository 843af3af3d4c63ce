#include "store/hub_store.hpp"

#include <chrono>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <utility>

#include <msgpack.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

namespace hubflow::store {

namespace fs = std::filesystem;

namespace {

// -- records as msgpack arrays ------------------------------------------------
//
// Every record is an array whose first element is store_format, then its
// fields in a fixed order; a reader refuses a record of another shape.

using packer = msgpack::packer<msgpack::sbuffer>;

void pack_message(packer& p, const message& m) {
  const auto& pr = m.properties;
  p.pack_array(14);
  p.pack(m.topic);
  p.pack_bin(static_cast<std::uint32_t>(m.body.size()));
  p.pack_bin_body(m.body.view().data(),
                  static_cast<std::uint32_t>(m.body.size()));
  p.pack(m.qos);
  p.pack(m.retain);
  p.pack(static_cast<std::int64_t>(m.received.time_since_epoch().count()));
  p.pack(m.origin);
  p.pack(pr.has_payload_format);
  p.pack(pr.payload_format);
  p.pack(pr.has_message_expiry);
  p.pack(pr.message_expiry);
  p.pack(pr.content_type);
  p.pack(pr.response_topic);
  p.pack(pr.correlation_data);
  p.pack_array(static_cast<std::uint32_t>(pr.user_properties.size()));
  for (auto& [k, v] : pr.user_properties) {
    p.pack_array(2);
    p.pack(k);
    p.pack(v);
  }
}

/// The fields of an array record; throws std::runtime_error on any other
/// shape, which load() reports as a damaged store.
class fields {
public:
  fields(const msgpack::object& o, std::size_t count) {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != count)
      throw std::runtime_error("a record of an unexpected shape");
    items_ = o.via.array.ptr;
  }
  const msgpack::object& operator[](std::size_t i) const {
    return items_[i];
  }
  template <class T>
  T get(std::size_t i) const {
    return items_[i].as<T>(); // throws msgpack::type_error
  }
  std::string bin(std::size_t i) const {
    auto& o = items_[i];
    if (o.type == msgpack::type::BIN)
      return std::string{o.via.bin.ptr, o.via.bin.size};
    return o.as<std::string>();
  }

private:
  const msgpack::object* items_;
};

/// A record's fields after checking its format version; `what` names the
/// record in the error.
fields versioned(const msgpack::object& o, std::size_t count,
                 const char* what) {
  fields f{o, count};
  if (f.get<int>(0) != store_format)
    throw std::runtime_error(std::string{"a "} + what
                             + " record of another format version");
  return f;
}

/// A record: the format version, then what `body` packs (`count` items).
template <class Body>
std::string packed(std::uint32_t count, Body body) {
  msgpack::sbuffer buf;
  packer p{buf};
  p.pack_array(count + 1);
  p.pack(store_format);
  body(p);
  return std::string{buf.data(), buf.size()};
}

message unpack_message(const msgpack::object& o) {
  fields f{o, 14};
  message m;
  m.topic = f.get<std::string>(0);
  m.body = payload{f.bin(1)};
  m.qos = f.get<std::uint8_t>(2);
  m.retain = f.get<bool>(3);
  m.received = message::clock::time_point{
    message::clock::duration{f.get<std::int64_t>(4)}};
  m.origin = f.get<std::string>(5);
  auto& pr = m.properties;
  pr.has_payload_format = f.get<bool>(6);
  pr.payload_format = f.get<std::uint8_t>(7);
  pr.has_message_expiry = f.get<bool>(8);
  pr.message_expiry = f.get<std::uint32_t>(9);
  pr.content_type = f.get<std::string>(10);
  pr.response_topic = f.get<std::string>(11);
  pr.correlation_data = f.bin(12);
  auto& up = f[13];
  if (up.type != msgpack::type::ARRAY)
    throw std::runtime_error("user properties are not a list");
  for (std::uint32_t i = 0; i < up.via.array.size; ++i) {
    fields kv{up.via.array.ptr[i], 2};
    pr.user_properties.emplace_back(kv.get<std::string>(0),
                                    kv.get<std::string>(1));
  }
  return m;
}

std::string pack_session(const session_record& s) {
  return packed(7, [&](packer& p) {
    p.pack(s.anonymous);
    p.pack(s.owner);
    p.pack(s.expiry_interval);
    p.pack(s.offline_since_ms);
    p.pack_array(static_cast<std::uint32_t>(s.subscriptions.size()));
    for (auto& sub : s.subscriptions) {
      p.pack_array(6);
      p.pack(sub.filter);
      p.pack(sub.qos);
      p.pack(sub.no_local);
      p.pack(sub.retain_as_published);
      p.pack(sub.retain_handling);
      p.pack(sub.identifier);
    }
    p.pack(s.incoming_qos2);
    p.pack(s.next_packet_id);
  });
}

session_record unpack_session(std::string client_id, const msgpack::object& o) {
  auto f = versioned(o, 8, "session");
  session_record s;
  s.client_id = std::move(client_id);
  s.anonymous = f.get<bool>(1);
  s.owner = f.get<std::string>(2);
  s.expiry_interval = f.get<std::uint32_t>(3);
  s.offline_since_ms = f.get<std::int64_t>(4);
  auto& subs = f[5];
  if (subs.type != msgpack::type::ARRAY)
    throw std::runtime_error("subscriptions are not a list");
  for (std::uint32_t i = 0; i < subs.via.array.size; ++i) {
    fields sf{subs.via.array.ptr[i], 6};
    s.subscriptions.push_back(subscription_record{
      sf.get<std::string>(0), sf.get<std::uint8_t>(1), sf.get<bool>(2),
      sf.get<bool>(3), sf.get<std::uint8_t>(4), sf.get<std::uint32_t>(5)});
  }
  s.incoming_qos2 = f.get<std::vector<std::uint16_t>>(6);
  s.next_packet_id = f.get<std::uint16_t>(7);
  return s;
}

std::string pack_queued(const queued_record& q) {
  return packed(6, [&](packer& p) {
    p.pack(q.packet_id);
    p.pack(q.released);
    p.pack(q.qos);
    p.pack(q.retain);
    p.pack(q.subscription_ids);
    pack_message(p, q.msg);
  });
}

queued_record unpack_queued(std::uint64_t seq, const msgpack::object& o) {
  auto f = versioned(o, 7, "message");
  queued_record q;
  q.seq = seq;
  q.packet_id = f.get<std::uint16_t>(1);
  q.released = f.get<bool>(2);
  q.qos = f.get<std::uint8_t>(3);
  q.retain = f.get<bool>(4);
  q.subscription_ids = f.get<std::vector<std::uint32_t>>(5);
  q.msg = unpack_message(f[6]);
  return q;
}

std::string pack_retained(const message& m) {
  return packed(1, [&](packer& p) {
    pack_message(p, m);
  });
}

message unpack_retained(const msgpack::object& o) {
  auto f = versioned(o, 2, "retained");
  return unpack_message(f[1]);
}

// -- SQLite -------------------------------------------------------------------

const char* const schema_sql = R"(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (client_id TEXT PRIMARY KEY,
                                     record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (client_id TEXT NOT NULL,
                                     seq INTEGER NOT NULL,
                                     record BLOB NOT NULL,
                                     PRIMARY KEY (client_id, seq))
                                     WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY,
                                     record BLOB NOT NULL);
)";

/// A prepared statement, finalized on scope exit.
class statement {
public:
  statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      throw std::runtime_error(sqlite3_errmsg(db));
  }
  ~statement() {
    sqlite3_finalize(stmt_);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;

  statement& bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  statement& bind_blob(int i, const std::string& bytes) {
    sqlite3_bind_blob(stmt_, i, bytes.data(), static_cast<int>(bytes.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  /// Runs a statement that returns no rows; throws on failure.
  void run() {
    auto rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (rc != SQLITE_DONE)
      throw std::runtime_error(sqlite3_errmsg(db_));
  }
  /// The next row; false at the end. Throws on failure.
  bool next() {
    auto rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc != SQLITE_DONE)
      throw std::runtime_error(sqlite3_errmsg(db_));
    return false;
  }
  std::string text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string{p, static_cast<std::size_t>(
                                sqlite3_column_bytes(stmt_, col))}
             : std::string{};
  }
  std::int64_t integer(int col) const {
    return sqlite3_column_int64(stmt_, col);
  }
  msgpack::object_handle record(int col) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
    auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col));
    return msgpack::unpack(p ? p : "", n); // throws on a damaged record
  }

private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string what = err ? err : sqlite3_errmsg(db);
    sqlite3_free(err);
    throw std::runtime_error(what);
  }
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::uint64_t file_bytes(const std::string& file) {
  std::uint64_t total = 0;
  for (auto suffix : {"", "-wal"}) {
    std::error_code ec;
    auto n = fs::file_size(file + suffix, ec);
    if (!ec)
      total += n;
  }
  return total;
}

/// Opens `file` and checks that it is a store of this format: the error
/// names the file and says what is wrong.
sqlite3* open_checked(const std::string& file, int flags, std::string& error) {
  sqlite3* db = nullptr;
  auto fail = [&](const std::string& what) {
    error = file + ": " + what;
    sqlite3_close(db);
    return nullptr;
  };
  if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK)
    return fail(db ? sqlite3_errmsg(db) : "cannot open");
  sqlite3_busy_timeout(db, 2000);
  try {
    // quick_check reads every page: a truncated or damaged file fails
    // here, at start, instead of losing records later.
    {
      statement check{db, "PRAGMA quick_check"};
      if (!check.next() || check.text(0) != "ok")
        return fail("damaged store (" + check.text(0)
                    + "); start with --store-recover to move it aside");
    } // finalized: its read transaction ends before WAL mode is set
    if (flags & SQLITE_OPEN_READWRITE) {
      // 8 KiB pages hold a message record with a 1 KiB payload in its
      // b-tree page; with 4 KiB ones it overflowed into a page of its own
      // (4.7 KB on disk per record instead of 1.2 KB; bench/store_candidates).
      // Only a new store takes it; an existing one keeps its page size.
      exec(db, "PRAGMA page_size=8192");
      exec(db, "PRAGMA journal_mode=WAL");
      exec(db, schema_sql);
    }
    statement version{db, "SELECT value FROM meta WHERE key = 'format'"};
    if (version.next()) {
      if (version.integer(0) != store_format)
        return fail("a store of format version "
                    + std::to_string(version.integer(0)) + "; this hubflow reads "
                    + std::to_string(store_format));
    } else if (flags & SQLITE_OPEN_READWRITE) {
      statement set{db, "INSERT INTO meta (key, value) VALUES ('format', ?)"};
      set.bind(1, std::int64_t{store_format}).run();
    }
  } catch (const std::exception& e) {
    return fail(std::string{e.what()}
                + "; start with --store-recover to move it aside");
  }
  return db;
}

} // namespace

// -- writes -------------------------------------------------------------------

struct hub_store::write_op {
  enum kind_t { put_session, remove_session, put_message, remove_message,
                put_retained, remove_retained } kind;
  std::string key; // client id or topic
  std::uint64_t seq = 0;
  session_record session;
  queued_record queued;
  message retained;
  std::uint64_t number = 0; // its place in written()
};

/// The writer's statements, prepared once when the store opens instead of
/// for every commit (broker CPU per message 11-12% lower, docs/performance.md).
struct hub_store::statements {
  explicit statements(sqlite3* db)
    : begin{db, "BEGIN"},
      commit{db, "COMMIT"},
      put_session{db, "INSERT OR REPLACE INTO sessions (client_id, record) "
                      "VALUES (?, ?)"},
      remove_session{db, "DELETE FROM sessions WHERE client_id = ?"},
      remove_queue{db, "DELETE FROM messages WHERE client_id = ?"},
      put_message{db, "INSERT OR REPLACE INTO messages (client_id, seq, "
                      "record) VALUES (?, ?, ?)"},
      remove_message{db, "DELETE FROM messages WHERE client_id = ? AND "
                         "seq = ?"},
      put_retained{db, "INSERT OR REPLACE INTO retained (topic, record) "
                       "VALUES (?, ?)"},
      remove_retained{db, "DELETE FROM retained WHERE topic = ?"} {
  }
  statement begin, commit;
  statement put_session, remove_session, remove_queue;
  statement put_message, remove_message;
  statement put_retained, remove_retained;
};

std::string hub_store::file_of(const persistence_config& cfg) {
  return (fs::path{cfg.path} / "hubflow.db").string();
}

std::unique_ptr<hub_store> hub_store::open(const persistence_config& cfg,
                                           std::string& error) {
  std::error_code ec;
  fs::create_directories(cfg.path, ec);
  if (ec) {
    error = cfg.path + ": " + ec.message();
    return nullptr;
  }
  auto file = file_of(cfg);
  auto db = open_checked(file, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                 | SQLITE_OPEN_FULLMUTEX,
                         error);
  if (!db)
    return nullptr;
  std::unique_ptr<statements> prepared;
  try {
    // batch and always: a commit returns once the log is on disk.
    exec(db, cfg.sync == persistence_sync::off ? "PRAGMA synchronous=OFF"
                                                : "PRAGMA synchronous=FULL");
    prepared = std::make_unique<statements>(db);
  } catch (const std::exception& e) {
    error = file + ": " + e.what();
    sqlite3_close(db);
    return nullptr;
  }
  return std::unique_ptr<hub_store>{new hub_store(cfg, db, std::move(prepared))};
}

std::string hub_store::move_aside(const persistence_config& cfg,
                                  std::string& error) {
  auto file = file_of(cfg);
  std::error_code ec;
  if (!fs::exists(file, ec))
    return {};
  auto aside = file + ".corrupt-" + std::to_string(now_ms());
  for (auto suffix : {"", "-wal", "-shm"}) {
    if (!fs::exists(file + suffix, ec))
      continue;
    fs::rename(file + suffix, aside + suffix, ec);
    if (ec) {
      error = file + suffix + ": " + ec.message();
      return {};
    }
  }
  return aside;
}

hub_store::hub_store(const persistence_config& cfg, sqlite3* db,
                     std::unique_ptr<statements> prepared)
  : cfg_(cfg), db_(db), statements_(std::move(prepared)) {
  check_size();
  writer_ = std::thread{[this] { run_writer(); }};
}

void hub_store::close() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable())
    writer_.join();
  std::lock_guard<std::mutex> guard{mutex_};
  callback_ = nullptr;
  statements_.reset(); // finalized before the database closes
  if (db_)
    sqlite3_close(std::exchange(db_, nullptr));
}

hub_store::~hub_store() {
  close();
}

void hub_store::on_durable(durable_callback f) {
  std::lock_guard<std::mutex> guard{mutex_};
  callback_ = std::move(f);
}

void hub_store::append(write_op op) {
  if (stopping_) // only the hub's thread writes and closes
    return;
  op.number = ++written_;
  if (!acks_wait())
    durable_.store(written_, std::memory_order_release);
  bool was_empty;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    was_empty = pending_.empty();
    pending_.push_back(std::move(op));
  }
  if (was_empty)
    wake_.notify_one();
}

void hub_store::put_session(session_record s) {
  auto key = s.client_id;
  append(write_op{write_op::put_session, std::move(key), 0, std::move(s), {},
                  {}, 0});
}

void hub_store::remove_session(const std::string& client_id) {
  append(write_op{write_op::remove_session, client_id, 0, {}, {}, {}, 0});
}

void hub_store::put_message(const std::string& client_id, queued_record m) {
  auto seq = m.seq;
  append(write_op{write_op::put_message, client_id, seq, {}, std::move(m),
                  {}, 0});
}

void hub_store::remove_message(const std::string& client_id,
                               std::uint64_t seq) {
  append(write_op{write_op::remove_message, client_id, seq, {}, {}, {}, 0});
}

void hub_store::put_retained(const message& msg) {
  append(write_op{write_op::put_retained, msg.topic, 0, {}, {}, msg, 0});
}

void hub_store::remove_retained(const std::string& topic) {
  append(write_op{write_op::remove_retained, topic, 0, {}, {}, {}, 0});
}

void hub_store::run_writer() {
  std::vector<write_op> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock{mutex_};
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty())
        return; // stopping, and everything is committed
      if (cfg_.sync == persistence_sync::always) {
        // One record per commit: each pays its own fsync.
        batch.push_back(std::move(pending_.front()));
        pending_.erase(pending_.begin());
      } else {
        // Group commit: whatever came while the last commit ran.
        batch.swap(pending_);
      }
    }
    auto last = batch.back().number;
    bool ok = commit(batch);
    batch.clear();
    if (ok) {
      durable_.store(std::max(durable(), last), std::memory_order_release);
      check_size();
    } else {
      refusing_.store(true, std::memory_order_release);
    }
    durable_callback callback;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      callback = callback_;
    }
    if (callback)
      callback(durable(), ok ? 0 : last);
  }
}

std::vector<bool> hub_store::superseded_puts(const std::vector<write_op>& ops) {
  std::vector<bool> superseded(ops.size(), false);
  std::set<std::pair<std::string_view, std::uint64_t>> later_messages;
  std::set<std::string_view> later_removed_sessions;
  for (auto i = ops.size(); i-- > 0;) {
    auto& op = ops[i];
    if (op.kind == write_op::remove_session) {
      later_removed_sessions.insert(op.key);
    } else if (op.kind == write_op::put_message
               || op.kind == write_op::remove_message) {
      bool written_later = !later_messages.emplace(op.key, op.seq).second;
      superseded[i] = op.kind == write_op::put_message
                      && (written_later
                          || later_removed_sessions.count(op.key) > 0);
    }
  }
  return superseded;
}

bool hub_store::commit(std::vector<write_op>& ops) {
  auto& st = *statements_;
  auto superseded = superseded_puts(ops);
  try {
    st.begin.run();
    for (std::size_t i = 0; i < ops.size(); ++i) {
      auto& op = ops[i];
      switch (op.kind) {
        case write_op::put_session:
          st.put_session.bind(1, op.key).bind_blob(2, pack_session(op.session));
          st.put_session.run();
          break;
        case write_op::remove_session:
          st.remove_session.bind(1, op.key).run();
          st.remove_queue.bind(1, op.key).run();
          break;
        case write_op::put_message:
          if (superseded[i])
            break;
          st.put_message.bind(1, op.key)
            .bind(2, static_cast<std::int64_t>(op.seq))
            .bind_blob(3, pack_queued(op.queued));
          st.put_message.run();
          break;
        case write_op::remove_message:
          st.remove_message.bind(1, op.key)
            .bind(2, static_cast<std::int64_t>(op.seq));
          st.remove_message.run();
          break;
        case write_op::put_retained:
          st.put_retained.bind(1, op.key)
            .bind_blob(2, pack_retained(op.retained));
          st.put_retained.run();
          break;
        case write_op::remove_retained:
          st.remove_retained.bind(1, op.key).run();
          break;
      }
    }
    st.commit.run();
    return true;
  } catch (const std::exception& e) {
    spdlog::error("store: {}: a commit of {} records failed: {}; QoS 1/2 "
                  "publishes that need the store are refused until one "
                  "succeeds",
                  file_of(cfg_), ops.size(), e.what());
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return false;
  }
}

void hub_store::check_size() {
  // A commit that succeeds after failures lifts the refusal, unless the
  // store is at its limit.
  bool over = cfg_.max_size > 0 && file_bytes(file_of(cfg_)) >= cfg_.max_size;
  refusing_.store(over, std::memory_order_release);
}

// -- reading ------------------------------------------------------------------

store_contents hub_store::load() {
  store_contents c;
  statement sessions{db_, "SELECT client_id, record FROM sessions"};
  while (sessions.next())
    c.sessions.push_back(
      unpack_session(sessions.text(0), sessions.record(1).get()));
  statement messages{db_, "SELECT client_id, seq, record FROM messages "
                          "ORDER BY client_id, seq"};
  while (messages.next())
    c.queues[messages.text(0)].push_back(unpack_queued(
      static_cast<std::uint64_t>(messages.integer(1)), messages.record(2).get()));
  statement retained{db_, "SELECT record FROM retained"};
  while (retained.next())
    c.retained.push_back(unpack_retained(retained.record(0).get()));
  return c;
}

bool hub_store::summarize(const std::string& file, store_summary& out,
                          std::string& error) {
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    error = file + ": no such store";
    return false;
  }
  auto db = open_checked(file, SQLITE_OPEN_READONLY, error);
  if (!db)
    return false;
  try {
    statement sessions{db, "SELECT count(*) FROM sessions"};
    sessions.next();
    out.sessions = static_cast<std::size_t>(sessions.integer(0));
    statement depths{db, "SELECT client_id, count(*) FROM messages "
                         "GROUP BY client_id ORDER BY client_id"};
    while (depths.next()) {
      auto n = static_cast<std::size_t>(depths.integer(1));
      out.queue_depths[depths.text(0)] = n;
      out.messages += n;
    }
    statement retained{db, "SELECT count(*) FROM retained"};
    retained.next();
    out.retained = static_cast<std::size_t>(retained.integer(0));
  } catch (const std::exception& e) {
    error = file + ": " + e.what();
    sqlite3_close(db);
    return false;
  }
  sqlite3_close(db);
  out.file_bytes = file_bytes(file);
  return true;
}

} // namespace hubflow::store
