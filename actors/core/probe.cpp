#include "core/probe.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "core/type_ids.hpp"

namespace hubflow {

namespace {

// CAF atoms hold at most 10 characters.
constexpr caf::atom_value stats_interval_key = caf::atom("hf.statsiv");

} // namespace

std::chrono::milliseconds stats_interval(const caf::actor_system& sys) {
  auto value = sys.runtime_settings().get(stats_interval_key);
  if (auto ms = caf::get_if<std::int64_t>(&value))
    return std::chrono::milliseconds{*ms};
  return default_stats_interval;
}

void set_stats_interval(caf::actor_system& sys,
                        std::chrono::milliseconds interval) {
  sys.runtime_settings().set(stats_interval_key,
                             static_cast<std::int64_t>(interval.count()));
}

probe::probe(std::string kind, std::string name) {
  stats_.kind = std::move(kind);
  stats_.name = std::move(name);
}

std::int64_t& probe::slot(std::string_view counter) {
  for (auto& [key, value] : stats_.counters)
    if (key == counter)
      return value;
  changed_ = true; // a new counter shows, even at 0
  return stats_.counters.emplace_back(std::string{counter}, 0).second;
}

void probe::add(std::string_view counter, std::int64_t n) {
  slot(counter) += n;
  if (n != 0)
    changed_ = true;
}

void probe::set(std::string_view gauge, std::int64_t value) {
  auto& s = slot(gauge);
  if (s != value) {
    s = value;
    changed_ = true;
  }
}

std::int64_t probe::get(std::string_view counter) const {
  return counter_of(stats_, counter).value_or(0);
}

void probe::label(std::string_view key, std::string value) {
  for (auto& [k, v] : stats_.labels)
    if (k == key) {
      if (v != value) {
        v = std::move(value);
        changed_ = true;
      }
      return;
    }
  changed_ = true;
  stats_.labels.emplace_back(std::string{key}, std::move(value));
}

void probe::record_latency(std::chrono::microseconds latency) {
  changed_ = true;
  auto us = static_cast<std::uint32_t>(
    std::clamp<std::int64_t>(latency.count(), 0, UINT32_MAX));
  if (samples_.size() < window) {
    samples_.push_back(us);
  } else {
    samples_[next_sample_] = us;
    next_sample_ = (next_sample_ + 1) % window;
  }
}

component_stats probe::snapshot() const {
  auto result = stats_;
  if (!samples_.empty()) {
    auto sorted = samples_;
    std::sort(sorted.begin(), sorted.end());
    auto pct = [&](double p) {
      auto i = static_cast<std::size_t>(p * (sorted.size() - 1));
      return static_cast<std::int64_t>(sorted[i]);
    };
    result.counters.emplace_back("latency_p50_us", pct(0.50));
    result.counters.emplace_back("latency_p99_us", pct(0.99));
    result.counters.emplace_back("latency_p999_us", pct(0.999));
  }
  return result;
}

void probe::report(caf::local_actor* self) {
  // A timer never fires early, so a timer of stats.interval that calls this
  // before rescheduling itself reports on every tick.
  if (changed_
      && std::chrono::steady_clock::now() - last_report_
           >= stats_interval(self->home_system()))
    report_now(self);
}

void probe::report_now(caf::local_actor* self) {
  if (!changed_)
    return;
  auto handle = caf::actor_cast<caf::actor>(
    self->home_system().registry().get(stats_registry_name));
  if (!handle)
    return;
  changed_ = false;
  last_report_ = std::chrono::steady_clock::now();
  caf::anon_send(handle, report_atom::value, snapshot());
}

} // namespace hubflow
