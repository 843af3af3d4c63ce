#include "endpoints/kafka/kafka_mapping.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/topic.hpp"
#include "core/uuid.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"

namespace hubflow {

std::optional<std::string> check_kafka_topic_template(const topic_template& tmpl) {
  for (char c : tmpl.literal_text())
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_'
          || c == '-'))
      return std::string("Kafka topics may hold only [a-zA-Z0-9._-], not '")
             + c + "'";
  if (tmpl.is_literal() && !kafka::is_valid_topic_name(tmpl.text()))
    return "'" + tmpl.text() + "' is not a valid Kafka topic (1-249 of "
           "[a-zA-Z0-9._-], not . or ..)";
  return std::nullopt;
}

std::optional<std::string> check_kafka_topic_template(const std::string& tmpl) {
  std::string error;
  auto compiled = topic_template::compile(tmpl, error);
  if (!compiled)
    return error;
  return check_kafka_topic_template(*compiled);
}

} // namespace hubflow

namespace hubflow::kafka {

namespace {

/// CloudEvents context attributes, required ones first.
constexpr std::array<const char*, 4> required_ce = {"specversion", "type",
                                                    "source", "id"};
constexpr std::array<const char*, 4> optional_ce = {"subject", "time",
                                                    "dataschema",
                                                    "datacontenttype"};

/// CloudEvents Kafka protocol binding (binary mode): attributes travel as
/// `ce_<name>` headers, except datacontenttype, which is `content-type`.
std::string ce_header(const std::string& attribute) {
  return attribute == "datacontenttype" ? "content-type" : "ce_" + attribute;
}

bool is_ce_attribute(const std::string& name) {
  for (auto a : required_ce)
    if (name == a)
      return true;
  for (auto a : optional_ce)
    if (name == a)
      return true;
  return false;
}

/// The CloudEvents attributes a message carries: user properties named as
/// in the CloudEvents MQTT binding (`type`) or as they come back from Kafka
/// (`ce_type`); datacontenttype also from the MQTT Content Type.
std::vector<std::pair<std::string, std::string>>
carried_ce_attributes(const message& msg) {
  std::vector<std::pair<std::string, std::string>> out;
  auto set = [&](const std::string& name, const std::string& value) {
    for (auto& [n, v] : out)
      if (n == name)
        return;
    out.emplace_back(name, value);
  };
  for (auto& [name, value] : msg.properties.user_properties) {
    if (is_ce_attribute(name))
      set(name, value);
    else if (name.rfind("ce_", 0) == 0 && is_ce_attribute(name.substr(3)))
      set(name.substr(3), value);
  }
  if (!msg.properties.content_type.empty())
    set("datacontenttype", msg.properties.content_type);
  return out;
}

const std::string* find(const std::vector<std::pair<std::string, std::string>>& xs,
                        const std::string& name) {
  for (auto& [n, v] : xs)
    if (n == name)
      return &v;
  return nullptr;
}

/// Adds the CloudEvents headers; returns true when it did (the attribute
/// user properties are then not copied a second time as plain headers).
bool add_cloud_event_headers(const kafka_settings& settings,
                             const message& msg,
                             const std::string& kafka_topic,
                             message::clock::time_point now,
                             header_list& headers) {
  auto attrs = carried_ce_attributes(msg);
  bool complete = true;
  for (auto name : required_ce)
    complete = complete && find(attrs, name) != nullptr;
  if (settings.cloud_event_attributes == cloud_events::propagate && !complete)
    return false; // passed on as it is
  auto emit = [&](const std::string& name, std::string fallback) {
    if (auto value = find(attrs, name))
      headers.emplace_back(ce_header(name), *value);
    else if (!fallback.empty())
      headers.emplace_back(ce_header(name), std::move(fallback));
  };
  bool create = settings.cloud_event_attributes == cloud_events::create_or_remap;
  emit("specversion", create ? "1.0" : "");
  emit("type", create ? "hubflow.telemetry" : "");
  emit("source", create ? "hubflow://" + settings.name : "");
  emit("id", create ? make_uuid() : "");
  emit("subject", create ? kafka_topic : "");
  emit("time", create ? rfc3339(now) : "");
  emit("datacontenttype", "");
  emit("dataschema", "");
  return true;
}

} // namespace

bool expand_kafka_topic(const kafka_settings& settings, std::string& topic,
                        const message& msg, std::string& error) {
  std::string out;
  if (!settings.usage.render(topic, msg, out, error))
    return false;
  topic = std::move(out);
  return true;
}

outgoing_record prepare_record(const kafka_settings& settings,
                               const message& msg,
                               const std::string& kafka_topic,
                               message::clock::time_point now) {
  outgoing_record out;
  const auto& props = msg.properties;
  std::optional<std::uint32_t> remaining_expiry;
  if (props.has_message_expiry) {
    using namespace std::chrono;
    auto waited = duration_cast<milliseconds>(now - msg.received).count();
    auto left_ms = static_cast<std::int64_t>(props.message_expiry) * 1000
                   - std::max<std::int64_t>(waited, 0);
    if (left_ms <= 0) {
      out.expired = true;
      return out;
    }
    // Rounded up: a message with 0.4 s left has not expired.
    remaining_expiry = static_cast<std::uint32_t>((left_ms + 999) / 1000);
  }
  bool ce_done = add_cloud_event_headers(settings, msg, kafka_topic, now,
                                         out.headers);
  if (settings.copy_mqtt_properties) {
    if (props.has_payload_format)
      out.headers.emplace_back(payload_format_header,
                               props.payload_format ? "1" : "0");
    if (!props.response_topic.empty())
      out.headers.emplace_back(response_topic_header, props.response_topic);
    if (remaining_expiry)
      out.headers.emplace_back(message_expiry_header,
                               std::to_string(*remaining_expiry));
    if (!props.correlation_data.empty())
      out.headers.emplace_back(correlation_data_header, props.correlation_data);
    if (!props.content_type.empty())
      out.headers.emplace_back(content_type_header, props.content_type);
    for (auto& [name, value] : props.user_properties) {
      bool ce_attribute = is_ce_attribute(name)
                          || (name.rfind("ce_", 0) == 0
                              && is_ce_attribute(name.substr(3)));
      if (!(ce_done && ce_attribute))
        out.headers.emplace_back(name, value);
    }
  }
  switch (settings.partitioning) {
    case partition_strategy::mqtt_topic:
      out.key = msg.topic;
      break;
    case partition_strategy::property:
      for (auto& [name, value] : props.user_properties)
        if (name == settings.partition_key_property) {
          out.key = value;
          break;
        }
      break;
    default:
      break;
  }
  return out;
}

std::size_t add_header_properties(const header_list& headers,
                                  mqtt_properties& out) {
  std::size_t dropped = 0;
  for (auto& [name, value] : headers) {
    if (name.size() > max_property_size || value.size() > max_property_size
        || !valid_mqtt_utf8(name) || !valid_mqtt_utf8(value)) {
      ++dropped;
      continue;
    }
    out.user_properties.emplace_back(name, value);
  }
  return dropped;
}

bool is_valid_topic_name(std::string_view topic) {
  if (topic.empty() || topic.size() > 249 || topic == "." || topic == "..")
    return false;
  for (char c : topic)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_'
          || c == '-'))
      return false;
  return true;
}

std::string rfc3339(message::clock::time_point time) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(time.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[64]; // room for any int the compiler cannot rule out
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                utc.tm_min, utc.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

} // namespace hubflow::kafka
