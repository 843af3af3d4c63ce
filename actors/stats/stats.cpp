#include "stats/stats.hpp"

#include <chrono>
#include <map>
#include <sstream>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "core/type_ids.hpp"

namespace hubflow {

namespace {

struct stats_state {
  static inline const char* name = "hubflow.stats";
  // (kind, name) -> latest snapshot; ordered so the output is stable.
  std::map<std::pair<std::string, std::string>, component_stats> components;
  std::map<std::pair<std::string, std::string>, bool> dirty;
  std::chrono::steady_clock::time_point started
    = std::chrono::steady_clock::now();
  caf::actor hub; // receives $SYS/hubflow/<kind>/<name> messages
  stats_config cfg;
};

nlohmann::json to_json(const component_stats& c) {
  nlohmann::json counters = nlohmann::json::object();
  for (auto& [k, v] : c.counters)
    counters[k] = v;
  nlohmann::json labels = nlohmann::json::object();
  for (auto& [k, v] : c.labels)
    labels[k] = v;
  return {{"kind", c.kind},
          {"name", c.name},
          {"counters", counters},
          {"labels", labels}};
}

caf::behavior stats_actor(caf::stateful_actor<stats_state>* self,
                          stats_config cfg) {
  self->state.cfg = cfg;
  self->system().registry().put(stats_registry_name, caf::actor{self});
  self->delayed_send(self, cfg.report_interval, tick_atom::value);
  return {
    [=](report_atom, component_stats& c) {
      auto key = std::make_pair(c.kind, c.name);
      self->state.components[key] = std::move(c);
      self->state.dirty[key] = true;
    },
    [=](get_atom) -> std::string {
      auto& st = self->state;
      nlohmann::json doc;
      doc["version"] = HUBFLOW_VERSION;
      doc["uptime_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - st.started)
                           .count();
      doc["components"] = nlohmann::json::array();
      for (auto& [key, c] : st.components)
        doc["components"].push_back(to_json(c));
      return doc.dump();
    },
    [=](publish_atom, caf::actor hub) {
      self->state.hub = std::move(hub);
    },
    // Changed components go out on $SYS/hubflow/<kind>/<name> (retained,
    // so a new subscriber sees the current value at once).
    [=](tick_atom) {
      auto& st = self->state;
      if (st.hub) {
        for (auto& [key, dirty] : st.dirty) {
          if (!dirty)
            continue;
          dirty = false;
          message msg;
          msg.topic = "$SYS/hubflow/" + key.first + "/" + key.second;
          msg.body = payload{to_json(st.components[key]).dump()};
          msg.retain = true;
          msg.origin = "stats";
          self->request(st.hub, caf::infinite, publish_atom::value,
                        std::move(msg))
            .then([](ok_atom) {}, [](caf::error&) {});
        }
      }
      self->delayed_send(self, st.cfg.report_interval, tick_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_stats(caf::actor_system& sys, const stats_config& cfg) {
  return sys.spawn(stats_actor, cfg);
}

std::uint16_t publish_stats(caf::actor_system& sys, const caf::actor& stats,
                            const stats_config& cfg, std::string& error) {
  auto port = sys.middleman().publish(stats, cfg.port, cfg.host.c_str(), true);
  if (!port) {
    error = "cannot serve stats on " + cfg.host + ":"
            + std::to_string(cfg.port) + ": " + sys.render(port.error());
    return 0;
  }
  return *port;
}

std::string render_stats_table(const std::string& stats_json) {
  auto doc = nlohmann::json::parse(stats_json, nullptr, false);
  if (doc.is_discarded())
    return "malformed stats JSON\n";
  std::ostringstream out;
  out << "hubflow " << doc.value("version", "?") << ", up "
      << doc.value("uptime_ms", 0) / 1000 << " s\n";
  std::string kind;
  for (auto& c : doc["components"]) {
    if (c["kind"] != kind) {
      kind = c["kind"];
      out << "\n" << kind << "\n";
    }
    out << "  " << c["name"].get<std::string>() << "\n";
    std::string line = "   ";
    auto emit = [&](const std::string& item) {
      if (line.size() + item.size() > 78) {
        out << line << "\n";
        line = "   ";
      }
      line += item;
    };
    for (auto& [k, v] : c["counters"].items())
      emit(" " + k + "=" + v.dump());
    for (auto& [k, v] : c["labels"].items())
      emit(" " + k + "=" + v.get<std::string>());
    if (line.size() > 3)
      out << line << "\n";
  }
  return out.str();
}

} // namespace hubflow
