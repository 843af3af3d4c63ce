// Prometheus text exposition (format 0.0.4) of the stats actor's snapshot.
#pragma once

#include <string>

#include "core/component_stats.hpp"

namespace hubflow {

/// The stats actor's snapshot as Prometheus text: `hubflow_uptime_seconds`,
/// then every counter as `hubflow_<kind>_<counter>{name="<name>"} <value>`
/// (untyped: counters and current values mix), and a component's labels as
/// one `hubflow_<kind>_info{name=...,<label>=...} 1` sample.
std::string stats_to_prometheus(const stats_snapshot& snapshot);

/// `text` reduced to a valid metric or label name ([a-zA-Z_][a-zA-Z0-9_]*).
std::string prometheus_name(const std::string& text);

} // namespace hubflow
