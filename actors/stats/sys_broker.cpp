#include "stats/sys_broker.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "stats/stats_render.hpp"

namespace hubflow {

namespace {

std::string two_decimals(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

std::int64_t at(const std::map<std::string, std::int64_t>& counters,
                const char* name) {
  auto i = counters.find(name);
  return i == counters.end() ? 0 : i->second;
}

// Mosquitto's averaging windows, seconds.
constexpr double load_windows_s[3] = {60, 300, 900};
constexpr const char* load_suffixes[3] = {"/1min", "/5min", "/15min"};

} // namespace

void mosquitto_sys_tree::set(std::vector<sys_topic>& out,
                             const std::string& topic,
                             const std::string& payload) {
  // A topic not published yet has "", which no payload is.
  auto& last = published_[topic];
  if (last == payload)
    return;
  last = payload;
  out.push_back({topic, payload});
}

void mosquitto_sys_tree::update_load(std::vector<sys_topic>& out,
                                     const std::string& name,
                                     std::int64_t counter, double elapsed_s) {
  auto& load = loads_[name];
  bool initial = last_update_s_ < 0;
  // Per minute over the last interval; the first update publishes 0.
  double rate = initial ? 0.0
                        : static_cast<double>(counter - load.previous) * 60.0
                            / elapsed_s;
  load.previous = counter;
  for (int i = 0; i < 3; ++i) {
    auto& value = load.minutes[i];
    if (!initial)
      value = rate + std::exp(-elapsed_s / load_windows_s[i]) * (value - rate);
    set(out, "$SYS/broker/load/" + name + load_suffixes[i],
        two_decimals(value));
  }
}

std::vector<sys_topic> mosquitto_sys_tree::update(const component_stats& hub,
                                                  double uptime_s,
                                                  const std::string& version) {
  std::vector<sys_topic> out;
  if (last_update_s_ >= 0 && uptime_s - last_update_s_ < min_interval_s)
    return out;
  double elapsed = last_update_s_ < 0 ? 0 : uptime_s - last_update_s_;
  auto c = counters_by_name(hub);
  auto connected = at(c, "connections");
  auto total = at(c, "sessions"); // online and offline persistent sessions
  auto disconnected = std::max<std::int64_t>(0, total - connected);
  max_clients_ = std::max(max_clients_, total);
  auto dropped = at(c, "dropped_qos0_slow") + at(c, "dropped_queue_full")
                 + at(c, "dropped_expired") + at(c, "dropped_too_large");
  auto number = [&](const char* topic, std::int64_t value) {
    set(out, std::string{"$SYS/broker/"} + topic, std::to_string(value));
  };
  set(out, "$SYS/broker/version", "hubflow version " + version);
  set(out, "$SYS/broker/uptime",
      std::to_string(static_cast<std::int64_t>(uptime_s)) + " seconds");
  number("clients/total", total);
  number("clients/maximum", max_clients_);
  number("clients/connected", connected);
  number("clients/active", connected); // Mosquitto's older name
  number("clients/disconnected", disconnected);
  number("clients/inactive", disconnected); // Mosquitto's older name
  number("messages/received", at(c, "messages_in"));
  number("messages/sent", at(c, "messages_out"));
  number("publish/messages/received", at(c, "messages_in"));
  number("publish/messages/sent", at(c, "messages_out"));
  number("publish/messages/dropped", dropped);
  number("bytes/received", at(c, "bytes_in"));
  number("bytes/sent", at(c, "bytes_out"));
  number("retained messages/count", at(c, "retained"));
  number("subscriptions/count", at(c, "subscriptions"));
  update_load(out, "messages/received", at(c, "messages_in"), elapsed);
  update_load(out, "messages/sent", at(c, "messages_out"), elapsed);
  update_load(out, "publish/received", at(c, "messages_in"), elapsed);
  update_load(out, "publish/sent", at(c, "messages_out"), elapsed);
  update_load(out, "publish/dropped", dropped, elapsed);
  update_load(out, "bytes/received", at(c, "bytes_in"), elapsed);
  update_load(out, "bytes/sent", at(c, "bytes_out"), elapsed);
  update_load(out, "connections", at(c, "connections_total"), elapsed);
  last_update_s_ = uptime_s;
  return out;
}

} // namespace hubflow
