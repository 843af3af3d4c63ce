// awaiting<T>: the table of ticketed messages a rule or a hub connection
// still waits an answer for (core/reply.hpp).
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "core/reply.hpp"

using hubflow::awaiting;

TEST(awaiting, take_returns_what_add_stored_once) {
  awaiting<std::string> table;
  auto a = table.add("a");
  auto b = table.add("b");
  EXPECT_NE(a, b);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.take(b), "b");
  EXPECT_EQ(table.take(a), "a");
  EXPECT_EQ(table.take(a), std::nullopt) << "a second answer is ignored";
  EXPECT_EQ(table.size(), 0u);
}

TEST(awaiting, tickets_are_never_zero) {
  // Ticket 0 means "no answer wanted" in every ticketed protocol.
  awaiting<int> table;
  for (int i = 0; i < 1000; ++i) {
    auto t = table.add(i);
    ASSERT_NE(t, 0u);
    if (i % 3 == 0)
      table.take(t);
  }
}

TEST(awaiting, a_stale_ticket_does_not_reach_the_entry_now_in_its_slot) {
  awaiting<std::string> table;
  auto old_ticket = table.add("first");
  ASSERT_TRUE(table.take(old_ticket));
  auto new_ticket = table.add("second"); // reuses the freed slot
  EXPECT_NE(new_ticket, old_ticket);
  EXPECT_EQ(table.find(old_ticket), nullptr);
  EXPECT_EQ(table.take(old_ticket), std::nullopt);
  ASSERT_NE(table.find(new_ticket), nullptr);
  EXPECT_EQ(*table.find(new_ticket), "second");
}

TEST(awaiting, unknown_tickets_find_nothing) {
  awaiting<int> table;
  table.add(1);
  EXPECT_EQ(table.find(0), nullptr);
  EXPECT_EQ(table.find(12345), nullptr);
  EXPECT_EQ(table.take(~std::uint64_t{0}), std::nullopt);
}

TEST(awaiting, outstanding_tickets_are_distinct_under_churn) {
  awaiting<int> table;
  std::set<std::uint64_t> outstanding;
  for (int round = 0; round < 100; ++round) {
    for (int i = 0; i < 50; ++i)
      ASSERT_TRUE(outstanding.insert(table.add(i)).second);
    // Answer every other one; the rest stay outstanding.
    int n = 0;
    for (auto it = outstanding.begin(); it != outstanding.end();)
      if (n++ % 2 == 0) {
        ASSERT_TRUE(table.take(*it));
        it = outstanding.erase(it);
      } else
        ++it;
    ASSERT_EQ(table.size(), outstanding.size());
  }
}

TEST(awaiting, erase_if_removes_matching_entries_only) {
  awaiting<int> table;
  auto even = table.add(2);
  auto odd = table.add(3);
  table.erase_if([](int x) { return x % 2 == 0; });
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.take(even), std::nullopt);
  EXPECT_EQ(table.take(odd), 3);
}
