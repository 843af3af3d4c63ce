// The embedded MQTT 3.1.1/5.0 hub: hubflow as a complete broker.
//
// spawn_embedded_hub() listens on every `cfg.listen` URL (tcp://, ssl://,
// ws://, wss://; port 0 picks a free one) and forks one session broker per
// accepted connection, with the TLS and WebSocket layers its listener
// speaks (hub/listener.hpp); all of them run in CAF's middleman I/O thread and share one
// hub_core (subscriptions, retained messages, sessions), so a publish is
// read, parsed, routed and written without an actor hop.
//
// The returned actor is the hub's control actor. It speaks the source/sink
// protocol of core/type_ids.hpp for in-process rules:
//   (subscribe_atom, std::string filter, uint8_t qos, caf::actor subscriber)
//       -> ok_atom; matching messages then arrive at the subscriber as
//       (deliver_atom, message, ticket) (ticket 0 for QoS 0 and hub-internal
//       publishes: no answer wanted). A client's QoS 1/2 PUBLISH is
//       acknowledged only after every matching rule subscriber answered
//       (reply_atom, ticket, ok_atom); after a transient error, or no
//       answer within 30 s, no ack is sent. A permanent error (ERROR,
//       core/sink_error.hpp: the rule reported the message) is acked, with
//       its reason code for MQTT 5 clients.
//   (unsubscribe_atom, std::string filter, caf::actor subscriber) -> ok_atom
//   The sink forms (core/reply.hpp's sink_handlers; the target is ignored):
//       (publish_atom, message[, target]) -> ok_atom once routed (and, when
//       rule subscribers match, once they all answered ok_atom or a
//       permanent error), or a caf::error; ticketed and burst forms are
//       answered per ticket.
//   (get_atom, std::string "listen_port") -> uint16_t: the first bound port
//   (get_atom, std::string "listen_ports") -> std::string: "p1,p2,..."
//   (get_atom, std::string "stats") -> component_stats
//   (get_atom, std::string "listener " + url) -> component_stats of that
//       listener (also reported to stats as kind "listener")
//   (get_atom, std::string "rule_subscribers") -> std::uint64_t: rules
//       subscribed so far
//   (accept_atom) starts accepting connections when it was started with
//       `accept_now` false (listening already: clients wait in the backlog)
//   (reload_atom, std::shared_ptr<const hub_config>) re-reads the TLS
//       listeners' certificate files and applies the principals, password
//       and acl files and anonymous settings of the config (hub_core::
//       replace_auth); main.cpp sends it on SIGHUP
// Sending it an exit message closes the listeners and every connection.
// When it dies otherwise (killed, or a handler threw), the connections go
// on; a replacement started by the `hub_restarter` takes over the same
// sessions, retained messages, rule subscriptions and clients, on the same
// ports (main.cpp's keeper does this).
// Counters are reported to the stats actor (registry: stats_registry_name)
// every ~500 ms when they changed.
#pragma once

#include <memory>

#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>

#include <caf/allowed_unsafe_message_type.hpp>

#include "core/config.hpp"

// The reload's config goes to the hub within the process only.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<const hubflow::hub_config>)

namespace hubflow {

namespace store {
class hub_store;
}

/// Starts a replacement control actor for the hub (see above); an invalid
/// handle with `error` set when its ports cannot be bound again.
using hub_restarter = std::function<caf::actor(std::string& error)>;

/// Tells a hub started with `accept_now` false to accept connections.
using accept_atom = caf::atom_constant<caf::atom("hubaccept")>;

/// Where the running hub's control actor is registered (the keeper may
/// have replaced the one first started): `system.registry().get(...)`.
inline constexpr caf::atom_value hub_registry_name = caf::atom("hf.hub");

/// Starts the embedded hub. On failure returns an invalid actor and sets
/// `error` (e.g. "cannot listen on 127.0.0.1:1883: address in use").
/// `restart`, when given, receives the hub's restarter (its replacements
/// accept at once). With `accept_now` false the hub listens but accepts
/// only after (accept_atom): the broker lets its rules subscribe first, so
/// no client's message arrives before the rules that route it. The actor
/// system must have loaded caf::io::middleman.
/// With `store` (persistence), what it holds is restored before the
/// listeners open, and the hub keeps it up to date.
caf::actor spawn_embedded_hub(caf::actor_system& sys, const hub_config& cfg,
                              std::string& error,
                              hub_restarter* restart = nullptr,
                              bool accept_now = true,
                              std::shared_ptr<store::hub_store> store = nullptr);

} // namespace hubflow
