#include "http/http_exchange.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>

#include <caf/all.hpp>

#include "core/base64.hpp"
#include "core/type_ids.hpp"
#include "core/state_store.hpp" // error_text
#include "core/values.hpp"

// Dapr's publish API: a request body into the hub as an MQTT message; bulk
// publish: each entry of a JSON array so, one request to the hub each.
namespace hubflow::http {

namespace {

/// A publish option by its Dapr metadata name ("qos", "retain",
/// "ttlInSeconds"), empty when not given.
using option_lookup = std::function<std::string(const std::string& name)>;

/// The options of the request itself: `?qos=`, Dapr's request metadata
/// `?metadata.qos=` (what the SDKs send for publish(…, {metadata})), or the
/// X-MQTT-QoS / X-MQTT-Retain header, in that order.
std::string request_option(const http_request& req, const std::string& name) {
  auto value = param(req, name);
  if (value.empty())
    value = param(req, "metadata." + name);
  if (value.empty()) {
    const char* header = name == "qos"      ? "x-mqtt-qos"
                         : name == "retain" ? "x-mqtt-retain"
                                            : nullptr;
    if (auto h = header ? req.header(header) : nullptr)
      value = *h;
  }
  return value;
}

/// Sets on `msg` what the options say: QoS, retain, ttlInSeconds as the
/// MQTT 5 message expiry, responseTopic and correlationData as MQTT 5's
/// request/response properties. Returns what is wrong, or nothing.
std::string apply_options(const option_lookup& option, message& msg) {
  auto qos = option("qos");
  if (!qos.empty()) {
    if (qos != "0" && qos != "1" && qos != "2")
      return "qos must be 0, 1 or 2, not '" + qos + "'";
    msg.qos = static_cast<std::uint8_t>(qos[0] - '0');
  }
  auto retain = option("retain");
  if (!retain.empty() && retain != "true" && retain != "false"
      && retain != "1" && retain != "0")
    return "retain must be true or false, not '" + retain + "'";
  msg.retain = retain == "true" || retain == "1";
  if (auto ttl = option("ttlInSeconds"); !ttl.empty()) {
    // MQTT's Message Expiry Interval: 0 to 2^32 - 1 seconds.
    auto seconds = parse_integer(ttl);
    if (!seconds || *seconds < 0 || *seconds > 0xFFFFFFFF)
      return "metadata.ttlInSeconds must be a number of seconds, not '" + ttl
             + "'";
    msg.properties.message_expiry = static_cast<std::uint32_t>(*seconds);
    msg.properties.has_message_expiry = true;
  }
  if (auto topic = option("responseTopic"); !topic.empty()) {
    // MQTT 5 3.3.2.3.5: a topic name, so no wildcards.
    if (topic.find_first_of("+#") != std::string::npos)
      return "metadata.responseTopic is a topic name, without wildcards: '"
             + topic + "'";
    msg.properties.response_topic = topic;
  }
  if (auto data = option("correlationData"); !data.empty()) {
    if (data.size() > 65535)
      return "metadata.correlationData is longer than MQTT's 65535 bytes";
    msg.properties.correlation_data = data;
  }
  return {};
}

/// Whether `hub` and `topic` name something to publish to; answers and
/// returns false when not.
bool check_target(http_broker* self, const reply_to& to,
                  const std::string& hub, const std::string& topic) {
  auto& ctx = *self->state.ctx;
  if (hub != ctx.hub_name || !ctx.hub) {
    respond_error(self, to, 404, "ERR_PUBSUB_NOT_FOUND",
                  "pubsub " + hub + " is not found (the hub is named '"
                    + ctx.hub_name + "')");
    return false;
  }
  if (topic.empty()) {
    respond_error(self, to, 404, "ERR_TOPIC_NAME_EMPTY",
                  "topic is empty in pubsub " + hub);
    return false;
  }
  if (topic.find_first_of("+#") != std::string::npos) {
    respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                  "topic '" + topic
                    + "' contains a wildcard (+ or #); publish to a concrete "
                      "topic");
    return false;
  }
  if (topic.find('\0') != std::string::npos) {
    respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                  "topic contains U+0000 (%00), which MQTT forbids");
    return false;
  }
  return true;
}

/// A message from the API for `topic`; nothing set from options yet.
message make_message(const std::string& topic, std::string body,
                     std::string content_type) {
  message msg;
  msg.topic = topic;
  msg.body = payload{std::move(body)};
  msg.origin = "http";
  msg.properties.content_type = std::move(content_type);
  return msg;
}

/// Publishes `msg` into the hub; `done` gets nothing once the hub accepted
/// it (the hub answers once the message is routed and the rules it feeds
/// took it), or why it did not.
void into_hub(http_broker* self, message msg,
              std::function<void(const std::string& error)> done) {
  auto& ctx = *self->state.ctx;
  self->request(ctx.hub, ctx.request_timeout, publish_atom::value,
                std::move(msg))
    .then([=](ok_atom) { done({}); },
          [=](caf::error& err) { done(error_text(err)); });
}

std::string publish_error(const std::string& topic, const std::string& hub,
                          const std::string& error) {
  return "error when publishing to topic " + topic + " in pubsub " + hub
         + ": " + error;
}

// -- bulk ------------------------------------------------------------------------

/// The member of `obj` named `name` in any case, or nullptr: Dapr decodes
/// entries with Go's encoding/json, which matches names so (Dapr's JS SDK
/// sends "entryID").
const json* member(const json& obj, std::string_view name) {
  auto wanted = lower(name);
  for (auto i = obj.begin(); i != obj.end(); ++i)
    if (lower(i.key()) == wanted)
      return &i.value();
  return nullptr;
}

/// `type` without parameters, in lower case ("Text/Plain; charset=x" ->
/// "text/plain").
std::string media_type(const std::string& type) {
  auto out = lower(type.substr(0, type.find(';')));
  while (!out.empty() && out.back() == ' ')
    out.pop_back();
  return out;
}

/// The bytes an entry's event stands for, by its content type (Dapr's
/// rule): JSON types carry the event as JSON text, text/* and
/// application/xml a string as it is, application/octet-stream a base64
/// string. Returns false with `error` set otherwise.
bool event_bytes(const json& event, const std::string& content_type,
                 std::string& out, std::string& error) {
  auto type = media_type(content_type);
  if (type == "application/octet-stream") {
    auto bytes = event.is_string() ? base64_decode(event.get<std::string>())
                                   : std::nullopt;
    if (!bytes) {
      error = "an application/octet-stream event must be a base64 string";
      return false;
    }
    out = std::move(*bytes);
    return true;
  }
  if (type.rfind("text/", 0) == 0 || type == "application/xml") {
    if (!event.is_string()) {
      error = "a " + type + " event must be a string";
      return false;
    }
    out = event.get<std::string>();
    return true;
  }
  if (type == "application/json" || type == "application/cloudevents+json") {
    out = dump_json(event);
    return true;
  }
  error = "contentType '" + content_type
          + "' does not say how the event becomes bytes (use "
            "application/json, text/..., application/xml or "
            "application/octet-stream with base64)";
  return false;
}

struct bulk_entry {
  std::string id;
  message msg;
};

/// Reads Dapr's bulk body: [{entryId, event, contentType?, metadata?}, ...],
/// each entry's options from its metadata first, then from the request
/// (request_option): Dapr's rule, entry metadata overrides the request's.
/// Returns what is wrong, or nothing.
std::string read_bulk(const json& doc, const http_request& req,
                      const std::string& topic, std::size_t max_entries,
                      std::vector<bulk_entry>& out) {
  if (!doc.is_array())
    return "the body must be a JSON array of {\"entryId\", \"event\", "
           "\"contentType\", \"metadata\"} objects";
  if (doc.size() > max_entries)
    return std::to_string(doc.size()) + " entries; at most "
           + std::to_string(max_entries) + " per request";
  std::set<std::string> ids;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    auto& x = doc[i];
    auto where = "entry " + std::to_string(i) + ": ";
    if (!x.is_object())
      return where + "not an object";
    auto id = member(x, "entryId");
    if (!id || !id->is_string() || id->get<std::string>().empty())
      return where + "entryId must be a non-empty string";
    if (!ids.insert(id->get<std::string>()).second)
      return where + "entryId '" + id->get<std::string>()
             + "' is duplicated";
    static const json null_event;
    auto event = member(x, "event");
    if (!event)
      event = &null_event;
    std::string content_type;
    if (auto ct = member(x, "contentType"); ct && !ct->is_null()) {
      if (!ct->is_string())
        return where + "contentType must be a string";
      content_type = ct->get<std::string>();
    }
    // What Dapr's SDKs infer when they are not told.
    if (content_type.empty())
      content_type = event->is_string() ? "text/plain" : "application/json";
    std::string body, error;
    if (!event_bytes(*event, content_type, body, error))
      return where + error;
    std::map<std::string, std::string> metadata;
    if (auto meta = member(x, "metadata"); meta && !meta->is_null()) {
      if (!meta->is_object())
        return where + "metadata must be an object of strings";
      for (auto& [k, v] : meta->items()) {
        if (!v.is_string())
          return where + "metadata." + k + " must be a string";
        metadata[k] = v.get<std::string>();
      }
    }
    bulk_entry entry{id->get<std::string>(),
                     make_message(topic, std::move(body), content_type)};
    auto option = [&](const std::string& name) {
      auto i = metadata.find(name);
      return i != metadata.end() ? i->second : request_option(req, name);
    };
    if (auto e = apply_options(option, entry.msg); !e.empty())
      return where + e;
    out.push_back(std::move(entry));
  }
  return {};
}

/// What a bulk publish waits for: one answer of the hub per entry.
struct bulk_progress {
  std::size_t left = 0;
  /// (index, entry id, error) of the entries the hub refused.
  std::vector<std::tuple<std::size_t, std::string, std::string>> failed;
};

} // namespace

void publish(http_broker* self, const reply_to& to, const http_request& req,
             const std::string& hub, const std::string& topic) {
  if (!check_target(self, to, hub, topic))
    return;
  auto ct = req.header("content-type");
  auto msg = make_message(topic, req.body, ct ? *ct : std::string{});
  auto option = [&](const std::string& name) {
    return request_option(req, name);
  };
  if (auto error = apply_options(option, msg); !error.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", error);
  into_hub(self, std::move(msg), [=](const std::string& why) {
    answering(self, to, [&] {
      if (why.empty())
        return respond(self, to, 204, "", "");
      respond_error(self, to, 500, "ERR_PUBSUB_PUBLISH_MESSAGE",
                    publish_error(topic, hub, why));
    });
  });
}

void publish_bulk(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& hub,
                  const std::string& topic) {
  if (!check_target(self, to, hub, topic))
    return;
  std::string error;
  auto doc = parse_body(self, req, error);
  std::vector<bulk_entry> entries;
  if (error.empty())
    error = read_bulk(doc, req, topic, self->state.limits.max_bulk_entries,
                      entries);
  // Dapr refuses the whole request so, before anything is published.
  if (!error.empty())
    return respond_error(self, to, 400, "ERR_PUBSUB_EVENTS_SER",
                         "error when reading the bulk request for topic "
                           + topic + " in pubsub " + hub + ": " + error);
  if (entries.empty())
    return respond(self, to, 204, "", "");
  auto progress = std::make_shared<bulk_progress>();
  progress->left = entries.size();
  auto total = entries.size();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto id = entries[i].id;
    into_hub(self, std::move(entries[i].msg), [=](const std::string& why) {
      if (!why.empty())
        progress->failed.emplace_back(i, id, why);
      if (--progress->left > 0)
        return;
      answering(self, to, [&] {
        if (progress->failed.empty())
          return respond(self, to, 204, "", "");
        std::sort(progress->failed.begin(), progress->failed.end());
        // Dapr's answer. Each failed entry also carries "entryID": Dapr
        // sends entryId, and Dapr's JS SDK (3.x) looks failed entries up by
        // entryID, so without it the SDK reports no failure at all.
        json failed = json::array();
        for (auto& [index, entry_id, reason] : progress->failed)
          failed.push_back({{"entryId", entry_id},
                            {"entryID", entry_id},
                            {"error", publish_error(topic, hub, reason)}});
        json doc{{"failedEntries", std::move(failed)},
                 {"errorCode", "ERR_PUBSUB_PUBLISH_MESSAGE"},
                 {"message", std::to_string(progress->failed.size()) + " of "
                               + std::to_string(total)
                               + " entries were not published to topic "
                               + topic + " in pubsub " + hub}};
        respond(self, to, 500, "application/json", dump_json(doc));
      });
    });
  }
}

} // namespace hubflow::http
