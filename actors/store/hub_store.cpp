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

#include "store/message_record.hpp"
#include "store/sqlite_statement.hpp"

namespace hubflow::store {

namespace fs = std::filesystem;

namespace {

// -- records as msgpack arrays ------------------------------------------------
//
// Every record is an array whose first element is store_format, then its
// fields in a fixed order; a reader refuses a record of another shape.

using packer = record_packer;


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

/// The msgpack record in column `col` of the current row.
msgpack::object_handle record_at(const sqlite_statement& row, int col) {
  auto bytes = row.text(col);
  return msgpack::unpack(bytes.data(), bytes.size()); // throws when damaged
}


/// Opens `file` and checks that it is a store of this format: the error
/// names the file and says what is wrong.
sqlite3* open_checked(const std::string& file, int flags, std::string& error) {
  auto check = [](sqlite3* db, bool writing) {
    sqlite_statement version{db, "SELECT value FROM meta WHERE key = 'format'"};
    if (version.next()) {
      if (version.integer(0) != store_format)
        throw std::runtime_error("a store of format version "
                                 + std::to_string(version.integer(0))
                                 + "; this hubflow reads "
                                 + std::to_string(store_format));
    } else if (writing) {
      sqlite_statement set{db,
                           "INSERT INTO meta (key, value) VALUES ('format', ?)"};
      set.bind(1, std::int64_t{store_format}).run();
    }
  };
  // 8 KiB pages hold a message record with a 1 KiB payload in its b-tree
  // page; with 4 KiB ones it overflowed into a page of its own (4.7 KB on
  // disk per record instead of 1.2 KB; bench/store_candidates). Only a new
  // store takes it; an existing one keeps its page size.
  return open_sqlite_file(file, flags,
                          {"store",
                           "start with --store-recover to move it aside",
                           "PRAGMA page_size=8192", schema_sql, check},
                          error);
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
  sqlite_statement begin, commit;
  sqlite_statement put_session, remove_session, remove_queue;
  sqlite_statement put_message, remove_message;
  sqlite_statement put_retained, remove_retained;
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
    sqlite_exec(db, cfg.sync == persistence_sync::off
                      ? "PRAGMA synchronous=OFF"
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
  auto aside = file + ".corrupt-" + std::to_string(wall_clock_ms());
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
  closed_ = true;
  queue_.stop();
  if (writer_.joinable())
    writer_.join();
  std::lock_guard<std::mutex> guard{callback_mutex_};
  callback_ = nullptr;
  statements_.reset(); // finalized before the database closes
  if (db_)
    sqlite3_close(std::exchange(db_, nullptr));
}

hub_store::~hub_store() {
  close();
}

void hub_store::on_durable(durable_callback f) {
  std::lock_guard<std::mutex> guard{callback_mutex_};
  callback_ = std::move(f);
}

void hub_store::append(write_op op) {
  if (closed_)
    return;
  op.number = ++written_;
  if (!acks_wait())
    durable_.store(written_, std::memory_order_release);
  queue_.push(std::move(op));
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
  // sync always: one record per commit, each paying its own fsync.
  bool one_at_a_time = cfg_.sync == persistence_sync::always;
  while (queue_.take(batch, one_at_a_time)) { // until closed and committed
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
      std::lock_guard<std::mutex> guard{callback_mutex_};
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
  bool over = cfg_.max_size > 0
              && sqlite_file_bytes(file_of(cfg_)) >= cfg_.max_size;
  refusing_.store(over, std::memory_order_release);
}

// -- reading ------------------------------------------------------------------

store_contents hub_store::load() {
  store_contents c;
  sqlite_statement sessions{db_, "SELECT client_id, record FROM sessions"};
  while (sessions.next())
    c.sessions.push_back(
      unpack_session(sessions.text(0), record_at(sessions, 1).get()));
  sqlite_statement messages{db_, "SELECT client_id, seq, record FROM messages "
                                 "ORDER BY client_id, seq"};
  while (messages.next())
    c.queues[messages.text(0)].push_back(
      unpack_queued(static_cast<std::uint64_t>(messages.integer(1)),
                    record_at(messages, 2).get()));
  sqlite_statement retained{db_, "SELECT record FROM retained"};
  while (retained.next())
    c.retained.push_back(unpack_retained(record_at(retained, 0).get()));
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
    sqlite_statement sessions{db, "SELECT count(*) FROM sessions"};
    sessions.next();
    out.sessions = static_cast<std::size_t>(sessions.integer(0));
    sqlite_statement depths{db, "SELECT client_id, count(*) FROM messages "
                                "GROUP BY client_id ORDER BY client_id"};
    while (depths.next()) {
      auto n = static_cast<std::size_t>(depths.integer(1));
      out.queue_depths[depths.text(0)] = n;
      out.messages += n;
    }
    sqlite_statement retained{db, "SELECT count(*) FROM retained"};
    retained.next();
    out.retained = static_cast<std::size_t>(retained.integer(0));
  } catch (const std::exception& e) {
    error = file + ": " + e.what();
    sqlite3_close(db);
    return false;
  }
  sqlite3_close(db);
  out.file_bytes = sqlite_file_bytes(file);
  return true;
}

} // namespace hubflow::store
