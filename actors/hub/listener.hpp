// One `hub.listen` entry as the embedded hub serves it: what its
// connections speak (TCP, TLS, WebSocket, WebSocket over TLS) and what they
// count. Lives in hub_core, so connections keep a reference for their
// lifetime and the control actor reports each listener to stats (kind
// "listener", named by its URL).
#pragma once

#include <cstdint>
#include <string>

#include "core/component_stats.hpp"
#include "core/config.hpp"
#include "core/tls_context.hpp"

namespace hubflow::hub {

struct listener_counters {
  std::int64_t connections = 0; // open now
  std::int64_t connections_total = 0;
  /// TLS handshakes and WebSocket upgrades that failed or timed out.
  std::int64_t handshake_failures = 0;
  std::int64_t tls_resumed = 0; // handshakes that resumed a session
  /// WebSocket frames that broke RFC 6455 (unmasked, text, oversized...).
  std::int64_t websocket_errors = 0;
};

struct listener {
  std::string url;
  listener_address address;
  tls_context_ptr tls; // ssl:// and wss:// only
  /// The client certificate's CN names the principal (no password).
  bool identity_as_username = false;
  std::uint16_t port = 0; // as bound (port 0 in the URL picks one)
  listener_counters counters;

  component_stats snapshot() const;
};

} // namespace hubflow::hub
