// The function supervisor's decisions (functions/scaling.hpp) on their own:
// how many instances to start, how many invocations one takes at once, when
// an idle one retires, how long a restart waits after failures.
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

TEST(batch_share, never_beyond_the_limit_nor_below_one) {
  EXPECT_EQ(batch_share(pool(1, 1, 0, 1000, 0, 1), 1, 64), 64u);
  EXPECT_EQ(batch_share(pool(2, 2, 0, 1, 0, 2), 2, 64), 1u);
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
