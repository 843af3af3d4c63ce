// An endpoint's store-and-forward queue on disk (`buffer: disk`,
// docs/persistence.md): the records a rule handed the endpoint and the
// endpoint has not confirmed yet, in one SQLite database in WAL mode per
// endpoint, <persistence.path>/buffer-<endpoint>.db. Records the endpoint
// refused for good are kept in a dead-letter table.
//
// As the hub's store (hub_store.hpp), a writer thread of its own does all
// disk work: opening, group commits of the appends and removals, and
// reads of records the owner no longer holds in memory. The owner (the
// buffer actor, endpoints/disk_buffer_endpoint.hpp) only appends to a list
// and learns the results through the callbacks of its `listener`, which
// run on the writer thread. Records are msgpack with a format version.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/config.hpp"
#include "core/message.hpp"
#include "store/write_queue.hpp"

struct sqlite3;

namespace hubflow::store {

/// The version written into every buffer file; another one is refused.
inline constexpr int buffer_format = 1;

/// A record as read back: what a rule sent the endpoint.
struct buffered_record {
  std::uint64_t seq = 0; // the order records were taken in, from 1
  std::string target;    // the rule's `to.topic` for the endpoint
  message msg;
  std::size_t bytes = 0; // its packed size: what buffer.max_bytes counts
};

/// A record's stored form (format version, target, message): its size is
/// what counts against buffer.max_bytes.
std::string pack_buffered(const std::string& target, const message& msg);

/// What a buffer file holds, for `hubflowctl store` and the start-up log.
struct buffer_summary {
  std::string file;
  std::string endpoint;
  std::uint64_t records = 0; // waiting to be forwarded
  std::uint64_t bytes = 0;   // their packed sizes
  std::uint64_t dead_letters = 0;
  std::uint64_t file_bytes = 0; // database and write-ahead log
};

class disk_buffer {
public:
  /// What the writer thread reports; every callback runs on that thread.
  struct listener {
    /// The file is open: what it holds (records, bytes, dead_letters) and
    /// the highest sequence number it ever used (next appends go above).
    std::function<void(const buffer_summary& held, std::uint64_t last_seq)>
      opened;
    /// The file cannot be used (damaged, another format, not writable);
    /// nothing else is reported after this.
    std::function<void(const std::string& error)> failed;
    /// After each commit: the appends up to `through` are durable; or, when
    /// `failed_to` is not 0, the appends of [failed_from, failed_to] in a
    /// commit that failed are not stored.
    std::function<void(std::uint64_t through, std::uint64_t failed_from,
                       std::uint64_t failed_to)>
      committed;
    /// The answer to read(): records from `from` in order, and whether
    /// that was all there was up to `through`.
    std::function<void(std::vector<buffered_record> records, bool complete,
                       std::uint64_t through)>
      read;
    /// Another disk_buffer of this process wants the file (a reload
    /// replaced the endpoint): the owner should finish what it took and
    /// close. Runs on the other buffer's writer thread.
    std::function<void()> handover;
  };

  /// The buffer file of endpoint `endpoint` under `cfg.path`.
  static std::string file_of(const persistence_config& cfg,
                             const std::string& endpoint);
  /// Starts the writer thread, which opens the file (creating it and its
  /// directory if missing) and reports through `events.opened` or
  /// `events.failed`. While another disk_buffer of this process holds the
  /// file (the one a reload replaces), it asks that one to hand over
  /// (its `handover` callback) and waits until it has closed.
  static std::unique_ptr<disk_buffer> start(const persistence_config& cfg,
                                            const std::string& endpoint,
                                            listener events);
  /// Opens the buffer file of `endpoint` as start() would, and closes it
  /// again: false with `error` naming the file when it cannot be used, so
  /// that the broker refuses to start rather than retry it for ever.
  static bool check(const persistence_config& cfg, const std::string& endpoint,
                    std::string& error);
  /// Reads every buffer file in `dir` without opening it for writing
  /// (hubflowctl store). False with `error` when one cannot be read.
  static bool summarize(const std::string& dir,
                        std::vector<buffer_summary>& out, std::string& error);

  /// Applies what was queued, stops the writer and releases the file; no
  /// callback runs after it returns. Idempotent.
  void close();
  ~disk_buffer();
  disk_buffer(const disk_buffer&) = delete;
  disk_buffer& operator=(const disk_buffer&) = delete;

  // -- the owner's requests, applied in order ----------------------------------

  /// Stores record `seq` (pack_buffered's bytes); seqs only grow.
  void append(std::uint64_t seq, std::string packed);
  /// Deletes record `seq`: the endpoint confirmed it.
  void remove(std::uint64_t seq);
  /// Moves record `seq` to the dead-letter table with `reason`.
  void dead_letter(std::uint64_t seq, std::string reason);
  /// Reads up to `limit` records from `from` in order (after the commit
  /// of everything requested before), answered through `events.read`;
  /// `through` is the highest seq appended when it was asked.
  void read(std::uint64_t from, std::size_t limit, std::uint64_t through);

private:
  struct op;

  disk_buffer(const persistence_config& cfg, std::string endpoint,
              listener events);
  void run();
  bool open_file();
  void apply(std::vector<op>& ops);
  void commit(std::vector<op>& ops, std::size_t begin, std::size_t end);
  void answer_read(const op& o);

  persistence_config cfg_;
  std::string endpoint_;
  std::string file_;
  listener events_;
  sqlite3* db_ = nullptr; // the writer thread's only

  write_queue<op> queue_;
  std::thread writer_;
};

} // namespace hubflow::store
