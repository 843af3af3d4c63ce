// The source side of a Kafka endpoint: one librdkafka consumer (in the
// endpoint's consumer group) per subscribed topic and subscriber.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>

#include "core/fwd.hpp"
#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow::kafka {

/// Spawns a consumer actor linked to `parent`. It answers (connect_atom)
/// with ok_atom once it has joined the group's subscription (or an error
/// and exits), then sends every record of `topic` to `subscriber` as a
/// (deliver_atom, message) request with the given qos, and commits each
/// partition's offsets up to the records the subscriber acknowledged.
/// (get_atom) -> component_stats.
caf::actor spawn_kafka_consumer(caf::event_based_actor* parent,
                                std::shared_ptr<const kafka_settings> settings,
                                std::string topic, std::uint8_t qos,
                                subscriber_actor subscriber);

} // namespace hubflow::kafka
