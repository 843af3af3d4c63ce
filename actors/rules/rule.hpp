// A rule routes messages: from a source (a hub topic filter or an endpoint)
// through an optional function to a destination (a hub topic or an
// endpoint). One actor per rule, with its own counters.
#pragma once

#include <chrono>

#include <caf/actor.hpp>
#include <caf/atom.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"
#include "core/fwd.hpp"
#include "core/message.hpp"

namespace hubflow {

/// What a rule is wired to; the function is invalid for a plain forward.
struct rule_wiring {
  source_actor source;     // the hub or an endpoint
  sink_actor destination;  // the hub or an endpoint
  function_actor function; // a function supervisor, or invalid
  bool destination_is_endpoint = false;
};

/// (rule_drain_atom): a reload replaces or removes the rule. It
/// unsubscribes from its source, handles what it already has (messages in
/// its mailbox, at its function or destination) and stops once nothing is
/// left, or after rule_drain_timeout with what remains unanswered (its
/// sources then redeliver or time out as for a rule that died).
using rule_drain_atom = caf::atom_constant<caf::atom("rule_drain")>;
inline constexpr std::chrono::seconds rule_drain_timeout{30};

/// Spawns the rule; it subscribes to its source at once. Each message is
/// answered (ok_atom) only once its result was accepted by the destination
/// (or the error report was published), so the source acknowledges
/// upstream only then: nothing acknowledged is lost.
caf::actor spawn_rule(caf::actor_system& sys, const rule_config& cfg,
                      rule_wiring wiring);

/// The JSON error report for a failed invocation, as Baetyl publishes it:
/// {"functionMessage": <input>, "errorMessage": "...", "errorType": "..."}.
std::string make_error_report(const message& input, const std::string& error,
                              const std::string& type);

} // namespace hubflow
