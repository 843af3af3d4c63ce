// Endpoints carry messages to and from systems outside the hub (Kafka,
// Redis, other MQTT brokers). Each endpoint is one actor that owns its
// client handle and speaks the sink and source protocols of
// core/type_ids.hpp. Endpoint types register themselves in
// endpoints/endpoint_registry.cpp.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"

namespace hubflow {

/// How the rules use an endpoint, known once all rules are read.
struct endpoint_usage {
  bool as_source = false;      // some rule has `from: {endpoint: <name>}`
  bool as_destination = false; // some rule has `to: {endpoint: <name>}`
};

struct endpoint_type {
  /// Checks the settings beyond what the JSON schema can say; appends
  /// `file:line:col: endpoints[i].key: message` strings to `errors`.
  std::function<void(const endpoint_config&, const endpoint_usage&,
                     const std::string& key_path,
                     std::vector<std::string>& errors)>
    validate;
  /// Checks what a rule writes as `to.topic` for this endpoint (a Kafka
  /// topic template, ...): nothing when valid, else what is wrong. Unset:
  /// anything goes.
  std::function<std::optional<std::string>(const std::string& target)>
    check_target;
  /// Spawns the endpoint actor (config already validated).
  std::function<caf::actor(caf::actor_system&, const endpoint_config&,
                           const endpoint_usage&)>
    spawn;
};

/// Endpoint types by their `type:` name.
std::map<std::string, endpoint_type>& endpoint_registry();

} // namespace hubflow
