// The roles hubflow's actors play, as typed handles: what a holder may send
// each role, checked by the compiler (CAF's typed_actor). The protocols are
// written out in core/type_ids.hpp (sink, source, function, stats) and
// core/state_store.hpp.
//
// The actors behind them stay dynamically typed (a hub is a CAF broker, the
// sink forms come from core/reply.hpp's sink_handlers), so a handle is made
// with `as_role<R>(actor)` where the broker wires things together, once.
// What the compiler then checks is every send and request through the
// handle: a message a role does not take, or a reply handler for an answer
// it does not give, does not build.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "core/state_store.hpp"
#include "core/type_ids.hpp"

namespace hubflow {

/// A destination: the embedded hub, an external hub link, a Kafka producer,
/// a Redis writer (and what stands in front of one). `target` is the
/// destination template's text ("" for the sink's default); `ticket` asks
/// for (reply_atom, ticket, ok_atom | caf::error) instead of a reply.
using sink_actor = caf::typed_actor<
  caf::replies_to<publish_atom, message>::with<ok_atom>,
  caf::replies_to<publish_atom, message, std::string>::with<ok_atom>,
  caf::reacts_to<publish_atom, message, std::string, std::uint64_t>,
  caf::reacts_to<publish_atom, std::vector<message>, std::string,
                 std::vector<std::uint64_t>>>;

/// Where a rule's messages come from: a hub (a topic filter) or a Kafka
/// consumer (its topics). The subscriber then gets deliver_atom messages.
using source_actor = caf::typed_actor<
  caf::replies_to<subscribe_atom, std::string, std::uint8_t,
                  caf::actor>::with<ok_atom>,
  caf::reacts_to<unsubscribe_atom, std::string, caf::actor>>;

/// What a source delivers to (a rule): each message with a ticket (0: no
/// answer wanted) answered (reply_atom, ticket, ok_atom | caf::error), a
/// burst of them, or one as a request. The subscribe and unsubscribe
/// messages name the subscriber as a plain caf::actor.
using subscriber_actor = caf::typed_actor<
  caf::reacts_to<deliver_atom, message, std::uint64_t>,
  caf::reacts_to<deliver_atom, std::vector<message>,
                 std::vector<std::uint64_t>>,
  caf::replies_to<deliver_atom, message>::with<ok_atom>>;

/// A function supervisor: an invocation answered with its result.
using function_actor = caf::typed_actor<
  caf::replies_to<invoke_atom, message>::with<function_result>,
  caf::reacts_to<invoke_atom, message, std::uint64_t>>;

/// A state store (Dapr's state API), core/state_store.hpp.
using state_store_actor = caf::typed_actor<
  caf::replies_to<state_save_atom, std::vector<state_item>>::with<ok_atom>,
  caf::replies_to<state_get_atom, std::vector<std::string>>::with<
    std::vector<state_entry>>,
  caf::replies_to<state_delete_atom, state_item>::with<ok_atom>>;

/// What readers of the stats actor may ask it (the HTTP API, hubflowctl's
/// port): the latest snapshot of every component.
using stats_reader_actor =
  caf::typed_actor<caf::replies_to<get_atom>::with<stats_snapshot>>;

/// `actor` in role `Role` (an invalid handle stays invalid). Unchecked:
/// the broker knows what it spawned.
template <class Role>
Role as_role(const caf::actor& actor) {
  return caf::actor_cast<Role>(actor);
}

/// Each actor of `actors` (by name) in role `Role`.
template <class Role>
std::map<std::string, Role>
as_roles(const std::map<std::string, caf::actor>& actors) {
  std::map<std::string, Role> out;
  for (auto& [name, actor] : actors)
    out.emplace(name, as_role<Role>(actor));
  return out;
}

/// Whether the role handle `handle` is `actor`.
template <class Role>
bool is_actor(const Role& handle, const caf::actor& actor) {
  return handle && handle.address() == actor.address();
}

/// Points `handle` at `replacement` if it is `old` (the keeper's
/// rewire_atom); true when it did.
template <class Role>
bool rewire(Role& handle, const caf::actor& old, const caf::actor& replacement) {
  if (!is_actor(handle, old))
    return false;
  handle = as_role<Role>(replacement);
  return true;
}

} // namespace hubflow
