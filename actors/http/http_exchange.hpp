// What the files of the HTTP API share (nothing outside http/ includes
// this): the broker's state, how a request is answered, and the entry
// points of the routes.
//   http_server.cpp      connections, pipelining, flow control, deadlines,
//                        answers (respond), failure containment
//   http_routes.cpp      the route table: a request to its handler
//   state_routes.cpp     /v1.0/state/... (a state store actor)
//   publish_routes.cpp   /v1.0/publish/... and bulk publish (the hub)
//   invoke_routes.cpp    /v1.0/invoke/... (a function supervisor)
//   metadata_routes.cpp  /metrics and /v1.0/metadata (the stats actor),
//                        PUT /v1.0/metadata/<key> (the API's own state)
// A route answers exactly once per request, with respond() or
// respond_error(), directly or from an actor's answer inside answering().
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

#include "core/acceptor.hpp"
#include "core/http_parser.hpp"
#include "core/json_text.hpp"
#include "core/probe.hpp"
#include "core/tls_context.hpp"
#include "http/http_api.hpp"

namespace hubflow::http {

using json = nlohmann::ordered_json;
using header_list = std::vector<std::pair<std::string, std::string>>;
using clock_type = std::chrono::steady_clock;

/// What bounds the API: the configurable part comes from http_config, the
/// rest is fixed (documented in docs/http-api.md#limits).
struct http_api_limits {
  http_limits parser;
  std::chrono::milliseconds request_timeout;
  std::chrono::milliseconds idle_timeout;
  std::size_t max_connections;
  /// Answers written and not yet taken by the client: above this, no
  /// further pipelined request of that client is answered or read.
  std::size_t max_unsent = 64 * 1024;
  /// Bytes of pipelined requests read ahead while a request is answered.
  std::size_t max_read_ahead = 64 * 1024;
  std::size_t max_json_depth = default_json_depth;
  /// Entries of one bulk publish (each is one request to the hub).
  std::size_t max_bulk_entries = 1000;
  /// PUT /v1.0/metadata/<key>: attributes kept, and bytes per key and value.
  std::size_t max_metadata_attributes = 64;
  std::size_t max_metadata_key_bytes = 256;
  std::size_t max_metadata_value_bytes = 4096;
};

/// An HTTPS connection's TLS session (http_server.cpp).
struct http_tls;

struct http_connection {
  explicit http_connection(http_limits limits);
  http_connection(http_connection&&) noexcept;
  ~http_connection();
  http_request_parser parser;
  /// HTTPS (http.certificate) only: what arrives is decrypted before the
  /// parser sees it, what is sent is encrypted.
  std::unique_ptr<http_tls> tls;
  bool busy = false;       // a request is being answered; later ones wait
  bool processing = false; // process_input is on the stack for it
  bool reading = true;     // CAF reads from the socket (halted otherwise)
  bool closing = false;    // closed once the socket took what is unsent
  std::uint64_t unsent = 0; // bytes written, not yet taken by the socket
  /// The first byte of the request now arriving (none between requests).
  std::optional<clock_type::time_point> request_started;
  /// Last byte received, answer written or output taken by the socket.
  clock_type::time_point last_activity = clock_type::now();
};

struct http_api_state {
  static inline const char* name = "hubflow.http_api";

  std::shared_ptr<const http_context> ctx;
  http_api_limits limits;
  std::map<caf::io::connection_handle, http_connection> connections;
  /// http.certificate: every connection speaks TLS (re-read on SIGHUP; a
  /// connection keeps the context it started with).
  tls_context_ptr tls;
  std::optional<tls_settings> certificate; // what `tls` is built from
  probe stats{"http", "api"};
  /// Attributes set with PUT /v1.0/metadata/<key>, shown under "extended"
  /// in GET /v1.0/metadata (bounded by limits; kept in memory, as Dapr's
  /// sidecar keeps them).
  std::map<std::string, std::string> extended;
  bool report_scheduled = false;
  bool sweep_scheduled = false;
  bool refusing = false; // at max_connections: logged once per episode
  /// Accepts on the listening socket (pauses at the descriptor limit
  /// instead of spinning, as CAF's doorman does).
  std::unique_ptr<acceptor> accepting;
};

using http_broker = caf::io::stateful_broker<http_api_state>;

/// Where and how to answer one request.
struct reply_to {
  caf::io::connection_handle hdl;
  bool keep_alive = true;
};

// -- answers (http_server.cpp) --------------------------------------------------

/// Answers the request `to` (once): counted, then the connection goes on
/// with its next pipelined request, or closes when `to` says so.
void respond(http_broker* self, const reply_to& to, int status,
             std::string_view content_type, std::string_view body,
             const header_list& headers = {});

/// Answers with Dapr's error JSON: {"errorCode": code, "message": message}.
void respond_error(http_broker* self, const reply_to& to, int status,
                   const std::string& code, const std::string& message,
                   const header_list& headers = {});

/// What a failed handler leaves behind.
enum class failure_scope {
  /// Nothing tied to a connection (timers, reports).
  none,
  /// One request: answer 500 and close if it is still unanswered.
  request,
  /// A connection's input handling: its state is unknown, so it is closed
  /// (with a 500 if a request is unanswered).
  connection,
};

/// A handler threw: count and log it, answer what is unanswered and go on.
void handler_failed(http_broker* self, failure_scope scope,
                    caf::io::connection_handle hdl, const char* what) noexcept;

/// Runs `f` so that nothing it throws ends the broker: one bad input must
/// not take the API down for everyone.
template <class F>
void contain(http_broker* self, failure_scope scope,
             caf::io::connection_handle hdl, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    handler_failed(self, scope, hdl, e.what());
  } catch (...) {
    handler_failed(self, scope, hdl, "unknown exception");
  }
}

/// contain() for code answering the request `to`.
template <class F>
void answering(http_broker* self, const reply_to& to, F&& f) noexcept {
  contain(self, failure_scope::request, to.hdl, std::forward<F>(f));
}

// -- requests (http_routes.cpp) -------------------------------------------------

/// Answers `req` through the route its method and path name (404 if none).
void route(http_broker* self, const reply_to& to, const http_request& req);

/// The decoded rest of `path` after its first `n` segments (MQTT topics and
/// keys keep their slashes, %2F included).
std::string path_rest(const std::string& path, size_t n);

/// The query parameter `name` of `req`, empty when absent.
std::string param(const http_request& req, const std::string& name);

/// The request body as JSON, bounded in depth; on failure a discarded
/// value and, in `error`, the message to answer 400 with.
json parse_body(http_broker* self, const http_request& req, std::string& error);

/// 405 naming the methods `req.path` allows.
void method_not_allowed(http_broker* self, const reply_to& to,
                        const http_request& req, const std::string& allow);

// -- routes ----------------------------------------------------------------------

/// POST /v1.0/state/<store>: save an array of items.
void state_save(http_broker* self, const reply_to& to, const http_request& req,
                const std::string& store_name);
/// GET /v1.0/state/<store>/<key>.
void state_get(http_broker* self, const reply_to& to,
               const std::string& store_name, const std::string& key);
/// POST /v1.0/state/<store>/transaction: upserts and deletes, all or none.
void state_transaction(http_broker* self, const reply_to& to,
                       const http_request& req, const std::string& store_name);
/// POST /v1.0/state/<store>/bulk: {"keys": [...]}.
void state_bulk_get(http_broker* self, const reply_to& to,
                    const http_request& req, const std::string& store_name);
/// DELETE /v1.0/state/<store>/<key>.
void state_delete(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& store_name,
                  const std::string& key);
/// POST /v1.0/publish/<hub>/<topic>.
void publish(http_broker* self, const reply_to& to, const http_request& req,
             const std::string& hub, const std::string& topic);
/// POST /v1.0-alpha1/publish/bulk/<hub>/<topic>: an array of entries, each
/// published as publish() does; 204, or 500 naming the failed entries.
void publish_bulk(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& hub,
                  const std::string& topic);
/// * /v1.0/invoke/<function>/method/<method>.
void invoke(http_broker* self, const reply_to& to, const http_request& req,
            const std::string& function, const std::string& method);
/// GET /metrics: the stats snapshot as Prometheus text.
void metrics(http_broker* self, const reply_to& to);
/// GET /v1.0/metadata.
void metadata(http_broker* self, const reply_to& to);
/// PUT /v1.0/metadata/<key>: the body becomes attribute `key` (204).
void metadata_set(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& key);

} // namespace hubflow::http
