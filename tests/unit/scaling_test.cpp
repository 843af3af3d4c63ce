// The function supervisor's decisions (functions/scaling.hpp) on their own:
// how many instances to start, how many invocations one takes at once (and
// how many a slow or fast handler may take), when an idle one retires, how
// long a restart waits after failures.
#include <gtest/gtest.h>

#include "functions/scaling.hpp"

using namespace hubflow::scaling;
using namespace std::chrono_literals;

namespace {

pool_view pool(std::size_t ready, std::size_t idle, std::size_t starting,
               std::size_t queued, std::size_t min, std::size_t max) {
  pool_view p;
  p.ready = ready;
  p.idle = idle;
  p.starting = starting;
  p.queued = queued;
  p.min = min;
  p.max = max;
  return p;
}

} // namespace

// -- instances_to_start ---------------------------------------------------------

TEST(instances_to_start, nothing_with_min_zero_and_no_work) {
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 0, 0, 4)), 0u);
}

TEST(instances_to_start, fills_up_to_min_at_start) {
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 0, 2, 4)), 2u);
  // Instances still starting count towards min.
  EXPECT_EQ(instances_to_start(pool(0, 0, 2, 0, 2, 4)), 0u);
  EXPECT_EQ(instances_to_start(pool(1, 1, 0, 0, 2, 4)), 1u);
}

TEST(instances_to_start, one_per_queued_invocation_nobody_takes) {
  // All ready instances busy, three waiting: three more.
  EXPECT_EQ(instances_to_start(pool(1, 0, 0, 3, 0, 10)), 3u);
  // An idle instance takes one of them; a starting one another.
  EXPECT_EQ(instances_to_start(pool(2, 1, 1, 3, 0, 10)), 1u);
  // Everything waiting is covered already.
  EXPECT_EQ(instances_to_start(pool(2, 2, 1, 3, 0, 10)), 0u);
}

TEST(instances_to_start, never_beyond_max) {
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 100, 0, 4)), 4u);
  EXPECT_EQ(instances_to_start(pool(3, 0, 0, 100, 0, 4)), 1u);
  EXPECT_EQ(instances_to_start(pool(2, 0, 2, 100, 0, 4)), 0u);
  EXPECT_EQ(instances_to_start(pool(4, 0, 0, 100, 0, 4)), 0u);
  // min is kept within max too (the config refuses min > max; the
  // decision does not rely on that).
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 0, 8, 4)), 4u);
}

TEST(instances_to_start, the_larger_of_min_and_demand) {
  // Below min and with demand: start what covers both, not their sum.
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 1, 3, 10)), 3u);
  EXPECT_EQ(instances_to_start(pool(0, 0, 0, 5, 3, 10)), 5u);
}

TEST(instances_to_start, filling_a_pool_step_by_step_stops_at_max) {
  // Simulate the supervisor: each decision's instances become ready and
  // busy with one queued invocation each, while more keep arriving.
  pool_view p = pool(0, 0, 0, 0, 0, 4);
  for (int round = 0; round < 10; ++round) {
    p.queued += 3;
    auto n = instances_to_start(p);
    p.ready += n;
    auto taken = std::min(p.queued, n);
    p.queued -= taken;
    EXPECT_LE(p.ready, p.max);
  }
  EXPECT_EQ(p.ready, 4u);
}

// -- batch_limit ------------------------------------------------------------------

TEST(batch_limit, one_at_a_time_before_the_first_measurement) {
  // Nothing known yet: the handler may be slow.
  EXPECT_EQ(batch_limit(std::nullopt, 2ms, 64), 1u);
}

TEST(batch_limit, a_slow_handler_never_batches) {
  EXPECT_EQ(batch_limit(1s, 2ms, 64), 1u);
  EXPECT_EQ(batch_limit(2ms, 2ms, 64), 2u); // the second waits one budget
  EXPECT_EQ(batch_limit(3ms, 2ms, 64), 1u);
}

TEST(batch_limit, a_fast_handler_batches_within_the_budget) {
  // The last of a batch waits at most about the budget behind the others.
  EXPECT_EQ(batch_limit(100us, 2ms, 64), 21u);
  EXPECT_EQ(batch_limit(500us, 2ms, 64), 5u);
  for (auto mean : {1us, 10us, 90us, 400us, 1500us}) {
    auto n = batch_limit(std::chrono::microseconds{mean}, 2ms, 64);
    EXPECT_LE((n - 1) * mean, 2ms) << mean.count();
  }
}

TEST(batch_limit, never_beyond_the_cap) {
  EXPECT_EQ(batch_limit(10us, 2ms, 64), 64u);
  EXPECT_EQ(batch_limit(0us, 2ms, 64), 64u);
}

// -- batch_share ------------------------------------------------------------------

TEST(batch_share, one_each_while_the_pool_can_grow) {
  // A slow function must scale out, not queue behind its first instance.
  EXPECT_EQ(batch_share(pool(1, 1, 0, 50, 0, 4), 1, 64), 1u);
  EXPECT_EQ(batch_share(pool(2, 1, 1, 50, 0, 4), 1, 64), 1u);
}

TEST(batch_share, at_max_the_queue_is_split_among_idle_instances) {
  EXPECT_EQ(batch_share(pool(1, 1, 0, 50, 0, 1), 1, 64), 50u);
  EXPECT_EQ(batch_share(pool(4, 2, 0, 50, 0, 4), 2, 64), 25u);
  EXPECT_EQ(batch_share(pool(4, 3, 0, 10, 0, 4), 3, 64), 4u); // rounds up
}

TEST(batch_share, starting_instances_get_their_share) {
  // The case: max 4, the first instance ready, three starting,
  // eight queued. It used to take all eight.
  EXPECT_EQ(batch_share(pool(1, 1, 3, 8, 0, 4), 1, 64), 2u);
  EXPECT_EQ(batch_share(pool(2, 1, 2, 100, 0, 4), 1, 64), 34u);
  // And a slow handler's batch limit keeps it at one.
  EXPECT_EQ(batch_share(pool(1, 1, 3, 8, 0, 4), 1, batch_limit(1s, 2ms, 64)),
            1u);
}

TEST(batch_share, leaves_work_for_every_instance_of_the_pool) {
  // Serve the idle instances one after another as the supervisor does:
  // whatever the mix of idle and starting instances, everyone that is
  // ready or about to be gets something while there is enough work.
  for (std::size_t starting = 0; starting <= 3; ++starting) {
    for (std::size_t queued = 4; queued <= 200; queued += 7) {
      auto idle = 4 - starting;
      auto p = pool(idle, idle, starting, queued, 0, 4);
      for (auto left = idle; left > 0; --left) {
        auto n = batch_share(p, left, 64);
        ASSERT_GE(n, 1u);
        p.queued -= std::min(n, p.queued);
      }
      // What is left covers each starting instance at least once.
      EXPECT_GE(p.queued, starting) << starting << " " << queued;
    }
  }
}

TEST(batch_share, never_beyond_the_limit_nor_below_one) {
  EXPECT_EQ(batch_share(pool(1, 1, 0, 1000, 0, 1), 1, 64), 64u);
  EXPECT_EQ(batch_share(pool(2, 2, 0, 1, 0, 2), 2, 64), 1u);
  EXPECT_EQ(batch_share(pool(1, 1, 0, 10, 0, 1), 1, 0), 1u);
}

// -- steal_share ------------------------------------------------------------------

TEST(steal_share, half_of_what_has_not_started_rounded_up) {
  EXPECT_EQ(steal_share(0), 0u);
  EXPECT_EQ(steal_share(1), 1u); // a lone waiting invocation moves
  EXPECT_EQ(steal_share(2), 1u);
  EXPECT_EQ(steal_share(7), 4u);
  EXPECT_EQ(steal_share(63), 32u);
}

// -- updated_mean -----------------------------------------------------------------

TEST(updated_mean, the_first_batch_sets_it) {
  EXPECT_EQ(updated_mean(std::nullopt, 1000us, 4), 250us);
  EXPECT_EQ(updated_mean(std::nullopt, 0us, 0), 0us);
  EXPECT_EQ(updated_mean(300us, 0us, 0), 300us); // nothing ran
}

TEST(updated_mean, a_handler_turning_slow_stops_batching_at_once) {
  // 50 us calls, then one of a second: the next batches hold one each.
  auto mean = updated_mean(std::nullopt, 64 * 50us, 64);
  EXPECT_GT(batch_limit(mean, 2ms, 64), 32u);
  mean = updated_mean(mean, 1s, 1);
  EXPECT_EQ(batch_limit(mean, 2ms, 64), 1u);
}

TEST(updated_mean, one_odd_invocation_does_not_swing_it) {
  auto mean = updated_mean(1s, 50us, 1);
  EXPECT_GT(mean, 900ms);
  // Fast again for good: batching comes back within a few hundred calls.
  for (int i = 0; i < 50; ++i)
    mean = updated_mean(mean, 4 * 50us, 4);
  EXPECT_GT(batch_limit(mean, 2ms, 64), 32u);
}

// -- should_retire --------------------------------------------------------------

TEST(should_retire, after_idletime_only) {
  EXPECT_FALSE(should_retire(2, 0, 999ms, 1s));
  EXPECT_TRUE(should_retire(2, 0, 1s, 1s));
  EXPECT_TRUE(should_retire(2, 0, 5s, 1s));
}

TEST(should_retire, never_below_min) {
  EXPECT_FALSE(should_retire(1, 1, 1h, 1s));
  EXPECT_TRUE(should_retire(2, 1, 1h, 1s));
  EXPECT_FALSE(should_retire(0, 0, 1h, 1s));
}

TEST(should_retire, down_to_zero_with_min_zero) {
  EXPECT_TRUE(should_retire(1, 0, 2s, 2s));
}

// -- restart_backoff --------------------------------------------------------------

TEST(restart_backoff, at_once_without_failures) {
  EXPECT_EQ(restart_backoff(0), 0ms);
}

TEST(restart_backoff, doubles_from_100ms) {
  EXPECT_EQ(restart_backoff(1), 100ms);
  EXPECT_EQ(restart_backoff(2), 200ms);
  EXPECT_EQ(restart_backoff(3), 400ms);
  EXPECT_EQ(restart_backoff(4), 800ms);
}

TEST(restart_backoff, is_capped_at_10s) {
  EXPECT_EQ(restart_backoff(8), 10000ms); // 100 << 7 = 12.8 s, capped
  EXPECT_EQ(restart_backoff(9), 10000ms);
  EXPECT_EQ(restart_backoff(1000), 10000ms);
  // Never shorter for more failures.
  for (unsigned f = 1; f < 40; ++f)
    EXPECT_LE(restart_backoff(f), restart_backoff(f + 1)) << f;
}

// -- idle_check_interval ------------------------------------------------------------

TEST(idle_check_interval, a_quarter_of_idletime_within_bounds) {
  EXPECT_EQ(idle_check_interval(2s), 500ms);
  EXPECT_EQ(idle_check_interval(100ms), 50ms);
  EXPECT_EQ(idle_check_interval(10min), 1000ms);
}
