// The registry entry of `type: mqtt`: its option table, its parser and its
// actor, which is hub/external_hub's link (endpoints/endpoint_registry.cpp
// lists it).
#include "endpoints/endpoint.hpp"
#include "endpoints/mqtt/mqtt_settings.hpp"

namespace hubflow {

endpoint_type mqtt_endpoint_type() {
  endpoint_type type;
  type.options = &mqtt_options();
  type.check_target = check_mqtt_target;
  type.parse = [](option_values& values, const endpoint_config& cfg) {
    return std::make_shared<const mqtt_settings>(
      parse_mqtt_settings(values, cfg));
  };
  type.spawn = [](caf::actor_system& sys, const endpoint_config& cfg) {
    return spawn_external_hub_link(sys,
                                   parsed_settings<mqtt_settings>(cfg)->link);
  };
  return type;
}

} // namespace hubflow
