// The embedded hub's bounds on what one client may make it hold
// (hub.max_subscriptions, max_queued_bytes, max_queued_bytes_total,
// max_user_properties, persistent_client_expiration), over real TCP
// connections.
#include <gtest/gtest.h>

#include "hub_test_env.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

mqtt::subscribe_packet subscribe_to(std::uint16_t id, const std::string& f,
                                    std::uint8_t qos = 1) {
  mqtt::subscribe_packet s;
  s.packet_id = id;
  mqtt::subscription_options opts;
  opts.qos = qos;
  s.filters.push_back({f, opts});
  return s;
}

std::uint8_t suback_reason(raw_client& c, std::uint8_t version) {
  auto p = c.read(version);
  if (!p || !std::holds_alternative<mqtt::suback_packet>(*p))
    return 0xff;
  return std::get<mqtt::suback_packet>(*p).reasons.at(0);
}

} // namespace

TEST(hub_limits, subscriptions_per_session_are_bounded) {
  auto cfg = test_hub_config();
  cfg.limits.max_subscriptions = 2;
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  raw_client c(env.port);
  ASSERT_TRUE(c.mqtt_connect("many-subs", mqtt::v5));
  for (std::uint16_t i = 1; i <= 2; ++i) {
    c.send(subscribe_to(i, "t/" + std::to_string(i)), mqtt::v5);
    EXPECT_EQ(suback_reason(c, mqtt::v5), 1);
  }
  c.send(subscribe_to(3, "t/3"), mqtt::v5);
  EXPECT_EQ(suback_reason(c, mqtt::v5), mqtt::rc::quota_exceeded);
  // Re-subscribing to a filter it has is no new subscription.
  c.send(subscribe_to(4, "t/1", 0), mqtt::v5);
  EXPECT_EQ(suback_reason(c, mqtt::v5), 0);
  EXPECT_EQ(env.counter("refused_limits"), 1);
}

TEST(hub_limits, offline_queue_is_bounded_in_bytes) {
  auto cfg = test_hub_config();
  cfg.limits.max_queued_bytes = 1100;
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  {
    mqtt_client sub("queued", 4, false);
    ASSERT_EQ(sub.connect(env.port), 0);
    ASSERT_LT(sub.subscribe("q/t", 1), 0x80);
    sub.disconnect();
  }
  mqtt_client pub("queue-filler");
  ASSERT_EQ(pub.connect(env.port), 0);
  std::string body(500, 'x');
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(pub.publish("q/t", body, 1));
  // 2 x (3 + 500) bytes fit in 1100, the third does not.
  EXPECT_EQ(env.counter("dropped_queue_full"), 8);
  mqtt_client sub("queued", 4, false);
  ASSERT_EQ(sub.connect(env.port), 0);
  EXPECT_TRUE(sub.wait_messages(2));
  EXPECT_FALSE(sub.wait_messages(3, 500ms));
}

TEST(hub_limits, all_queues_share_one_byte_budget) {
  // hub.max_queued_bytes_total: each session is well within its own
  // bound, but together the two offline queues may hold 2200 bytes.
  auto cfg = test_hub_config();
  cfg.limits.max_queued_bytes_total = 2200;
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  for (auto id : {"first", "second"}) {
    mqtt_client sub(id, 4, false);
    ASSERT_EQ(sub.connect(env.port), 0);
    ASSERT_LT(sub.subscribe("q/t", 1), 0x80);
    sub.disconnect();
  }
  mqtt_client pub("budget-filler");
  ASSERT_EQ(pub.connect(env.port), 0);
  std::string body(500, 'x');
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pub.publish("q/t", body, 1));
  // Each publish queues 2 x 503 bytes: two publishes fit in 2200, of the
  // third neither copy does.
  EXPECT_EQ(env.counter("dropped_queue_full"), 2);
  {
    mqtt_client first("first", 4, false); // its queue drains: room again
    ASSERT_EQ(first.connect(env.port), 0);
    EXPECT_TRUE(first.wait_messages(2));
    EXPECT_FALSE(first.wait_messages(3, 300ms));
    first.disconnect();
  }
  ASSERT_TRUE(pub.publish("q/t", body, 1));
  EXPECT_EQ(env.counter("dropped_queue_full"), 2);
  mqtt_client second("second", 4, false);
  ASSERT_EQ(second.connect(env.port), 0);
  EXPECT_TRUE(second.wait_messages(3));
  EXPECT_FALSE(second.wait_messages(4, 300ms));
}

TEST(hub_limits, user_properties_per_packet_are_bounded) {
  auto cfg = test_hub_config();
  cfg.limits.max_user_properties = 4;
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  raw_client sub(env.port);
  ASSERT_TRUE(sub.mqtt_connect("props-sub", mqtt::v5));
  sub.send(subscribe_to(1, "p/t"), mqtt::v5);
  ASSERT_EQ(suback_reason(sub, mqtt::v5), 1);
  raw_client c(env.port);
  ASSERT_TRUE(c.mqtt_connect("props", mqtt::v5));
  mqtt::publish_packet ok;
  ok.msg.topic = "p/t";
  ok.msg.body = payload{std::string{"four"}};
  for (int i = 0; i < 4; ++i)
    ok.msg.properties.user_properties.emplace_back("k", "v");
  ASSERT_TRUE(c.send(ok, mqtt::v5));
  auto got = sub.read_publish(mqtt::v5);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->msg.properties.user_properties.size(), 4u);
  auto too_many = ok;
  too_many.msg.properties.user_properties.emplace_back("k", "v");
  ASSERT_TRUE(c.send(too_many, mqtt::v5));
  auto bye = c.read(mqtt::v5);
  ASSERT_TRUE(bye && std::holds_alternative<mqtt::disconnect_packet>(*bye));
  EXPECT_EQ(std::get<mqtt::disconnect_packet>(*bye).reason,
            mqtt::rc::quota_exceeded);
  EXPECT_TRUE(c.wait_closed());
}

// MQTT 3.1.1 persistent sessions asked to live forever; they end after
// hub.persistent_client_expiration offline (Mosquitto's option).
TEST(hub_limits, persistent_sessions_expire) {
  auto cfg = test_hub_config();
  cfg.limits.persistent_client_expiration = std::chrono::seconds(1);
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  {
    raw_client c(env.port);
    auto ack = c.mqtt_connect("forever", mqtt::v311, {}, false);
    ASSERT_TRUE(ack);
    EXPECT_FALSE(ack->session_present);
    c.send(subscribe_to(1, "e/t"), mqtt::v311);
    ASSERT_EQ(suback_reason(c, mqtt::v311), 1);
  }
  ASSERT_TRUE(wait_until([&] { return env.counter("connections") == 0; }));
  EXPECT_EQ(env.counter("sessions"), 1);
  ASSERT_TRUE(wait_until([&] { return env.counter("sessions") == 0; }, 5s));
  raw_client again(env.port);
  auto ack = again.mqtt_connect("forever", mqtt::v311, {}, false);
  ASSERT_TRUE(ack);
  EXPECT_FALSE(ack->session_present);
}

TEST(hub_limits, persistent_sessions_stay_while_within_expiration) {
  auto cfg = test_hub_config(); // persistent_client_expiration: 24 h
  hub_env env(cfg);
  ASSERT_TRUE(env.hub) << env.error;
  {
    raw_client c(env.port);
    ASSERT_TRUE(c.mqtt_connect("stays", mqtt::v311, {}, false));
  }
  ASSERT_TRUE(wait_until([&] { return env.counter("connections") == 0; }));
  raw_client again(env.port);
  auto ack = again.mqtt_connect("stays", mqtt::v311, {}, false);
  ASSERT_TRUE(ack);
  EXPECT_TRUE(ack->session_present);
}
