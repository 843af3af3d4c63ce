// A probe owns one component's counters and latency samples, so counting
// never clutters an actor's logic; the actor calls report() on a timer.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/fwd.hpp>

#include "core/component_stats.hpp"

namespace hubflow {

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
  /// Sends the snapshot to the stats actor when something changed since
  /// the last report. Safe to call when no stats actor is registered.
  void report(caf::local_actor* self);

private:
  std::int64_t& slot(std::string_view counter);

  component_stats stats_;
  bool changed_ = true;
  // The most recent latency samples (a window, so percentiles follow the
  // current load rather than all history).
  static constexpr std::size_t window = 8192;
  std::vector<std::uint32_t> samples_;
  std::size_t next_sample_ = 0;
};

} // namespace hubflow
