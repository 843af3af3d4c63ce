#include "stats/stats.hpp"

#include <chrono>
#include <map>
#include <sstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "core/type_ids.hpp"

namespace hubflow {

struct stats_store {
  // (kind, name) -> latest snapshot; ordered so the output is stable.
  std::map<std::pair<std::string, std::string>, component_stats> components;
  std::map<std::pair<std::string, std::string>, bool> dirty;
  std::chrono::steady_clock::time_point started
    = std::chrono::steady_clock::now();
  caf::actor hub; // receives $SYS/hubflow/<kind>/<name> messages
};

std::shared_ptr<stats_store> make_stats_store() {
  return std::make_shared<stats_store>();
}

namespace {

struct stats_state {
  static inline const char* name = "hubflow.stats";
  std::shared_ptr<stats_store> store;
  stats_config cfg;
};

// Names and labels come from clients and remote systems (client ids, Kafka
// topics): text that is not UTF-8 is replaced, never a reason to throw.
std::string dump(const nlohmann::json& doc) {
  return doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

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
                          stats_config cfg, std::shared_ptr<stats_store> store) {
  self->state.cfg = cfg;
  self->state.store = std::move(store);
  self->delayed_send(self, cfg.report_interval, tick_atom::value);
  return {
    [=](report_atom, component_stats& c) {
      auto& st = *self->state.store;
      auto key = std::make_pair(c.kind, c.name);
      st.components[key] = std::move(c);
      st.dirty[key] = true;
    },
    [=](get_atom) -> caf::result<std::string> {
      auto& st = *self->state.store;
      try {
        nlohmann::json doc;
        doc["version"] = HUBFLOW_VERSION;
        doc["uptime_ms"]
          = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - st.started)
              .count();
        doc["components"] = nlohmann::json::array();
        for (auto& [key, c] : st.components)
          doc["components"].push_back(to_json(c));
        return dump(doc);
      } catch (const std::exception& e) {
        // Answered, not thrown: a snapshot that cannot be built (memory)
        // must not take the stats actor down.
        return caf::make_error(caf::sec::runtime_error,
                               std::string{"stats snapshot failed: "}
                                 + e.what());
      }
    },
    [=](publish_atom, caf::actor hub) {
      self->state.store->hub = std::move(hub);
    },
    [=](rewire_atom, const caf::actor& old, const caf::actor& replacement) {
      if (self->state.store->hub == old)
        self->state.store->hub = replacement;
    },
    // Changed components go out on $SYS/hubflow/<kind>/<name> (retained,
    // so a new subscriber sees the current value at once).
    [=](tick_atom) {
      auto& st = *self->state.store;
      if (st.hub) {
        for (auto& [key, dirty] : st.dirty) {
          if (!dirty)
            continue;
          dirty = false;
          message msg;
          msg.topic = "$SYS/hubflow/" + key.first + "/" + key.second;
          msg.body = payload{dump(to_json(st.components[key]))};
          msg.retain = true;
          msg.origin = "stats";
          self->request(st.hub, caf::infinite, publish_atom::value,
                        std::move(msg))
            .then([](ok_atom) {}, [](caf::error&) {});
        }
      }
      self->delayed_send(self, self->state.cfg.report_interval,
                         tick_atom::value);
    },
  };
}

caf::behavior stats_reader(caf::event_based_actor* self) {
  return {
    // Answers what the stats actor answers: std::string, or an error.
    [=](get_atom) -> caf::result<caf::message> {
      auto stats = self->home_system().registry().get<caf::actor>(
        stats_registry_name);
      if (!stats)
        return caf::make_error(caf::sec::runtime_error,
                               "no stats actor is running");
      return self->delegate(stats, get_atom::value);
    },
  };
}

} // namespace

caf::actor spawn_stats(caf::actor_system& sys, const stats_config& cfg,
                       std::shared_ptr<stats_store> store) {
  if (!store)
    store = make_stats_store();
  auto stats = sys.spawn(stats_actor, cfg, std::move(store));
  // put() keeps an existing entry (CAF 0.17 emplaces), even a dead actor's.
  sys.registry().erase(stats_registry_name);
  sys.registry().put(stats_registry_name, stats);
  return stats;
}

caf::actor spawn_stats_reader(caf::actor_system& sys) {
  return sys.spawn(stats_reader);
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
