#include "core/probe.hpp"

#include <algorithm>

#include <caf/all.hpp>

#include "core/type_ids.hpp"

namespace hubflow {

probe::probe(std::string kind, std::string name) {
  stats_.kind = std::move(kind);
  stats_.name = std::move(name);
}

std::int64_t& probe::slot(std::string_view counter) {
  changed_ = true;
  for (auto& [key, value] : stats_.counters)
    if (key == counter)
      return value;
  return stats_.counters.emplace_back(std::string{counter}, 0).second;
}

void probe::add(std::string_view counter, std::int64_t n) {
  slot(counter) += n;
}

void probe::set(std::string_view gauge, std::int64_t value) {
  auto& s = slot(gauge);
  s = value;
}

std::int64_t probe::get(std::string_view counter) const {
  for (auto& [key, value] : stats_.counters)
    if (key == counter)
      return value;
  return 0;
}

void probe::label(std::string_view key, std::string value) {
  changed_ = true;
  for (auto& [k, v] : stats_.labels)
    if (k == key) {
      v = std::move(value);
      return;
    }
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
  if (!changed_)
    return;
  auto handle = caf::actor_cast<caf::actor>(
    self->home_system().registry().get(stats_registry_name));
  if (!handle)
    return;
  changed_ = false;
  caf::anon_send(handle, report_atom::value, snapshot());
}

} // namespace hubflow
