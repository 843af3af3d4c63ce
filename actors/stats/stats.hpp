// The stats actor: every component reports its counters here; it answers
// `hubflowctl stats` (over CAF's middleman on a loopback port) with a JSON
// snapshot and publishes each component's counters on `$SYS/hubflow/...`.
//
// JSON shape (documented in docs/hubflowctl.md):
//   {"version": "0.1.0", "uptime_ms": 1234,
//    "components": [{"kind": "rule", "name": "r1",
//                    "counters": {"in": 3, ...}, "labels": {...}}, ...]}
#pragma once

#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"

namespace hubflow {

/// Spawns the stats actor and registers it under stats_registry_name.
/// Messages: (report_atom, component_stats); (get_atom) -> std::string JSON;
/// (publish_atom, caf::actor hub) sets the hub that gets `$SYS` messages.
caf::actor spawn_stats(caf::actor_system& sys, const stats_config& cfg);

/// Publishes the stats actor on cfg.host:cfg.port for hubflowctl. Returns
/// the bound port, or an error text in `error` (port 0 means "any").
std::uint16_t publish_stats(caf::actor_system& sys, const caf::actor& stats,
                            const stats_config& cfg, std::string& error);

/// The JSON snapshot as a human-readable table, one block per kind.
std::string render_stats_table(const std::string& stats_json);

} // namespace hubflow
