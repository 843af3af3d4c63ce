// The Kafka endpoint as a destination, against librdkafka's mock cluster
// (3 brokers): what arrives in Kafka for every setting, read back with a
// plain librdkafka consumer (and once with kcat).
#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"
#include "fixtures/kafka_fixture.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

class kafka_producer : public ::testing::Test {
protected:
  kafka_mock_cluster kafka{3};
  kafka_endpoint_harness harness;

  /// An endpoint on the mock cluster with `extra` settings lines.
  caf::actor endpoint(const std::string& extra = "") {
    return harness.spawn_endpoint("name: kafka1\ntype: kafka\nhost: "
                                  + kafka.bootstraps() + "\n" + extra);
  }

  std::vector<message> numbered(const std::string& mqtt_topic, int n,
                                const std::string& prefix = "m") {
    std::vector<message> out;
    for (int i = 0; i < n; ++i)
      out.push_back(mqtt_message(mqtt_topic, prefix + std::to_string(i)));
    return out;
  }

  void expect_all_ok(const std::vector<std::optional<std::string>>& results) {
    for (auto& r : results)
      ASSERT_FALSE(r) << *r;
  }

  /// Waits for the stats counter to reach at least `value`.
  bool wait_counter(const caf::actor& ep, const std::string& name,
                    std::int64_t value) {
    return wait_until([&] {
      return kafka_endpoint_harness::counter(harness.stats(ep), name) >= value;
    });
  }
};

} // namespace

TEST_F(kafka_producer, mqtt5_properties_arrive_as_headers) {
  kafka.create_topic("telemetry", 3);
  auto ep = endpoint();
  auto m = mqtt_message("factory/line1/telemetry", "{\"t\":21}",
                        {{"device-id", "d7"}, {"subject", "oven"}});
  m.properties.has_payload_format = true;
  m.properties.payload_format = 1;
  m.properties.content_type = "application/json";
  m.properties.response_topic = "replies/d7";
  m.properties.correlation_data = "req-1";
  m.properties.has_message_expiry = true;
  m.properties.message_expiry = 3600;
  ASSERT_EQ(harness.publish(ep, m, "telemetry"), std::nullopt);
  auto records = kafka.consume("telemetry", 1);
  ASSERT_EQ(records.size(), 1u);
  auto& r = records[0];
  EXPECT_EQ(r.value, "{\"t\":21}");
  EXPECT_EQ(r.header("Payload Format Indicator"), "1");
  EXPECT_EQ(r.header("Content Type"), "application/json");
  EXPECT_EQ(r.header("Response Topic"), "replies/d7");
  EXPECT_EQ(r.header("Correlation Data"), "req-1");
  auto expiry = std::stoi(r.header("Message Expiry Interval").value_or("0"));
  EXPECT_TRUE(expiry > 3590 && expiry <= 3600) << expiry;
  EXPECT_EQ(r.header("device-id"), "d7");
  EXPECT_EQ(r.header("subject"), "oven");
  EXPECT_FALSE(r.key); // Default strategy: no key

  // copyMqttProperties: Disabled sends the payload alone.
  auto bare = endpoint("copyMqttProperties: Disabled\n");
  ASSERT_EQ(harness.publish(bare, m, "telemetry"), std::nullopt);
  records = kafka.consume("telemetry", 2);
  ASSERT_EQ(records.size(), 2u);
  auto second = records[0].headers.empty() ? records[0] : records[1];
  EXPECT_TRUE(second.headers.empty());
}

TEST_F(kafka_producer, default_strategy_spreads_round_robin) {
  kafka.create_topic("rr", 4);
  auto ep = endpoint("partitionStrategy: Default\n");
  expect_all_ok(harness.publish_all(ep, numbered("a/b", 40), "rr"));
  std::map<int, int> per_partition;
  for (auto& r : kafka.consume("rr", 40))
    ++per_partition[r.partition];
  EXPECT_EQ(per_partition, (std::map<int, int>{{0, 10}, {1, 10}, {2, 10}, {3, 10}}));
}

TEST_F(kafka_producer, static_strategy_keeps_an_instance_on_one_partition) {
  kafka.create_topic("fixed", 4);
  std::set<int> partitions;
  {
    auto ep = endpoint("partitionStrategy: Static\ninstanceId: edge-7/kafka1\n");
    expect_all_ok(harness.publish_all(ep, numbered("a/b", 20), "fixed"));
  }
  // The same instance id after a restart lands on the same partition.
  auto again = endpoint("partitionStrategy: Static\ninstanceId: edge-7/kafka1\n");
  expect_all_ok(harness.publish_all(again, numbered("c/d", 20), "fixed"));
  for (auto& r : kafka.consume("fixed", 40)) {
    partitions.insert(r.partition);
    EXPECT_FALSE(r.key);
  }
  EXPECT_EQ(partitions.size(), 1u);
  EXPECT_EQ(kafka.record_count("fixed"), 40);
}

TEST_F(kafka_producer, topic_strategy_keys_by_mqtt_topic) {
  kafka.create_topic("by-topic", 4);
  auto ep = endpoint("partitionStrategy: Topic\n");
  std::vector<message> msgs;
  for (int i = 0; i < 30; ++i)
    msgs.push_back(mqtt_message("site/dev" + std::to_string(i % 6) + "/t",
                                std::to_string(i)));
  expect_all_ok(harness.publish_all(ep, msgs, "by-topic"));
  std::map<std::string, std::set<int>> partitions_of;
  std::map<std::string, std::vector<int>> order_of;
  for (auto& r : kafka.consume("by-topic", 30)) {
    ASSERT_TRUE(r.key);
    partitions_of[*r.key].insert(r.partition);
    order_of[*r.key].push_back(std::stoi(r.value));
  }
  ASSERT_EQ(partitions_of.size(), 6u);
  std::set<int> used;
  for (auto& [key, parts] : partitions_of) {
    EXPECT_EQ(parts.size(), 1u) << key;
    used.insert(*parts.begin());
    EXPECT_TRUE(std::is_sorted(order_of[key].begin(), order_of[key].end()));
  }
  EXPECT_GT(used.size(), 1u); // six keys do not all hash to one of four
}

TEST_F(kafka_producer, property_strategy_keys_by_the_named_user_property) {
  kafka.create_topic("by-device", 4);
  auto ep = endpoint("partitionStrategy: Property\npartitionKeyProperty: device-id\n");
  std::vector<message> msgs;
  for (int i = 0; i < 30; ++i)
    msgs.push_back(mqtt_message("same/topic", std::to_string(i),
                                {{"device-id", "dev-" + std::to_string(i % 5)}}));
  expect_all_ok(harness.publish_all(ep, msgs, "by-device"));
  std::map<std::string, std::set<int>> partitions_of;
  for (auto& r : kafka.consume("by-device", 30)) {
    ASSERT_TRUE(r.key);
    partitions_of[*r.key].insert(r.partition);
  }
  ASSERT_EQ(partitions_of.size(), 5u);
  for (auto& [key, parts] : partitions_of)
    EXPECT_EQ(parts.size(), 1u) << key;
}

TEST_F(kafka_producer, expired_messages_are_not_sent_and_counted) {
  kafka.create_topic("expiry", 2);
  auto ep = endpoint();
  auto stale = mqtt_message("a/b", "stale");
  stale.properties.has_message_expiry = true;
  stale.properties.message_expiry = 2;
  stale.received -= std::chrono::seconds(3); // waited 3 s in hubflow
  auto fresh = mqtt_message("a/b", "fresh");
  fresh.properties.has_message_expiry = true;
  fresh.properties.message_expiry = 10;
  fresh.received -= std::chrono::seconds(4);
  // Expired messages are acknowledged (MQTT lets them go), not retried.
  expect_all_ok(harness.publish_all(ep, {stale, fresh}, "expiry"));
  auto records = kafka.consume("expiry", 1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].value, "fresh");
  EXPECT_EQ(records[0].header("Message Expiry Interval"), "6");
  EXPECT_EQ(kafka.record_count("expiry"), 1);
  auto stats = harness.stats(ep);
  EXPECT_EQ(kafka_endpoint_harness::counter(stats, "expired"), 1);
  EXPECT_EQ(kafka_endpoint_harness::counter(stats, "acked"), 1);
}

TEST_F(kafka_producer, cloud_events_propagate_and_create_or_remap) {
  kafka.create_topic("ce", 1);
  auto with_ce = mqtt_message("ovens/1/telemetry", "{}",
                              {{"specversion", "1.0"},
                               {"type", "ms.aio.telemetry"},
                               {"source", "aio://mycluster/myoven"},
                               {"id", "A234-1234-1234"},
                               {"time", "2018-04-05T17:31:00Z"}});
  with_ce.properties.content_type = "application/json";
  auto without_ce = mqtt_message("ovens/1/telemetry", "{}", {{"type", "oven.t"}});

  auto propagate = endpoint("cloudEventAttributes: Propagate\n");
  expect_all_ok(harness.publish_all(propagate, {with_ce, without_ce}, "ce"));
  auto remap = endpoint("cloudEventAttributes: CreateOrRemap\n");
  expect_all_ok(harness.publish_all(remap, {without_ce}, "ce"));

  auto records = kafka.consume("ce", 3);
  ASSERT_EQ(records.size(), 3u);
  // Propagate, complete attributes: passed on under Kafka binding names.
  EXPECT_EQ(records[0].header("ce_specversion"), "1.0");
  EXPECT_EQ(records[0].header("ce_type"), "ms.aio.telemetry");
  EXPECT_EQ(records[0].header("ce_source"), "aio://mycluster/myoven");
  EXPECT_EQ(records[0].header("ce_id"), "A234-1234-1234");
  EXPECT_EQ(records[0].header("ce_time"), "2018-04-05T17:31:00Z");
  EXPECT_EQ(records[0].header("content-type"), "application/json");
  // Propagate, incomplete: unchanged.
  EXPECT_FALSE(records[1].header("ce_specversion"));
  EXPECT_EQ(records[1].header("type"), "oven.t");
  // CreateOrRemap: the missing attributes are generated.
  EXPECT_EQ(records[2].header("ce_specversion"), "1.0");
  EXPECT_EQ(records[2].header("ce_type"), "oven.t");
  EXPECT_EQ(records[2].header("ce_source"), "hubflow://kafka1");
  EXPECT_EQ(records[2].header("ce_subject"), "ce");
  EXPECT_EQ(records[2].header("ce_id").value_or("").size(), 36u);
  EXPECT_EQ(records[2].header("ce_time").value_or("").size(), 24u);
}

TEST_F(kafka_producer, batching_bounds_follow_max_messages_and_disabled_mode) {
  kafka.create_topic("batched", 1);
  kafka.create_topic("single", 1);
  auto batched = endpoint("batching: {latencyMs: 1000, maxMessages: 10}\n");
  auto single = endpoint("batching: {mode: Disabled}\n");
  expect_all_ok(harness.publish_all(batched, numbered("a/b", 95), "batched"));
  expect_all_ok(harness.publish_all(single, numbered("a/b", 20), "single"));
  // librdkafka's statistics (every 500 ms) count the batches.
  ASSERT_TRUE(wait_counter(batched, "batches", 10));
  ASSERT_TRUE(wait_counter(single, "batches", 20));
  auto b = harness.stats(batched);
  EXPECT_EQ(kafka_endpoint_harness::counter(b, "batch_msgs_max"), 10);
  EXPECT_EQ(kafka_endpoint_harness::counter(b, "batches"), 10); // 9 x 10 + 5
  auto s = harness.stats(single);
  EXPECT_EQ(kafka_endpoint_harness::counter(s, "batch_msgs_max"), 1);
  EXPECT_EQ(kafka_endpoint_harness::counter(s, "batches"), 20);
}

TEST_F(kafka_producer, compression_shrinks_what_goes_on_the_wire) {
  std::map<std::string, std::int64_t> wire_bytes;
  std::string body(1000, 'a');
  for (std::string codec : {"None", "Gzip", "Snappy", "Lz4"}) {
    auto topic = "zip-" + codec;
    kafka.create_topic(topic, 1);
    auto ep = endpoint("compression: " + codec + "\nbatching: {latencyMs: 50}\n");
    std::vector<message> msgs(200, mqtt_message("a/b", body));
    expect_all_ok(harness.publish_all(ep, msgs, topic));
    // The records read back whole, whatever the codec.
    auto records = kafka.consume(topic, 200);
    ASSERT_EQ(records.size(), 200u) << codec;
    EXPECT_EQ(records[199].value, body);
    ASSERT_TRUE(wait_until([&] {
      auto st = harness.stats(ep);
      return kafka_endpoint_harness::counter(st, "txmsg_bytes") >= 200000;
    })) << codec;
    wire_bytes[codec] = kafka_endpoint_harness::counter(harness.stats(ep), "tx_bytes");
  }
  EXPECT_GT(wire_bytes["None"], 200000);
  for (auto codec : {"Gzip", "Snappy", "Lz4"})
    EXPECT_LT(wire_bytes[codec] * 5, wire_bytes["None"]) << codec;
}

TEST_F(kafka_producer, acks_none_answers_without_waiting_for_kafka) {
  kafka.create_topic("acks", 2);
  auto none = endpoint("kafkaAcknowledgement: None\n");
  auto all = endpoint("kafkaAcknowledgement: All\n");
  // Both are connected before the brokers go away.
  ASSERT_EQ(harness.publish(none, mqtt_message("a", "n0"), "acks"), std::nullopt);
  ASSERT_EQ(harness.publish(all, mqtt_message("a", "a0"), "acks"), std::nullopt);
  kafka.set_all_down();
  // Fire and forget: answered at once although no broker is up.
  ASSERT_EQ(harness.publish(none, mqtt_message("a", "n1"), "acks", 2s), std::nullopt);
  // All: no answer while Kafka cannot acknowledge.
  auto waited = harness.publish(all, mqtt_message("a", "a1"), "acks", 1500ms);
  ASSERT_TRUE(waited);
  EXPECT_NE(waited->find("timeout"), std::string::npos) << *waited;
  kafka.set_all_up();
  ASSERT_EQ(harness.publish(all, mqtt_message("a", "a2"), "acks"), std::nullopt);
  for (auto mode : {"Zero", "One"}) {
    auto ep = endpoint(std::string("kafkaAcknowledgement: ") + mode + "\n");
    EXPECT_EQ(harness.publish(ep, mqtt_message("a", mode), "acks"), std::nullopt);
  }
}

TEST_F(kafka_producer, invalid_topic_is_a_clear_error) {
  auto ep = endpoint();
  auto err = harness.publish(ep, mqtt_message("a/b", "x"), "factory/line1");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("invalid Kafka topic 'factory/line1'"), std::string::npos) << *err;
}

TEST_F(kafka_producer, tls_against_a_plaintext_broker_fails_clearly) {
  kafka.create_topic("tls", 1);
  auto ep = endpoint("tls: {mode: Enabled}\ndeliveryTimeoutMs: 3000\n");
  auto err = harness.publish(ep, mqtt_message("a", "x"), "tls");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("delivery to topic tls failed"), std::string::npos) << *err;
  EXPECT_NE(err->find("SSL"), std::string::npos) << *err;
}

TEST_F(kafka_producer, sasl_against_a_broker_without_it_fails_clearly) {
  kafka.create_topic("sasl", 1);
  temp_dir dir;
  auto user = dir.write("user", "alice");
  auto pass = dir.write("pass", "secret");
  auto ep = endpoint("authentication: {method: Sasl, saslType: ScramSha256, "
                     "username: {file: " + user + "}, password: {file: " + pass
                     + "}}\ndeliveryTimeoutMs: 3000\n");
  auto err = harness.publish(ep, mqtt_message("a", "x"), "sasl");
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("delivery to topic sasl failed"), std::string::npos) << *err;
  EXPECT_NE(err->find("SASL"), std::string::npos) << *err;
  EXPECT_EQ(err->find("secret"), std::string::npos); // never echoed
}

TEST_F(kafka_producer, brokers_down_mid_stream_lose_no_acknowledged_message) {
  kafka.create_topic("durable", 4);
  auto ep = endpoint("partitionStrategy: Property\npartitionKeyProperty: key\n");
  constexpr int total = 3000;
  constexpr int keys = 8;
  std::vector<message> msgs;
  for (int i = 0; i < total; ++i)
    msgs.push_back(mqtt_message("plant/line", std::to_string(i),
                                {{"key", "k" + std::to_string(i % keys)}}));
  // A QoS 1 publisher with a window of in-flight messages, as the hub's
  // sessions are: the brokers go down after a third and come back 5 s later.
  std::vector<int> acked;
  std::thread outage;
  std::chrono::steady_clock::time_point outage_start;
  constexpr int window = 100;
  for (int begin = 0; begin < total; begin += window) {
    if (begin == total / 3) {
      outage_start = std::chrono::steady_clock::now();
      outage = std::thread([&] {
        kafka.set_all_down();
        std::this_thread::sleep_for(5s); // the outage itself, not a wait
        kafka.set_all_up();
      });
    }
    std::vector<message> slice(msgs.begin() + begin, msgs.begin() + begin + window);
    auto results = harness.publish_all(ep, slice, "durable", 120s);
    for (int i = 0; i < window; ++i)
      if (!results[i])
        acked.push_back(begin + i);
  }
  // The rest of the stream had to wait for the brokers to come back.
  EXPECT_GE(std::chrono::steady_clock::now() - outage_start, 4s);
  outage.join();
  EXPECT_EQ(acked.size(), static_cast<std::size_t>(total)); // retried through
  auto records = kafka.consume("durable", total, 30s);
  std::map<std::string, std::vector<int>> per_key;
  std::set<int> seen;
  for (auto& r : records) {
    per_key[*r.key].push_back(std::stoi(r.value));
    seen.insert(std::stoi(r.value));
  }
  for (int i : acked)
    EXPECT_TRUE(seen.count(i)) << "acknowledged message " << i << " lost";
  // Idempotent producer: retries wrote no duplicates.
  EXPECT_EQ(kafka.record_count("durable"), static_cast<std::int64_t>(acked.size()));
  EXPECT_EQ(seen.size(), records.size());
  for (auto& [key, values] : per_key)
    EXPECT_TRUE(std::is_sorted(values.begin(), values.end())) << key;
}

TEST_F(kafka_producer, kcat_reads_what_hubflow_produced) {
  kafka.create_topic("kcat", 2);
  auto ep = endpoint("partitionStrategy: Topic\n");
  expect_all_ok(harness.publish_all(
    ep, {mqtt_message("s/1", "one"), mqtt_message("s/2", "two")}, "kcat"));
  auto out = run_command("kcat -C -b " + kafka.bootstraps()
                         + " -t kcat -e -q -f '%k=%s\\n' 2>&1");
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_NE(out.output.find("s/1=one"), std::string::npos) << out.output;
  EXPECT_NE(out.output.find("s/2=two"), std::string::npos) << out.output;
}
