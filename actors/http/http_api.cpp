#include "http/http_api.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <nlohmann/json.hpp>

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

struct http_connection {
  explicit http_connection(http_limits limits) : parser(limits) {
  }
  http_request_parser parser;
  bool busy = false;       // a request is being answered; later ones wait
  bool processing = false; // process_input is on the stack for it
  std::chrono::steady_clock::time_point last_seen
    = std::chrono::steady_clock::now();
};

using sweep_atom = caf::atom_constant<caf::atom("http_sweep")>;

struct http_api_state {
  static inline const char* name = "hubflow.http_api";

  std::shared_ptr<const http_context> ctx;
  http_limits limits;
  std::map<caf::io::connection_handle, http_connection> connections;
  probe stats{"http", "api"};
  bool report_scheduled = false;
  bool sweep_scheduled = false;
};

using http_broker = caf::io::stateful_broker<http_api_state>;

/// Where and how to answer one request.
struct reply_to {
  caf::io::connection_handle hdl;
  bool keep_alive = true;
};

void process_input(http_broker* self, caf::io::connection_handle hdl);

/// Checks for idle connections while there are any.
void schedule_sweep(http_broker* self) {
  auto& st = self->state;
  if (st.sweep_scheduled || st.connections.empty())
    return;
  st.sweep_scheduled = true;
  auto every = std::max(st.ctx->idle_timeout / 2, std::chrono::milliseconds(50));
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

void respond(http_broker* self, const reply_to& to, int status,
             std::string_view content_type, std::string_view body,
             const header_list& headers = {}) {
  auto& st = self->state;
  auto i = st.connections.find(to.hdl);
  if (i == st.connections.end())
    return; // the client left before its answer was ready
  auto bytes = make_http_response(status, content_type, body, to.keep_alive,
                                  headers);
  self->write(to.hdl, bytes.size(), bytes.data());
  self->flush(to.hdl);
  st.stats.add(status < 300 ? "responses_2xx"
                            : status < 500 ? "responses_4xx" : "responses_5xx");
  touch_stats(self);
  if (!to.keep_alive) {
    self->close(to.hdl); // unwritten data is still sent
    st.connections.erase(i);
    return;
  }
  i->second.busy = false;
  i->second.last_seen = std::chrono::steady_clock::now();
  // Answered asynchronously: go on with pipelined requests in the buffer.
  // (Answered synchronously, the loop in process_input goes on by itself.)
  if (!i->second.processing)
    process_input(self, to.hdl);
}

void respond_error(http_broker* self, const reply_to& to, int status,
                   const std::string& code, const std::string& message,
                   const header_list& headers = {}) {
  json doc{{"errorCode", code}, {"message", message}};
  respond(self, to, status, "application/json", doc.dump(), headers);
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

// -- state --------------------------------------------------------------------

/// Reads Dapr's save body: [{key, value, etag?, options?, metadata?}].
std::string parse_save_items(const std::string& body,
                             std::vector<state_item>& items) {
  auto doc = json::parse(body, nullptr, false);
  if (doc.is_discarded())
    return "failed deserializing HTTP body: not valid JSON";
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
    item.value = value == x.end() ? "null" : value->dump();
    if (auto etag = x.find("etag"); etag != x.end() && !etag->is_null()) {
      if (etag->is_string())
        item.etag = unquote_etag(etag->get<std::string>());
      else if (etag->is_number_integer())
        item.etag = etag->dump();
      else
        return where + "\"etag\" must be a string";
    }
    if (auto opts = x.find("options"); opts != x.end() && opts->is_object()) {
      auto c = opts->value("concurrency", std::string{});
      if (!parse_concurrency(c, item.concurrency))
        return where + "options.concurrency must be first-write or "
                       "last-write, not '" + c + "'";
      auto consistency = opts->value("consistency", std::string{});
      if (!consistency.empty() && consistency != "eventual"
          && consistency != "strong")
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
  std::vector<state_item> items;
  if (auto err = parse_save_items(req.body, items); !err.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", err);
  self->request(store->actor, self->state.ctx->request_timeout,
                state_save_atom::value, std::move(items))
    .then([=](ok_atom) { respond(self, to, 204, "", ""); },
          [=](caf::error& err) {
            respond_error(self, to, state_status(err), "ERR_STATE_SAVE",
                          "failed saving state in state store " + store_name
                            + ": " + error_text(err));
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
        if (entries.empty() || !entries[0].found)
          return respond(self, to, 204, "", "");
        respond(self, to, 200, "application/json", entries[0].value,
                {{"ETag", entries[0].etag}});
      },
      [=](caf::error& err) {
        respond_error(self, to, state_status(err), "ERR_STATE_GET",
                      "failed getting state with key " + key
                        + " from state store " + store_name + ": "
                        + error_text(err));
      });
}

void state_bulk_get(http_broker* self, const reply_to& to,
                    const http_request& req, const std::string& store_name) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  auto doc = json::parse(req.body, nullptr, false);
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
                         doc.is_discarded()
                           ? "failed deserializing HTTP body: not valid JSON"
                           : "the body must be {\"keys\": [\"key\", ...]}");
  self->request(store->actor, self->state.ctx->request_timeout,
                state_get_atom::value, std::move(keys))
    .then(
      [=](std::vector<state_entry>& entries) {
        json out = json::array();
        for (auto& e : entries) {
          json item{{"key", e.key}};
          if (e.found) {
            // Values are stored as JSON text; anything else written into
            // Redis by other tools comes back as a string.
            auto data = json::parse(e.value, nullptr, false);
            item["data"] = data.is_discarded() ? json(e.value) : data;
            item["etag"] = e.etag;
          }
          out.push_back(std::move(item));
        }
        respond(self, to, 200, "application/json", out.dump());
      },
      [=](caf::error& err) {
        respond_error(self, to, state_status(err), "ERR_STATE_BULK_GET",
                      "failed getting state from state store " + store_name
                        + ": " + error_text(err));
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
    .then([=](ok_atom) { respond(self, to, 204, "", ""); },
          [=](caf::error& err) {
            respond_error(self, to, state_status(err), "ERR_STATE_DELETE",
                          "failed deleting state with key " + key
                            + " from state store " + store_name + ": "
                            + error_text(err));
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
    .then([=](ok_atom) { respond(self, to, 204, "", ""); },
          [=](caf::error& err) {
            respond_error(self, to, 500, "ERR_PUBSUB_PUBLISH_MESSAGE",
                          "error when publishing to topic " + topic
                            + " in pubsub " + hub + ": " + error_text(err));
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
  self->request(i->second, ctx.invoke_timeout, invoke_atom::value, std::move(msg))
    .then(
      [=](function_result& result) {
        using outcome = function_result::outcome;
        switch (result.status) {
          case outcome::output: {
            auto body = result.output.str();
            bool is_json = !json::parse(body, nullptr, false).is_discarded();
            return respond(self, to, 200,
                           is_json ? "application/json"
                                   : "application/octet-stream",
                           body);
          }
          case outcome::nothing:
            return respond(self, to, 204, "", "");
          case outcome::handler_error: {
            json doc{{"errorCode", "ERR_FUNCTION_HANDLER"},
                     {"message", result.error_message},
                     {"errorType", result.error_type}};
            return respond(self, to, 500, "application/json", doc.dump());
          }
          default: {
            json doc{{"errorCode", "ERR_FUNCTION_UNAVAILABLE"},
                     {"message", result.error_message},
                     {"errorType", result.error_type}};
            return respond(self, to, 503, "application/json", doc.dump());
          }
        }
      },
      [=](caf::error& err) {
        respond_error(self, to, 503, "ERR_FUNCTION_UNAVAILABLE",
                      "invoking function " + function + " failed: "
                        + error_text(err));
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
    .then([=](const std::string& snapshot) { then(snapshot); },
          [=](caf::error& err) {
            respond_error(self, to, 503, "ERR_STATS_UNAVAILABLE",
                          "the stats actor did not answer: " + error_text(err));
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

void process_input(http_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  auto i = st.connections.find(hdl);
  if (i == st.connections.end() || i->second.busy || i->second.processing)
    return;
  i->second.processing = true;
  // A loop, not recursion: a client may pipeline many small requests.
  for (;;) {
    auto& conn = i->second;
    auto& parser = conn.parser;
    auto status = parser.parse();
    if (status == http_request_parser::status::incomplete) {
      if (parser.wants_continue()) {
        static constexpr std::string_view go_on
          = "HTTP/1.1 100 Continue\r\n\r\n";
        self->write(hdl, go_on.size(), go_on.data());
        self->flush(hdl);
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
    route(self, reply_to{hdl, req.keep_alive}, req);
    i = st.connections.find(hdl);
    if (i == st.connections.end())
      return; // answered with Connection: close
    if (i->second.busy)
      break; // waiting for an actor's answer
  }
  i->second.processing = false;
}

caf::behavior http_api(http_broker* self, caf::io::doorman_ptr door,
                       std::shared_ptr<const http_context> ctx,
                       http_limits limits) {
  self->add_doorman(std::move(door));
  self->state.ctx = std::move(ctx);
  self->state.limits = limits;
  touch_stats(self);
  return {
    [=](const caf::io::new_connection_msg& msg) {
      self->configure_read(msg.handle, caf::io::receive_policy::at_most(8192));
      self->state.connections.emplace(msg.handle,
                                      http_connection{self->state.limits});
      self->state.stats.add("connections_accepted");
      touch_stats(self);
      schedule_sweep(self);
    },
    [=](const caf::io::new_data_msg& msg) {
      auto i = self->state.connections.find(msg.handle);
      if (i == self->state.connections.end())
        return;
      auto& conn = i->second;
      conn.last_seen = std::chrono::steady_clock::now();
      conn.parser.feed(std::string_view{msg.buf.data(), msg.buf.size()});
      // A client that keeps pipelining while its requests wait must not
      // grow the buffer without bound.
      auto& lim = self->state.limits;
      if (conn.parser.buffered() > 2 * (lim.max_body_bytes + lim.max_header_bytes)) {
        self->close(msg.handle);
        self->state.connections.erase(i);
        self->state.stats.add("connections_dropped");
        return;
      }
      process_input(self, msg.handle);
    },
    [=](const caf::io::connection_closed_msg& msg) {
      self->state.connections.erase(msg.handle);
      touch_stats(self);
    },
    [=](const caf::io::acceptor_closed_msg&) {
      self->quit(caf::exit_reason::normal);
    },
    [=](tick_atom) {
      self->state.report_scheduled = false;
      self->state.stats.report(self);
    },
    [=](sweep_atom) {
      auto& st = self->state;
      st.sweep_scheduled = false;
      auto cutoff = std::chrono::steady_clock::now() - st.ctx->idle_timeout;
      for (auto i = st.connections.begin(); i != st.connections.end();) {
        // A connection waiting for an actor's answer is not idle.
        if (!i->second.busy && i->second.last_seen < cutoff) {
          self->close(i->first);
          i = st.connections.erase(i);
          st.stats.add("connections_idle_closed");
        } else {
          ++i;
        }
      }
      touch_stats(self);
      schedule_sweep(self);
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

std::string http_metadata_json(const std::string& stats_json,
                               const http_context& ctx) {
  auto stats = json::parse(stats_json, nullptr, false);
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
  return doc.dump();
}

caf::actor spawn_http_api(caf::actor_system& sys, const http_config& cfg,
                          const http_context& ctx, std::string& error,
                          std::uint16_t* bound_port) {
  auto [host, port] = split_listen(cfg.listen);
  if (port < 0) {
    error = "http.listen: '" + cfg.listen + "' is not host:port";
    return {};
  }
  auto& mm = sys.middleman();
  // Bound here, on the caller's thread, so a busy port is reported at once
  // (spawn_server would also bind every interface, not just `host`).
  auto door = mm.backend().new_tcp_doorman(static_cast<std::uint16_t>(port),
                                           host.empty() ? nullptr
                                                        : host.c_str(),
                                           true);
  if (!door) {
    error = "http.listen: cannot listen on " + cfg.listen + ": "
            + sys.render(door.error());
    return {};
  }
  if (bound_port)
    *bound_port = (*door)->port();
  http_limits limits;
  limits.max_body_bytes = cfg.max_body;
  return mm.spawn_broker(http_api, std::move(*door),
                         std::make_shared<const http_context>(ctx), limits);
}

} // namespace hubflow
