// Prometheus text exposition (format 0.0.4) of the stats actor's snapshot.
#pragma once

#include <string>

namespace hubflow {

/// Converts the stats JSON ({"components":[{"kind","name","counters":{..},
/// "labels":{..}}], "uptime_ms": n}) into Prometheus text. Every counter
/// becomes `hubflow_<kind>_<counter>{name="<name>"} <value>`; a component's
/// labels become one `hubflow_<kind>_info{name=...,<label>=...} 1` sample.
/// Throws std::invalid_argument when the JSON cannot be read.
std::string stats_to_prometheus(const std::string& stats_json);

/// `text` reduced to a valid metric or label name ([a-zA-Z_][a-zA-Z0-9_]*).
std::string prometheus_name(const std::string& text);

} // namespace hubflow
