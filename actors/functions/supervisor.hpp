// The function supervisor: one actor per configured function. It keeps `min`
// instances warm, starts more up to `max` while invocations queue, shares
// the queue among every instance that is ready or starting, retires idle
// ones after `idletime`, replaces failed ones with backoff (100 ms doubling
// to 10 s), enforces the per-invocation `timeout`, and bounds its queue
// (back-pressure: an overflow is answered with a failure, never dropped
// silently).
#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"
#include "functions/runtime.hpp"

namespace hubflow {

/// Spawns the supervisor of one function. It answers
/// `(invoke_atom, message) -> function_result`, and the ticketed form
/// `(invoke_atom, message, ticket)` with `(reply_atom, ticket,
/// function_result)` (core/reply.hpp). An instance takes queued invocations
/// in batches only while the function is fast (scaling::batch_limit: the
/// last of a batch waits at most ~8 ms behind the others), and an idle
/// instance takes over what a busy one's batch has not started; the timeout
/// still applies to each invocation. While restarts back off with no
/// instance at all, invocations are answered at once with an
/// `InstanceStartError` failure.
caf::actor spawn_function_supervisor(caf::actor_system& sys,
                                     const function_config& cfg,
                                     std::shared_ptr<function_runtime> runtime);

} // namespace hubflow
