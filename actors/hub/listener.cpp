#include "hub/listener.hpp"

namespace hubflow::hub {

component_stats listener::snapshot() const {
  component_stats s;
  s.kind = "listener";
  s.name = url;
  s.counters = {
    {"connections", counters.connections},
    {"connections_total", counters.connections_total},
    {"handshake_failures", counters.handshake_failures},
    {"tls_resumed", counters.tls_resumed},
    {"websocket_errors", counters.websocket_errors},
  };
  s.labels = {{"port", std::to_string(port)}};
  return s;
}

} // namespace hubflow::hub
