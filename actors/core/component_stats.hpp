// A snapshot of one component's counters, as reported to the stats actor.
#pragma once

#include <cstdint>
#include <string>
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

} // namespace hubflow
