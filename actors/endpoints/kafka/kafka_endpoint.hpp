// Kafka endpoints: one actor per `type: kafka` entry of `endpoints:`.
//
// As a destination (sink) it answers
//   (publish_atom, message, std::string kafka_topic) -> ok_atom | error
//   (publish_atom, message)  (the message's topic is the Kafka topic)
//   (publish_atom, message, kafka_topic, ticket) -> (reply_atom, ticket,
//       ok_atom | error), the ticketed form rules use (core/reply.hpp)
// once Kafka acknowledged the record as `kafkaAcknowledgement` asks (None:
// at once), with an error when librdkafka gave up retrying. `message.topic`
// is the MQTT topic the message arrived on (partition key for the Topic
// strategy, CloudEvents subject).
//
// As a source it answers (subscribe_atom, kafka_topic, qos, subscriber) ->
// ok_atom and then sends every record of the topic, consumed with the
// endpoint's consumer group, as a (deliver_atom, message) request; the
// offset is committed once the subscriber answered ok_atom.
// (unsubscribe_atom, kafka_topic, subscriber) stops that consumer.
//
// (get_atom) -> component_stats of the producer side.
// Semantics and the librdkafka mapping: docs/kafka.md.
#pragma once

#include <optional>
#include <string>

#include "core/topic_template.hpp"
#include "endpoints/endpoint.hpp"

namespace hubflow {

/// The registry entry for `type: kafka`.
endpoint_type kafka_endpoint_type();

/// Checks a rule's Kafka topic template (core/topic_template.hpp):
/// nullopt when valid, else what is wrong (a malformed template, characters
/// Kafka refuses in its literal text).
std::optional<std::string> check_kafka_topic_template(const topic_template& tmpl);
std::optional<std::string> check_kafka_topic_template(const std::string& tmpl);

} // namespace hubflow
