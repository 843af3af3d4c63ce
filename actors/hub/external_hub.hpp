// A link to an external MQTT broker (Baetyl's function-manager mode, and
// the `type: mqtt` endpoint of endpoints/mqtt/): one libmosquitto client
// with its own client id, speaking the same source and sink protocol as the
// embedded hub, so rules do not care which hub they use.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"
#include "core/message.hpp"

namespace hubflow {

/// What a link needs to reach a broker: `hub.address` and its keys
/// (link_settings_of), or an mqtt endpoint's (endpoints/mqtt/).
struct mqtt_link_settings {
  std::string address; // as written, for logs and errors
  host_port at;        // `address` without its scheme, checked at load
  std::optional<tls_client_settings> tls; // ssl:// and mqtts:// only
  std::string client_id;
  std::string username; // empty: none
  std::string password;
  int protocol = 4;   // 4 = MQTT 3.1.1, 5 = MQTT 5
  int keepalive = 60; // seconds
  /// QoS 1/2 publishes on the wire unacknowledged at once (libmosquitto
  /// queues the rest); 20 is libmosquitto's own default.
  int max_inflight = 20;
  /// The topic a sink message is published to, from the target it carries
  /// (a rule's `to.topic`); false with `error` set when it cannot be
  /// rendered. Unset: the message's own topic (the target is ignored).
  std::function<bool(const std::string& target, const message& msg,
                     std::string& topic, std::string& error)>
    topic_of;
  /// Its counters: component (kind, name); the name is the client id when
  /// empty.
  std::string stats_kind = "hub";
  std::string stats_name;
  /// What messages received from the broker carry as their origin.
  std::string origin = "external-hub";
};

/// The settings of a link to `cfg.address` with `client_id`.
mqtt_link_settings link_settings_of(const hub_config& cfg,
                                    std::string client_id);

/// Spawns a link to `settings.address`. The link connects in
/// the background, reconnects with backoff (1 s doubling to 30 s) when the
/// broker goes away and resubscribes what it had. Messages:
/// - (subscribe_atom, filter, qos, subscriber) -> ok_atom; matching messages
///   arrive at the subscriber as (deliver_atom, message, ticket); answers
///   only count failures (libmosquitto acknowledged already).
/// - The sink forms (core/reply.hpp's sink_handlers; the target goes
///   through `topic_of`): (publish_atom, message[, target]) -> ok_atom once
///   the broker acknowledged it (PUBACK/PUBCOMP; at once for QoS 0), or a
///   caf::error: RETRY when not connected or not acknowledged within 30 s,
///   ERROR (core/sink_error.hpp) when the broker refused it (its reason
///   code), no broker would take it or its target renders no topic;
///   ticketed and burst forms answered per ticket.
caf::actor spawn_external_hub_link(caf::actor_system& sys,
                                   mqtt_link_settings settings);

/// The link of `hub.address` (link_settings_of).
caf::actor spawn_external_hub_link(caf::actor_system& sys,
                                   const hub_config& cfg,
                                   const std::string& client_id);

} // namespace hubflow
