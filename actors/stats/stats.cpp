#include "stats/stats.hpp"

#include <chrono>
#include <map>

#include <caf/all.hpp>

#include "core/fwd.hpp"
#include "core/probe.hpp"
#include "core/registered_name.hpp"
#include "stats/stats_render.hpp"
#include "stats/sys_broker.hpp"

namespace hubflow {

struct stats_store {
  // (kind, name) -> latest snapshot; ordered so the output is stable.
  std::map<std::pair<std::string, std::string>, component_stats> components;
  std::map<std::pair<std::string, std::string>, bool> dirty;
  std::chrono::steady_clock::time_point started
    = std::chrono::steady_clock::now();
  sink_actor hub; // receives $SYS/hubflow/<kind>/<name> messages
  mosquitto_sys_tree sys_broker; // and Mosquitto's $SYS/broker/... ones
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

// A retained message from the stats actor to the hub, answer ignored (the
// next change publishes again).
void publish_sys(caf::stateful_actor<stats_state>* self, std::string topic,
                 payload body) {
  message msg;
  msg.topic = std::move(topic);
  msg.body = std::move(body);
  msg.retain = true;
  msg.origin = "stats";
  self->request(self->state.store->hub, caf::infinite, publish_atom::value,
                std::move(msg))
    .then([](ok_atom) {}, [](caf::error&) {});
}

// Mosquitto's tree, from the embedded hub's counters (it alone sets
// store.hub, so its component is there once it has reported).
void publish_sys_broker(caf::stateful_actor<stats_state>* self) {
  auto& st = *self->state.store;
  auto hub = st.components.find({"hub", "embedded"});
  if (hub == st.components.end())
    return;
  auto uptime = std::chrono::duration<double>(
                  std::chrono::steady_clock::now() - st.started)
                  .count();
  for (auto& t : st.sys_broker.update(hub->second, uptime, HUBFLOW_VERSION))
    publish_sys(self, std::move(t.topic), payload{std::move(t.payload)});
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
    [=](get_atom) {
      auto& st = *self->state.store;
      stats_snapshot snapshot;
      snapshot.version = HUBFLOW_VERSION;
      snapshot.uptime_ms
        = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - st.started)
            .count();
      snapshot.components.reserve(st.components.size());
      for (auto& [key, c] : st.components)
        snapshot.components.push_back(c);
      return snapshot;
    },
    [=](sys_hub_atom, const caf::actor& hub) {
      self->state.store->hub = as_role<sink_actor>(hub);
    },
    [=](rewire_atom, const caf::actor& old, const caf::actor& replacement) {
      rewire(self->state.store->hub, old, replacement);
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
          publish_sys(self, "$SYS/hubflow/" + key.first + "/" + key.second,
                      payload{component_to_json(st.components[key])});
        }
        publish_sys_broker(self);
      }
      self->delayed_send(self, self->state.cfg.report_interval,
                         tick_atom::value);
    },
  };
}

caf::behavior stats_reader(caf::event_based_actor* self) {
  return {
    // Answers what the stats actor answers: stats_snapshot, or an error.
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
  // Before the stats actor exists: every probe reports on this interval.
  set_stats_interval(sys, cfg.report_interval);
  auto stats = sys.spawn(stats_actor, cfg, std::move(store));
  register_as(sys, stats_registry_name, stats);
  return stats;
}

caf::actor spawn_stats_reader(caf::actor_system& sys) {
  return sys.spawn(stats_reader);
}

} // namespace hubflow
