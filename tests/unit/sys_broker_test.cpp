// Mosquitto's $SYS/broker tree made from the hub's counters: Mosquitto's
// topic names and text formats, only changed values after the first
// update, and the load averages as Mosquitto's calc_load computes them.
#include "stats/sys_broker.hpp"

#include <cmath>
#include <map>

#include <gtest/gtest.h>

using namespace hubflow;

namespace {

component_stats hub_with(std::int64_t connections, std::int64_t sessions,
                         std::int64_t messages_in) {
  component_stats c;
  c.kind = "hub";
  c.name = "embedded";
  c.counters = {{"connections", connections}, {"sessions", sessions},
                {"messages_in", messages_in}, {"messages_out", 2 * messages_in},
                {"bytes_in", 10 * messages_in}, {"retained", 3},
                {"subscriptions", 4}, {"dropped_queue_full", 1},
                {"connections_total", sessions}};
  return c;
}

std::map<std::string, std::string> as_map(const std::vector<sys_topic>& v) {
  std::map<std::string, std::string> m;
  for (auto& t : v)
    m[t.topic] = t.payload;
  return m;
}

} // namespace

TEST(sys_broker, first_update_publishes_mosquitto_names_and_formats) {
  mosquitto_sys_tree tree;
  auto m = as_map(tree.update(hub_with(2, 5, 7), 12.7, "0.1.0"));
  EXPECT_EQ(m["$SYS/broker/version"], "hubflow version 0.1.0");
  EXPECT_EQ(m["$SYS/broker/uptime"], "12 seconds");
  EXPECT_EQ(m["$SYS/broker/clients/connected"], "2");
  EXPECT_EQ(m["$SYS/broker/clients/active"], "2");
  EXPECT_EQ(m["$SYS/broker/clients/total"], "5");
  EXPECT_EQ(m["$SYS/broker/clients/disconnected"], "3");
  EXPECT_EQ(m["$SYS/broker/clients/maximum"], "5");
  EXPECT_EQ(m["$SYS/broker/publish/messages/received"], "7");
  EXPECT_EQ(m["$SYS/broker/messages/sent"], "14");
  EXPECT_EQ(m["$SYS/broker/bytes/received"], "70");
  EXPECT_EQ(m["$SYS/broker/retained messages/count"], "3");
  EXPECT_EQ(m["$SYS/broker/subscriptions/count"], "4");
  EXPECT_EQ(m["$SYS/broker/publish/messages/dropped"], "1");
  EXPECT_EQ(m["$SYS/broker/load/messages/received/1min"], "0.00");
  EXPECT_EQ(m["$SYS/broker/load/connections/15min"], "0.00");
}

TEST(sys_broker, later_updates_carry_only_what_changed) {
  mosquitto_sys_tree tree;
  tree.update(hub_with(2, 5, 7), 10, "0.1.0");
  // Within min_interval_s: nothing.
  EXPECT_TRUE(tree.update(hub_with(3, 5, 7), 10.5, "0.1.0").empty());
  auto m = as_map(tree.update(hub_with(3, 5, 7), 11, "0.1.0"));
  EXPECT_EQ(m.count("$SYS/broker/version"), 0u);
  EXPECT_EQ(m["$SYS/broker/uptime"], "11 seconds");
  EXPECT_EQ(m["$SYS/broker/clients/connected"], "3");
  EXPECT_EQ(m["$SYS/broker/clients/disconnected"], "2");
  EXPECT_EQ(m.count("$SYS/broker/clients/total"), 0u);
  EXPECT_EQ(m.count("$SYS/broker/publish/messages/received"), 0u);
  EXPECT_EQ(m.count("$SYS/broker/load/messages/received/1min"), 0u);
}

TEST(sys_broker, load_is_mosquittos_exponential_average_per_minute) {
  mosquitto_sys_tree tree;
  tree.update(hub_with(0, 0, 0), 0, "0.1.0");
  // 60 messages in 10 s: 360 per minute, averaged in from 0.
  auto m = as_map(tree.update(hub_with(0, 0, 60), 10, "0.1.0"));
  auto expect = [](double rate, double window) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f",
                  rate + std::exp(-10.0 / window) * (0.0 - rate));
    return std::string{text};
  };
  EXPECT_EQ(m["$SYS/broker/load/messages/received/1min"], expect(360, 60));
  EXPECT_EQ(m["$SYS/broker/load/publish/received/5min"], expect(360, 300));
  EXPECT_EQ(m["$SYS/broker/load/bytes/received/15min"], expect(3600, 900));
  EXPECT_EQ(m["$SYS/broker/load/messages/received/1min"], "55.27");
}
