// A probe owns one component's counters and latency samples, so counting
// never clutters an actor's logic; the actor calls report() from a timer.
// Every component counts through one (hubs, rules, functions, endpoints,
// the HTTP API, the stats port, the keeper), and every probe reports on
// stats.interval, which the actor system carries (set_stats_interval).
//
// Counters that sit on a hot path may live in a plain struct of the actor
// (the embedded hub's hub_counters) and be copied in with set() at report
// time: set() only marks the probe changed when a value differs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/fwd.hpp>

#include "core/component_stats.hpp"

namespace hubflow {

/// stats.interval until set_stats_interval says otherwise.
inline constexpr std::chrono::milliseconds default_stats_interval{500};

/// How often the probes of the actors of `sys` report (stats.interval).
std::chrono::milliseconds stats_interval(const caf::actor_system& sys);

/// Sets stats.interval for the actors of `sys`: spawn_stats does, before
/// any component starts (CAF's runtime settings, so it is per system).
void set_stats_interval(caf::actor_system& sys,
                        std::chrono::milliseconds interval);

class probe {
public:
  probe(std::string kind, std::string name);

  /// Adds `n` to a cumulative counter (created at 0 on first use).
  void add(std::string_view counter, std::int64_t n = 1);
  /// Sets a current value (instances, queue depth, in-flight...).
  void set(std::string_view gauge, std::int64_t value);
  std::int64_t get(std::string_view counter) const;
  void label(std::string_view key, std::string value);
  /// Records one latency sample; reported as latency_p50_us/p99_us/p999_us.
  void record_latency(std::chrono::microseconds latency);

  component_stats snapshot() const;
  /// Sends the snapshot to the stats actor when something changed and
  /// stats.interval passed since the last report: call it from a timer of
  /// any period (a timer that also serves other work may run more often).
  /// Safe to call when no stats actor is registered.
  void report(caf::local_actor* self);
  /// Sends the snapshot now when something changed: for what the operator
  /// should see at once (a restart), not at the next interval.
  void report_now(caf::local_actor* self);

private:
  std::int64_t& slot(std::string_view counter);

  component_stats stats_;
  bool changed_ = true;
  std::chrono::steady_clock::time_point last_report_;
  // The most recent latency samples (a window, so percentiles follow the
  // current load rather than all history).
  static constexpr std::size_t window = 8192;
  std::vector<std::uint32_t> samples_;
  std::size_t next_sample_ = 0;
};

} // namespace hubflow
