#include "hub/external_hub.hpp"

#include <map>
#include <vector>

#include <caf/all.hpp>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <spdlog/spdlog.h>

#include "core/fwd.hpp"
#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"

namespace hubflow {

namespace {

using clock_type = std::chrono::steady_clock;

/// Lives as long as the mosquitto handle: libmosquitto's network thread
/// calls back with it and forwards everything to the link actor as messages.
struct callback_target {
  caf::actor link;
};

struct subscription {
  std::string filter;
  std::uint8_t qos;
  subscriber_actor subscriber;
};

struct pending_publish {
  reply answer;
  clock_type::time_point sent;
};

struct link_state {
  static inline const char* name = "hubflow.external_hub";

  mqtt_link_settings cfg;
  ::mosquitto* mosq = nullptr;
  std::unique_ptr<callback_target> target;
  bool connected = false;
  /// libmosquitto's last error while not connected (a TLS handshake that
  /// fails, a refused TCP connect): logged when it changes, not per retry.
  std::string last_error;
  std::vector<subscription> subscriptions;
  /// By libmosquitto's message id (it picks them, not we: no ticket table).
  std::map<int, pending_publish> in_flight;
  std::unique_ptr<probe> stats;

  ~link_state() {
    if (mosq) {
      mosquitto_disconnect(mosq);
      mosquitto_loop_stop(mosq, true);
      mosquitto_destroy(mosq);
    }
  }
};

using link_actor = caf::stateful_actor<link_state>;

// Messages from the libmosquitto thread to the actor.
using connected_atom = caf::atom_constant<caf::atom("connected")>;
using lost_atom = caf::atom_constant<caf::atom("lost")>;
using acked_atom = caf::atom_constant<caf::atom("acked")>;
using link_error_atom = caf::atom_constant<caf::atom("link_err")>;

constexpr auto publish_ack_timeout = std::chrono::seconds(30);

mqtt_properties read_properties(const mosquitto_property* props) {
  mqtt_properties out;
  for (auto* p = props; p != nullptr; p = mosquitto_property_next(p)) {
    char* a = nullptr;
    char* b = nullptr;
    void* bin = nullptr;
    uint16_t len = 0;
    switch (mosquitto_property_identifier(p)) {
      case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
        out.has_payload_format = true;
        mosquitto_property_read_byte(p, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR,
                                     &out.payload_format, false);
        break;
      case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
        out.has_message_expiry = true;
        mosquitto_property_read_int32(p, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                      &out.message_expiry, false);
        break;
      case MQTT_PROP_CONTENT_TYPE:
        mosquitto_property_read_string(p, MQTT_PROP_CONTENT_TYPE, &a, false);
        out.content_type = a ? a : "";
        break;
      case MQTT_PROP_RESPONSE_TOPIC:
        mosquitto_property_read_string(p, MQTT_PROP_RESPONSE_TOPIC, &a, false);
        out.response_topic = a ? a : "";
        break;
      case MQTT_PROP_CORRELATION_DATA:
        mosquitto_property_read_binary(p, MQTT_PROP_CORRELATION_DATA, &bin,
                                       &len, false);
        out.correlation_data.assign(static_cast<char*>(bin), len);
        break;
      case MQTT_PROP_USER_PROPERTY:
        mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &a,
                                            &b, false);
        out.user_properties.emplace_back(a ? a : "", b ? b : "");
        break;
      default:
        break;
    }
    std::free(a);
    std::free(b);
    std::free(bin);
  }
  return out;
}

/// The message's MQTT 5 properties as a libmosquitto list (caller frees).
mosquitto_property* write_properties(const mqtt_properties& in) {
  mosquitto_property* list = nullptr;
  if (in.has_payload_format)
    mosquitto_property_add_byte(&list, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR,
                                in.payload_format);
  if (in.has_message_expiry)
    mosquitto_property_add_int32(&list, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                 in.message_expiry);
  if (!in.content_type.empty())
    mosquitto_property_add_string(&list, MQTT_PROP_CONTENT_TYPE,
                                  in.content_type.c_str());
  if (!in.response_topic.empty())
    mosquitto_property_add_string(&list, MQTT_PROP_RESPONSE_TOPIC,
                                  in.response_topic.c_str());
  if (!in.correlation_data.empty())
    mosquitto_property_add_binary(
      &list, MQTT_PROP_CORRELATION_DATA, in.correlation_data.data(),
      static_cast<uint16_t>(in.correlation_data.size()));
  for (auto& [k, v] : in.user_properties)
    mosquitto_property_add_string_pair(&list, MQTT_PROP_USER_PROPERTY,
                                       k.c_str(), v.c_str());
  return list;
}

// -- libmosquitto callbacks (network thread) -------------------------------------

void on_connect(::mosquitto*, void* obj, int rc, int, const mosquitto_property*) {
  caf::anon_send(static_cast<callback_target*>(obj)->link,
                 connected_atom::value, rc);
}

void on_disconnect(::mosquitto*, void* obj, int rc, const mosquitto_property*) {
  caf::anon_send(static_cast<callback_target*>(obj)->link, lost_atom::value,
                 rc);
}

void on_publish(::mosquitto*, void* obj, int mid, int rc,
                const mosquitto_property*) {
  caf::anon_send(static_cast<callback_target*>(obj)->link, acked_atom::value,
                 mid, rc);
}

/// libmosquitto says why a connect failed only in its log (OpenSSL's
/// "certificate verify failed", for one): its errors go to the actor.
void on_log(::mosquitto*, void* obj, int level, const char* text) {
  if (level == MOSQ_LOG_ERR && text)
    caf::anon_send(static_cast<callback_target*>(obj)->link,
                   link_error_atom::value, std::string{text});
}

void on_message(::mosquitto*, void* obj, const mosquitto_message* m,
                const mosquitto_property* props) {
  message msg;
  msg.topic = m->topic;
  msg.body = payload{std::string(static_cast<const char*>(m->payload),
                                 static_cast<std::size_t>(m->payloadlen))};
  msg.qos = static_cast<std::uint8_t>(m->qos);
  msg.retain = m->retain;
  msg.properties = read_properties(props);
  caf::anon_send(static_cast<callback_target*>(obj)->link,
                 deliver_atom::value, std::move(msg));
}

void subscribe_now(link_actor* self, const subscription& sub) {
  auto rc = mosquitto_subscribe(self->state.mosq, nullptr, sub.filter.c_str(),
                                sub.qos);
  if (rc != MOSQ_ERR_SUCCESS)
    spdlog::warn("hub link {}: cannot subscribe to '{}': {}",
                 self->state.cfg.client_id, sub.filter, mosquitto_strerror(rc));
}

constexpr std::uint64_t any_answer_ticket = 1;

/// What a failed mosquitto_publish means: RETRY while the link is down or
/// out of resources, ERROR for a message no broker would take.
sink_errc publish_failure_kind(int rc) {
  switch (rc) {
    case MOSQ_ERR_NO_CONN:
    case MOSQ_ERR_CONN_LOST:
    case MOSQ_ERR_NOMEM:
    case MOSQ_ERR_ERRNO:
    case MOSQ_ERR_PROTOCOL:
      return sink_errc::retry;
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_MALFORMED_UTF8:
      return sink_errc::topic_name_invalid;
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_OVERSIZE_PACKET:
      return sink_errc::quota_exceeded;
    default:
      return sink_errc::unspecified;
  }
}

/// A broker's PUBACK/PUBREC reason code (>= 0x80) as ERROR: it refused
/// this message, resending it gets the same answer.
sink_errc refusal_kind(int rc) {
  switch (static_cast<sink_errc>(rc)) {
    case sink_errc::not_authorized:
    case sink_errc::topic_name_invalid:
    case sink_errc::quota_exceeded:
    case sink_errc::payload_format_invalid:
      return static_cast<sink_errc>(rc);
    default:
      return sink_errc::unspecified;
  }
}

/// Publishes on the external hub, to the topic `target` names (topic_of);
/// QoS 1/2 are answered on PUBACK/PUBCOMP.
void publish(link_actor* self, const message& msg, const std::string& target,
             reply answer) {
  auto& st = self->state;
  // libmosquitto would queue a QoS 1/2 publish until it reconnects, and the
  // answer would wait for the ack timeout: RETRY now, the rule (or a disk
  // buffer) resends.
  if (!st.connected) {
    st.stats->add("publish_failures");
    answer.deliver(make_sink_error(sink_errc::retry,
                                   "hub " + st.cfg.address
                                     + " is not connected"));
    return;
  }
  std::string rendered;
  if (st.cfg.topic_of) {
    std::string error;
    if (!st.cfg.topic_of(target, msg, rendered, error)) {
      st.stats->add("publish_failures");
      answer.deliver(make_sink_error(sink_errc::topic_name_invalid,
                                     "hub " + st.cfg.address + ": " + error));
      return;
    }
  }
  auto& topic = st.cfg.topic_of ? rendered : msg.topic;
  auto* props = st.cfg.protocol == 5 ? write_properties(msg.properties)
                                     : nullptr;
  int mid = 0;
  auto rc = mosquitto_publish_v5(
    st.mosq, &mid, topic.c_str(), static_cast<int>(msg.body.size()),
    msg.body.view().data(), msg.qos, msg.retain, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) {
    st.stats->add("publish_failures");
    answer.deliver(make_sink_error(publish_failure_kind(rc),
                                   "hub " + st.cfg.address
                                     + ": cannot publish to '" + topic
                                     + "': " + mosquitto_strerror(rc)));
    return;
  }
  st.stats->add("out");
  if (msg.qos == 0) {
    answer.deliver(ok_atom::value);
    return;
  }
  st.in_flight.emplace(mid, pending_publish{std::move(answer),
                                            clock_type::now()});
  st.stats->set("in_flight", static_cast<std::int64_t>(st.in_flight.size()));
}

/// An ssl:// address: libmosquitto's TLS with the files the config loader
/// checked. Without `ca` the system's trust store verifies the hub.
void use_tls(::mosquitto* mosq, const tls_client_settings& tls) {
  auto text = [](const std::string& s) {
    return s.empty() ? nullptr : s.c_str();
  };
  mosquitto_tls_set(mosq, text(tls.ca),
                    tls.ca.empty() ? "/etc/ssl/certs" : nullptr,
                    text(tls.cert), text(tls.key), nullptr);
  mosquitto_tls_insecure_set(mosq, tls.insecure_skip_verify);
}

/// A connect attempt failed: logged when the reason changed (not on every
/// retry), counted every time.
void connect_failed(link_actor* self, const std::string& why) {
  auto& st = self->state;
  st.stats->add("connect_errors");
  if (why == st.last_error)
    return;
  st.last_error = why;
  spdlog::warn("hub link {}: cannot connect to {}: {} (retrying)",
               st.cfg.client_id, st.cfg.address, why);
}

caf::behavior link(link_actor* self, mqtt_link_settings cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.stats = std::make_unique<probe>(
    st.cfg.stats_kind,
    st.cfg.stats_name.empty() ? st.cfg.client_id : st.cfg.stats_name);
  st.stats->label("address", st.cfg.address);
  st.stats->label("state", "connecting");
  st.target = std::make_unique<callback_target>(callback_target{self});
  st.mosq = mosquitto_new(st.cfg.client_id.c_str(), true, st.target.get());
  mosquitto_int_option(st.mosq, MOSQ_OPT_PROTOCOL_VERSION,
                       st.cfg.protocol == 5 ? MQTT_PROTOCOL_V5
                                            : MQTT_PROTOCOL_V311);
  if (!st.cfg.username.empty())
    mosquitto_username_pw_set(st.mosq, st.cfg.username.c_str(),
                              st.cfg.password.c_str());
  mosquitto_max_inflight_messages_set(
    st.mosq, static_cast<unsigned>(st.cfg.max_inflight));
  mosquitto_reconnect_delay_set(st.mosq, 1, 30, true);
  if (st.cfg.tls)
    use_tls(st.mosq, *st.cfg.tls);
  mosquitto_log_callback_set(st.mosq, on_log);
  mosquitto_connect_v5_callback_set(st.mosq, on_connect);
  mosquitto_disconnect_v5_callback_set(st.mosq, on_disconnect);
  mosquitto_publish_v5_callback_set(st.mosq, on_publish);
  mosquitto_message_v5_callback_set(st.mosq, on_message);
  // loop_start, then connect_async: the network thread retries with the
  // backoff above when the first connect fails (the broker is not up yet).
  // In the other order libmosquitto's thread waits forever for a first
  // connect that already failed (eclipse/mosquitto#1903).
  mosquitto_loop_start(st.mosq);
  // Checked by the config loader (hub_address_rules).
  auto& at = st.cfg.at;
  mosquitto_connect_async(st.mosq, at.host.c_str(), at.port,
                          st.cfg.keepalive);
  self->send(self, tick_atom::value);
  // The sink protocol's forms, then the link's own.
  auto write = [self](message& msg, const std::string& target, reply answer) {
    publish(self, msg, target, std::move(answer));
  };
  return sink_handlers(self, write).or_else(
    [=](subscribe_atom, const std::string& filter, std::uint8_t qos,
        const caf::actor& subscriber) {
      subscription sub{filter, qos, as_role<subscriber_actor>(subscriber)};
      if (self->state.connected)
        subscribe_now(self, sub);
      self->state.subscriptions.push_back(std::move(sub));
      return ok_atom::value;
    },
    [=](unsubscribe_atom, const std::string& filter,
        const caf::actor& subscriber) {
      auto& subs = self->state.subscriptions;
      std::erase_if(subs, [&](auto& s) {
        return s.filter == filter && is_actor(s.subscriber, subscriber);
      });
      mosquitto_unsubscribe(self->state.mosq, nullptr, filter.c_str());
      return ok_atom::value;
    },
    [](reply_atom, std::uint64_t, ok_atom) {},
    [](reply_atom, const std::vector<std::uint64_t>&, ok_atom) {},
    [=](reply_atom, std::uint64_t, const caf::error&) {
      self->state.stats->add("deliver_failures");
    },
    [=](acked_atom, int mid, int rc) {
      auto& st = self->state;
      auto i = st.in_flight.find(mid);
      if (i == st.in_flight.end())
        return;
      if (rc == 0)
        i->second.answer.deliver(ok_atom::value);
      else
        i->second.answer.deliver(make_sink_error(
          refusal_kind(rc),
          "hub " + st.cfg.address + " refused the publish with reason code "
            + std::to_string(rc)));
      st.in_flight.erase(i);
      st.stats->set("in_flight", static_cast<std::int64_t>(st.in_flight.size()));
    },
    [=](deliver_atom, message& msg) {
      auto& st = self->state;
      st.stats->add("in");
      msg.origin = st.cfg.origin;
      for (auto& sub : st.subscriptions) {
        bool matched = false;
        mosquitto_topic_matches_sub(sub.filter.c_str(), msg.topic.c_str(),
                                    &matched);
        if (!matched)
          continue;
        // libmosquitto has acknowledged the message already: the answer
        // only counts failures (the rule reports its own errors), so every
        // delivery may carry the same ticket.
        self->send(sub.subscriber, deliver_atom::value, msg,
                   any_answer_ticket);
      }
    },
    [=](connected_atom, int rc) {
      auto& st = self->state;
      if (rc != 0) {
        spdlog::warn("hub link {}: {} refused the connection: {}",
                     st.cfg.client_id, st.cfg.address,
                     mosquitto_connack_string(rc));
        st.stats->add("connect_refused");
        return;
      }
      spdlog::info("hub link {}: connected to {}", st.cfg.client_id,
                   st.cfg.address);
      st.connected = true;
      st.last_error.clear();
      st.stats->add("connects");
      st.stats->label("state", "connected");
      for (auto& sub : st.subscriptions)
        subscribe_now(self, sub);
    },
    [=](lost_atom, int rc) {
      auto& st = self->state;
      if (!st.connected) {
        // A connect that failed after the socket opened (a TLS peer that
        // wants a client certificate says so only then).
        connect_failed(self, mosquitto_strerror(rc));
        return;
      }
      st.connected = false;
      st.stats->add("disconnects");
      st.stats->label("state", "reconnecting");
      spdlog::warn("hub link {}: lost {} ({}), reconnecting", st.cfg.client_id,
                   st.cfg.address, mosquitto_strerror(rc));
    },
    [=](link_error_atom, const std::string& text) {
      if (!self->state.connected)
        connect_failed(self, text);
    },
    // Publishes nobody acknowledged in time fail, so the rule can retry.
    [=](tick_atom) {
      auto& st = self->state;
      auto now = clock_type::now();
      for (auto i = st.in_flight.begin(); i != st.in_flight.end();) {
        if (now - i->second.sent > publish_ack_timeout) {
          i->second.answer.deliver(make_sink_error(
            sink_errc::retry, "hub " + st.cfg.address
                                + " did not acknowledge in time"));
          st.stats->add("publish_failures");
          i = st.in_flight.erase(i);
        } else {
          ++i;
        }
      }
      st.stats->report(self);
      // Unacknowledged publishes are looked at least every 500 ms.
      self->delayed_send(self,
                         std::min(stats_interval(self->home_system()),
                                  std::chrono::milliseconds(500)),
                         tick_atom::value);
    });
}

} // namespace

mqtt_link_settings link_settings_of(const hub_config& cfg,
                                    std::string client_id) {
  mqtt_link_settings s;
  s.address = cfg.address;
  s.at = cfg.address_parsed;
  s.tls = cfg.address_tls;
  s.client_id = std::move(client_id);
  s.username = cfg.username;
  s.password = cfg.password;
  s.protocol = cfg.protocol;
  return s;
}

caf::actor spawn_external_hub_link(caf::actor_system& sys,
                                   mqtt_link_settings settings) {
  return sys.spawn(link, std::move(settings));
}

caf::actor spawn_external_hub_link(caf::actor_system& sys,
                                   const hub_config& cfg,
                                   const std::string& client_id) {
  return spawn_external_hub_link(sys, link_settings_of(cfg, client_id));
}

} // namespace hubflow
