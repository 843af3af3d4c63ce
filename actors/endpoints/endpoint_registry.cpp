#include "endpoints/endpoint.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/redis/redis_endpoint.hpp"

namespace hubflow {

endpoint_types& endpoint_registry() {
  // Each endpoint type adds one line here.
  static endpoint_types registry = {
    {"kafka", kafka_endpoint_type()},
    {"redis", redis_endpoint_type()},
  };
  return registry;
}

} // namespace hubflow
