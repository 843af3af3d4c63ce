// The settings of a `type: mqtt` endpoint, a bridge to another MQTT broker:
// its option table (every key, declared once: validation, defaults,
// docs/mqtt.md's table and the schema fragment come from it) and the
// immutable settings object parsed from it once at load. The connection is
// hub/external_hub's link; these settings are what it is given.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/options.hpp"
#include "hub/external_hub.hpp"

namespace hubflow {

/// Built by parse_mqtt_settings from mqtt_options(), which holds every
/// default; nothing here repeats them.
struct mqtt_settings : endpoint_settings {
  /// The link's settings; its topic_of renders a rule's `to.topic` (the
  /// templates of `usage`, compiled at load); a publish without a target
  /// goes to the message's own topic.
  mqtt_link_settings link;
  /// The rules' `to.topic` templates for this endpoint.
  endpoint_usage usage;
};

/// Every key of a `type: mqtt` entry.
const option_table& mqtt_options();

/// Builds the settings from values read against mqtt_options(); problems
/// go through `values.fail`.
mqtt_settings parse_mqtt_settings(option_values& values,
                                  const endpoint_config& cfg);

/// The registry entry, `{"mqtt", mqtt_endpoint_type()}` (mqtt_type.cpp):
/// its actor is the link of hub/external_hub.hpp, spawned with `link`.
endpoint_type mqtt_endpoint_type();

/// What a rule may not write as a destination topic for a remote broker
/// (a wildcard or U+0000 in its literal text): nothing when fine.
std::optional<std::string> check_mqtt_target(const topic_template& target);

} // namespace hubflow
