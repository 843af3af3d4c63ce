#include "endpoints/endpoint.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/redis/redis_endpoint.hpp"

namespace hubflow {

std::map<std::string, endpoint_type>& endpoint_registry() {
  // Each endpoint type adds one line here.
  static std::map<std::string, endpoint_type> registry = {
    {"kafka", kafka_endpoint_type()},
    {"redis", redis_endpoint_type()},
  };
  return registry;
}

} // namespace hubflow
