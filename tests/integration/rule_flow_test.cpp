// Rules under bursts, through the real broker and real MQTT clients: a rule
// keeps at most 256 invocations at its function and holds the rest in its
// backlog, so a burst far larger than the function's queue is processed
// without Overloaded failures, retries or losses, and in order; a rule
// without a function passes a connection's bursts on as bursts, and every
// message still arrives, in order, acknowledged on its own; a subscriber
// that falls behind slows the rule and its publisher down, losing nothing.
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <mosquitto.h>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "hub_test_env.hpp"

using namespace hubflow::test;
using json = nlohmann::json;
namespace mqtt = hubflow::mqtt;

namespace {

/// A broker whose config is the embedded hub plus `rules_yaml`, with a
/// subscriber to `out` at `qos` and a publisher connected.
class rule_flow : public ::testing::Test {
protected:
  /// `out` empty: no subscriber (the test brings its own).
  void start(const std::string& rules_yaml, const std::string& out, int qos,
             const std::string& hub_yaml = "") {
    server = std::make_unique<hubflow_server>(
      "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
      + hub_yaml + rules_yaml);
    ASSERT_TRUE(wait_for_port(port, 15s)) << server->proc().output();
    ASSERT_TRUE(server->wait_ready()) << server->proc().output();
    if (!out.empty()) {
      ASSERT_EQ(sub.connect(port), 0);
      ASSERT_EQ(sub.subscribe(out, qos), qos);
    }
    ASSERT_EQ(pub.connect(port), 0);
  }

  std::uint16_t port = free_port();
  std::unique_ptr<hubflow_server> server;
  mqtt_client sub{"watcher"};
  mqtt_client pub{"device"};
};

} // namespace

TEST_F(rule_flow, burst_beyond_the_function_queue_needs_no_retries) {
  // One instance and a queue of 300: a burst of 5000 overflowed it when the
  // rule sent everything at once.
  ASSERT_NO_FATAL_FAILURE(start("rules:\n"
                                "  - name: burst\n"
                                "    from: {topic: burst/in}\n"
                                "    function: {name: echo}\n"
                                "    to: {topic: burst/out}\n"
                                "functions:\n"
                                "  - name: echo\n"
                                "    plugin: "
                                  + plugin_dir()
                                  + "/identity.so\n"
                                    "    instance: {max: 1, queue: 300}\n",
                                "burst/out", 0));

  constexpr int burst = 5000;
  for (int i = 0; i < burst; ++i)
    ASSERT_TRUE(pub.publish("burst/in", R"({"n":)" + std::to_string(i) + "}"));
  ASSERT_TRUE(sub.wait_messages(burst, 30s))
    << sub.messages().size() << " of " << burst << " arrived\n"
    << server->stats_json();
  auto got = sub.messages_on("burst/out");
  for (int i = 0; i < burst; ++i)
    ASSERT_EQ(json::parse(got[i].payload)["n"], i) << "out of order at " << i;

  // Every invocation was taken the first time: no overflow, no retry.
  json fn, rule;
  ASSERT_TRUE(wait_until([&] {
    auto stats = server->stats_json();
    fn = counters_of(stats, "function", "echo");
    rule = counters_of(stats, "rule", "burst");
    return fn.is_object() && fn.value("outputs", 0) == burst
           && rule.is_object() && rule.value("out", 0) == burst;
  })) << server->stats_json();
  EXPECT_EQ(fn.value("invocations", -1), burst);
  EXPECT_EQ(fn.value("overflows", 0), 0);
  EXPECT_EQ(rule.value("retries", 0), 0);
  EXPECT_EQ(rule.value("errors", 0), 0);
  EXPECT_EQ(rule.value("backlog", -1), 0);
}

TEST_F(rule_flow, plain_forward_of_qos1_bursts_arrives_complete_and_in_order) {
  // No function: the rule hands each read's publishes (a burst) to the hub
  // as one message; every publish is still acknowledged on its own.
  ASSERT_NO_FATAL_FAILURE(start("rules:\n"
                                "  - name: forward\n"
                                "    from: {topic: fwd/in, qos: 1}\n"
                                "    to: {topic: fwd/out, qos: 1}\n",
                                "fwd/out", 1));

  // Queued without waiting for PUBACKs, so reads carry many publishes.
  constexpr int burst = 3000;
  for (int i = 0; i < burst - 1; ++i) {
    auto body = std::to_string(i);
    ASSERT_EQ(mosquitto_publish(pub.handle(), nullptr, "fwd/in",
                                static_cast<int>(body.size()), body.data(), 1,
                                false),
              MOSQ_ERR_SUCCESS);
  }
  // Acknowledgements come in order: the last one means all were taken.
  ASSERT_TRUE(pub.publish("fwd/in", std::to_string(burst - 1), 1, false, 30s));
  ASSERT_TRUE(sub.wait_messages(burst, 30s))
    << sub.messages().size() << " of " << burst << " arrived\n"
    << server->stats_json();
  auto got = sub.messages_on("fwd/out");
  ASSERT_EQ(got.size(), static_cast<std::size_t>(burst));
  for (int i = 0; i < burst; ++i)
    ASSERT_EQ(got[i].payload, std::to_string(i)) << "out of order at " << i;

  json rule;
  ASSERT_TRUE(wait_until([&] {
    rule = counters_of(server->stats_json(), "rule", "forward");
    return rule.is_object() && rule.value("out", 0) == burst;
  })) << server->stats_json();
  EXPECT_EQ(rule.value("in", -1), burst);
  EXPECT_EQ(rule.value("retries", 0), 0);
  EXPECT_EQ(rule.value("in_flight", -1), 0);
}

TEST_F(rule_flow, a_subscriber_behind_slows_the_rule_down_and_loses_nothing) {
  // Window 20 and queue 50 for the subscriber, which acknowledges nothing
  // at first: the hub holds the rule's answers, the rule the publisher's
  // PUBACKs, and the publisher's own window stops it.
  ASSERT_NO_FATAL_FAILURE(start("rules:\n"
                                "  - name: forward\n"
                                "    from: {topic: slow/in, qos: 1}\n"
                                "    to: {topic: slow/out, qos: 1}\n",
                                "", 1,
                                "  message: {inflight: 20, queued: 50}\n"));
  raw_client slow{port};
  ASSERT_TRUE(slow.mqtt_connect("slow-reader", mqtt::v5));
  mqtt::subscribe_packet s;
  s.packet_id = 1;
  mqtt::subscription_options opts;
  opts.qos = 1;
  s.filters = {{"slow/out", opts}};
  ASSERT_TRUE(slow.send(s, mqtt::v5));
  ASSERT_TRUE(slow.read(mqtt::v5)); // SUBACK

  constexpr int burst = 500;
  for (int i = 0; i < burst; ++i) {
    auto body = std::to_string(i);
    ASSERT_EQ(mosquitto_publish(pub.handle(), nullptr, "slow/in",
                                static_cast<int>(body.size()), body.data(), 1,
                                false),
              MOSQ_ERR_SUCCESS);
  }
  json hub, rule;
  ASSERT_TRUE(wait_until([&] {
    hub = counters_of(server->stats_json(), "hub", "embedded");
    return hub.is_object() && hub.value("held_for_room", 0) > 0;
  })) << server->stats_json();
  std::this_thread::sleep_for(1s);
  rule = counters_of(server->stats_json(), "rule", "forward");
  EXPECT_LT(rule.value("in", burst), burst) << rule; // the publisher waits

  std::vector<std::string> got;
  while (got.size() < static_cast<std::size_t>(burst)) {
    auto p = slow.read_publish(mqtt::v5);
    if (!p)
      break;
    got.emplace_back(p->msg.body.view());
    ASSERT_TRUE(slow.send(
      mqtt::ack_packet{mqtt::packet_type::puback, p->packet_id, 0, {}},
      mqtt::v5));
  }
  ASSERT_EQ(got.size(), static_cast<std::size_t>(burst))
    << server->stats_json();
  for (int i = 0; i < burst; ++i)
    ASSERT_EQ(got[i], std::to_string(i)) << "out of order at " << i;
  hub = counters_of(server->stats_json(), "hub", "embedded");
  EXPECT_EQ(hub.value("dropped_queue_full", -1), 0);
  EXPECT_EQ(counters_of(server->stats_json(), "rule", "forward")
              .value("retries", 0),
            0);
}
