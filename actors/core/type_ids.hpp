// Every atom and message type hubflow's actors exchange, in one place.
// core/fwd.hpp turns the roles below into typed handles.
//
// The protocols, by role. The hot ones also come in a ticketed form: a plain
// message carrying a ticket the sender chose, answered with
// (reply_atom, ticket, answer) to the sender (core/reply.hpp says why).
// Ok answers may also come as a burst, (reply_atom, std::vector<ticket>,
// ok_atom) (core/reply.hpp's ok_answers): whoever sends tickets accepts both.
// - Sink (the embedded hub, external hub link, Kafka producer, Redis writer):
//     (publish_atom, message[, target]) -> ok_atom once the message is as
//     delivered as the destination promises (e.g. after the Kafka ack), or a
//     caf::error that says RETRY or ERROR (core/sink_error.hpp: OK, RETRY,
//     ERROR as Fluent Bit's outputs answer). Ticketed: (publish_atom,
//     message, target, ticket) -> (reply_atom, ticket, ok_atom | caf::error);
//     an empty target means the sink's default (the hub: the message's
//     topic). A rule passes on a burst from the embedded hub as
//     (publish_atom, std::vector<message>, target, std::vector<ticket>),
//     answered per ticket. Every sink gets all these forms from one helper,
//     core/reply.hpp's sink_handlers.
// - Source (a hub, a Kafka consumer): (subscribe_atom, filter, qos, actor) ->
//     ok_atom; the subscriber then gets (deliver_atom, message, ticket) and
//     answers (reply_atom, ticket, ok_atom | caf::error) when it has handled
//     it, which lets the source ack or commit upstream (a permanent error,
//     core/sink_error.hpp, means handled by reporting it: acknowledge, with
//     its reason code where MQTT 5 can carry one); ticket 0 wants no
//     answer. A hub connection delivers the publishes of one read as
//     (deliver_atom, std::vector<message>, std::vector<ticket>). Request
//     form: (deliver_atom, message) -> ok_atom (the Kafka consumer, at most
//     256 records in flight, uses it to learn when the subscriber is gone).
//     (unsubscribe_atom, filter, actor) undoes a subscription.
// - Function supervisor: (invoke_atom, message) -> function_result, or
//     ticketed (invoke_atom, message, ticket) -> (reply_atom, ticket,
//     function_result).
// - Stats actor: (report_atom, component_stats) from every component;
//     (caf::get_atom) -> stats_snapshot (rendered by stats/stats_render.hpp
//     and http/).
#pragma once

#include <caf/all.hpp>

#include "core/component_stats.hpp"
#include "core/message.hpp"
#include "core/function_result.hpp"

CAF_BEGIN_TYPE_ID_BLOCK(hubflow, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(hubflow, (hubflow::payload))
  CAF_ADD_TYPE_ID(hubflow, (hubflow::mqtt_properties))
  CAF_ADD_TYPE_ID(hubflow, (hubflow::message))
  CAF_ADD_TYPE_ID(hubflow, (hubflow::function_result))
  CAF_ADD_TYPE_ID(hubflow, (hubflow::component_stats))
  CAF_ADD_TYPE_ID(hubflow, (hubflow::stats_snapshot))

CAF_END_TYPE_ID_BLOCK(hubflow)

namespace hubflow {

// One meaning per atom (the protocols above say who sends what).
/// A message for a sink (the sink protocol), nothing else.
using publish_atom = caf::atom_constant<caf::atom("publish")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using unsubscribe_atom = caf::atom_constant<caf::atom("unsub")>;
using deliver_atom = caf::atom_constant<caf::atom("deliver")>;
using invoke_atom = caf::atom_constant<caf::atom("invoke")>;
using report_atom = caf::atom_constant<caf::atom("report")>;
/// An actor's own periodic timer (stats, housekeeping, polling).
using tick_atom = caf::atom_constant<caf::atom("tick")>;
/// (connect_atom) -> ok_atom: connect to the outside now (the Kafka
/// consumer, asked by its endpoint); no other meaning.
using connect_atom = caf::atom_constant<caf::atom("connect")>;
/// (sys_hub_atom, caf::actor hub): the hub the stats actor publishes its
/// `$SYS/hubflow/...` messages to.
using sys_hub_atom = caf::atom_constant<caf::atom("sys_hub")>;
/// A rule's own reminder that a job's retry backoff has passed.
using retry_atom = caf::atom_constant<caf::atom("retry")>;
using reply_atom = caf::atom_constant<caf::atom("reply")>;
/// (rewire_atom, caf::actor old, caf::actor replacement): a supervised
/// actor was replaced (core/keeper.hpp); whoever holds `old` uses
/// `replacement` from now on.
using rewire_atom = caf::atom_constant<caf::atom("rewire")>;
/// (reload_atom): re-read the certificate files (main.cpp sends it on
/// SIGHUP to the hub and the HTTP API). New connections use the new ones,
/// open connections keep theirs; files that do not load leave the old
/// certificate in use (logged as an error).
using reload_atom = caf::atom_constant<caf::atom("reload")>;
using ok_atom = caf::ok_atom;
using get_atom = caf::get_atom;

/// Registry name of the stats actor, so any actor can find it:
/// `system.registry().get(stats_registry_name)` (0.17 names are atoms).
inline constexpr caf::atom_value stats_registry_name = caf::atom("hf.stats");

} // namespace hubflow
