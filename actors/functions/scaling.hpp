// The function supervisor's decisions as plain functions, so they can be
// tested without actors: when to start instances, how many invocations an
// instance takes at once, when to retire instances, how long to wait before
// restarting after failures.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace hubflow::scaling {

/// What the supervisor sees of its pool at one moment.
struct pool_view {
  std::size_t ready = 0;    // instances that can take invocations (idle+busy)
  std::size_t idle = 0;     // ready and not busy
  std::size_t starting = 0; // spawned, still creating their runtime instance
  std::size_t queued = 0;   // invocations waiting for an instance
  std::size_t min = 0;
  std::size_t max = 1;
};

/// How many instances to start now: enough to keep `min`, plus one per
/// queued invocation that no idle or starting instance will take, never
/// beyond `max` in total.
inline std::size_t instances_to_start(const pool_view& p) {
  auto total = p.ready + p.starting;
  if (total >= p.max)
    return 0;
  auto room = p.max - total;
  std::size_t below_min = p.min > total ? p.min - total : 0;
  auto covered = p.idle + p.starting;
  std::size_t uncovered = p.queued > covered ? p.queued - covered : 0;
  return std::min(room, std::max(below_min, uncovered));
}

/// How many queued invocations one idle instance takes at once, with
/// `idle_left` idle instances still to be served (this one included). While
/// the pool can still grow, one each, so a slow function scales out instead
/// of queueing behind one instance; at `max`, the queue is shared among the
/// idle instances, at most `limit` each.
inline std::size_t batch_share(const pool_view& p, std::size_t idle_left,
                               std::size_t limit) {
  if (p.ready + p.starting < p.max || idle_left == 0)
    return 1;
  auto share = (p.queued + idle_left - 1) / idle_left;
  return std::clamp<std::size_t>(share, 1, limit);
}

/// An idle instance retires after `idletime` without work, unless that
/// would take the pool below `min`.
inline bool should_retire(std::size_t ready, std::size_t min,
                          std::chrono::milliseconds idle_for,
                          std::chrono::milliseconds idletime) {
  return ready > min && idle_for >= idletime;
}

/// Exponential backoff for restarts after consecutive failures: 100 ms,
/// 200 ms, 400 ms ... capped at 10 s. No failures: restart at once.
inline std::chrono::milliseconds restart_backoff(unsigned failures) {
  if (failures == 0)
    return std::chrono::milliseconds{0};
  auto shift = std::min(failures - 1, 7u);
  return std::min(std::chrono::milliseconds{100 << shift},
                  std::chrono::milliseconds{10000});
}

/// How often the supervisor checks for idle instances.
inline std::chrono::milliseconds idle_check_interval(
  std::chrono::milliseconds idletime) {
  return std::clamp(idletime / 4, std::chrono::milliseconds{50},
                    std::chrono::milliseconds{1000});
}

} // namespace hubflow::scaling
