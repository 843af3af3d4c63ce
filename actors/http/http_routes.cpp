#include "http/http_exchange.hpp"

#include "core/json_text.hpp"

// The route table: which handler answers a method and path.
namespace hubflow::http {

namespace {

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

} // namespace

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
      metrics(self, to);
    return;
  }
  if (seg.size() >= 2 && seg[0] == "v1.0") {
    const auto& area = seg[1];
    // Dapr's outbound health (the sidecar's components are ready) is the
    // same answer here: the hub, stores and functions are in-process.
    if (area == "healthz"
        && (seg.size() == 2 || (seg.size() == 3 && seg[2] == "outbound"))) {
      if (only("GET"))
        respond(self, to, 204, "", "");
      return;
    }
    if (area == "metadata" && seg.size() == 2) {
      if (only("GET"))
        metadata(self, to);
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
      if (seg.size() == 4 && seg[3] == "transaction" && m == "POST")
        return state_transaction(self, to, req, store);
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

} // namespace hubflow::http
