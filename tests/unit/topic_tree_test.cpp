// Topic matching, filter validation, the subscription trie ($share groups,
// overlapping subscriptions) and the retained store.
#include "hub/topic_tree.hpp"

#include <algorithm>
#include <map>

#include <gtest/gtest.h>

using namespace hubflow;
using namespace hubflow::mqtt;

namespace {

std::vector<subscriber_id> who(const std::vector<match_result>& ms) {
  std::vector<subscriber_id> ids;
  for (auto& m : ms)
    ids.push_back(m.who);
  std::sort(ids.begin(), ids.end());
  return ids;
}

message retained(std::string topic, std::string body) {
  message m;
  m.topic = std::move(topic);
  m.body = payload{std::move(body)};
  m.retain = true;
  return m;
}

std::vector<std::string> topics(const std::vector<message>& ms) {
  std::vector<std::string> out;
  for (auto& m : ms)
    out.push_back(m.topic);
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST(topic_matches, spec_examples) {
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1"));
  EXPECT_TRUE(
    topic_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(topic_matches("sport/#", "sport"));
  EXPECT_TRUE(topic_matches("#", "a/b/c"));
  EXPECT_TRUE(topic_matches("sport/tennis/+", "sport/tennis/player1"));
  EXPECT_FALSE(topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  EXPECT_FALSE(topic_matches("sport/+", "sport"));
  EXPECT_TRUE(topic_matches("sport/+", "sport/"));
  EXPECT_TRUE(topic_matches("+/+", "/finance"));
  EXPECT_TRUE(topic_matches("/+", "/finance"));
  EXPECT_FALSE(topic_matches("+", "/finance"));
  EXPECT_TRUE(topic_matches("a/b", "a/b"));
  EXPECT_FALSE(topic_matches("a/b", "a/bc"));
  EXPECT_FALSE(topic_matches("a/b", "a"));
  EXPECT_FALSE(topic_matches("a", "a/b"));
}

TEST(topic_matches, dollar_topics_are_not_matched_by_leading_wildcards) {
  EXPECT_FALSE(topic_matches("#", "$SYS/broker"));
  EXPECT_FALSE(topic_matches("+/broker", "$SYS/broker"));
  EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/broker"));
  EXPECT_TRUE(topic_matches("$SYS/+", "$SYS/broker"));
  EXPECT_TRUE(topic_matches("a/#", "a/$x"));
}

TEST(topic_filters, validation) {
  for (auto ok : {"#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#",
                  "$share/g/a/+"})
    EXPECT_TRUE(valid_topic_filter(ok)) << ok;
  for (auto bad : {"", "a#", "a/#/b", "a+", "a/b+/c", "#/a"})
    EXPECT_FALSE(valid_topic_filter(bad)) << bad;
  EXPECT_TRUE(valid_topic_name("a/b"));
  EXPECT_FALSE(valid_topic_name("a/+"));
  EXPECT_FALSE(valid_topic_name(""));
  EXPECT_FALSE(valid_topic_name("a/\xff"));
}

TEST(topic_filters, shared_filter_parsing) {
  auto s = parse_shared_filter("$share/g1/a/+");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->valid);
  EXPECT_EQ(s->group, "g1");
  EXPECT_EQ(s->filter, "a/+");
  EXPECT_FALSE(parse_shared_filter("a/b"));
  EXPECT_FALSE(parse_shared_filter("$share/g")->valid);
  EXPECT_FALSE(parse_shared_filter("$share//a")->valid);
  EXPECT_FALSE(parse_shared_filter("$share/g+/a")->valid);
}

TEST(topic_tree, matches_exact_and_wildcard_subscriptions) {
  topic_tree t;
  t.subscribe("a/b", 1, {});
  t.subscribe("a/+", 2, {});
  t.subscribe("a/#", 3, {});
  t.subscribe("#", 4, {});
  t.subscribe("b/#", 5, {});
  t.subscribe("$SYS/#", 6, {});
  std::vector<match_result> out;
  t.match("a/b", out);
  EXPECT_EQ(who(out), (std::vector<subscriber_id>{1, 2, 3, 4}));
  t.match("a", out);
  EXPECT_EQ(who(out), (std::vector<subscriber_id>{3, 4}));
  t.match("$SYS/x", out);
  EXPECT_EQ(who(out), (std::vector<subscriber_id>{6}));
  t.match("c", out);
  EXPECT_EQ(who(out), (std::vector<subscriber_id>{4}));
  EXPECT_EQ(t.size(), 6u);
}

TEST(topic_tree, overlapping_subscriptions_deliver_once_with_max_qos) {
  topic_tree t;
  t.subscribe("a/+", 1, {0}, 11);
  t.subscribe("a/#", 1, {2}, 12);
  t.subscribe("a/b", 1, {1});
  std::vector<match_result> out;
  t.match("a/b", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].opts.qos, 2);
  auto ids = out[0].subscription_ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{11, 12}));
}

TEST(topic_tree, resubscribe_replaces_options_and_unsubscribe_prunes) {
  topic_tree t;
  EXPECT_TRUE(t.subscribe("a/b", 1, {0}));
  EXPECT_FALSE(t.subscribe("a/b", 1, {2}));
  std::vector<match_result> out;
  t.match("a/b", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].opts.qos, 2);
  EXPECT_TRUE(t.unsubscribe("a/b", 1));
  EXPECT_FALSE(t.unsubscribe("a/b", 1));
  EXPECT_FALSE(t.unsubscribe("x/y", 1));
  t.match("a/b", out);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(t.size(), 0u);
}

TEST(topic_tree, shared_groups_round_robin_and_prefer_available_members) {
  topic_tree t;
  t.subscribe("$share/g/a/+", 1, {1});
  t.subscribe("$share/g/a/+", 2, {1});
  t.subscribe("$share/g/a/+", 3, {1});
  t.subscribe("$share/h/a/+", 4, {0});
  t.subscribe("a/+", 5, {0});
  std::map<subscriber_id, int> counts;
  std::vector<match_result> out;
  for (int i = 0; i < 30; ++i) {
    t.match("a/x", out);
    ASSERT_EQ(out.size(), 3u); // one of g, the one of h, the plain one
    for (auto& m : out)
      ++counts[m.who];
  }
  EXPECT_EQ(counts[1], 10);
  EXPECT_EQ(counts[2], 10);
  EXPECT_EQ(counts[3], 10);
  EXPECT_EQ(counts[4], 30);
  EXPECT_EQ(counts[5], 30);

  // Member 2 offline: the group skips it while others are available.
  auto available = [](void*, subscriber_id id) { return id != 2; };
  counts.clear();
  for (int i = 0; i < 20; ++i) {
    t.match("a/x", out, available, nullptr);
    for (auto& m : out)
      if (m.shared && m.who <= 3)
        ++counts[m.who];
  }
  EXPECT_EQ(counts[2], 0);
  EXPECT_EQ(counts[1] + counts[3], 20);

  EXPECT_TRUE(t.unsubscribe("$share/g/a/+", 1));
  EXPECT_TRUE(t.unsubscribe("$share/g/a/+", 2));
  EXPECT_TRUE(t.unsubscribe("$share/g/a/+", 3));
  t.match("a/x", out);
  EXPECT_EQ(who(out), (std::vector<subscriber_id>{4, 5}));
}

TEST(retained_store, set_clear_and_match_filters) {
  retained_store r;
  r.set(retained("a/b", "1"));
  r.set(retained("a/c", "2"));
  r.set(retained("a", "3"));
  r.set(retained("x/y/z", "4"));
  r.set(retained("$SYS/load", "5"));
  EXPECT_EQ(r.size(), 5u);
  std::vector<message> out;
  r.match("a/+", out);
  EXPECT_EQ(topics(out), (std::vector<std::string>{"a/b", "a/c"}));
  out.clear();
  r.match("a/#", out);
  EXPECT_EQ(topics(out), (std::vector<std::string>{"a", "a/b", "a/c"}));
  out.clear();
  r.match("#", out);
  EXPECT_EQ(out.size(), 4u); // not $SYS/load
  out.clear();
  r.match("$SYS/#", out);
  EXPECT_EQ(topics(out), (std::vector<std::string>{"$SYS/load"}));
  out.clear();
  r.match("+/y/+", out);
  EXPECT_EQ(topics(out), (std::vector<std::string>{"x/y/z"}));

  // Replace keeps the count, an empty payload clears.
  r.set(retained("a/b", "new"));
  EXPECT_EQ(r.size(), 5u);
  EXPECT_EQ(r.find("a/b")->body.view(), "new");
  r.set(retained("a/b", ""));
  EXPECT_EQ(r.size(), 4u);
  EXPECT_EQ(r.find("a/b"), nullptr);
  r.set(retained("never/set", ""));
  EXPECT_EQ(r.size(), 4u);
  out.clear();
  r.match("a/b", out);
  EXPECT_TRUE(out.empty());
}

TEST(retained_store, shares_payload_bytes) {
  retained_store r;
  auto m = retained("t", "payload");
  r.set(m);
  std::vector<message> out;
  r.match("t", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].body.shares_bytes_with(m.body));
}

TEST(topic_limits, levels_and_length_are_bounded) {
  std::string levels_200 = "a";
  for (int i = 1; i < 200; ++i)
    levels_200 += "/a";
  EXPECT_TRUE(valid_topic_name(levels_200));
  EXPECT_TRUE(valid_topic_filter(levels_200));
  EXPECT_FALSE(valid_topic_name(levels_200 + "/a"));
  EXPECT_FALSE(valid_topic_filter(levels_200 + "/#"));
  // A shared filter's own levels count, not its $share/group/ prefix.
  EXPECT_TRUE(valid_topic_filter("$share/g/" + levels_200));
  EXPECT_FALSE(valid_topic_filter("$share/g/" + levels_200 + "/+"));
  EXPECT_FALSE(valid_topic_name(std::string(65534, '/'))); // 65535 levels
  topic_limits small{3, 8};
  EXPECT_TRUE(valid_topic_name("a/b/c", small));
  EXPECT_FALSE(valid_topic_name("a/b/c/d", small));
  EXPECT_FALSE(valid_topic_name("abcdefghi", small));
  EXPECT_FALSE(valid_topic_filter("abcdefghi", small));
}

// Matching walks the trie without recursion: a subscription as deep as MQTT
// allows (65535 empty levels) matches without exhausting the stack.
TEST(topic_tree, matches_at_any_depth_without_recursion) {
  topic_tree tree;
  std::string deep(65534, '/');
  tree.subscribe(deep, 1, {});
  tree.subscribe(deep + "/+", 2, {});
  tree.subscribe("#", 3, {});
  std::vector<match_result> out;
  tree.match(deep, out);
  std::vector<subscriber_id> who;
  for (auto& m : out)
    who.push_back(m.who);
  std::sort(who.begin(), who.end());
  EXPECT_EQ(who, (std::vector<subscriber_id>{1, 3}));
  tree.match(deep + "/x", out);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_TRUE(tree.unsubscribe(deep, 1));
  EXPECT_TRUE(tree.unsubscribe(deep + "/+", 2));
}

TEST(retained_store, matches_at_any_depth_without_recursion) {
  retained_store r;
  std::string deep(65534, '/');
  r.set(retained(deep, "deep"));
  std::vector<message> out;
  r.match(deep, out);
  EXPECT_EQ(out.size(), 1u);
  out.clear();
  r.match("+/#", out);
  EXPECT_EQ(out.size(), 1u);
  r.set(retained(deep, "")); // clears, walking back up
  EXPECT_EQ(r.size(), 0u);
}
