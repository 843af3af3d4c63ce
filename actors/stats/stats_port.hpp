// The stats port: what `hubflowctl stats` connects to. A CAF io broker in
// the middleman's loop speaks a one-line, read-only protocol:
//
//   client: HUBFLOW-STATS 1 <token>\n
//   broker: <the snapshot as JSON, stats_render.hpp>\n   then closes, or
//           ERR unauthorized\n | ERR bad request\n | ERR unsupported version\n
//           | ERR line too long\n | ERR busy\n | ERR unavailable\n
//
// The token is the stats_token.hpp secret, compared in constant time. A
// line longer than limits.max_line or not complete within limits.deadline
// closes the connection. Nothing a peer sends is deserialized as a CAF
// message: a peer can read the snapshot (with the token) and nothing else.
// Counted as component kind "stats", name "port": requests, denied, errors,
// timeouts, busy; gauge connections.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/probe.hpp"

namespace hubflow {

struct stats_port_limits {
  /// Longest request line, newline excluded.
  std::size_t max_line = 512;
  /// The whole line must arrive within this long after the connect.
  std::chrono::milliseconds deadline{std::chrono::seconds(5)};
  /// Connections served at once; more are answered `ERR busy` and closed.
  std::size_t max_connections = 16;
  /// How long the stats actor may take to answer.
  std::chrono::milliseconds stats_timeout{std::chrono::seconds(5)};
};

/// What the broker keeps across restarts by the keeper; touched only by the
/// one broker running at a time.
struct stats_port_context {
  std::string token;
  stats_port_limits limits;
  probe counters{"stats", "port"};
  /// Peers already logged as refused: one warning per peer address, the
  /// rest is only counted (at most max_logged_peers addresses are kept).
  std::set<std::string> logged_peers;
  static constexpr std::size_t max_logged_peers = 1024;
};

/// Binds host:port (0 picks a free port) and spawns the broker. On failure
/// returns an invalid handle and sets `error`; `bound_port` receives the
/// port bound. The actor system must have loaded caf::io::middleman.
caf::actor spawn_stats_port(caf::actor_system& sys, const std::string& host,
                            std::uint16_t port,
                            std::shared_ptr<stats_port_context> ctx,
                            std::string& error,
                            std::uint16_t* bound_port = nullptr);

} // namespace hubflow
