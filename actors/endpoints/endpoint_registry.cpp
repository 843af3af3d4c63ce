#include "endpoints/endpoint.hpp"

namespace hubflow {

std::map<std::string, endpoint_type>& endpoint_registry() {
  // Each endpoint type adds one line here.
  static std::map<std::string, endpoint_type> registry = {};
  return registry;
}

} // namespace hubflow
