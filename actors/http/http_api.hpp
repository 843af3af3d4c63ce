// The Dapr-style HTTP API (v1.0 paths): state stores, publishing into the
// hub, invoking functions, metrics, health and metadata. It is a CAF io
// broker in the middleman's I/O loop: it parses requests, asks the actors
// below with request(...).then(...), and never blocks.
//
//   POST   /v1.0/state/<store>                 save (array of items) -> 204
//   GET    /v1.0/state/<store>/<key>           200 value + ETag, 204 missing
//   POST   /v1.0/state/<store>/bulk            {"keys":[...]} -> 200 array
//   DELETE /v1.0/state/<store>/<key>           If-Match etag -> 204
//   POST   /v1.0/state/<store>/transaction     upserts, deletes -> 204
//   POST   /v1.0/publish/<hub>/<topic>         body into the hub -> 204
//   POST   /v1.0-alpha1/publish/bulk/<hub>/<topic>  entries -> 204 / 500
//   *      /v1.0/invoke/<function>/method/<m>  the function's output -> 200
//   GET    /metrics                            Prometheus text
//   GET    /v1.0/healthz                       204
//   GET    /v1.0/metadata                      rules, functions, endpoints
//   PUT    /v1.0/metadata/<key>                an "extended" attribute -> 204
// Dapr API areas hubflow lacks (bindings, actors, secrets, ...) answer 501
// ERR_API_UNIMPLEMENTED naming the area.
// Errors are Dapr's JSON: {"errorCode": "...", "message": "..."}.
// docs/http-api.md is the reference.
//
// Hostile clients are bounded (docs/http-api.md#limits): text that is not
// UTF-8 and JSON nested deeper than default_json_depth get 400; a request
// must arrive within http_config::request_timeout (408); a client that does
// not read its answers is no longer read from once 64 KiB wait unsent;
// connections above http_config::max_connections get 503. A handler that
// throws answers 500 and is counted (handler_errors); the API goes on.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "core/component_stats.hpp"
#include "core/config.hpp"
#include "core/fwd.hpp"

namespace hubflow {

/// A state store the API can reach: an actor speaking the protocol of
/// core/state_store.hpp, and its endpoint type ("redis").
struct http_state_store {
  std::string type;
  state_store_actor actor;
};

/// The actors behind the API. Any of them may be missing (the matching
/// routes then answer 404 or 503 with a clear message).
struct http_context {
  /// The hub as a sink.
  sink_actor hub;
  /// The <hub> path segment of /v1.0/publish/<hub>/<topic>.
  std::string hub_name = "hub";
  /// Function supervisors by name.
  std::map<std::string, function_actor> functions;
  /// State stores by endpoint name (the Dapr store name).
  std::map<std::string, http_state_store> state_stores;
  /// The stats actor (a reader that always asks the current one).
  stats_reader_actor stats;
  /// How long the API waits for the hub, a store or the stats actor.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(30)};
  /// Invocations wait for the supervisor, which applies its own timeout.
  std::chrono::milliseconds invoke_timeout{std::chrono::seconds(120)};

  /// Points whatever held `old` (the hub, a function, a state store) at
  /// `replacement`: after the keeper replaced it.
  void replace(const caf::actor& old, const caf::actor& replacement);
};

/// A reload's functions and state stores for the API (within the process).
using http_context_ptr = std::shared_ptr<const http_context>;

/// Where the running API is registered (the keeper may have replaced the
/// one first started): main.cpp sends it reload_atom on SIGHUP.
inline constexpr caf::atom_value http_registry_name = caf::atom("hf.http");

/// Binds cfg.listen ("host:port"; port 0 picks a free one) and spawns the
/// API broker with cfg's limits and deadlines, serving HTTPS only when
/// cfg.certificate is set. On failure returns an
/// invalid handle and sets `error`.
/// `bound_port`, when given, receives the port actually bound. The API
/// follows (rewire_atom, old, replacement) (see http_context::replace).
/// The actor system must have loaded caf::io::middleman.
caf::actor spawn_http_api(caf::actor_system& sys, const http_config& cfg,
                          const http_context& ctx, std::string& error,
                          std::uint16_t* bound_port = nullptr);

/// The /v1.0/metadata document built from the stats snapshot, the
/// context and the attributes set with PUT /v1.0/metadata/<key>.
std::string http_metadata_json(
  const stats_snapshot& stats, const http_context& ctx,
  const std::map<std::string, std::string>& extended = {});

} // namespace hubflow

// The API's context goes to it within the process only.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hubflow::http_context_ptr)
