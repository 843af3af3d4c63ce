// core/reply.hpp: awaiting<T>, the table of ticketed messages a rule or a
// hub connection still waits an answer for, and ok_answers, which sends a
// burst of ok answers as one message per requester.
#include <set>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include "core/reply.hpp"

using hubflow::awaiting;
using hubflow::ok_answers;
using hubflow::ok_atom;
using hubflow::reply;
using hubflow::reply_atom;

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

TEST(awaiting, erase_removes_one_entry_once) {
  awaiting<std::string> table;
  auto a = table.add("a");
  auto b = table.add("b");
  EXPECT_TRUE(table.erase(a));
  EXPECT_FALSE(table.erase(a));
  EXPECT_EQ(table.find(a), nullptr);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.take(b), "b");
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

namespace {

struct actor_system_fixture : ::testing::Test {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg.add_message_types<caf::id_block::hubflow>()};

  /// The next (reply_atom, tickets, ok_atom) `self` receives.
  std::vector<std::uint64_t> next_batch(caf::scoped_actor& self) {
    std::vector<std::uint64_t> out;
    self->receive(
      [&](reply_atom, const std::vector<std::uint64_t>& tickets, ok_atom) {
        out = tickets;
      },
      caf::after(std::chrono::seconds(5))
        >> [] { ADD_FAILURE() << "no answer"; });
    return out;
  }
};

caf::strong_actor_ptr ptr(caf::scoped_actor& self) {
  return caf::actor_cast<caf::strong_actor_ptr>(self);
}

} // namespace

using ok_answers_test = actor_system_fixture;

TEST_F(ok_answers_test, sends_one_message_per_requester_when_out_of_scope) {
  caf::scoped_actor a{sys};
  caf::scoped_actor b{sys};
  {
    ok_answers answers;
    for (std::uint64_t t : {1, 2, 3}) {
      reply r{ptr(a), t};
      answers.add(r);
      r.deliver(ok_atom::value); // already answered: does nothing
    }
    reply to_b{ptr(b), 7};
    answers.add(to_b);
    reply to_a_again{ptr(a), 4};
    answers.add(to_a_again);
    EXPECT_FALSE(a->has_next_message()) << "nothing is sent before the flush";
  }
  EXPECT_EQ(next_batch(a), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(next_batch(b), (std::vector<std::uint64_t>{7}));
  EXPECT_FALSE(a->has_next_message());
  EXPECT_FALSE(b->has_next_message());
}

TEST_F(ok_answers_test, a_request_is_answered_at_once) {
  auto server = sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
    return {[=](ok_atom) {
      ok_answers answers;
      reply r{self->make_response_promise<ok_atom>()};
      answers.add(r);
    }};
  });
  caf::scoped_actor client{sys};
  bool answered = false;
  client->request(server, std::chrono::seconds(5), ok_atom::value)
    .receive([&](ok_atom) { answered = true; },
             [&](caf::error& err) { ADD_FAILURE() << sys.render(err); });
  EXPECT_TRUE(answered);
  caf::anon_send_exit(server, caf::exit_reason::user_shutdown);
}

TEST_F(ok_answers_test, ticket_zero_wants_no_answer) {
  caf::scoped_actor a{sys};
  {
    ok_answers answers;
    reply r{ptr(a), 0};
    answers.add(r);
  }
  a->receive([](caf::message&) { ADD_FAILURE() << "answered ticket 0"; },
             caf::after(std::chrono::milliseconds(100)) >> [] {});
}
