// The `type: redis` endpoint: one actor per endpoint owning a redis_client.
// It is a sink for rules and a state store for the HTTP API:
//   (publish_atom, message, std::string target) -> ok_atom
//       writes the message in the endpoint's mode; `target` (the rule's
//       `to.topic`, may be a key template) replaces the `key` setting when
//       not empty. Answers once Redis confirmed the write, or with the
//       error (RETRY for a transport failure: the rule retries, ERROR for
//       one Redis answered, core/sink_error.hpp).
//   (publish_atom, message) -> ok_atom      same, with the `key` setting.
//   (publish_atom, message, target, ticket) -> (reply_atom, ticket,
//       ok_atom | error), the ticketed form rules use (core/reply.hpp).
//   the state store protocol of core/state_store.hpp.
//   (get_atom) -> component_stats           its counters, for tests/tools.
#pragma once

#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "endpoints/endpoint.hpp"
#include "endpoints/redis/redis_settings.hpp"
#include "core/state_store.hpp"

namespace hubflow {

/// The registry entry: `{"redis", redis_endpoint_type()}`.
endpoint_type redis_endpoint_type();

/// Spawns the endpoint actor from parsed settings (tests use this directly).
caf::actor spawn_redis_endpoint(caf::actor_system& sys, std::string name,
                                redis_settings settings);

} // namespace hubflow
