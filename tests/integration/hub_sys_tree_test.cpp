// Mosquitto's $SYS/broker tree on a running hubflow: every topic it
// publishes there is one a real Mosquitto 2.0.11 publishes too, and the
// values follow what clients do.
#include <set>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;

namespace {

std::set<std::string> topics_of(const mqtt_client& c) {
  std::set<std::string> out;
  for (auto& m : c.messages())
    out.insert(m.topic);
  return out;
}

// The latest value of `topic` as a number (-1: none yet).
long latest(const mqtt_client& c, const std::string& topic) {
  auto got = c.messages_on(topic);
  return got.empty() ? -1 : std::stol(got.back().payload);
}

} // namespace

TEST(hub_sys_tree, mosquittos_topics_with_the_hubs_values) {
  auto port = free_port();
  hubflow_server hub("hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
                     + "]\n");
  ASSERT_TRUE(hub.wait_ready()) << hub.proc().output();
  ASSERT_TRUE(wait_for_port(port));
  mosquitto_server reference(0, "sys_interval 1");

  mqtt_client ours{"sys-watch", 4};
  ASSERT_EQ(ours.connect(port), 0);
  ASSERT_LT(ours.subscribe("$SYS/broker/#", 0), 0x80);
  mqtt_client theirs{"sys-watch", 4};
  ASSERT_EQ(theirs.connect(reference.port()), 0);
  ASSERT_LT(theirs.subscribe("$SYS/broker/#", 0), 0x80);

  mqtt_client publisher{"sys-pub", 5};
  ASSERT_EQ(publisher.connect(port), 0);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(publisher.publish("sys/test", "x", 1));
  // Both clients connected, the five publishes counted.
  ASSERT_TRUE(wait_until([&] {
    return latest(ours, "$SYS/broker/clients/connected") == 2
           && latest(ours, "$SYS/broker/publish/messages/received") >= 5;
  })) << ours.messages().size() << " $SYS messages";
  EXPECT_EQ(ours.messages_on("$SYS/broker/version").at(0).payload,
            "hubflow version " HUBFLOW_VERSION);
  auto uptime = ours.messages_on("$SYS/broker/uptime").back().payload;
  EXPECT_NE(uptime.find(" seconds"), std::string::npos) << uptime;

  // Mosquitto's tree once it has counted our watcher (clients/maximum is
  // only published then).
  ASSERT_TRUE(wait_until([&] {
    return latest(theirs, "$SYS/broker/clients/connected") == 1
           && !theirs.messages_on("$SYS/broker/load/connections/15min").empty();
  }));
  auto mosquitto_topics = topics_of(theirs);
  for (auto& t : topics_of(ours))
    EXPECT_EQ(mosquitto_topics.count(t), 1u) << t << " is not Mosquitto's";
  EXPECT_EQ(topics_of(ours).size(), 41u);
}
