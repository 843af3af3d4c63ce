// store-candidates: the hub store's write pattern replayed against SQLite
// (WAL, as actors/store/hub_store.cpp uses it), RocksDB and LMDB, each with
// a real fsync per commit, to choose the store on figures (issue 14).
//
// The pattern (docs/persistence.md): a QoS 1 message routed to W stored
// sessions puts one record per session (its msgpack queued record, of the
// shape hub_store writes), and the subscriber's PUBACK deletes it again once
// it left the in-flight window; the publisher gets its PUBACK only when the
// message's records are durable, and has at most --window unacknowledged.
// The hub's thread appends records to a list; one writer thread commits
// whatever arrived while its last commit ran (group commit) and then
// releases the publisher. Two phases per store:
//
//   steady  --messages messages through the window: records/s (puts that
//           became durable per second), commits/s, records per commit
//   fill    --fill records put and never deleted (an offline subscriber's
//           queue), then the store's files: bytes on disk per record
//
// Usage: store-candidates [--dir DIR] [--messages N] [--fill N]
//                         [--writers W] [--window N] [--payload BYTES]
//                         [--repeat N] [--json] [--stores sqlite-wal,rocksdb,lmdb]
//   --repeat: rounds, who goes first rotating; prints medians
//   --stores: which of them
//   DIR must be on the disk under test (not tmpfs: fsync would be free);
//   default: a new directory under the current one, removed at the end.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <lmdb.h>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sqlite3.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

/// One record change of a commit.
struct op {
  bool put;
  std::string client_id;
  std::uint64_t seq;
  const std::string* record; // put only
};

/// A store under test: one transaction per commit, durable on return.
class candidate {
public:
  virtual ~candidate() = default;
  virtual const char* name() const = 0;
  virtual void commit(const std::vector<op>& ops) = 0;
};

/// The key the non-SQL stores use: client id, then the sequence number big
/// endian, so one session's records sort in queue order (as the SQLite
/// table's primary key does).
std::string key_of(const op& o) {
  std::string k = o.client_id;
  k.push_back('\0');
  for (int shift = 56; shift >= 0; shift -= 8)
    k.push_back(static_cast<char>((o.seq >> shift) & 0xff));
  return k;
}

void check_sqlite(int rc, sqlite3* db) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE)
    throw std::runtime_error(std::string{"sqlite: "} + sqlite3_errmsg(db));
}

/// hub_store's table, pragmas and statements.
class sqlite_candidate : public candidate {
public:
  explicit sqlite_candidate(const fs::path& dir) {
    auto file = (dir / "hubflow.db").string();
    check_sqlite(sqlite3_open(file.c_str(), &db_), db_);
    exec("PRAGMA page_size=8192");
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");
    exec("CREATE TABLE messages (client_id TEXT NOT NULL, seq INTEGER NOT "
         "NULL, record BLOB NOT NULL, PRIMARY KEY (client_id, seq)) WITHOUT "
         "ROWID");
    prepare(put_, "INSERT OR REPLACE INTO messages (client_id, seq, record) "
                  "VALUES (?, ?, ?)");
    prepare(remove_, "DELETE FROM messages WHERE client_id = ? AND seq = ?");
  }
  ~sqlite_candidate() override {
    sqlite3_finalize(put_);
    sqlite3_finalize(remove_);
    sqlite3_close(db_);
  }
  const char* name() const override {
    return "sqlite-wal";
  }
  void commit(const std::vector<op>& ops) override {
    exec("BEGIN");
    for (auto& o : ops) {
      auto st = o.put ? put_ : remove_;
      sqlite3_bind_text(st, 1, o.client_id.data(),
                        static_cast<int>(o.client_id.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, static_cast<std::int64_t>(o.seq));
      if (o.put)
        sqlite3_bind_blob(st, 3, o.record->data(),
                          static_cast<int>(o.record->size()), SQLITE_STATIC);
      auto rc = sqlite3_step(st);
      sqlite3_reset(st);
      check_sqlite(rc, db_);
    }
    exec("COMMIT");
  }

private:
  void exec(const char* sql) {
    check_sqlite(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), db_);
  }
  void prepare(sqlite3_stmt*& st, const char* sql) {
    check_sqlite(sqlite3_prepare_v2(db_, sql, -1, &st, nullptr), db_);
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* put_ = nullptr;
  sqlite3_stmt* remove_ = nullptr;
};

/// A WriteBatch per commit, written with sync (fdatasync of its log).
class rocksdb_candidate : public candidate {
public:
  explicit rocksdb_candidate(const fs::path& dir) {
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(options, dir.string(), &db);
    if (!s.ok())
      throw std::runtime_error("rocksdb: " + s.ToString());
    db_.reset(db);
    sync_.sync = true;
  }
  const char* name() const override {
    return "rocksdb";
  }
  void commit(const std::vector<op>& ops) override {
    rocksdb::WriteBatch batch;
    for (auto& o : ops)
      if (o.put)
        batch.Put(key_of(o), *o.record);
      else
        batch.Delete(key_of(o));
    auto s = db_->Write(sync_, &batch);
    if (!s.ok())
      throw std::runtime_error("rocksdb: " + s.ToString());
  }

private:
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::WriteOptions sync_;
};

void check_lmdb(int rc) {
  if (rc != MDB_SUCCESS)
    throw std::runtime_error(std::string{"lmdb: "} + mdb_strerror(rc));
}

/// A write transaction per commit; LMDB's default durability (the data
/// pages and then the meta page synced at commit).
class lmdb_candidate : public candidate {
public:
  explicit lmdb_candidate(const fs::path& dir) {
    check_lmdb(mdb_env_create(&env_));
    check_lmdb(mdb_env_set_mapsize(env_, std::size_t{8} << 30));
    check_lmdb(mdb_env_open(env_, dir.c_str(), 0, 0644));
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn));
    check_lmdb(mdb_dbi_open(txn, nullptr, 0, &dbi_));
    check_lmdb(mdb_txn_commit(txn));
  }
  ~lmdb_candidate() override {
    mdb_env_close(env_);
  }
  const char* name() const override {
    return "lmdb";
  }
  void commit(const std::vector<op>& ops) override {
    MDB_txn* txn = nullptr;
    check_lmdb(mdb_txn_begin(env_, nullptr, 0, &txn));
    for (auto& o : ops) {
      auto k = key_of(o);
      MDB_val key{k.size(), k.data()};
      int rc;
      if (o.put) {
        MDB_val value{o.record->size(), const_cast<char*>(o.record->data())};
        rc = mdb_put(txn, dbi_, &key, &value, 0);
      } else {
        rc = mdb_del(txn, dbi_, &key, nullptr);
      }
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        check_lmdb(rc);
      }
    }
    check_lmdb(mdb_txn_commit(txn));
  }

private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

/// A queued QoS 1 record as hub_store packs it (format version, packet id,
/// released, qos, retain, subscription ids, then the message's 14 fields)
/// with a `payload`-byte body, the `variant`th of its kind.
std::string queued_record(std::size_t payload, std::uint32_t variant) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p{buf};
  p.pack_array(7);
  p.pack(1);                    // store format
  p.pack(std::uint16_t{4711});  // packet id
  p.pack(false);                // released
  p.pack(std::uint8_t{1});      // qos
  p.pack(false);                // retain
  p.pack(std::vector<std::uint32_t>{});
  p.pack_array(14);
  p.pack(std::string{"hubflow-bench/t"});
  // Incompressible bytes, each variant its own, as sensor data mostly is:
  // RocksDB compresses its files, and repeated bytes or records would
  // shrink to nearly nothing.
  std::string body(payload, '\0');
  std::uint32_t x = 2463534242u + variant * 2654435761u;
  for (auto& c : body) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5; // xorshift32
    c = static_cast<char>(x);
  }
  p.pack_bin(static_cast<std::uint32_t>(body.size()));
  p.pack_bin_body(body.data(), static_cast<std::uint32_t>(body.size()));
  p.pack(std::uint8_t{1});
  p.pack(false);
  p.pack(std::int64_t{1764756000123456789}); // received, ns
  p.pack(std::string{"hfb-12345-pub-0"});    // origin: the publisher
  p.pack(false);
  p.pack(std::uint8_t{0});
  p.pack(false);
  p.pack(std::uint32_t{0});
  p.pack(std::string{});
  p.pack(std::string{});
  p.pack(std::string{});
  p.pack_array(0);
  return std::string{buf.data(), buf.size()};
}

struct phase_result {
  std::uint64_t records = 0; // puts made durable
  std::uint64_t commits = 0;
  double seconds = 0;
};

/// The hub's side and the writer's: `messages` messages, each putting one
/// record per writer and deleting, per writer, the record that leaves a
/// 20-message in-flight window (never, with `keep`); the producer waits
/// while `window` messages are not yet durable.
phase_result replay(candidate& store, std::uint64_t messages, int writers,
                    const std::vector<std::string>& records, int window,
                    bool keep, std::uint64_t first_seq) {
  constexpr std::uint64_t inflight = 20; // hub.message.inflight's default
  std::mutex mutex;
  std::condition_variable wake;
  std::vector<op> pending;
  std::uint64_t appended = 0; // messages whose records are in `pending`
  std::uint64_t durable = 0;  // messages whose records are committed
  bool done = false;
  std::string failure;
  phase_result r;

  std::thread writer{[&] {
    std::vector<op> batch;
    for (;;) {
      std::uint64_t through;
      {
        std::unique_lock<std::mutex> lock{mutex};
        wake.wait(lock, [&] { return done || !pending.empty(); });
        if (pending.empty())
          return;
        batch.swap(pending);
        through = appended;
      }
      try {
        store.commit(batch);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> guard{mutex};
        failure = e.what();
        durable = messages; // lets the producer finish
        wake.notify_all();
        return;
      }
      for (auto& o : batch)
        r.records += o.put ? 1 : 0;
      ++r.commits;
      batch.clear();
      {
        std::lock_guard<std::mutex> guard{mutex};
        durable = through;
      }
      wake.notify_all();
    }
  }};

  std::vector<std::string> clients;
  for (int w = 0; w < writers; ++w)
    clients.push_back("hfb-12345-sub-" + std::to_string(w));
  auto start = clock_type::now();
  for (std::uint64_t m = 0; m < messages; ++m) {
    std::unique_lock<std::mutex> lock{mutex};
    wake.wait(lock, [&] { return m - durable < std::uint64_t(window); });
    auto seq = first_seq + m;
    bool was_empty = pending.empty();
    for (auto& c : clients) {
      pending.push_back(op{true, c, seq, &records[seq % records.size()]});
      if (!keep && m >= inflight)
        pending.push_back(op{false, c, seq - inflight, nullptr});
    }
    appended = m + 1;
    lock.unlock();
    if (was_empty)
      wake.notify_all();
  }
  {
    std::unique_lock<std::mutex> lock{mutex};
    wake.wait(lock, [&] { return durable >= messages; });
    done = true;
  }
  wake.notify_all();
  writer.join();
  r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  if (!failure.empty())
    throw std::runtime_error(store.name() + std::string{": "} + failure);
  return r;
}

std::uint64_t bytes_under(const fs::path& dir) {
  std::uint64_t total = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file())
      total += e.file_size();
  return total;
}

std::unique_ptr<candidate> make(const std::string& name, const fs::path& dir) {
  if (name == "sqlite-wal")
    return std::make_unique<sqlite_candidate>(dir);
  if (name == "rocksdb")
    return std::make_unique<rocksdb_candidate>(dir);
  return std::make_unique<lmdb_candidate>(dir);
}

/// One store's figures from one round.
struct figures {
  double records_per_s, commits_per_s, records_per_commit, fill_records_per_s,
    disk_bytes_per_record;
};

/// Both phases against a new store of `name` under `root`, removed after.
figures measure(const std::string& name, const fs::path& root,
                std::uint64_t messages, std::uint64_t fill, int writers,
                int window, const std::vector<std::string>& records) {
  auto dir = root / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto store = make(name, dir);
  auto steady = replay(*store, messages, writers, records, window, false, 0);
  // The fill goes on in the same store, after what steady left (the last
  // 20 records of each writer): sequence numbers past it.
  auto filled = replay(*store, fill / writers, writers, records, window, true,
                       messages);
  store.reset(); // closed: everything flushed
  auto bytes = bytes_under(dir);
  fs::remove_all(dir);
  return figures{steady.records / steady.seconds,
                 steady.commits / steady.seconds,
                 static_cast<double>(steady.records) / steady.commits,
                 filled.records / filled.seconds,
                 fill ? static_cast<double>(bytes) / fill : 0};
}

/// The median of one field over the rounds (the upper one of two).
double median_of(std::vector<figures> rounds, double figures::*field) {
  std::sort(rounds.begin(), rounds.end(), [&](auto& a, auto& b) {
    return a.*field < b.*field;
  });
  return rounds[rounds.size() / 2].*field;
}

} // namespace

int main(int argc, char** argv) {
  fs::path root;
  std::uint64_t messages = 20000, fill = 100000;
  int writers = 1, window = 100, repeat = 1;
  std::size_t payload = 64;
  bool json = false;
  std::vector<std::string> stores{"sqlite-wal", "rocksdb", "lmdb"};
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc)
          throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--dir") {
        root = value();
      } else if (a == "--messages") {
        messages = std::stoull(value());
      } else if (a == "--fill") {
        fill = std::stoull(value());
      } else if (a == "--writers") {
        writers = std::stoi(value());
      } else if (a == "--window") {
        window = std::stoi(value());
      } else if (a == "--payload") {
        payload = std::stoull(value());
      } else if (a == "--repeat") {
        repeat = std::stoi(value());
      } else if (a == "--json") {
        json = true;
      } else if (a == "--stores") {
        stores.clear();
        std::string list = value();
        for (std::size_t at = 0; at <= list.size();) {
          auto comma = std::min(list.find(',', at), list.size());
          stores.push_back(list.substr(at, comma - at));
          at = comma + 1;
        }
      } else {
        throw std::invalid_argument("unknown option " + a);
      }
    }
    for (auto& name : stores)
      if (name != "sqlite-wal" && name != "rocksdb" && name != "lmdb")
        throw std::invalid_argument("no store " + name);
    if (writers < 1 || window < 1 || repeat < 1 || messages < 1)
      throw std::invalid_argument("--writers, --window, --repeat and "
                                  "--messages must be at least 1");
  } catch (const std::exception& e) {
    std::cerr << "store-candidates: " << e.what()
              << "\nusage: store-candidates [--dir DIR] [--messages N] "
                 "[--fill N] [--writers W] [--window N] [--payload BYTES] "
                 "[--repeat N] [--json] [--stores sqlite-wal,rocksdb,lmdb]\n";
    return 2;
  }
  bool own_root = root.empty();
  if (own_root)
    root = fs::current_path() / ("store-candidates-" + std::to_string(getpid()));
  std::vector<std::string> records; // cycled through by sequence number
  for (std::uint32_t v = 0; v < 64; ++v)
    records.push_back(queued_record(payload, v));
  std::map<std::string, std::vector<figures>> rounds;
  int status = 0;
  for (int round = 0; round < repeat; ++round) {
    for (std::size_t k = 0; k < stores.size(); ++k) {
      // Who goes first rotates from round to round.
      auto& name = stores[(k + round) % stores.size()];
      try {
        rounds[name].push_back(
          measure(name, root, messages, fill, writers, window, records));
      } catch (const std::exception& e) {
        std::cerr << "store-candidates: " << e.what() << "\n";
        status = 1;
      }
    }
  }
  if (own_root)
    fs::remove_all(root);
  for (auto& name : stores) {
    auto& r = rounds[name];
    if (r.empty())
      continue;
    auto m = [&](double figures::*field) { return median_of(r, field); };
    if (json) {
      std::cout << nlohmann::json{
                     {"store", name},
                     {"writers", writers},
                     {"payload", payload},
                     {"record_bytes", records[0].size()},
                     {"rounds", r.size()},
                     {"records_per_s", m(&figures::records_per_s)},
                     {"commits_per_s", m(&figures::commits_per_s)},
                     {"records_per_commit", m(&figures::records_per_commit)},
                     {"fill_records_per_s", m(&figures::fill_records_per_s)},
                     {"disk_bytes_per_record",
                      m(&figures::disk_bytes_per_record)}}
                     .dump()
                << std::endl;
    } else {
      std::printf("%-11s W=%d %5zu B payload (%zu B record): %8.0f records/s, "
                  "%6.0f commits/s, %6.1f records/commit; fill %8.0f "
                  "records/s, %7.1f B on disk per record (medians of %zu)\n",
                  name.c_str(), writers, payload, records[0].size(),
                  m(&figures::records_per_s), m(&figures::commits_per_s),
                  m(&figures::records_per_commit),
                  m(&figures::fill_records_per_s),
                  m(&figures::disk_bytes_per_record), r.size());
    }
  }
  return status;
}
