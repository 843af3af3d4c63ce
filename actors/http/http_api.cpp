#include "http/http_api.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <set>

#include <sys/socket.h>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/json_text.hpp"
#include "core/acceptor.hpp"
#include "core/probe.hpp"
#include "core/type_ids.hpp"
#include "endpoints/redis/state_store.hpp"
#include "http/http_parser.hpp"
#include "http/prometheus.hpp"

#ifndef HUBFLOW_VERSION
#  define HUBFLOW_VERSION "unknown"
#endif

namespace hubflow {

namespace {

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
};

struct http_connection {
  explicit http_connection(http_limits limits) : parser(limits) {
  }
  http_request_parser parser;
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

using sweep_atom = caf::atom_constant<caf::atom("http_sweep")>;

struct http_api_state {
  static inline const char* name = "hubflow.http_api";

  std::shared_ptr<const http_context> ctx;
  http_api_limits limits;
  std::map<caf::io::connection_handle, http_connection> connections;
  probe stats{"http", "api"};
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

void process_input(http_broker* self, caf::io::connection_handle hdl);
void respond_error(http_broker* self, const reply_to& to, int status,
                   const std::string& code, const std::string& message,
                   const header_list& headers = {});

/// Checks connection deadlines while there are connections.
void schedule_sweep(http_broker* self) {
  auto& st = self->state;
  if (st.sweep_scheduled || st.connections.empty())
    return;
  st.sweep_scheduled = true;
  auto shortest = std::min(st.limits.request_timeout, st.limits.idle_timeout);
  auto every = std::clamp(shortest / 4, std::chrono::milliseconds(50),
                          std::chrono::milliseconds(1000));
  self->delayed_send(self, every, sweep_atom::value);
}

void touch_stats(http_broker* self) {
  auto& st = self->state;
  st.stats.set("connections", static_cast<std::int64_t>(st.connections.size()));
  if (!st.report_scheduled) {
    st.report_scheduled = true;
    self->delayed_send(self, std::chrono::milliseconds(500), tick_atom::value);
  }
}

void forget(http_broker* self, caf::io::connection_handle hdl) {
  self->state.connections.erase(hdl);
  touch_stats(self);
}

/// Closes once the client took its answers. CAF's own close() would also
/// wait for that, but for ever and outside max_connections, so the
/// connection stays here (counted, under the idle deadline) until then.
void close_connection(http_broker* self, caf::io::connection_handle hdl) {
  auto i = self->state.connections.find(hdl);
  if (i == self->state.connections.end())
    return;
  if (i->second.unsent > 0) {
    i->second.closing = true;
    self->halt(hdl);
    i->second.reading = false;
    return;
  }
  self->close(hdl);
  forget(self, hdl);
}

/// Closes at once, dropping what is unsent: for a client that stopped
/// reading. shutdown() makes CAF see the socket fail and release it, where
/// close() alone would keep the unsent bytes until the client reads.
void abort_connection(http_broker* self, caf::io::connection_handle hdl) {
  ::shutdown(static_cast<int>(hdl.id()), SHUT_RDWR);
  self->close(hdl);
  forget(self, hdl);
}

// -- flow control ----------------------------------------------------------------

/// The client has not taken enough of its answers to be given more.
bool output_blocked(http_broker* self, const http_connection& conn) {
  return conn.unsent > self->state.limits.max_unsent;
}

/// Reads from a connection only while what it sends can be used: not while
/// its answers pile up unsent (a client that does not read), nor beyond a
/// bounded read-ahead while one of its requests is being answered. TCP then
/// pushes back on the client instead of hubflow buffering for it.
void update_reading(http_broker* self, caf::io::connection_handle hdl) {
  auto i = self->state.connections.find(hdl);
  if (i == self->state.connections.end())
    return;
  auto& conn = i->second;
  bool want = !conn.closing && !output_blocked(self, conn)
              && !(conn.busy
                   && conn.parser.buffered()
                        >= self->state.limits.max_read_ahead);
  if (want == conn.reading)
    return;
  conn.reading = want;
  if (want) {
    self->trigger(hdl);
  } else {
    self->halt(hdl);
    self->state.stats.add("reads_paused");
  }
}

/// Writes and counts bytes CAF holds until the socket takes them.
void send_bytes(http_broker* self, caf::io::connection_handle hdl,
                http_connection& conn, std::string_view bytes) {
  self->write(hdl, bytes.size(), bytes.data());
  self->flush(hdl);
  conn.unsent += bytes.size();
  conn.last_activity = clock_type::now();
}

// -- answers ---------------------------------------------------------------------

void respond(http_broker* self, const reply_to& to, int status,
             std::string_view content_type, std::string_view body,
             const header_list& headers = {}) {
  auto& st = self->state;
  auto i = st.connections.find(to.hdl);
  if (i == st.connections.end() || i->second.closing)
    return; // the client left before its answer was ready
  auto bytes = make_http_response(status, content_type, body, to.keep_alive,
                                  headers);
  send_bytes(self, to.hdl, i->second, bytes);
  st.stats.add(status < 300 ? "responses_2xx"
                            : status < 500 ? "responses_4xx" : "responses_5xx");
  touch_stats(self);
  if (!to.keep_alive) {
    close_connection(self, to.hdl);
    return;
  }
  i->second.busy = false;
  // Answered asynchronously: go on with pipelined requests in the buffer.
  // (Answered synchronously, the loop in process_input goes on by itself.)
  if (!i->second.processing) {
    process_input(self, to.hdl);
    update_reading(self, to.hdl);
  }
}

void respond_error(http_broker* self, const reply_to& to, int status,
                   const std::string& code, const std::string& message,
                   const header_list& headers) {
  json doc{{"errorCode", code}, {"message", message}};
  respond(self, to, status, "application/json", dump_json(doc), headers);
}

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
                    caf::io::connection_handle hdl, const char* what) noexcept {
  try {
    auto& st = self->state;
    st.stats.add("handler_errors");
    touch_stats(self);
    spdlog::error("HTTP API: a handler failed: {}", what);
    if (scope == failure_scope::none)
      return;
    auto i = st.connections.find(hdl);
    if (i == st.connections.end())
      return;
    if (i->second.busy)
      respond_error(self, reply_to{hdl, false}, 500, "ERR_INTERNAL",
                    std::string{"internal error: "} + what);
    else if (scope == failure_scope::connection)
      close_connection(self, hdl);
  } catch (...) {
    // Nothing left to do but keep the broker alive.
  }
}

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

// -- helpers ------------------------------------------------------------------

/// The decoded rest of `path` after its first `n` segments (MQTT topics and
/// keys keep their slashes, %2F included).
std::string path_rest(const std::string& path, size_t n) {
  size_t pos = 0;
  for (size_t seg = 0; seg < n && pos < path.size(); ++seg) {
    while (pos < path.size() && path[pos] == '/')
      ++pos;
    while (pos < path.size() && path[pos] != '/')
      ++pos;
  }
  if (pos < path.size() && path[pos] == '/')
    ++pos;
  return percent_decode(std::string_view{path}.substr(pos));
}

std::string param(const http_request& req, const std::string& name) {
  for (auto& [k, v] : req.query_params())
    if (k == name)
      return v;
  return {};
}

/// Why text of `req` that handlers use (names, keys, topics, parameters,
/// etags) cannot be used: it must be UTF-8 to reach MQTT topics, Redis keys
/// and JSON answers. Empty when all is well.
std::string invalid_text(const http_request& req) {
  if (!is_valid_utf8(percent_decode(req.path)))
    return "path is not valid UTF-8";
  for (auto& [k, v] : req.query_params())
    if (!is_valid_utf8(k) || !is_valid_utf8(v))
      return "query is not valid UTF-8";
  static constexpr std::pair<const char*, const char*> used_headers[] = {
    {"if-match", "If-Match"},
    {"content-type", "Content-Type"},
    {"x-mqtt-qos", "X-MQTT-QoS"},
    {"x-mqtt-retain", "X-MQTT-Retain"},
  };
  for (auto [lower, name] : used_headers)
    if (auto h = req.header(lower); h && !is_valid_utf8(*h))
      return std::string{"header "} + name + " is not valid UTF-8";
  return {};
}

/// An etag as sent in If-Match: quotes and a weak prefix removed.
std::string unquote_etag(std::string etag) {
  if (etag.rfind("W/", 0) == 0)
    etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  return etag;
}

bool parse_concurrency(const std::string& text, state_concurrency& out) {
  if (text.empty())
    out = state_concurrency::unspecified;
  else if (text == "first-write")
    out = state_concurrency::first_write;
  else if (text == "last-write")
    out = state_concurrency::last_write;
  else
    return false;
  return true;
}

/// HTTP status for a state store failure (documented in docs/http-api.md).
int state_status(const caf::error& err) {
  switch (state_error_code(err)) {
    case state_errc::etag_mismatch:
      return 409;
    case state_errc::etag_invalid:
    case state_errc::bad_request:
      return 400;
    case state_errc::unavailable:
      return 503;
    default:
      return 500;
  }
}

const http_state_store* find_store(http_broker* self, const reply_to& to,
                                   const std::string& name) {
  auto& stores = self->state.ctx->state_stores;
  auto i = stores.find(name);
  if (i != stores.end() && i->second.actor)
    return &i->second;
  respond_error(self, to, 400, "ERR_STATE_STORE_NOT_FOUND",
                "state store " + name + " is not found");
  return nullptr;
}

/// A request body as JSON, bounded in depth; on failure the message to
/// answer with 400.
json parse_body(http_broker* self, const http_request& req,
                std::string& error) {
  std::string why;
  auto doc = parse_json_bounded(req.body, self->state.limits.max_json_depth,
                                &why);
  if (doc.is_discarded())
    error = why.rfind("JSON nested", 0) == 0
              ? "failed deserializing HTTP body: " + why
              : "failed deserializing HTTP body: not valid JSON (" + why + ")";
  return doc;
}

/// The string member `name` of `obj` into `out`; false if it is there but
/// not a string.
bool string_member(const json& obj, const char* name, std::string& out) {
  auto i = obj.find(name);
  if (i == obj.end() || i->is_null())
    return true;
  if (!i->is_string())
    return false;
  out = i->get<std::string>();
  return true;
}

// -- state --------------------------------------------------------------------

/// Reads Dapr's save body: [{key, value, etag?, options?, metadata?}].
std::string read_save_items(const json& doc, std::vector<state_item>& items) {
  if (!doc.is_array())
    return "the body must be a JSON array of {key, value} objects";
  for (size_t i = 0; i < doc.size(); ++i) {
    auto& x = doc[i];
    auto where = "item " + std::to_string(i) + ": ";
    if (!x.is_object())
      return where + "not an object";
    auto key = x.find("key");
    if (key == x.end() || !key->is_string() || key->get<std::string>().empty())
      return where + "\"key\" must be a non-empty string";
    state_item item;
    item.key = key->get<std::string>();
    auto value = x.find("value");
    item.value = value == x.end() ? "null" : dump_json(*value);
    if (auto etag = x.find("etag"); etag != x.end() && !etag->is_null()) {
      if (etag->is_string())
        item.etag = unquote_etag(etag->get<std::string>());
      else if (etag->is_number_integer())
        item.etag = dump_json(*etag);
      else
        return where + "\"etag\" must be a string";
    }
    if (auto opts = x.find("options"); opts != x.end() && opts->is_object()) {
      std::string c;
      if (!string_member(*opts, "concurrency", c))
        return where + "options.concurrency must be a string";
      if (!parse_concurrency(c, item.concurrency))
        return where + "options.concurrency must be first-write or "
                       "last-write, not '" + c + "'";
      std::string consistency;
      if (!string_member(*opts, "consistency", consistency)
          || (!consistency.empty() && consistency != "eventual"
              && consistency != "strong"))
        return where + "options.consistency must be eventual or strong";
    }
    if (auto meta = x.find("metadata"); meta != x.end() && meta->is_object()) {
      if (auto ttl = meta->find("ttlInSeconds"); ttl != meta->end()) {
        try {
          item.ttl_seconds = ttl->is_string() ? std::stoll(ttl->get<std::string>())
                                              : ttl->get<std::int64_t>();
        } catch (...) {
          return where + "metadata.ttlInSeconds must be an integer";
        }
      }
    }
    items.push_back(std::move(item));
  }
  return {};
}

void state_save(http_broker* self, const reply_to& to, const http_request& req,
                const std::string& store_name) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  std::string error;
  auto doc = parse_body(self, req, error);
  std::vector<state_item> items;
  if (error.empty())
    error = read_save_items(doc, items);
  if (!error.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", error);
  self->request(store->actor, self->state.ctx->request_timeout,
                state_save_atom::value, std::move(items))
    .then(
      [=](ok_atom) {
        answering(self, to, [&] { respond(self, to, 204, "", ""); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_SAVE",
                        "failed saving state in state store " + store_name
                          + ": " + error_text(err));
        });
      });
}

void state_get(http_broker* self, const reply_to& to, const std::string& store_name,
               const std::string& key) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  self->request(store->actor, self->state.ctx->request_timeout,
                state_get_atom::value, std::vector<std::string>{key})
    .then(
      [=](std::vector<state_entry>& entries) {
        answering(self, to, [&] {
          if (entries.empty() || !entries[0].found)
            return respond(self, to, 204, "", "");
          respond(self, to, 200, "application/json", entries[0].value,
                  {{"ETag", entries[0].etag}});
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_GET",
                        "failed getting state with key " + key
                          + " from state store " + store_name + ": "
                          + error_text(err));
        });
      });
}

void state_bulk_get(http_broker* self, const reply_to& to,
                    const http_request& req, const std::string& store_name) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  std::string error;
  auto doc = parse_body(self, req, error);
  if (!error.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", error);
  std::vector<std::string> keys;
  bool valid = doc.is_object() && doc.contains("keys") && doc["keys"].is_array();
  if (valid)
    for (auto& k : doc["keys"]) {
      if (!k.is_string()) {
        valid = false;
        break;
      }
      keys.push_back(k.get<std::string>());
    }
  if (!valid)
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "the body must be {\"keys\": [\"key\", ...]}");
  auto depth = self->state.limits.max_json_depth;
  self->request(store->actor, self->state.ctx->request_timeout,
                state_get_atom::value, std::move(keys))
    .then(
      [=](std::vector<state_entry>& entries) {
        answering(self, to, [&] {
          json out = json::array();
          for (auto& e : entries) {
            json item{{"key", e.key}};
            if (e.found) {
              // Values are stored as JSON text; anything else written into
              // Redis by other tools (or nested too deep to embed) comes
              // back as a string.
              auto data = parse_json_bounded(e.value, depth);
              item["data"] = data.is_discarded() ? json(e.value) : data;
              item["etag"] = e.etag;
            }
            out.push_back(std::move(item));
          }
          respond(self, to, 200, "application/json", dump_json(out));
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_BULK_GET",
                        "failed getting state from state store " + store_name
                          + ": " + error_text(err));
        });
      });
}

void state_delete(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& store_name,
                  const std::string& key) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  state_item item;
  item.key = key;
  if (auto etag = req.header("if-match"))
    item.etag = unquote_etag(*etag);
  auto c = param(req, "concurrency");
  if (!parse_concurrency(c, item.concurrency))
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "concurrency must be first-write or last-write, not '"
                           + c + "'");
  self->request(store->actor, self->state.ctx->request_timeout,
                state_delete_atom::value, std::move(item))
    .then(
      [=](ok_atom) {
        answering(self, to, [&] { respond(self, to, 204, "", ""); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_DELETE",
                        "failed deleting state with key " + key
                          + " from state store " + store_name + ": "
                          + error_text(err));
        });
      });
}

// -- publish and invoke ---------------------------------------------------------

void publish(http_broker* self, const reply_to& to, const http_request& req,
             const std::string& hub, const std::string& topic) {
  auto& ctx = *self->state.ctx;
  if (hub != ctx.hub_name || !ctx.hub)
    return respond_error(self, to, 404, "ERR_PUBSUB_NOT_FOUND",
                         "pubsub " + hub + " is not found (the hub is named '"
                           + ctx.hub_name + "')");
  if (topic.empty())
    return respond_error(self, to, 404, "ERR_TOPIC_NAME_EMPTY",
                         "topic is empty in pubsub " + hub);
  if (topic.find_first_of("+#") != std::string::npos)
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "topic '" + topic
                           + "' contains a wildcard (+ or #); publish to a "
                             "concrete topic");
  if (topic.find('\0') != std::string::npos)
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "topic contains U+0000 (%00), which MQTT forbids");
  message msg;
  msg.topic = topic;
  msg.body = payload{req.body};
  msg.origin = "http";
  auto qos_text = param(req, "qos");
  if (auto h = req.header("x-mqtt-qos"); h && qos_text.empty())
    qos_text = *h;
  if (!qos_text.empty()) {
    if (qos_text != "0" && qos_text != "1" && qos_text != "2")
      return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                           "qos must be 0, 1 or 2, not '" + qos_text + "'");
    msg.qos = static_cast<std::uint8_t>(qos_text[0] - '0');
  }
  auto retain = param(req, "retain");
  if (auto h = req.header("x-mqtt-retain"); h && retain.empty())
    retain = *h;
  if (!retain.empty() && retain != "true" && retain != "false"
      && retain != "1" && retain != "0")
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "retain must be true or false, not '" + retain + "'");
  msg.retain = retain == "true" || retain == "1";
  if (auto ct = req.header("content-type")) {
    msg.properties.content_type = *ct;
  }
  auto ttl = param(req, "metadata.ttlInSeconds");
  if (!ttl.empty()) {
    try {
      msg.properties.message_expiry = static_cast<std::uint32_t>(std::stoul(ttl));
      msg.properties.has_message_expiry = true;
    } catch (...) {
      return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                           "metadata.ttlInSeconds must be a number");
    }
  }
  self->request(ctx.hub, ctx.request_timeout, publish_atom::value, std::move(msg))
    .then(
      [=](ok_atom) {
        answering(self, to, [&] { respond(self, to, 204, "", ""); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, 500, "ERR_PUBSUB_PUBLISH_MESSAGE",
                        "error when publishing to topic " + topic
                          + " in pubsub " + hub + ": " + error_text(err));
        });
      });
}

void invoke(http_broker* self, const reply_to& to, const http_request& req,
            const std::string& function, const std::string& method) {
  auto& ctx = *self->state.ctx;
  auto i = ctx.functions.find(function);
  if (i == ctx.functions.end() || !i->second)
    return respond_error(self, to, 404, "ERR_FUNCTION_NOT_FOUND",
                         "function " + function + " is not found");
  message msg;
  msg.topic = method;
  msg.body = payload{req.body};
  msg.origin = "http";
  if (auto ct = req.header("content-type"))
    msg.properties.content_type = *ct;
  msg.properties.user_properties.emplace_back("http-method", req.method);
  auto function_error = [=](int status, const char* code,
                            const function_result& result) {
    json doc{{"errorCode", code},
             {"message", result.error_message},
             {"errorType", result.error_type}};
    respond(self, to, status, "application/json", dump_json(doc));
  };
  self->request(i->second, ctx.invoke_timeout, invoke_atom::value, std::move(msg))
    .then(
      [=](function_result& result) {
        answering(self, to, [&] {
          using outcome = function_result::outcome;
          switch (result.status) {
            case outcome::output: {
              auto body = result.output.str();
              // accept() checks without building a document.
              bool is_json = json::accept(body);
              return respond(self, to, 200,
                             is_json ? "application/json"
                                     : "application/octet-stream",
                             body);
            }
            case outcome::nothing:
              return respond(self, to, 204, "", "");
            case outcome::handler_error:
              return function_error(500, "ERR_FUNCTION_HANDLER", result);
            default:
              return function_error(503, "ERR_FUNCTION_UNAVAILABLE", result);
          }
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, 503, "ERR_FUNCTION_UNAVAILABLE",
                        "invoking function " + function + " failed: "
                          + error_text(err));
        });
      });
}

// -- metrics, metadata ---------------------------------------------------------

void with_stats(http_broker* self, const reply_to& to,
                std::function<void(const std::string&)> then) {
  auto& ctx = *self->state.ctx;
  if (!ctx.stats)
    return respond_error(self, to, 503, "ERR_STATS_UNAVAILABLE",
                         "no stats actor is running");
  self->request(ctx.stats, ctx.request_timeout, get_atom::value)
    .then(
      [=](const std::string& snapshot) {
        answering(self, to, [&] { then(snapshot); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, 503, "ERR_STATS_UNAVAILABLE",
                        "the stats actor did not answer: " + error_text(err));
        });
      });
}

// -- routing -------------------------------------------------------------------

void method_not_allowed(http_broker* self, const reply_to& to,
                        const http_request& req, const std::string& allow) {
  respond_error(self, to, 405, "ERR_METHOD_NOT_ALLOWED",
                req.method + " is not allowed on " + req.path + " (allowed: "
                  + allow + ")",
                {{"Allow", allow}});
}

void route(http_broker* self, const reply_to& to, const http_request& req) {
  self->state.stats.add("requests");
  // Names, keys and topics become MQTT topics, Redis keys and text in JSON
  // answers: all must be UTF-8, so anything else is refused here, once.
  if (auto why = invalid_text(req); !why.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", why);
  auto seg = req.segments();
  const auto& m = req.method;
  auto only = [&](const char* allowed) {
    if (m == allowed)
      return true;
    method_not_allowed(self, to, req, allowed);
    return false;
  };
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (only("GET"))
      with_stats(self, to, [=](const std::string& snapshot) {
        std::string text;
        try {
          text = stats_to_prometheus(snapshot);
        } catch (const std::exception& e) {
          return respond_error(self, to, 500, "ERR_STATS_UNAVAILABLE",
                               e.what());
        }
        respond(self, to, 200, "text/plain; version=0.0.4; charset=utf-8",
                text);
      });
    return;
  }
  if (seg.size() >= 2 && seg[0] == "v1.0") {
    const auto& area = seg[1];
    if (area == "healthz" && seg.size() == 2) {
      if (only("GET"))
        respond(self, to, 204, "", "");
      return;
    }
    if (area == "metadata" && seg.size() == 2) {
      if (only("GET")) {
        auto ctx = self->state.ctx;
        with_stats(self, to, [=](const std::string& snapshot) {
          respond(self, to, 200, "application/json",
                  http_metadata_json(snapshot, *ctx));
        });
      }
      return;
    }
    if (area == "state" && seg.size() >= 3) {
      const auto& store = seg[2];
      if (seg.size() == 3) {
        if (only("POST"))
          state_save(self, to, req, store);
        return;
      }
      if (seg.size() == 4 && seg[3] == "bulk" && m == "POST")
        return state_bulk_get(self, to, req, store);
      auto key = path_rest(req.path, 3);
      if (m == "GET")
        return state_get(self, to, store, key);
      if (m == "DELETE")
        return state_delete(self, to, req, store, key);
      return method_not_allowed(self, to, req, "GET, DELETE");
    }
    if (area == "publish" && seg.size() >= 3) {
      if (only("POST"))
        publish(self, to, req, seg[2], path_rest(req.path, 3));
      return;
    }
    if (area == "invoke" && seg.size() >= 5 && seg[3] == "method")
      return invoke(self, to, req, seg[2], path_rest(req.path, 4));
  }
  respond_error(self, to, 404, "ERR_NOT_FOUND",
                "no route for " + m + " " + req.path);
}

/// Answers the complete requests buffered for `hdl`, in order, one at a
/// time, while the client takes its answers.
void process_input(http_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  auto i = st.connections.find(hdl);
  if (i == st.connections.end() || i->second.busy || i->second.processing
      || i->second.closing)
    return;
  i->second.processing = true;
  // A loop, not recursion: a client may pipeline many small requests.
  for (;;) {
    auto& conn = i->second;
    if (output_blocked(self, conn))
      break; // resumed when the socket took enough (data_transferred_msg)
    auto& parser = conn.parser;
    auto status = parser.parse();
    if (status == http_request_parser::status::incomplete) {
      if (parser.wants_continue()) {
        static constexpr std::string_view go_on
          = "HTTP/1.1 100 Continue\r\n\r\n";
        send_bytes(self, hdl, conn, go_on);
        parser.continue_sent();
      }
      break;
    }
    conn.busy = true;
    if (status == http_request_parser::status::error) {
      // After a framing error the rest of the stream cannot be trusted:
      // answer and close.
      reply_to to{hdl, false};
      auto code = parser.error_status() == 413   ? "ERR_BODY_TOO_LARGE"
                  : parser.error_status() == 431 ? "ERR_HEADERS_TOO_LARGE"
                                                 : "ERR_MALFORMED_REQUEST";
      respond_error(self, to, parser.error_status(), code,
                    parser.error_message());
      return; // the connection is gone
    }
    auto req = parser.take();
    conn.request_started.reset();
    reply_to to{hdl, req.keep_alive};
    answering(self, to, [&] { route(self, to, req); });
    i = st.connections.find(hdl);
    if (i == st.connections.end() || i->second.closing)
      return; // answered with Connection: close
    if (i->second.busy)
      break; // waiting for an actor's answer
  }
  auto& conn = i->second;
  conn.processing = false;
  // The request deadline runs from the first byte of a request.
  if (!conn.parser.mid_request())
    conn.request_started.reset();
  else if (!conn.request_started)
    conn.request_started = clock_type::now();
}

/// Above max_connections: 503, then close, so the client knows why.
void refuse(http_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  st.stats.add("connections_refused");
  if (!st.refusing) {
    st.refusing = true;
    spdlog::warn("HTTP API: {} connections open (http.max_connections); "
                 "refusing new ones with 503 until some close",
                 st.connections.size());
  }
  json doc{{"errorCode", "ERR_TOO_MANY_CONNECTIONS"},
           {"message", "the HTTP API has " + std::to_string(st.connections.size())
                         + " connections open, its limit"}};
  auto bytes = make_http_response(503, "application/json", dump_json(doc),
                                  false, {{"Retry-After", "1"}});
  self->write(hdl, bytes.size(), bytes.data());
  self->flush(hdl);
  self->close(hdl);
  touch_stats(self);
}

/// Closes connections past their deadline: a request that takes longer than
/// request_timeout to arrive (408), a connection quiet for idle_timeout.
void sweep(http_broker* self) {
  auto& st = self->state;
  auto now = clock_type::now();
  std::vector<caf::io::connection_handle> late, quiet;
  for (auto& [hdl, conn] : st.connections) {
    if (conn.busy)
      continue; // its actor request has a timeout of its own
    // While a client does not take its answers, hubflow stops reading its
    // requests, so only the idle deadline applies to it.
    bool blocked = output_blocked(self, conn) || conn.closing;
    if (!blocked && conn.request_started
        && now - *conn.request_started > st.limits.request_timeout)
      late.push_back(hdl);
    else if ((blocked || !conn.request_started)
             && now - conn.last_activity > st.limits.idle_timeout)
      quiet.push_back(hdl);
  }
  for (auto hdl : late) {
    st.stats.add("requests_timed_out");
    respond_error(self, reply_to{hdl, false}, 408, "ERR_REQUEST_TIMEOUT",
                  "the request did not arrive within "
                    + std::to_string(st.limits.request_timeout.count())
                    + " ms (http.request_timeout)");
  }
  for (auto hdl : quiet) {
    auto i = st.connections.find(hdl);
    if (i->second.unsent > 0) {
      // Its answers would never be taken: drop them.
      st.stats.add("connections_stalled_closed");
      abort_connection(self, hdl);
    } else {
      st.stats.add("connections_idle_closed");
      close_connection(self, hdl);
    }
  }
}

caf::behavior http_api(http_broker* self, int listener,
                       std::shared_ptr<const http_context> ctx,
                       http_api_limits limits) {
  self->state.accepting = std::make_unique<acceptor>(
    "http", std::vector<int>{listener}, self->address());
  self->state.ctx = std::move(ctx);
  self->state.limits = limits;
  touch_stats(self);
  return {
    // The keeper replaced the hub or an endpoint (core/keeper.hpp).
    [=](rewire_atom, const caf::actor& old, const caf::actor& replacement) {
      auto next = std::make_shared<http_context>(*self->state.ctx);
      next->replace(old, replacement);
      self->state.ctx = std::move(next);
    },
    [=](accepted_atom, int fd) {
      auto hdl = self->add_scribe(fd);
      contain(self, failure_scope::connection, hdl, [&] {
        auto& st = self->state;
        if (st.connections.size() >= st.limits.max_connections)
          return refuse(self, hdl);
        st.refusing = false;
        self->configure_read(hdl,
                             caf::io::receive_policy::at_most(8192));
        // Reports what the socket took, so unsent output can be bounded.
        self->ack_writes(hdl, true);
        st.connections.emplace(hdl, http_connection{st.limits.parser});
        st.stats.add("connections_accepted");
        touch_stats(self);
        schedule_sweep(self);
      });
    },
    [=](const caf::io::new_data_msg& msg) {
      contain(self, failure_scope::connection, msg.handle, [&] {
        auto i = self->state.connections.find(msg.handle);
        if (i == self->state.connections.end() || i->second.closing)
          return;
        auto& conn = i->second;
        auto now = clock_type::now();
        conn.last_activity = now;
        if (!conn.request_started && !conn.parser.mid_request())
          conn.request_started = now; // the first byte of a request
        conn.parser.feed(std::string_view{msg.buf.data(), msg.buf.size()});
        process_input(self, msg.handle);
        update_reading(self, msg.handle);
      });
    },
    [=](const caf::io::data_transferred_msg& msg) {
      contain(self, failure_scope::connection, msg.handle, [&] {
        auto i = self->state.connections.find(msg.handle);
        if (i == self->state.connections.end())
          return;
        auto& conn = i->second;
        bool was_blocked = output_blocked(self, conn);
        conn.unsent = conn.unsent > msg.written ? conn.unsent - msg.written : 0;
        auto now = clock_type::now();
        conn.last_activity = now;
        if (conn.closing) {
          if (conn.unsent == 0)
            close_connection(self, msg.handle);
          return;
        }
        if (was_blocked && !output_blocked(self, conn)) {
          // The client reads again: its next request's deadline starts now.
          if (conn.request_started)
            conn.request_started = now;
          process_input(self, msg.handle);
        }
        update_reading(self, msg.handle);
      });
    },
    [=](const caf::io::connection_closed_msg& msg) {
      contain(self, failure_scope::none, msg.handle, [&] {
        self->state.connections.erase(msg.handle);
        touch_stats(self);
      });
    },
    [=](tick_atom) {
      self->state.report_scheduled = false;
      contain(self, failure_scope::none, {},
              [&] { self->state.stats.report(self); });
    },
    [=](sweep_atom) {
      self->state.sweep_scheduled = false;
      contain(self, failure_scope::none, {}, [&] {
        sweep(self);
        touch_stats(self);
      });
      contain(self, failure_scope::none, {}, [&] { schedule_sweep(self); });
    },
  };
}

std::pair<std::string, int> split_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos)
    return {"", -1};
  auto host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    size_t used = 0;
    auto port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || port < 0 || port > 65535)
      return {"", -1};
    return {host, port};
  } catch (...) {
    return {"", -1};
  }
}

} // namespace

void http_context::replace(const caf::actor& old,
                           const caf::actor& replacement) {
  if (hub == old)
    hub = replacement;
  for (auto& [name, function] : functions)
    if (function == old)
      function = replacement;
  for (auto& [name, store] : state_stores)
    if (store.actor == old)
      store.actor = replacement;
}

std::string http_metadata_json(const std::string& stats_json,
                               const http_context& ctx) {
  auto stats = parse_json_bounded(stats_json);
  json rules = json::array(), functions = json::array(),
       endpoints = json::array(), components = json::array();
  std::map<std::string, json> function_stats;
  if (stats.is_object() && stats.contains("components")
      && stats["components"].is_array()) {
    for (auto& c : stats["components"]) {
      auto kind = c.value("kind", "");
      auto name = c.value("name", "");
      auto counters = c.value("counters", json::object());
      auto labels = c.value("labels", json::object());
      if (kind == "rule") {
        rules.push_back({{"name", name}, {"counters", counters}, {"labels", labels}});
      } else if (kind == "function") {
        function_stats[name] = c;
      } else if (kind == "endpoint") {
        endpoints.push_back({{"name", name},
                             {"type", labels.value("type", "")},
                             {"state", labels.value("state", "")},
                             {"counters", counters},
                             {"labels", labels}});
      }
    }
  }
  // Functions the API can invoke, with what the stats know about them.
  std::set<std::string> names;
  for (auto& [name, actor] : ctx.functions)
    names.insert(name);
  for (auto& [name, c] : function_stats)
    names.insert(name);
  for (auto& name : names) {
    json f{{"name", name}};
    auto i = function_stats.find(name);
    auto counters = i == function_stats.end()
                      ? json::object()
                      : i->second.value("counters", json::object());
    f["instances"] = counters.value("instances", 0);
    f["invocable"] = ctx.functions.count(name) > 0;
    f["counters"] = counters;
    functions.push_back(std::move(f));
  }
  for (auto& [name, store] : ctx.state_stores)
    components.push_back(
      {{"name", name}, {"type", "state." + store.type}, {"version", "v1"}});
  json doc{{"id", "hubflow"},
           {"runtimeVersion", HUBFLOW_VERSION},
           {"hub", ctx.hub_name},
           {"components", components},
           {"rules", rules},
           {"functions", functions},
           {"endpoints", endpoints}};
  return dump_json(doc);
}

caf::actor spawn_http_api(caf::actor_system& sys, const http_config& cfg,
                          const http_context& ctx, std::string& error,
                          std::uint16_t* bound_port) {
  auto [host, port] = split_listen(cfg.listen);
  if (port < 0) {
    error = "http.listen: '" + cfg.listen + "' is not host:port";
    return {};
  }
  // Bound here, on the caller's thread, so a busy port is reported at once.
  std::uint16_t bound = 0;
  auto listener = open_listener(host, static_cast<std::uint16_t>(port), bound,
                                error);
  if (listener < 0) {
    error = "http.listen: " + error;
    return {};
  }
  if (bound_port)
    *bound_port = bound;
  http_api_limits limits;
  limits.parser.max_body_bytes = cfg.max_body;
  limits.request_timeout = cfg.request_timeout;
  limits.idle_timeout = cfg.idle_timeout;
  limits.max_connections = cfg.max_connections;
  return sys.middleman().spawn_broker(http_api, listener,
                         std::make_shared<const http_context>(ctx), limits);
}

} // namespace hubflow
