// Endpoints carry messages to and from systems outside the hub (Kafka,
// Redis, other MQTT brokers). Each endpoint is one actor that owns its
// client handle and speaks the sink and source protocols of
// core/type_ids.hpp. An endpoint type lives in its own folder
// (endpoints/<type>/) with its option table, its settings parser and its
// actor; it is listed by one line in endpoints/endpoint_registry.cpp, and
// the broker passes that registry to the config loader
// (core/endpoint_type.hpp says what a type provides).
#pragma once

#include <memory>

#include "core/config.hpp"
#include "core/endpoint_type.hpp"

namespace hubflow {

/// Endpoint types by their `type:` name. Tests may add fakes.
endpoint_types& endpoint_registry();

/// Spawns the endpoint `cfg` describes through its type in the registry,
/// behind its disk buffer when it has `buffer: disk`
/// (endpoints/disk_buffer_endpoint.hpp).
caf::actor spawn_endpoint(caf::actor_system& sys, const endpoint_config& cfg);

/// The settings `cfg.parsed` holds, as its type's own `Settings` (what a
/// type's spawn hands its actor); throws config_error when the entry was
/// not parsed by that type (built in code without the loader).
template <class Settings>
std::shared_ptr<const Settings> parsed_settings(const endpoint_config& cfg) {
  auto settings = std::dynamic_pointer_cast<const Settings>(cfg.parsed);
  if (!settings)
    throw config_error(cfg.where, "endpoints." + cfg.name,
                       "the " + cfg.type + " endpoint's settings were not parsed");
  return settings;
}

} // namespace hubflow
