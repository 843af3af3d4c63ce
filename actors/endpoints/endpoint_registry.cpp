#include "endpoints/endpoint.hpp"
#include "endpoints/disk_buffer_endpoint.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/mqtt/mqtt_settings.hpp"
#include "endpoints/redis/redis_endpoint.hpp"

namespace hubflow {

endpoint_types& endpoint_registry() {
  // Each endpoint type adds one line here.
  static endpoint_types registry = {
    {"kafka", kafka_endpoint_type()},
    {"mqtt", mqtt_endpoint_type()},
    {"redis", redis_endpoint_type()},
  };
  return registry;
}

caf::actor spawn_endpoint(caf::actor_system& sys, const endpoint_config& cfg) {
  auto& type = endpoint_registry().at(cfg.type);
  if (cfg.buffer.disk)
    return spawn_disk_buffer(sys, cfg, type.spawn);
  return type.spawn(sys, cfg);
}

} // namespace hubflow
