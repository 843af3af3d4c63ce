// What the stats actor holds and answers: one component's counters, and the
// snapshot of all of them. Typed values, so whoever asks (the stats port,
// /metrics, /v1.0/metadata) renders them without parsing text again.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace hubflow {

/// What one actor (a hub link, rule, function, endpoint...) has counted so
/// far. Counters are cumulative or current values (e.g. `instances`);
/// latencies are in microseconds (`latency_p50_us`, `latency_p99_us`, ...).
struct component_stats {
  std::string kind; // "hub", "rule", "function", "endpoint", "listener", ...
  std::string name;
  std::vector<std::pair<std::string, std::int64_t>> counters;
  /// Text facts that are not numbers (a state, instance pids, an address).
  std::vector<std::pair<std::string, std::string>> labels;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 component_stats& x) {
    return f(caf::meta::type_name("component_stats"), x.kind, x.name,
             x.counters, x.labels);
  }
};

/// Counter `name` of `c`, or nullopt when it has none of that name.
inline std::optional<std::int64_t> counter_of(const component_stats& c,
                                              std::string_view name) {
  for (auto& [key, value] : c.counters)
    if (key == name)
      return value;
  return std::nullopt;
}

/// Label `name` of `c`, or nullopt when it has none of that name.
inline std::optional<std::string> label_of(const component_stats& c,
                                           std::string_view name) {
  for (auto& [key, value] : c.labels)
    if (key == name)
      return value;
  return std::nullopt;
}

/// The stats actor's answer to (get_atom): the latest report of every
/// component, ordered by (kind, name). Rendered by stats/stats_render.hpp
/// (JSON, the hubflowctl table) and http/ (Prometheus text, metadata).
struct stats_snapshot {
  std::string version; // HUBFLOW_VERSION of the broker
  std::int64_t uptime_ms = 0;
  std::vector<component_stats> components;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 stats_snapshot& x) {
    return f(caf::meta::type_name("stats_snapshot"), x.version, x.uptime_ms,
             x.components);
  }
};

} // namespace hubflow
