// The function supervisor's decisions as plain functions, so they can be
// tested without actors: when to start instances, how many invocations an
// instance takes at once (and takes over from a busy one), when to retire
// instances, how long to wait before restarting after failures.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>

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

/// The most invocations one batch may hold for a handler whose invocations
/// take `mean` on average: enough that the last of them waits at most about
/// `budget` behind the others. A batch only saves the hop to the instance's
/// thread (tens of microseconds), so it pays off for fast handlers alone; a
/// handler of `budget` or more gets one invocation at a time, and so does
/// one not measured yet (nullopt), until its first invocation tells.
inline std::size_t batch_limit(std::optional<std::chrono::microseconds> mean,
                               std::chrono::microseconds budget,
                               std::size_t cap) {
  if (!mean)
    return 1;
  if (mean->count() <= 0)
    return std::max<std::size_t>(cap, 1);
  auto fits = 1 + static_cast<std::size_t>(budget / *mean);
  return std::clamp<std::size_t>(fits, 1, std::max<std::size_t>(cap, 1));
}

/// How many queued invocations one idle instance takes at once, with
/// `idle_left` idle ready instances still to be served (this one included).
/// The queue is shared among those and the instances still starting, so
/// the first instance that is ready leaves their share for them, and never
/// more than `limit` (batch_limit). While the pool is below `max`, one
/// each: more instances are on their way (or will be once a restart
/// backoff passes) for the invocations nobody takes now.
inline std::size_t batch_share(const pool_view& p, std::size_t idle_left,
                               std::size_t limit) {
  if (p.ready + p.starting < p.max)
    return 1;
  auto takers = idle_left + p.starting;
  if (takers == 0)
    return 1;
  auto share = (p.queued + takers - 1) / takers;
  return std::clamp<std::size_t>(share, 1, std::max<std::size_t>(limit, 1));
}

/// How many not yet started invocations an idle instance takes over from a
/// busy one's batch holding `unstarted` of them: half, rounded up, so that
/// a batch whose current invocation runs long holds nothing hostage while
/// an instance of the pool is idle, and the two share what is left.
inline std::size_t steal_share(std::size_t unstarted) {
  return (unstarted + 1) / 2;
}

/// The running mean of invocation times that the batch limit follows: the
/// batch's mean moves the old one a sixteenth of the way per invocation in
/// the batch, at most a quarter, so one odd invocation does not swing it,
/// and a handler that turns slow (one 1 s call after 50 us ones: the mean
/// passes 60 ms) is followed at once.
inline std::chrono::microseconds
updated_mean(std::optional<std::chrono::microseconds> old,
             std::chrono::microseconds batch_total, std::size_t batch_count) {
  if (batch_count == 0)
    return old.value_or(std::chrono::microseconds{0});
  auto batch_mean = batch_total / static_cast<std::int64_t>(batch_count);
  if (!old)
    return batch_mean;
  auto weight = static_cast<std::int64_t>(std::min<std::size_t>(batch_count, 4));
  return *old + (batch_mean - *old) * weight / 16;
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
