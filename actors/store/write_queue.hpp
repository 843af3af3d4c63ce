// What the hub's store and the disk buffers share about their writer
// threads: the queue of writes the owner hands over and the writer takes in
// groups, and the wall clock their records carry.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace hubflow::store {

/// Writes handed from an owner's thread to one writer thread, in order.
/// The writer takes whatever came while it applied the last group (group
/// commit), so a slow disk makes groups larger rather than the owner wait.
template <class Op>
class write_queue {
public:
  /// Adds `op`; wakes the writer if it was idle.
  void push(Op op) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      was_empty = pending_.empty();
      pending_.push_back(std::move(op));
    }
    if (was_empty)
      wake_.notify_one();
  }

  /// Waits until there is something to write or stop() was called, then
  /// moves into `group` (which must be empty) everything queued, or only
  /// the oldest op when `one_at_a_time`. False once stopped with nothing
  /// left: what was pushed before stop() is still taken.
  bool take(std::vector<Op>& group, bool one_at_a_time = false) {
    std::unique_lock<std::mutex> lock{mutex_};
    wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty())
      return false;
    if (one_at_a_time) {
      group.push_back(std::move(pending_.front()));
      pending_.erase(pending_.begin());
    } else {
      group.swap(pending_);
    }
    return true;
  }

  /// Waits up to `d` for stop(); true when it was called.
  bool stopped_within(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock{mutex_};
    return wake_.wait_for(lock, d, [&] { return stopping_; });
  }

  /// Lets the writer finish what is queued and then leave take().
  void stop() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      stopping_ = true;
    }
    wake_.notify_all();
  }

private:
  std::mutex mutex_; // guards pending_ and stopping_
  std::condition_variable wake_;
  std::vector<Op> pending_;
  bool stopping_ = false;
};

/// Milliseconds since the Unix epoch: the time the stores' records carry
/// (an offline session's start, a dead letter's, a set-aside file's name).
inline std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

} // namespace hubflow::store
