// What a rule does with failures, through the real hubflow binary, real
// MQTT clients, librdkafka's mock cluster and a redis-server the test
// starts: error reports for an endpoint destination land in its
// error_topic (never in the data topic), and a destination that refuses a
// message for good (ERROR, core/sink_error.hpp) is reported at once and
// acknowledged with a reason code (MQTT 5) or a plain PUBACK (3.1.1)
// instead of never; a hub destination topic is a template as well.
#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "fixtures/kafka_fixture.hpp"
#include "fixtures/redis_fixture.hpp"
#include "hub_test_env.hpp"

using namespace hubflow;
using namespace hubflow::test;
using json = nlohmann::json;

namespace {

std::string hub_section(std::uint16_t port) {
  return "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
         + "]\n  anonymous: loopback\n";
}

/// sayhi fails a message with an "err" key (TypeError): a handler error.
const std::string sayhi_function = "functions:\n"
                                   "  - name: sayhi\n"
                                   "    runtime: native\n"
                                   "    plugin: sayhi\n"
                                   "    instance: {min: 1, max: 2}\n";

class rule_errors : public ::testing::Test {
protected:
  void start(const std::string& yaml) {
    server = std::make_unique<hubflow_server>(hub_section(port) + yaml);
    ASSERT_TRUE(server->wait_ready()) << server->proc().output();
    ASSERT_TRUE(wait_for_port(port)) << server->proc().output();
  }

  /// Publishes at QoS 1 with a raw client and returns the PUBACK (nullopt
  /// when none came within `timeout`).
  std::optional<mqtt::ack_packet> publish_qos1(std::uint8_t version,
                                               const std::string& topic,
                                               const std::string& body,
                                               std::chrono::milliseconds
                                                 timeout = 10s) {
    raw_client c{port};
    if (!c.mqtt_connect("errors-" + std::to_string(version), version))
      return std::nullopt;
    mqtt::publish_packet p;
    p.msg.topic = topic;
    p.msg.body = payload{body};
    p.msg.qos = 1;
    p.packet_id = 7;
    if (!c.send(p, version))
      return std::nullopt;
    auto answer = c.read(version, timeout);
    if (!answer || !std::holds_alternative<mqtt::ack_packet>(*answer))
      return std::nullopt;
    return std::get<mqtt::ack_packet>(*answer);
  }

  std::uint16_t port = free_port();
  std::unique_ptr<hubflow_server> server;
};

} // namespace

TEST_F(rule_errors, a_handler_error_for_a_kafka_destination_goes_to_error_topic) {
  kafka_mock_cluster kafka{1};
  kafka.create_topic("data", 1, 1);
  kafka.create_topic("dead-letter", 1, 1);
  ASSERT_NO_FATAL_FAILURE(start(
    "endpoints:\n"
    "  - name: kafka1\n    type: kafka\n    host: " + kafka.bootstraps() + "\n"
    "rules:\n"
    "  - name: hi-to-kafka\n"
    "    from: {topic: t, qos: 1}\n"
    "    function: {name: sayhi}\n"
    "    to: {endpoint: kafka1, topic: data}\n"
    "    error_topic: dead-letter\n"
    + sayhi_function));
  mqtt_client publisher{"pub", 5};
  ASSERT_EQ(publisher.connect(port), 0);
  // The PUBACK waits for the report's Kafka ack: the report is there now.
  ASSERT_TRUE(publisher.publish("t", R"({"err":"boom"})", 1, false, 30s))
    << server->proc().output();
  auto reports = kafka.consume("dead-letter", 1);
  ASSERT_EQ(reports.size(), 1u) << server->proc().output();
  auto report = json::parse(reports[0].value);
  EXPECT_EQ(report["functionMessage"], json::parse(R"({"err":"boom"})"));
  EXPECT_EQ(report["errorMessage"].get<std::string>().substr(0, 4), "boom");
  EXPECT_EQ(report["errorType"], "TypeError");
  EXPECT_EQ(kafka.record_count("data"), 0);
  // Outputs still go to the data topic, and only there.
  ASSERT_TRUE(publisher.publish("t", R"({"id":1})", 1, false, 30s));
  EXPECT_EQ(kafka.record_count("data"), 1);
  EXPECT_EQ(kafka.record_count("dead-letter"), 1);
}

TEST_F(rule_errors, a_topic_its_template_made_invalid_is_reported_and_acked) {
  kafka_mock_cluster kafka{1};
  kafka.create_topic("telemetry-errors", 1, 1);
  ASSERT_NO_FATAL_FAILURE(start(
    "endpoints:\n"
    "  - name: kafka1\n    type: kafka\n    host: " + kafka.bootstraps() + "\n"
    "rules:\n"
    "  - name: plant-to-kafka\n"
    "    from: {topic: 'plant/#', qos: 1}\n"
    "    to: {endpoint: kafka1, topic: 'telemetry-${mqtt.topic.2}'}\n"
    "    error_topic: telemetry-errors\n"));
  // 'telemetry-bad level' is no Kafka topic name: retrying cannot help.
  auto v5 = publish_qos1(mqtt::v5, "plant/bad level/data", "x1");
  ASSERT_TRUE(v5) << "no PUBACK\n" << server->proc().output();
  EXPECT_EQ(v5->reason, mqtt::rc::topic_name_invalid);
  auto v311 = publish_qos1(mqtt::v311, "plant/bad level/data", "x2");
  ASSERT_TRUE(v311) << "no PUBACK\n" << server->proc().output();
  EXPECT_EQ(v311->packet_id, 7);
  // Both were reported, not dropped.
  auto reports = kafka.consume("telemetry-errors", 2);
  ASSERT_EQ(reports.size(), 2u) << server->proc().output();
  auto report = json::parse(reports[0].value);
  EXPECT_EQ(report["functionMessage"], "x1");
  EXPECT_EQ(report["errorType"], "DestinationError");
  EXPECT_NE(report["errorMessage"].get<std::string>().find("telemetry-bad level"),
            std::string::npos)
    << report.dump();
  json rule;
  EXPECT_TRUE(wait_until([&] {
    rule = counters_of(server->stats_json(), "rule", "plant-to-kafka");
    return rule.is_object() && rule.value("refused", 0) == 2;
  })) << rule.dump();
  EXPECT_EQ(rule.value("retries", 0), 0);
}

TEST_F(rule_errors, a_redis_wrongtype_is_reported_to_its_error_key_at_once) {
  redis_server redis;
  redis.cli({"SET", "journal", "not a list"});
  ASSERT_NO_FATAL_FAILURE(start(
    "endpoints:\n"
    "  - name: redis1\n    type: redis\n    host: 127.0.0.1\n"
    "    port: " + std::to_string(redis.port()) + "\n    mode: rpush\n"
    "rules:\n"
    "  - name: to-journal\n"
    "    from: {topic: journal/in, qos: 1}\n"
    "    to: {endpoint: redis1, topic: journal}\n"
    "    error_topic: journal-errors\n"));
  auto ack = publish_qos1(mqtt::v5, "journal/in", "entry");
  ASSERT_TRUE(ack) << "no PUBACK\n" << server->proc().output();
  EXPECT_EQ(ack->reason, mqtt::rc::unspecified_error);
  auto report = json::parse(redis.cli({"LINDEX", "journal-errors", "0"}));
  EXPECT_EQ(report["functionMessage"], "entry");
  EXPECT_NE(report["errorMessage"].get<std::string>().find("WRONGTYPE"),
            std::string::npos)
    << report.dump();
  EXPECT_EQ(redis.cli({"GET", "journal"}), "not a list");
  // Not retried: a permanent failure goes straight to the report.
  json rule;
  EXPECT_TRUE(wait_until([&] {
    rule = counters_of(server->stats_json(), "rule", "to-journal");
    return rule.is_object() && rule.value("refused", 0) == 1;
  })) << rule.dump();
  EXPECT_EQ(rule.value("retries", 0), 0);
}

TEST_F(rule_errors, a_hub_destination_topic_is_a_template_too) {
  ASSERT_NO_FATAL_FAILURE(start("rules:\n"
                                "  - name: by-device\n"
                                "    from: {topic: 'site/#', qos: 1}\n"
                                "    to: {topic: 'device/${topic.2}', qos: 1}\n"
                                "    error_topic: site-errors\n"));
  mqtt_client watcher{"watcher"};
  ASSERT_EQ(watcher.connect(port), 0);
  ASSERT_EQ(watcher.subscribe("device/#", 1), 1);
  ASSERT_EQ(watcher.subscribe("site-errors", 1), 1);
  auto ok = publish_qos1(mqtt::v5, "site/dev7/temp", "21.5");
  ASSERT_TRUE(ok) << "no PUBACK\n" << server->proc().output();
  EXPECT_EQ(ok->reason, 0);
  // `site` has no second level: no topic to publish on, reported instead.
  auto refused = publish_qos1(mqtt::v5, "site", "lonely");
  ASSERT_TRUE(refused) << "no PUBACK\n" << server->proc().output();
  EXPECT_EQ(refused->reason, mqtt::rc::topic_name_invalid);
  ASSERT_TRUE(watcher.wait_messages(2, 5s)) << server->proc().output();
  auto data = watcher.messages_on("device/dev7");
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].payload, "21.5");
  auto reports = watcher.messages_on("site-errors");
  ASSERT_EQ(reports.size(), 1u);
  auto report = json::parse(reports[0].payload);
  EXPECT_EQ(report["functionMessage"], "lonely");
  EXPECT_EQ(report["errorType"], "DestinationError");
  EXPECT_NE(report["errorMessage"].get<std::string>().find("device/${topic.2}"),
            std::string::npos)
    << report.dump();
}
