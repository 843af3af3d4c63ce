// MQTT message -> Kafka record mapping and back: topic templates, MQTT 5
// property headers, expiry accounting, CloudEvents, partition keys, UTF-8
// and size checks of consumed headers.
#include <regex>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/kafka/kafka_mapping.hpp"
#include "endpoints/kafka/kafka_settings.hpp"

using namespace hubflow;
using namespace hubflow::kafka;
using namespace std::chrono_literals;

namespace {

/// An endpoint with the option table's defaults and `strategy`.
kafka_settings settings_with(partition_strategy strategy = partition_strategy::round_robin) {
  endpoint_config cfg;
  cfg.name = "kafka1";
  cfg.type = "kafka";
  cfg.settings = YAML::Load("host: 127.0.0.1:9092");
  std::vector<std::string> errors;
  auto s = parse_kafka_settings(cfg, {false, true, {}}, "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty());
  s.partitioning = strategy;
  return s;
}

message telemetry() {
  message m;
  m.topic = "factory/line1/telemetry";
  m.body = payload{"{\"t\":21}"};
  m.qos = 1;
  return m;
}

std::optional<std::string> header(const outgoing_record& r, const std::string& name) {
  for (auto& [k, v] : r.headers)
    if (k == name)
      return v;
  return std::nullopt;
}

} // namespace

std::string expanded(std::string tmpl, const std::string& mqtt_topic) {
  message m;
  m.topic = mqtt_topic;
  std::string error;
  if (!expand_kafka_topic(settings_with(), tmpl, m, error))
    return "error: " + error;
  return tmpl;
}

TEST(kafka_topic_template, expands_the_topic_and_its_levels) {
  EXPECT_EQ(expanded("telemetry", "a/b"), "telemetry");
  EXPECT_EQ(expanded("${topic}", "a/b"), "a/b");
  EXPECT_EQ(expanded("t-${topic.2}", "factory/line1/x"), "t-line1");
  // The Kafka endpoint's own older form, levels counted from 1 as before.
  EXPECT_EQ(expanded("t-${mqtt.topic.2}", "factory/line1/x"), "t-line1");
  EXPECT_EQ(expanded("${mqtt.topic.1}.${mqtt.topic.3}", "f/l/x"), "f.x");
  // A level the topic lacks is an error, not an empty string.
  EXPECT_EQ(expanded("t${topic.4}", "f/l/x"),
            "error: template 't${topic.4}': topic 'f/l/x' has no level 4");
  EXPECT_NE(expanded("${other}", "f").find("unknown placeholder ${other}"),
            std::string::npos);
  EXPECT_NE(expanded("x${mqtt.topic", "f").find("unclosed '${'"),
            std::string::npos);
}

TEST(kafka_topic_template, uses_the_template_compiled_at_load) {
  auto s = settings_with();
  std::string error;
  auto compiled = topic_template::compile("k-${topic.1}", error);
  ASSERT_TRUE(compiled);
  s.usage.targets.emplace("k-${topic.1}",
                          std::make_shared<const topic_template>(*compiled));
  message m;
  m.topic = "plant/x";
  std::string topic = "k-${topic.1}";
  ASSERT_TRUE(expand_kafka_topic(s, topic, m, error)) << error;
  EXPECT_EQ(topic, "k-plant");
}

TEST(kafka_topic_template, checks_placeholders_and_characters) {
  EXPECT_FALSE(check_kafka_topic_template("telemetry.${mqtt.topic.2}"));
  EXPECT_FALSE(check_kafka_topic_template("${mqtt.topic}"));
  EXPECT_EQ(*check_kafka_topic_template("${mqtt.topc}"),
            "unknown placeholder ${mqtt.topc} (known: ${topic}, ${topic.N} (N "
            "from 1), ${property.NAME}, ${origin}, ${qos}, ${timestamp})");
  EXPECT_TRUE(check_kafka_topic_template("${mqtt.topic.0}"));
  EXPECT_TRUE(check_kafka_topic_template("a/b"));
  EXPECT_TRUE(check_kafka_topic_template(""));
  EXPECT_TRUE(is_valid_topic_name("telemetry.line-1_x"));
  EXPECT_FALSE(is_valid_topic_name("factory/line1"));
  EXPECT_FALSE(is_valid_topic_name(".."));
}

TEST(kafka_mapping, mqtt5_properties_become_headers) {
  auto m = telemetry();
  m.properties.has_payload_format = true;
  m.properties.payload_format = 1;
  m.properties.response_topic = "replies/1";
  m.properties.correlation_data = std::string("\x01\x00\xff", 3);
  m.properties.content_type = "application/json";
  m.properties.user_properties = {{"device-id", "d7"}, {"site", "north"}};
  auto r = prepare_record(settings_with(), m, "telemetry", m.received);
  EXPECT_FALSE(r.expired);
  EXPECT_EQ(header(r, "Payload Format Indicator"), "1");
  EXPECT_EQ(header(r, "Response Topic"), "replies/1");
  EXPECT_EQ(header(r, "Correlation Data"), std::string("\x01\x00\xff", 3));
  EXPECT_EQ(header(r, "Content Type"), "application/json");
  EXPECT_EQ(header(r, "device-id"), "d7");
  EXPECT_EQ(header(r, "site"), "north");
  EXPECT_FALSE(header(r, "Message Expiry Interval"));
  EXPECT_FALSE(r.key);

  auto off = settings_with();
  off.copy_mqtt_properties = false;
  EXPECT_TRUE(prepare_record(off, m, "telemetry", m.received).headers.empty());
}

TEST(kafka_mapping, expiry_subtracts_the_time_waited_in_hubflow) {
  auto m = telemetry();
  m.properties.has_message_expiry = true;
  m.properties.message_expiry = 3600;
  auto r = prepare_record(settings_with(), m, "t", m.received + 1000s);
  EXPECT_EQ(header(r, "Message Expiry Interval"), "2600");
  // A partly elapsed second still counts as left.
  r = prepare_record(settings_with(), m, "t", m.received + 3599s + 600ms);
  EXPECT_FALSE(r.expired);
  EXPECT_EQ(header(r, "Message Expiry Interval"), "1");
  EXPECT_TRUE(prepare_record(settings_with(), m, "t", m.received + 3600s).expired);
  EXPECT_TRUE(prepare_record(settings_with(), m, "t", m.received + 4000s).expired);
}

TEST(kafka_mapping, partition_keys_per_strategy) {
  auto m = telemetry();
  m.properties.user_properties = {{"device-id", "d7"}};
  EXPECT_EQ(prepare_record(settings_with(partition_strategy::mqtt_topic), m, "t",
                           m.received)
              .key,
            "factory/line1/telemetry");
  auto by_property = settings_with(partition_strategy::property);
  by_property.partition_key_property = "device-id";
  EXPECT_EQ(prepare_record(by_property, m, "t", m.received).key, "d7");
  m.properties.user_properties.clear();
  EXPECT_FALSE(prepare_record(by_property, m, "t", m.received).key);
  EXPECT_FALSE(
    prepare_record(settings_with(partition_strategy::fixed_instance), m, "t",
                   m.received)
      .key);
}

TEST(kafka_mapping, propagate_passes_complete_cloud_events_with_kafka_binding_names) {
  auto m = telemetry();
  m.properties.content_type = "application/json";
  m.properties.user_properties = {{"specversion", "1.0"},
                                  {"type", "ms.aio.telemetry"},
                                  {"source", "aio://mycluster/myoven"},
                                  {"id", "A234-1234-1234"},
                                  {"time", "2018-04-05T17:31:00Z"},
                                  {"site", "north"}};
  auto r = prepare_record(settings_with(), m, "telemetry", m.received);
  EXPECT_EQ(header(r, "ce_specversion"), "1.0");
  EXPECT_EQ(header(r, "ce_type"), "ms.aio.telemetry");
  EXPECT_EQ(header(r, "ce_source"), "aio://mycluster/myoven");
  EXPECT_EQ(header(r, "ce_id"), "A234-1234-1234");
  EXPECT_EQ(header(r, "ce_time"), "2018-04-05T17:31:00Z"); // not restamped
  EXPECT_EQ(header(r, "content-type"), "application/json");
  EXPECT_FALSE(header(r, "ce_subject"));
  EXPECT_FALSE(header(r, "specversion")); // not duplicated as a plain header
  EXPECT_EQ(header(r, "site"), "north");

  // Without every required attribute the message passes unchanged.
  m.properties.user_properties = {{"specversion", "1.0"}, {"type", "x"}};
  r = prepare_record(settings_with(), m, "telemetry", m.received);
  EXPECT_FALSE(header(r, "ce_specversion"));
  EXPECT_EQ(header(r, "specversion"), "1.0");
}

TEST(kafka_mapping, create_or_remap_fills_missing_attributes) {
  auto s = settings_with();
  s.cloud_event_attributes = cloud_events::create_or_remap;
  auto m = telemetry();
  m.properties.user_properties = {{"type", "oven.temperature"}};
  auto now = message::clock::time_point{} + 1714564800123ms;
  auto r = prepare_record(s, m, "telemetry", now);
  EXPECT_EQ(header(r, "ce_specversion"), "1.0");
  EXPECT_EQ(header(r, "ce_type"), "oven.temperature"); // kept
  EXPECT_EQ(header(r, "ce_source"), "hubflow://kafka1");
  EXPECT_EQ(header(r, "ce_subject"), "telemetry");
  EXPECT_EQ(header(r, "ce_time"), "2024-05-01T12:00:00.123Z");
  ASSERT_TRUE(header(r, "ce_id"));
  EXPECT_TRUE(std::regex_match(*header(r, "ce_id"),
                               std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-"
                                          "[89ab][0-9a-f]{3}-[0-9a-f]{12}")));
  EXPECT_NE(*header(r, "ce_id"), *header(prepare_record(s, m, "telemetry", now), "ce_id"));
  // Attributes that came back from Kafka (ce_ prefixed) are recognised too.
  m.properties.user_properties = {{"ce_id", "abc"}};
  EXPECT_EQ(header(prepare_record(s, m, "telemetry", now), "ce_id"), "abc");
}

TEST(kafka_mapping, consumed_headers_keep_only_mqtt_utf8_under_64k) {
  header_list headers = {{"ok", "value"},
                         {"binary", std::string("\xa1\x03" "bar", 5)},
                         {"big", std::string(65536, 'x')},
                         {"just-fits", std::string(65535, 'y')},
                         {"nul", std::string("a\0b", 3)},
                         {"surrogate", "\xed\xa0\x80"},
                         {"overlong", "\xc0\xaf"},
                         {"emoji", "\xf0\x9f\x98\x80"}};
  mqtt_properties props;
  EXPECT_EQ(add_header_properties(headers, props), 5u);
  ASSERT_EQ(props.user_properties.size(), 3u);
  EXPECT_EQ(props.user_properties[0].first, "ok");
  EXPECT_EQ(props.user_properties[1].first, "just-fits");
  EXPECT_EQ(props.user_properties[2].first, "emoji");
}
