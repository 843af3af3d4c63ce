// The producer side of a Kafka endpoint: one librdkafka producer per
// endpoint, answering publish requests after the delivery report.
#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>

#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow::kafka {

/// Spawns the producer actor linked to `parent` (the endpoint actor). It
/// answers (publish_atom, message, kafka_topic), (publish_atom, message)
/// and (get_atom) -> component_stats; see kafka_endpoint.hpp.
caf::actor spawn_kafka_producer(caf::event_based_actor* parent,
                                std::shared_ptr<const kafka_settings> settings);

} // namespace hubflow::kafka
