#include "http/http_exchange.hpp"

#include <algorithm>
#include <iterator>

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

/// A part of Dapr's API that hubflow does not offer.
struct dapr_area {
  const char* name;    // "bindings API"
  const char* path;    // nullptr: "/<version>/<area>/..." as requested
  const char* instead; // what hubflow has, or why not
};

/// The Dapr API area `seg` (a path's segments) belongs to when hubflow does
/// not offer it, else nullptr (a route of hubflow's, or a path Dapr does not
/// know either: 404). Any method: the area is missing, not the method.
const dapr_area* dapr_area_not_offered(const std::vector<std::string>& seg) {
  struct entry {
    const char* versions[3]; // the first segment (unused ones nullptr)
    const char* first;       // the segment after the version
    /// The last of exactly four segments (state/<store>/query); nullptr:
    /// any path under `first`.
    const char* last;
    dapr_area area;
  };
  static const entry table[] = {
    {{"v1.0"}, "bindings", nullptr,
     {"bindings API", nullptr,
      "connect systems with endpoints (Kafka, Redis, MQTT) and rules in "
      "hubflow's config, or publish to the hub (/v1.0/publish/hub/<topic>)"}},
    {{"v1.0"}, "actors", nullptr,
     {"actors API", nullptr,
      "there is no actor runtime; functions are invoked with "
      "/v1.0/invoke/<function>/method/<name>"}},
    {{"v1.0"}, "secrets", nullptr,
     {"secrets API", nullptr,
      "there are no secret stores; the config reads secrets from files and "
      "the environment ({file: ...}, {env: ...})"}},
    {{"v1.0", "v1.0-alpha1"}, "configuration", nullptr,
     {"configuration API", nullptr, "there are no configuration stores"}},
    {{"v1.0", "v1.0-alpha1"}, "lock", nullptr,
     {"distributed lock API", nullptr, "there are no lock stores"}},
    {{"v1.0", "v1.0-alpha1"}, "unlock", nullptr,
     {"distributed lock API", nullptr, "there are no lock stores"}},
    {{"v1.0", "v1.0-alpha1", "v1.0-beta1"}, "workflows", nullptr,
     {"workflow API", nullptr, "there is no workflow engine"}},
    {{"v1.0-alpha1"}, "crypto", nullptr,
     {"cryptography API", nullptr, "there are no crypto components"}},
    {{"v1.0-alpha1"}, "jobs", nullptr,
     {"jobs API", nullptr, "there is no scheduler"}},
    {{"v1.0-alpha1", "v1.0-alpha2"}, "conversation", nullptr,
     {"conversation API", nullptr, "there are no conversation components"}},
    {{"v1.0", "v1.0-alpha1"}, "subscribe", nullptr,
     {"subscription API", nullptr,
      "subscribe to the hub over MQTT (or WebSocket) instead"}},
    {{"v1.0-alpha1"}, "state", "query",
     {"state query API", "/v1.0-alpha1/state/<store>/query",
      "state stores answer get, bulk get, save, delete and transactions"}},
    {{"v1.0"}, "shutdown", nullptr,
     {"shutdown API", nullptr, "hubflow stops on SIGTERM, not over HTTP"}},
  };
  if (seg.size() < 2)
    return nullptr;
  for (auto& e : table) {
    if (seg[1] != e.first)
      continue;
    if (std::none_of(std::begin(e.versions), std::end(e.versions),
                     [&](const char* v) { return v && seg[0] == v; }))
      continue;
    if (e.last && !(seg.size() == 4 && seg[3] == e.last))
      continue;
    return &e.area;
  }
  return nullptr;
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
  // Dapr takes PUT wherever it takes POST for a write.
  auto post_or_put = [&] {
    if (m == "POST" || m == "PUT")
      return true;
    method_not_allowed(self, to, req, "POST, PUT");
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
    if (area == "metadata" && seg.size() == 3) {
      if (only("PUT"))
        metadata_set(self, to, req, seg[2]);
      return;
    }
    if (area == "state" && seg.size() >= 3) {
      const auto& store = seg[2];
      if (seg.size() == 3) {
        if (post_or_put())
          state_save(self, to, req, store);
        return;
      }
      bool write = m == "POST" || m == "PUT";
      if (seg.size() == 4 && seg[3] == "bulk" && write)
        return state_bulk_get(self, to, req, store);
      if (seg.size() == 4 && seg[3] == "transaction" && write)
        return state_transaction(self, to, req, store);
      // A key: Dapr routes GET and DELETE here and answers 405 otherwise.
      auto key = path_rest(req.path, 3);
      if (m == "GET")
        return state_get(self, to, store, key);
      if (m == "DELETE")
        return state_delete(self, to, req, store, key);
      return method_not_allowed(self, to, req, "GET, DELETE");
    }
    if (area == "publish" && seg.size() >= 3) {
      if (post_or_put())
        publish(self, to, req, seg[2], path_rest(req.path, 3));
      return;
    }
    if (area == "invoke" && seg.size() >= 5 && seg[3] == "method")
      return invoke(self, to, req, seg[2], path_rest(req.path, 4));
  }
  if (seg.size() >= 5 && seg[0] == "v1.0-alpha1" && seg[1] == "publish"
      && seg[2] == "bulk") {
    if (post_or_put())
      publish_bulk(self, to, req, seg[3], path_rest(req.path, 4));
    return;
  }
  if (auto area = dapr_area_not_offered(seg)) {
    auto path = area->path ? std::string{area->path}
                           : "/" + seg[0] + "/" + seg[1]
                               + (seg.size() > 2 ? "/..." : "");
    return respond_error(self, to, 501, "ERR_API_UNIMPLEMENTED",
                         std::string{"Dapr's "} + area->name + " (" + path
                           + ") is not offered by hubflow: " + area->instead);
  }
  respond_error(self, to, 404, "ERR_NOT_FOUND",
                "no route for " + m + " " + req.path);
}

} // namespace hubflow::http
