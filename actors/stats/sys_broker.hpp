// Mosquitto's `$SYS/broker/...` tree (src/sys_tree.c of Mosquitto 2.0), made
// from the embedded hub's counters, so that dashboards and exporters
// written for Mosquitto read hubflow unchanged. It sits next to hubflow's
// own `$SYS/hubflow/<kind>/<name>` topics. Which hubflow counter feeds
// which topic, and where the meanings differ: docs/hub.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/component_stats.hpp"

namespace hubflow {

/// One retained message of the tree: its topic and text payload.
struct sys_topic {
  std::string topic;
  std::string payload;
};

/// Keeps what was published last, so each update publishes only what
/// changed (as Mosquitto does), and the load averages.
class mosquitto_sys_tree {
public:
  /// At least this long between two updates (Mosquitto: sys_interval, 10 s
  /// by default).
  static constexpr double min_interval_s = 1.0;

  /// The topics whose value changed since the last update, from `hub` (the
  /// embedded hub's latest counters), `uptime_s` (seconds since start) and
  /// hubflow's `version`. Empty when the last update is less than
  /// min_interval_s ago. The first update publishes every topic.
  std::vector<sys_topic> update(const component_stats& hub, double uptime_s,
                                const std::string& version);

private:
  /// One `$SYS/broker/load/<name>/{1,5,15}min` series: the counter's rate
  /// per minute, exponentially averaged as Mosquitto's calc_load does.
  struct load_average {
    std::int64_t previous = 0;
    double minutes[3] = {0, 0, 0};
  };

  void set(std::vector<sys_topic>& out, const std::string& topic,
           const std::string& payload);
  void update_load(std::vector<sys_topic>& out, const std::string& name,
                   std::int64_t counter, double elapsed_s);

  std::map<std::string, std::string> published_;
  std::map<std::string, load_average> loads_;
  std::int64_t max_clients_ = 0; // clients/maximum: the most sessions seen
  double last_update_s_ = -1;    // uptime at the last update; -1: none yet
};

} // namespace hubflow
