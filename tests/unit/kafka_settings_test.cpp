// Kafka endpoint settings: parsing with Azure IoT Operations' field names,
// config errors with file:line:col and key path, secrets from files and
// environment variables, and the librdkafka properties they become.
#include <cstdlib>
#include <map>

#include <gtest/gtest.h>

#include "endpoints/kafka/kafka_settings.hpp"
#include "fixtures/fixtures.hpp"

using namespace hubflow;
using namespace hubflow::kafka;

namespace {

endpoint_config endpoint_from(const std::string& yaml,
                              const std::string& file = "/etc/hubflow/hubflow.yaml") {
  endpoint_config cfg;
  cfg.name = "kafka1";
  cfg.type = "kafka";
  cfg.settings = YAML::Load(yaml);
  cfg.where = {file, 1, 1};
  return cfg;
}

std::vector<std::string> errors_of(const std::string& yaml,
                                   endpoint_usage usage = {false, true, {}}) {
  std::vector<std::string> errors;
  parse_kafka_settings(endpoint_from(yaml), usage, "endpoints[0]", errors);
  return errors;
}

kafka_settings parsed(const std::string& yaml, endpoint_usage usage = {false, true, {}}) {
  std::vector<std::string> errors;
  auto s = parse_kafka_settings(endpoint_from(yaml), usage, "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front());
  return s;
}

std::map<std::string, std::string> as_map(const property_list& props) {
  return {props.begin(), props.end()};
}

} // namespace

TEST(kafka_settings, defaults_follow_azure_iot_operations) {
  auto s = parsed("name: kafka1\ntype: kafka\nhost: 127.0.0.1:9092\n");
  EXPECT_EQ(s.host, "127.0.0.1:9092");
  EXPECT_EQ(s.acks, acknowledgement::all);
  EXPECT_EQ(s.codec, compression::none);
  EXPECT_TRUE(s.batching.enabled);
  EXPECT_EQ(s.batching.latency_ms, 5);
  EXPECT_EQ(s.batching.max_messages, 100000);
  EXPECT_EQ(s.batching.max_bytes, 1000000);
  EXPECT_EQ(s.partitioning, partition_strategy::round_robin);
  EXPECT_TRUE(s.copy_mqtt_properties);
  EXPECT_EQ(s.cloud_event_attributes, cloud_events::propagate);
  EXPECT_FALSE(s.tls);
  EXPECT_FALSE(s.sasl);
  EXPECT_NE(s.instance_id.find("/kafka1"), std::string::npos);
}

TEST(kafka_settings, source_without_consumer_group_is_refused_with_azure_text) {
  auto errors = errors_of("name: kafka1\ntype: kafka\nhost: 127.0.0.1:9092\n",
                          {true, false, {}});
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "/etc/hubflow/hubflow.yaml:1:1: endpoints[0].consumerGroupId: "
                       "Kafka-type source endpoints must have a consumerGroupId "
                       "defined");
  // A destination needs none.
  EXPECT_TRUE(errors_of("host: 127.0.0.1:9092\n", {false, true, {}}).empty());
  EXPECT_TRUE(errors_of("host: 127.0.0.1:9092\nconsumerGroupId: g\n", {true, true, {}})
                .empty());
}

TEST(kafka_settings, errors_name_line_column_and_key_path) {
  auto errors = errors_of("host: 127.0.0.1:9092\n"
                          "batching:\n"
                          "  latencyMs: -3\n"
                          "kafkaAcknowledgement: Some\n"
                          "partitionStrategy: Property\n");
  // Each key's own problems in table order, then those between keys.
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], "/etc/hubflow/hubflow.yaml:3:14: endpoints[0].batching.latencyMs: "
                       "must be between 0 and 900000 (got -3)");
  EXPECT_EQ(errors[1], "/etc/hubflow/hubflow.yaml:4:23: endpoints[0].kafkaAcknowledgement: "
                       "must be one of None, Zero, One, All (got 'Some')");
  EXPECT_EQ(errors[2], "/etc/hubflow/hubflow.yaml:1:1: endpoints[0].partitionKeyProperty: "
                       "is required with partitionStrategy Property (the MQTT user "
                       "property whose value keys the partition)");
}

TEST(kafka_settings, host_must_be_host_and_port) {
  EXPECT_EQ(errors_of("host: localhost\n").size(), 1u);
  EXPECT_EQ(errors_of("type: kafka\n").size(), 1u); // missing
  EXPECT_TRUE(errors_of("host: a:1,b:2\n").empty());
}

TEST(kafka_settings, sasl_secrets_come_from_files_or_environment) {
  test::temp_dir dir;
  auto file = dir.write("pass", "s3cret\n");
  ::setenv("HUBFLOW_TEST_KAFKA_USER", "alice", 1);
  auto s = parsed("host: 127.0.0.1:9092\n"
                  "authentication:\n"
                  "  method: Sasl\n"
                  "  saslType: ScramSha512\n"
                  "  username: {env: HUBFLOW_TEST_KAFKA_USER}\n"
                  "  password: {file: " + file + "}\n");
  EXPECT_TRUE(s.sasl);
  auto props = as_map(producer_properties(s));
  EXPECT_EQ(props["security.protocol"], "sasl_plaintext");
  EXPECT_EQ(props["sasl.mechanisms"], "SCRAM-SHA-512");
  EXPECT_EQ(props["sasl.username"], "alice");
  EXPECT_EQ(props["sasl.password"], "s3cret"); // trailing newline removed
}

TEST(kafka_settings, secrets_follow_the_one_secret_rule) {
  // Plain text is accepted and warned about (as everywhere in the config);
  // a missing variable is an error at its key.
  std::vector<std::string> errors, warnings;
  parse_kafka_settings(endpoint_from("host: 127.0.0.1:9092\n"
                                     "authentication:\n"
                                     "  method: Sasl\n"
                                     "  saslType: Plain\n"
                                     "  username: alice\n"
                                     "  password: {env: HUBFLOW_TEST_UNSET_VARIABLE}\n"),
                       {false, true, {}}, "endpoints[0]", errors, &warnings);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], "/etc/hubflow/hubflow.yaml:6:13: endpoints[0].authentication.password: "
                       "environment variable 'HUBFLOW_TEST_UNSET_VARIABLE' is not set "
                       "or empty");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "/etc/hubflow/hubflow.yaml:5:13: endpoints[0].authentication.username: "
                         "the secret is written in the config file; prefer "
                         "{file: PATH} or {env: NAME}");
}

TEST(kafka_settings, sasl_needs_a_type_and_secrets) {
  auto errors = errors_of("host: 127.0.0.1:9092\nauthentication: {method: Sasl}\n");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[0].find("authentication.saslType: is required with method Sasl"),
            std::string::npos);
  EXPECT_NE(errors[1].find("authentication.username: is required for SASL"),
            std::string::npos);
  auto anonymous = errors_of("host: 127.0.0.1:9092\n"
                             "authentication: {method: Anonymous, saslType: Plain}\n");
  ASSERT_EQ(anonymous.size(), 1u);
  EXPECT_NE(anonymous[0].find("only applies to method Sasl"), std::string::npos);
}

TEST(kafka_settings, secret_files_are_relative_to_the_config_file) {
  test::temp_dir dir;
  dir.write("user", "bob");
  dir.write("pass", "pw");
  std::vector<std::string> errors;
  auto s = parse_kafka_settings(
    endpoint_from("host: 127.0.0.1:9092\n"
                  "authentication: {method: Sasl, saslType: Plain, "
                  "username: {file: user}, password: {file: pass}}\n",
                  dir.path() + "/hubflow.yaml"),
    {false, true, {}}, "endpoints[0]", errors);
  ASSERT_TRUE(errors.empty()) << errors.front();
  auto props = as_map(client_properties(s));
  EXPECT_EQ(props["sasl.username"], "bob");
  EXPECT_EQ(props["sasl.mechanisms"], "PLAIN");
}

TEST(kafka_settings, tls_needs_a_readable_pem_ca) {
  test::temp_dir dir;
  auto not_pem = dir.write("ca.txt", "hello");
  auto pem = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"
                                 "-----END CERTIFICATE-----\n");
  EXPECT_NE(errors_of("host: h:1\ntls: {mode: Enabled, trustedCaCertificate: "
                      + dir.path() + "/missing.pem}\n")
              .at(0)
              .find("cannot read CA certificate file"),
            std::string::npos);
  EXPECT_NE(errors_of("host: h:1\ntls: {mode: Enabled, trustedCaCertificate: "
                      + not_pem + "}\n")
              .at(0)
              .find("holds no PEM certificate"),
            std::string::npos);
  auto s = parsed("host: h:1\ntls: {mode: Enabled, trustedCaCertificate: " + pem
                  + "}\n");
  auto props = as_map(client_properties(s));
  EXPECT_EQ(props["security.protocol"], "ssl");
  EXPECT_EQ(props["ssl.ca.location"], pem);
}

TEST(kafka_settings, unknown_keys_are_named) {
  auto errors = errors_of("host: h:1\nbatching: {latency: 5}\nretries: 3\n");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].find("endpoints[0].retries: unknown setting"), std::string::npos);
  EXPECT_NE(errors[1].find("endpoints[0].batching.latency: unknown setting"),
            std::string::npos);
}

TEST(kafka_settings, acknowledgements_map_to_librdkafka_acks) {
  auto acks = [](const std::string& mode) {
    return as_map(producer_properties(
      parsed("host: h:1\nkafkaAcknowledgement: " + mode + "\n")));
  };
  EXPECT_EQ(acks("None")["acks"], "0");
  EXPECT_EQ(acks("Zero")["acks"], "1");
  EXPECT_EQ(acks("One")["acks"], "all");
  EXPECT_EQ(acks("All")["acks"], "all");
  EXPECT_EQ(acks("All")["enable.idempotence"], "true");
  EXPECT_EQ(acks("One").count("enable.idempotence"), 0u);
}

TEST(kafka_settings, batching_and_compression_map_to_librdkafka) {
  auto on = as_map(producer_properties(
    parsed("host: h:1\ncompression: Lz4\n"
           "batching: {latencyMs: 1000, maxMessages: 100, maxBytes: 1024}\n")));
  EXPECT_EQ(on["linger.ms"], "1000");
  EXPECT_EQ(on["batch.num.messages"], "100");
  EXPECT_EQ(on["batch.size"], "1024");
  EXPECT_EQ(on["compression.codec"], "lz4");
  auto off = as_map(producer_properties(
    parsed("host: h:1\nbatching: {mode: Disabled, latencyMs: 1000}\n")));
  EXPECT_EQ(off["linger.ms"], "0");
  EXPECT_EQ(off["batch.num.messages"], "1");
  EXPECT_EQ(off["compression.codec"], "none");
}

TEST(kafka_settings, consumers_commit_only_what_was_acknowledged) {
  auto props = as_map(consumer_properties(
    parsed("host: h:1\nconsumerGroupId: g1\n", {true, false, {}})));
  EXPECT_EQ(props["group.id"], "g1");
  EXPECT_EQ(props["enable.auto.commit"], "false");
  EXPECT_EQ(props["enable.auto.offset.store"], "false");
}
