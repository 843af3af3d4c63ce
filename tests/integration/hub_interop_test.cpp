// The embedded hub with real clients: mosquitto_pub / mosquitto_sub in
// MQTT 3.1.1 and 5.0, and libmosquitto. One test per feature.
#include "hub_test_env.hpp"

#include <sys/socket.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

using namespace hubflow;
using namespace hubflow::test;

namespace {

class hub_interop : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    ASSERT_TRUE(env.hub) << env.error;
    ASSERT_NE(env.port, 0);
  }
  /// "-V mqttv311" or "-V mqttv5".
  std::string version() const {
    return "-V " + GetParam();
  }
  int protocol() const {
    return GetParam() == "mqttv5" ? 5 : 4;
  }
  bool wait_subscriptions(std::int64_t n) {
    return wait_until([&] { return env.counter("subscriptions") >= n; });
  }

  hub_env env;
};

} // namespace

TEST_P(hub_interop, publish_reaches_subscriber) {
  mosquitto_sub sub{env.port, version() + " -t 'sensors/#' -C 1"};
  ASSERT_TRUE(wait_subscriptions(1));
  mosquitto_pub(env.port, version() + " -t sensors/t1 -m 21.5");
  EXPECT_TRUE(sub.wait_for("sensors/t1 21.5")) << sub.output();
  EXPECT_TRUE(sub.proc().wait_exit(5s).has_value());
}

TEST_P(hub_interop, retained_message_is_delivered_on_subscribe_and_cleared) {
  mosquitto_pub(env.port, version() + " -t config/mode -m eco -r");
  ASSERT_TRUE(wait_until([&] { return env.counter("retained") == 1; }));
  {
    mosquitto_sub sub{env.port, version() + " -t 'config/+' -C 1"};
    EXPECT_TRUE(sub.wait_for("config/mode eco")) << sub.output();
  }
  // An empty retained payload clears it.
  mosquitto_pub(env.port, version() + " -t config/mode -n -r");
  EXPECT_TRUE(wait_until([&] { return env.counter("retained") == 0; }));
  mqtt_client late{"late", protocol()};
  ASSERT_EQ(late.connect(env.port), 0);
  ASSERT_EQ(late.subscribe("config/#", 1), 1);
  EXPECT_FALSE(late.wait_messages(1, 500ms));
}

TEST_P(hub_interop, qos2_exactly_once_end_to_end) {
  mosquitto_sub sub{env.port, version() + " -q 2 -t q2/topic -C 20"};
  ASSERT_TRUE(wait_subscriptions(1));
  for (int i = 0; i < 20; ++i)
    mosquitto_pub(env.port,
                  version() + " -q 2 -t q2/topic -m m" + std::to_string(i));
  ASSERT_TRUE(sub.proc().wait_exit(10s).has_value()) << sub.output();
  auto out = sub.output();
  for (int i = 0; i < 20; ++i) {
    auto line = "q2/topic m" + std::to_string(i) + "\n";
    auto first = out.find(line);
    EXPECT_NE(first, std::string::npos) << line;
    EXPECT_EQ(out.find(line, first + 1), std::string::npos) << "twice: " << line;
  }
}

TEST_P(hub_interop, will_is_published_when_a_client_vanishes) {
  mosquitto_sub sub{env.port, version() + " -t 'status/#' -C 1"};
  ASSERT_TRUE(wait_subscriptions(1));
  {
    mqtt_client dying{"dying", protocol()};
    ASSERT_EQ(mosquitto_will_set(dying.handle(), "status/dying", 4, "gone", 1,
                                 false),
              MOSQ_ERR_SUCCESS);
    ASSERT_EQ(dying.connect(env.port), 0);
    // Cut the TCP connection without DISCONNECT.
    ::shutdown(mosquitto_socket(dying.handle()), SHUT_RDWR);
    EXPECT_TRUE(sub.wait_for("status/dying gone")) << sub.output();
  }
}

TEST_P(hub_interop, will_is_not_published_after_a_clean_disconnect) {
  mqtt_client watcher{"watcher", protocol()};
  ASSERT_EQ(watcher.connect(env.port), 0);
  ASSERT_EQ(watcher.subscribe("status/#", 0), 0);
  mqtt_client polite{"polite", protocol()};
  ASSERT_EQ(mosquitto_will_set(polite.handle(), "status/polite", 4, "gone", 0,
                               false),
            MOSQ_ERR_SUCCESS);
  ASSERT_EQ(polite.connect(env.port), 0);
  polite.disconnect();
  // A message after the disconnect proves the hub processed it first.
  ASSERT_TRUE(wait_until([&] { return env.counter("connections") == 1; }));
  mosquitto_pub(env.port, version() + " -t status/marker -m x");
  ASSERT_TRUE(watcher.wait_messages(1));
  EXPECT_TRUE(watcher.messages_on("status/polite").empty());
}

TEST_P(hub_interop, persistent_session_queues_qos1_while_offline) {
  {
    mqtt_client sub{"keeper", protocol(), false};
    if (protocol() == 5) {
      // MQTT 5 persistence comes from the session expiry interval.
      mosquitto_property* props = nullptr;
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                   600);
      ASSERT_EQ(mosquitto_connect_bind_v5(sub.handle(), "127.0.0.1", env.port,
                                          60, nullptr, props),
                MOSQ_ERR_SUCCESS);
      mosquitto_property_free_all(&props);
      ASSERT_TRUE(wait_until([&] { return sub.connected(); }));
    } else {
      ASSERT_EQ(sub.connect(env.port), 0);
    }
    ASSERT_EQ(sub.subscribe("queue/#", 1), 1);
    sub.disconnect();
  }
  ASSERT_TRUE(wait_until([&] { return env.counter("connections") == 0; }));
  EXPECT_EQ(env.counter("sessions"), 1);
  for (int i = 0; i < 5; ++i)
    mosquitto_pub(env.port,
                  version() + " -q 1 -t queue/a -m offline" + std::to_string(i));
  mqtt_client back{"keeper", protocol(), false};
  if (protocol() == 5) {
    mosquitto_property* props = nullptr;
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                 600);
    ASSERT_EQ(mosquitto_connect_bind_v5(back.handle(), "127.0.0.1", env.port,
                                        60, nullptr, props),
              MOSQ_ERR_SUCCESS);
    mosquitto_property_free_all(&props);
  } else {
    ASSERT_EQ(back.connect(env.port), 0);
  }
  ASSERT_TRUE(back.wait_messages(5)) << back.messages().size();
  auto got = back.messages_on("queue/a");
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(got[static_cast<std::size_t>(i)].payload,
              "offline" + std::to_string(i));
}

TEST_P(hub_interop, shared_subscription_splits_messages_round_robin) {
  mqtt_client a{"worker-a", protocol()};
  mqtt_client b{"worker-b", protocol()};
  mqtt_client plain{"plain", protocol()};
  ASSERT_EQ(a.connect(env.port), 0);
  ASSERT_EQ(b.connect(env.port), 0);
  ASSERT_EQ(plain.connect(env.port), 0);
  ASSERT_EQ(a.subscribe("$share/workers/jobs/+", 1), 1);
  ASSERT_EQ(b.subscribe("$share/workers/jobs/+", 1), 1);
  ASSERT_EQ(plain.subscribe("jobs/+", 0), 0);
  for (int i = 0; i < 10; ++i)
    mosquitto_pub(env.port,
                  version() + " -q 1 -t jobs/j -m " + std::to_string(i));
  ASSERT_TRUE(plain.wait_messages(10));
  ASSERT_TRUE(wait_until(
    [&] { return a.messages().size() + b.messages().size() == 10; }));
  EXPECT_EQ(a.messages().size(), 5u);
  EXPECT_EQ(b.messages().size(), 5u);
}

INSTANTIATE_TEST_SUITE_P(protocols, hub_interop,
                         ::testing::Values("mqttv311", "mqttv5"));
