// The function supervisor: one actor per configured function. It keeps `min`
// instances warm, starts more up to `max` while invocations queue, retires
// idle ones after `idletime`, replaces failed ones with backoff, enforces the
// per-invocation `timeout`, and bounds its queue (back-pressure: an overflow
// is answered with a failure, never dropped silently).
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
/// function_result)` (core/reply.hpp). Under load an instance takes queued
/// invocations in batches (scaling::batch_share); the timeout still applies
/// to each invocation.
caf::actor spawn_function_supervisor(caf::actor_system& sys,
                                     const function_config& cfg,
                                     std::shared_ptr<function_runtime> runtime);

} // namespace hubflow
