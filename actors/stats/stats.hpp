// The stats actor: every component's probe (core/probe.hpp) reports its
// counters here; it answers (get_atom) with a stats_snapshot
// (core/component_stats.hpp), which the stats port, /metrics and
// /v1.0/metadata render (stats_render.hpp, http/), and publishes each
// changed component's counters as JSON on `$SYS/hubflow/<kind>/<name>`
// every stats.interval.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"

namespace hubflow {

/// What the stats actor knows (the latest snapshot of every component, the
/// hub that gets `$SYS` messages, the start time). It outlives the actor, so
/// a stats actor restarted by the keeper goes on with the same numbers:
/// components report only what changed and would otherwise vanish.
struct stats_store;

std::shared_ptr<stats_store> make_stats_store();

/// Spawns the stats actor on `store` (a fresh one when null) and registers
/// it under stats_registry_name before returning, so a restarted stats
/// actor is the one every component finds at once.
/// Messages: (report_atom, component_stats); (get_atom) -> stats_snapshot;
/// (sys_hub_atom, caf::actor hub) sets the hub that gets `$SYS` messages;
/// (rewire_atom, old, replacement) replaces that hub (core/keeper.hpp).
caf::actor spawn_stats(caf::actor_system& sys, const stats_config& cfg,
                       std::shared_ptr<stats_store> store = nullptr);

/// An actor that answers (get_atom) -> stats_snapshot for whichever stats
/// actor the registry names now: a stable handle for holders that keep one
/// (the HTTP API) while the stats actor itself may be restarted.
caf::actor spawn_stats_reader(caf::actor_system& sys);

} // namespace hubflow
