// The registry entry of `type: redis`: its option table, its parser and
// its actor (endpoints/endpoint_registry.cpp lists it).
#include "endpoints/redis/redis_endpoint.hpp"

namespace hubflow {

endpoint_type redis_endpoint_type() {
  endpoint_type type;
  type.options = &redis_options();
  type.target_dialect = template_dialect{true};
  type.parse = [](option_values& values, const endpoint_config& cfg) {
    return std::make_shared<const redis_settings>(
      parse_redis_settings(values, cfg));
  };
  type.spawn = [](caf::actor_system& sys, const endpoint_config& cfg) {
    return spawn_redis_endpoint(sys, cfg.name,
                                *parsed_settings<redis_settings>(cfg));
  };
  return type;
}

} // namespace hubflow
