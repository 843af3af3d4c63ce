// A link to an external MQTT broker (Baetyl's function-manager mode): one
// libmosquitto client with its own client id, speaking the same source and
// sink protocol as the embedded hub, so rules do not care which hub they use.
#pragma once

#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"

namespace hubflow {

/// Spawns a link to `cfg.address` with `client_id`. The link connects in
/// the background, reconnects with backoff (1 s doubling to 30 s) when the
/// broker goes away and resubscribes what it had. Messages:
/// - (subscribe_atom, filter, qos, subscriber) -> ok_atom; matching messages
///   arrive at the subscriber as (deliver_atom, message, ticket); answers
///   only count failures (libmosquitto acknowledged already).
/// - The sink forms (core/reply.hpp's sink_handlers; the target is
///   ignored): (publish_atom, message[, target]) -> ok_atom once the broker
///   acknowledged it (PUBACK/PUBCOMP; at once for QoS 0), or a caf::error:
///   RETRY when not connected or not acknowledged within 30 s, ERROR
///   (core/sink_error.hpp) when the broker refused it (its reason code) or
///   no broker would take it; ticketed and burst forms answered per ticket.
caf::actor spawn_external_hub_link(caf::actor_system& sys,
                                   const hub_config& cfg,
                                   const std::string& client_id);

} // namespace hubflow
