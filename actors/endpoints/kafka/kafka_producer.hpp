// The producer side of a Kafka endpoint: one librdkafka producer per
// endpoint, answering publish requests after the delivery report.
#pragma once

#include <functional>
#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow::kafka {

/// Adds handlers to the endpoint actor for what the producer does not
/// answer (subscriptions), called once with the actor being spawned.
using extra_handlers = std::function<caf::behavior(caf::event_based_actor*)>;

/// Spawns the endpoint actor around its producer: it answers
/// (publish_atom, message, kafka_topic), (publish_atom, message), the
/// ticketed (publish_atom, message, kafka_topic, ticket) and
/// (get_atom) -> component_stats, then whatever `extra` answers. The
/// librdkafka producer is created at once when `connect_now`, else on the
/// first publish (an endpoint only used as a source never connects one).
caf::actor spawn_kafka_producer(caf::actor_system& sys,
                                std::shared_ptr<const kafka_settings> settings,
                                bool connect_now, extra_handlers extra);

} // namespace hubflow::kafka
