// The embedded hub's durable store (`persistence:`, docs/persistence.md):
// MQTT sessions, the messages they still owe their clients, and retained
// messages, in one SQLite database in WAL mode.
//
// The hub calls the write functions from its I/O thread; they only append
// to a list. A writer thread of the store's own applies the list in one
// transaction per commit and tells the hub, through on_durable, how far
// the records are safe: a QoS 1/2 publish is acknowledged once the records
// it caused are (sync batch/always), so the I/O thread never waits for a
// disk. Records are msgpack with a format version (store_format).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/message.hpp"
#include "store/write_queue.hpp"

struct sqlite3;

namespace hubflow::store {

/// The version written into every store; a store of another version is
/// refused at open.
inline constexpr int store_format = 1;

/// One subscription of a stored session.
struct subscription_record {
  std::string filter;
  std::uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;
  std::uint32_t identifier = 0; // MQTT 5 subscription identifier; 0: none
};

/// A session as stored: everything but its messages.
struct session_record {
  std::string client_id;
  bool anonymous = true;
  std::string owner; // the principal's username when not anonymous
  std::uint32_t expiry_interval = 0; // seconds; 0xFFFFFFFF: never
  /// When the session went offline, ms since the epoch; 0 while online
  /// (a crash leaves it 0: the session counts as offline since the start).
  std::int64_t offline_since_ms = 0;
  std::vector<subscription_record> subscriptions;
  /// QoS 2 packet ids the client sent and we answered with PUBREC, without
  /// its PUBREL yet: a resend after a restart is not routed twice.
  std::vector<std::uint16_t> incoming_qos2;
  std::uint16_t next_packet_id = 1;
};

/// A message a session owes its client, queued or in flight.
struct queued_record {
  std::uint64_t seq = 0;       // per session: the queue's order
  std::uint16_t packet_id = 0; // 0: not sent yet
  bool released = false;       // QoS 2: PUBREC came, PUBREL sent
  std::uint8_t qos = 0;
  bool retain = false;
  std::vector<std::uint32_t> subscription_ids;
  message msg;
};

/// What a store holds, as load() reads it.
struct store_contents {
  std::vector<session_record> sessions;
  /// client id -> its messages in `seq` order
  std::map<std::string, std::vector<queued_record>> queues;
  std::vector<message> retained;
};

/// Counts for `hubflowctl store` and the start-up log.
struct store_summary {
  std::size_t sessions = 0;
  std::size_t messages = 0;
  std::size_t retained = 0;
  std::uint64_t file_bytes = 0; // database and write-ahead log
  /// client id -> messages it holds
  std::map<std::string, std::size_t> queue_depths;
};

class hub_store {
public:
  /// Opens (creating it and `cfg.path` if missing) <cfg.path>/hubflow.db,
  /// checks it and starts the writer. nullptr with `error` naming the file
  /// and the problem when the store cannot be used (corrupt, truncated,
  /// another format version, not writable).
  static std::unique_ptr<hub_store> open(const persistence_config& cfg,
                                         std::string& error);
  /// The store's file for `cfg`.
  static std::string file_of(const persistence_config& cfg);
  /// Moves a store that does not open aside (<file>.corrupt-<time>) so the
  /// next open starts empty; the new name, or "" with `error`.
  static std::string move_aside(const persistence_config& cfg,
                                std::string& error);
  /// Reads a store without opening it for writing (hubflowctl store).
  static bool summarize(const std::string& file, store_summary& out,
                        std::string& error);

  /// Commits what was written and stops the writer; later writes are
  /// not stored and no callback runs any more. Idempotent.
  void close();
  ~hub_store();
  hub_store(const hub_store&) = delete;
  hub_store& operator=(const hub_store&) = delete;

  /// Everything stored; called once, before the first write.
  store_contents load();

  // -- writes (hub thread), applied in order ---------------------------------

  void put_session(session_record s);
  /// Removes the session and every message it holds.
  void remove_session(const std::string& client_id);
  void put_message(const std::string& client_id, queued_record m);
  void remove_message(const std::string& client_id, std::uint64_t seq);
  void put_retained(const message& msg);
  void remove_retained(const std::string& topic);

  /// The number of the last write; durable() reaches it once it is safe.
  std::uint64_t written() const noexcept {
    return written_;
  }
  /// How far the writes are safe (all of them with sync: off, which
  /// promises nothing beyond a clean stop).
  std::uint64_t durable() const noexcept {
    return durable_.load(std::memory_order_acquire);
  }
  /// Whether an acknowledgement must wait for durable() (sync batch or
  /// always).
  bool acks_wait() const noexcept {
    return cfg_.sync != persistence_sync::off;
  }
  /// Whether the store refuses new records: its last commit failed (disk
  /// full, read-only) or it reached persistence.max_size. QoS 1/2
  /// publishes that would be stored are then refused.
  bool refusing() const noexcept {
    return refusing_.load(std::memory_order_acquire);
  }

  /// Called on the writer thread after every commit with the new
  /// durable(), or with `failed` when the commit failed (its writes are
  /// not stored; durable() does not advance past them).
  using durable_callback = std::function<void(std::uint64_t durable,
                                              std::uint64_t failed_through)>;
  void on_durable(durable_callback f);

private:
  struct write_op;
  struct statements;

  hub_store(const persistence_config& cfg, sqlite3* db,
            std::unique_ptr<statements> prepared);
  void append(write_op op);
  void run_writer();
  bool commit(std::vector<write_op>& ops);
  /// Which of `ops` are message records that a later op of the same batch
  /// removes or replaces (the same session and sequence number, or the
  /// whole session): commit() does not write them. An online subscriber
  /// often acknowledges a message before the commit that would store it,
  /// and then the message never needs the disk.
  static std::vector<bool> superseded_puts(const std::vector<write_op>& ops);
  void check_size();

  persistence_config cfg_;
  sqlite3* db_;
  std::unique_ptr<statements> statements_; // the writer thread's
  std::uint64_t written_ = 0; // hub thread only
  std::atomic<std::uint64_t> durable_{0};
  std::atomic<bool> refusing_{false};

  bool closed_ = false; // hub thread only: it writes and closes
  write_queue<write_op> queue_;
  std::mutex callback_mutex_; // guards callback_
  durable_callback callback_;
  std::thread writer_;
};

} // namespace hubflow::store
