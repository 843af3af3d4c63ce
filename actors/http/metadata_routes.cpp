#include "http/http_exchange.hpp"

#include <functional>
#include <set>

#include <caf/all.hpp>

#include "core/type_ids.hpp"
#include "core/state_store.hpp"
#include "http/prometheus.hpp"
#include "stats/stats_render.hpp"

#ifndef HUBFLOW_VERSION
#  define HUBFLOW_VERSION "unknown"
#endif

// /metrics and /v1.0/metadata: the stats actor's snapshot, rendered, with
// the attributes PUT /v1.0/metadata/<key> set.
namespace hubflow::http {

namespace {

void with_stats(http_broker* self, const reply_to& to,
                std::function<void(const stats_snapshot&)> then) {
  auto& ctx = *self->state.ctx;
  if (!ctx.stats)
    return respond_error(self, to, 503, "ERR_STATS_UNAVAILABLE",
                         "no stats actor is running");
  self->request(ctx.stats, ctx.request_timeout, get_atom::value)
    .then(
      [=](const stats_snapshot& snapshot) {
        answering(self, to, [&] { then(snapshot); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, 503, "ERR_STATS_UNAVAILABLE",
                        "the stats actor did not answer: " + error_text(err));
        });
      });
}

} // namespace

void metrics(http_broker* self, const reply_to& to) {
  with_stats(self, to, [=](const stats_snapshot& snapshot) {
    respond(self, to, 200, "text/plain; version=0.0.4; charset=utf-8",
            stats_to_prometheus(snapshot));
  });
}

void metadata(http_broker* self, const reply_to& to) {
  auto ctx = self->state.ctx;
  with_stats(self, to, [=](const stats_snapshot& snapshot) {
    respond(self, to, 200, "application/json",
            http_metadata_json(snapshot, *ctx, self->state.extended));
  });
}

void metadata_set(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& key) {
  auto& limits = self->state.limits;
  auto& extended = self->state.extended;
  auto refuse = [&](const std::string& why) {
    respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                  "metadata attribute " + key + ": " + why);
  };
  if (key.size() > limits.max_metadata_key_bytes)
    return refuse("the key is longer than "
                  + std::to_string(limits.max_metadata_key_bytes) + " bytes");
  if (req.body.size() > limits.max_metadata_value_bytes)
    return refuse("the value is longer than "
                  + std::to_string(limits.max_metadata_value_bytes)
                  + " bytes");
  if (!is_valid_utf8(req.body))
    return refuse("the value is not valid UTF-8");
  if (extended.count(key) == 0
      && extended.size() >= limits.max_metadata_attributes)
    return refuse(std::to_string(limits.max_metadata_attributes)
                  + " attributes are set already (the most kept)");
  extended[key] = req.body;
  respond(self, to, 204, "", "");
}

} // namespace hubflow::http

namespace hubflow {

std::string http_metadata_json(
  const stats_snapshot& stats, const http_context& ctx,
  const std::map<std::string, std::string>& extended) {
  using http::json;
  json rules = json::array(), functions = json::array(),
       endpoints = json::array(), components = json::array();
  auto object_of = [](const auto& by_name) {
    json out = json::object();
    for (auto& [k, v] : by_name)
      out[k] = v;
    return out;
  };
  std::map<std::string, json> function_stats; // name -> counters
  for (auto& c : stats.components) {
    auto counters = object_of(counters_by_name(c));
    auto label_map = labels_by_name(c);
    auto label = [&](const std::string& key) {
      auto i = label_map.find(key);
      return i == label_map.end() ? std::string{} : i->second;
    };
    if (c.kind == "rule") {
      rules.push_back({{"name", c.name},
                       {"counters", counters},
                       {"labels", object_of(label_map)}});
    } else if (c.kind == "function") {
      function_stats[c.name] = counters;
    } else if (c.kind == "endpoint") {
      endpoints.push_back({{"name", c.name},
                           {"type", label("type")},
                           {"state", label("state")},
                           {"counters", counters},
                           {"labels", object_of(label_map)}});
    }
  }
  // Functions the API can invoke, with what the stats know about them.
  std::set<std::string> names;
  for (auto& [name, actor] : ctx.functions)
    names.insert(name);
  for (auto& [name, c] : function_stats)
    names.insert(name);
  for (auto& name : names) {
    json f{{"name", name}};
    auto i = function_stats.find(name);
    auto counters = i == function_stats.end() ? json::object() : i->second;
    f["instances"] = counters.value("instances", 0);
    f["invocable"] = ctx.functions.count(name) > 0;
    f["counters"] = counters;
    functions.push_back(std::move(f));
  }
  for (auto& [name, store] : ctx.state_stores)
    components.push_back(
      {{"name", name}, {"type", "state." + store.type}, {"version", "v1"}});
  json doc{{"id", "hubflow"},
           {"runtimeVersion", HUBFLOW_VERSION},
           {"hub", ctx.hub_name},
           {"components", components},
           {"extended", object_of(extended)},
           {"rules", rules},
           {"functions", functions},
           {"endpoints", endpoints}};
  return dump_json(doc);
}

} // namespace hubflow
