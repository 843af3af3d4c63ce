// What the config loader and the broker need to know of an endpoint type
// (Kafka, Redis, ...): its option table, how its settings are parsed (once,
// at load, into an immutable object the config holds and the actor
// receives), what it accepts as a rule's destination template, and how its
// actor is spawned. The types themselves live in endpoints/<type>/ and are
// listed in endpoints/endpoint_registry.cpp; the loader gets that registry
// passed in, so core/ includes nothing of endpoints/.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "core/options.hpp"
#include "core/topic_template.hpp"

namespace hubflow {

struct endpoint_config;

/// How the rules use an endpoint, known once all rules are read.
struct endpoint_usage {
  bool as_source = false;      // some rule has `from: {endpoint: <name>}`
  bool as_destination = false; // some rule has `to: {endpoint: <name>}`
  /// What rules write as `to.topic` for this endpoint, compiled at load,
  /// by the text they send with each message.
  std::map<std::string, topic_template_ptr> targets;

  /// The compiled template of a target a rule sends; null if unknown.
  topic_template_ptr target(const std::string& text) const {
    auto i = targets.find(text);
    return i == targets.end() ? nullptr : i->second;
  }

  /// Renders `target` for `msg` into `out`: its template compiled at load,
  /// or one compiled in `dialect` for this call (a target no rule declared:
  /// an error_topic, tests, tools). False with `error` set when it does not
  /// compile or render.
  bool render(const std::string& text, const message& msg, std::string& out,
              std::string& error, template_dialect dialect = {}) const {
    if (auto compiled = target(text))
      return compiled->render(msg, out, error);
    auto adhoc = topic_template::compile(text, error, dialect);
    return adhoc && adhoc->render(msg, out, error);
  }
};

/// The base of each endpoint type's parsed settings.
struct endpoint_settings {
  virtual ~endpoint_settings() = default;
};

using endpoint_settings_ptr = std::shared_ptr<const endpoint_settings>;

struct endpoint_type {
  /// Every key of the type's `endpoints:` entry, declared once.
  const option_table* options = nullptr;
  /// The older template forms a rule's destination for it may use.
  template_dialect target_dialect;
  /// What the type refuses in a rule's destination template (characters a
  /// Kafka topic cannot hold, ...): nothing when fine. Unset: anything goes.
  std::function<std::optional<std::string>(const topic_template&)>
    check_target;
  /// Builds the settings from the values read against `options` (problems
  /// go through `values.fail`); `cfg` carries the name, place and usage.
  std::function<endpoint_settings_ptr(option_values& values,
                                      const endpoint_config& cfg)>
    parse;
  /// Spawns the endpoint actor from `cfg.parsed`.
  std::function<caf::actor(caf::actor_system&, const endpoint_config&)> spawn;
};

/// Endpoint types by their `type:` name.
using endpoint_types = std::map<std::string, endpoint_type>;

} // namespace hubflow
