// How an MQTT message becomes a Kafka record and back: topic templates,
// MQTT 5 properties <-> Kafka headers, message expiry accounting,
// CloudEvents attributes and the partition key. No librdkafka here, so all
// of it is unit-tested directly (tests/unit/kafka_mapping_test.cpp).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/message.hpp"
#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow::kafka {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// Header names of the MQTT 5 properties (as Azure IoT Operations names them).
inline constexpr const char* payload_format_header = "Payload Format Indicator";
inline constexpr const char* response_topic_header = "Response Topic";
inline constexpr const char* message_expiry_header = "Message Expiry Interval";
inline constexpr const char* correlation_data_header = "Correlation Data";
inline constexpr const char* content_type_header = "Content Type";

/// What a consumed record's key and timestamp become (user properties).
inline constexpr const char* key_property = "Key";
inline constexpr const char* timestamp_property = "Timestamp";

/// What a message becomes on its way to Kafka.
struct outgoing_record {
  /// The message's expiry interval ran out while it waited in hubflow: it
  /// must not be produced.
  bool expired = false;
  header_list headers;
  /// The record key: the MQTT topic (Topic strategy) or the value of the
  /// partition key property (Property strategy); none otherwise.
  std::optional<std::string> key;
};

/// Renders a rule's Kafka topic template (core/topic_template.hpp) for
/// `msg` in place: the template compiled at load when a rule declared it.
/// False with `error` set when the message lacks what it names (a topic
/// level beyond its last).
bool expand_kafka_topic(const kafka_settings& settings, std::string& topic,
                        const message& msg, std::string& error);

/// Headers and key for `msg` produced to `kafka_topic` at time `now`.
outgoing_record prepare_record(const kafka_settings& settings,
                               const message& msg,
                               const std::string& kafka_topic,
                               message::clock::time_point now);

/// MQTT strings are at most 65535 bytes: headers of 64 KiB or more cannot
/// become properties.
inline constexpr std::size_t max_property_size = 65535;

/// Appends the consumed record's headers to `out` as user properties,
/// leaving out those that are not UTF-8 or too long; returns how many were
/// left out.
std::size_t add_header_properties(const header_list& headers,
                                  mqtt_properties& out);

/// Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..".
bool is_valid_topic_name(std::string_view topic);

/// `time` as RFC 3339 in UTC with milliseconds (2024-05-01T12:00:00.123Z).
std::string rfc3339(message::clock::time_point time);

} // namespace hubflow::kafka
