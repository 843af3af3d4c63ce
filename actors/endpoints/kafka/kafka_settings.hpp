// The settings of one Kafka endpoint: its option table (every key with the
// field names of Azure IoT Operations' Kafka dataflow endpoints, declared
// once: validation, defaults, docs/kafka.md's table and the schema fragment
// come from it), the immutable settings object parsed from it once at load,
// and the librdkafka properties they translate to. Parsing is pure so that
// the translation is unit-tested without a broker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "core/options.hpp"

namespace hubflow::kafka {

enum class acknowledgement { none, zero, one, all };
enum class compression { none, gzip, snappy, lz4 };
enum class partition_strategy { round_robin, fixed_instance, mqtt_topic, property };
enum class cloud_events { propagate, create_or_remap };

// Both structs take every value from kafka_options() through
// parse_kafka_settings: the table is where the defaults live, so none is
// repeated here.
struct batching_settings {
  bool enabled{};
  int latency_ms{};
  int max_messages{};
  int max_bytes{};
};

struct kafka_settings : endpoint_settings {
  std::string name;                  // the endpoint's name
  std::string host;                  // bootstrap servers, host:port[,...]
  bool tls{};                        // tls.mode Enabled
  std::string trusted_ca_file;       // tls.trustedCaCertificate (PEM file)
  bool sasl{};                       // authentication.method Sasl
  std::string sasl_mechanism;        // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
  std::string username;              // read at load (core/values.hpp secrets)
  std::string password;
  std::string consumer_group_id;     // required for sources
  compression codec{};
  batching_settings batching;
  partition_strategy partitioning{};
  std::string partition_key_property;
  acknowledgement acks{};
  bool copy_mqtt_properties{};
  cloud_events cloud_event_attributes{};
  /// hubflow extension: how long librdkafka retries one message before its
  /// delivery is reported as failed (librdkafka `message.timeout.ms`).
  int delivery_timeout_ms{};
  /// hubflow extension: the id Static partitioning derives the partition
  /// from; defaults to `<hostname>/<endpoint name>`, stable over restarts.
  std::string instance_id;
  /// The rules' `to.topic` templates for this endpoint, compiled at load.
  endpoint_usage usage;
};

/// Every key of a `type: kafka` entry.
const option_table& kafka_options();

/// Builds the settings from values read against kafka_options(); problems
/// go through `values.fail`.
kafka_settings parse_kafka_settings(option_values& values,
                                    const endpoint_config& config);

/// Reads and parses an endpoint's entry, used by `usage` (what the config
/// loader does for one entry). Every problem is appended to `errors` as
/// `file:line:col: <key_path>.<key>: message`; the returned settings are
/// meaningful only when nothing was appended.
kafka_settings parse_kafka_settings(const endpoint_config& config,
                                    const endpoint_usage& usage,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors,
                                    std::vector<std::string>* warnings = nullptr);

using property_list = std::vector<std::pair<std::string, std::string>>;

/// librdkafka properties shared by producers and consumers (bootstrap,
/// security protocol, SASL with the secrets read at load, CA file).
property_list client_properties(const kafka_settings& settings);

/// Producer properties: client_properties plus acks, idempotence, batching,
/// compression, partitioner and delivery timeout.
property_list producer_properties(const kafka_settings& settings);

/// Consumer properties: client_properties plus the group and manual,
/// acknowledgement-driven offset commits.
property_list consumer_properties(const kafka_settings& settings);

/// The message of the refusal of a source endpoint without a group.
inline constexpr const char* missing_consumer_group_error =
  "Kafka-type source endpoints must have a consumerGroupId defined";

} // namespace hubflow::kafka
