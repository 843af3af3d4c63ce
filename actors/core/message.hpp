// The one message type that flows through hubflow: from MQTT sessions and
// endpoint sources through rules and functions to hub topics and endpoints.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

namespace hubflow {

/// Immutable payload bytes shared by every copy of a message, so fanning a
/// message out to many subscribers copies a pointer, never the bytes.
class payload {
public:
  payload() = default;
  explicit payload(std::string bytes)
    : bytes_(std::make_shared<const std::string>(std::move(bytes))) {
  }

  std::string_view view() const noexcept {
    return bytes_ ? std::string_view{*bytes_} : std::string_view{};
  }
  const std::string& str() const noexcept {
    static const std::string empty;
    return bytes_ ? *bytes_ : empty;
  }
  std::size_t size() const noexcept {
    return bytes_ ? bytes_->size() : 0;
  }
  bool empty() const noexcept {
    return size() == 0;
  }
  /// True when both payloads share the same bytes (no copy was made).
  bool shares_bytes_with(const payload& other) const noexcept {
    return bytes_ == other.bytes_;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, payload& x) {
    std::string tmp = x.str();
    auto load = caf::meta::load_callback([&]() -> caf::error {
      x = payload{std::move(tmp)};
      return caf::none;
    });
    return f(caf::meta::type_name("payload"), tmp, load);
  }

private:
  std::shared_ptr<const std::string> bytes_;
};

/// MQTT 5 properties that travel with a message end to end. An absent
/// property is `has_* == false` (MQTT 3.1.1 messages carry none).
struct mqtt_properties {
  bool has_payload_format = false;
  std::uint8_t payload_format = 0; // 0 = bytes, 1 = UTF-8
  bool has_message_expiry = false;
  std::uint32_t message_expiry = 0; // seconds, as received
  std::string content_type;
  std::string response_topic;
  std::string correlation_data;
  std::vector<std::pair<std::string, std::string>> user_properties;

  bool operator==(const mqtt_properties&) const = default;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 mqtt_properties& x) {
    return f(caf::meta::type_name("mqtt_properties"), x.has_payload_format,
             x.payload_format, x.has_message_expiry, x.message_expiry,
             x.content_type, x.response_topic, x.correlation_data,
             x.user_properties);
  }
};

/// A message inside hubflow. Copying one is cheap: the payload is shared.
struct message {
  using clock = std::chrono::system_clock;

  std::string topic;
  payload body;
  std::uint8_t qos = 0;
  bool retain = false;
  mqtt_properties properties;
  /// When hubflow received the message (expiry accounting, latency stats).
  clock::time_point received = clock::now();
  /// Who brought it in: an MQTT client id, a rule name or an endpoint name.
  std::string origin;

  /// Milliseconds since the epoch of `received` (Baetyl's messageTimestamp).
  std::int64_t received_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             received.time_since_epoch())
      .count();
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, message& x) {
    auto ns = x.received.time_since_epoch().count();
    auto load = caf::meta::load_callback([&]() -> caf::error {
      x.received = clock::time_point{clock::duration{ns}};
      return caf::none;
    });
    return f(caf::meta::type_name("message"), x.topic, x.body, x.qos,
             x.retain, x.properties, ns, x.origin, load);
  }
};

} // namespace hubflow
