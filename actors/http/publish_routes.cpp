#include "http/http_exchange.hpp"

#include <caf/all.hpp>

#include "core/type_ids.hpp"
#include "endpoints/redis/state_store.hpp"

// Dapr's publish API: a request body into the hub as an MQTT message.
namespace hubflow::http {

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
  // `?qos=`, Dapr's request metadata `?metadata.qos=` (what the SDKs send
  // for publish(…, {metadata})), or the X-MQTT-QoS header.
  auto query_or_metadata = [&](const std::string& name) {
    auto v = param(req, name);
    return v.empty() ? param(req, "metadata." + name) : v;
  };
  auto qos_text = query_or_metadata("qos");
  if (auto h = req.header("x-mqtt-qos"); h && qos_text.empty())
    qos_text = *h;
  if (!qos_text.empty()) {
    if (qos_text != "0" && qos_text != "1" && qos_text != "2")
      return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                           "qos must be 0, 1 or 2, not '" + qos_text + "'");
    msg.qos = static_cast<std::uint8_t>(qos_text[0] - '0');
  }
  auto retain = query_or_metadata("retain");
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

} // namespace hubflow::http
