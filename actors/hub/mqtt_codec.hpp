// MQTT 3.1.1 (protocol level 4, and 3.1 = level 3) and 5.0 packets: the
// packet model, an incremental decoder that parses every complete packet of a
// read straight from the read buffer, and an encoder that appends to a
// connection's output buffer. Malformed input yields a decode error carrying
// the MQTT 5 reason code the broker must answer with (0x81 malformed, 0x82
// protocol error, 0x95 packet too large, 0x84 unsupported protocol version).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <caf/error.hpp> // core/message.hpp uses caf::error without including it

#include "core/message.hpp"

namespace hubflow::mqtt {

using byte_buffer = std::vector<char>;

enum class packet_type : std::uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
  auth = 15,
};

const char* to_string(packet_type t);

/// Protocol levels as carried in CONNECT.
inline constexpr std::uint8_t v31 = 3;
inline constexpr std::uint8_t v311 = 4;
inline constexpr std::uint8_t v5 = 5;

/// MQTT 5 reason codes (OASIS MQTT 5.0, 2.4).
namespace rc {
inline constexpr std::uint8_t success = 0x00;
inline constexpr std::uint8_t granted_qos1 = 0x01;
inline constexpr std::uint8_t granted_qos2 = 0x02;
inline constexpr std::uint8_t disconnect_with_will = 0x04;
inline constexpr std::uint8_t no_matching_subscribers = 0x10;
inline constexpr std::uint8_t no_subscription_existed = 0x11;
inline constexpr std::uint8_t unspecified_error = 0x80;
inline constexpr std::uint8_t malformed_packet = 0x81;
inline constexpr std::uint8_t protocol_error = 0x82;
inline constexpr std::uint8_t implementation_specific = 0x83;
inline constexpr std::uint8_t unsupported_protocol_version = 0x84;
inline constexpr std::uint8_t client_id_not_valid = 0x85;
inline constexpr std::uint8_t bad_username_or_password = 0x86;
inline constexpr std::uint8_t not_authorized = 0x87;
inline constexpr std::uint8_t server_unavailable = 0x88;
inline constexpr std::uint8_t server_busy = 0x89;
inline constexpr std::uint8_t server_shutting_down = 0x8B;
inline constexpr std::uint8_t bad_authentication_method = 0x8C;
inline constexpr std::uint8_t keep_alive_timeout = 0x8D;
inline constexpr std::uint8_t session_taken_over = 0x8E;
inline constexpr std::uint8_t topic_filter_invalid = 0x8F;
inline constexpr std::uint8_t topic_name_invalid = 0x90;
inline constexpr std::uint8_t packet_id_in_use = 0x91;
inline constexpr std::uint8_t packet_id_not_found = 0x92;
inline constexpr std::uint8_t receive_maximum_exceeded = 0x93;
inline constexpr std::uint8_t topic_alias_invalid = 0x94;
inline constexpr std::uint8_t packet_too_large = 0x95;
inline constexpr std::uint8_t quota_exceeded = 0x97;
inline constexpr std::uint8_t payload_format_invalid = 0x99;
inline constexpr std::uint8_t retain_not_supported = 0x9A;
inline constexpr std::uint8_t qos_not_supported = 0x9B;
inline constexpr std::uint8_t shared_subscriptions_not_supported = 0x9E;
inline constexpr std::uint8_t subscription_ids_not_supported = 0xA1;
inline constexpr std::uint8_t wildcard_subscriptions_not_supported = 0xA2;
} // namespace rc

/// MQTT 3.1.1 CONNACK return codes.
namespace rc311 {
inline constexpr std::uint8_t accepted = 0;
inline constexpr std::uint8_t unacceptable_protocol_version = 1;
inline constexpr std::uint8_t identifier_rejected = 2;
inline constexpr std::uint8_t server_unavailable = 3;
inline constexpr std::uint8_t bad_username_or_password = 4;
inline constexpr std::uint8_t not_authorized = 5;
} // namespace rc311

/// Every MQTT 5 property. Absent properties are empty optionals; message
/// properties (payload format, expiry, content type, response topic,
/// correlation data, user properties) of PUBLISH and will messages live in
/// hubflow::mqtt_properties instead, so they pass through untouched.
struct properties {
  std::optional<std::uint8_t> payload_format;          // 0x01
  std::optional<std::uint32_t> message_expiry;         // 0x02
  std::optional<std::string> content_type;             // 0x03
  std::optional<std::string> response_topic;           // 0x08
  std::optional<std::string> correlation_data;         // 0x09
  std::vector<std::uint32_t> subscription_ids;         // 0x0B
  std::optional<std::uint32_t> session_expiry;         // 0x11
  std::optional<std::string> assigned_client_id;       // 0x12
  std::optional<std::uint16_t> server_keep_alive;      // 0x13
  std::optional<std::string> auth_method;              // 0x15
  std::optional<std::string> auth_data;                // 0x16
  std::optional<std::uint8_t> request_problem_info;    // 0x17
  std::optional<std::uint32_t> will_delay;             // 0x18
  std::optional<std::uint8_t> request_response_info;   // 0x19
  std::optional<std::string> response_info;            // 0x1A
  std::optional<std::string> server_reference;         // 0x1C
  std::optional<std::string> reason_string;            // 0x1F
  std::optional<std::uint16_t> receive_maximum;        // 0x21
  std::optional<std::uint16_t> topic_alias_maximum;    // 0x22
  std::optional<std::uint16_t> topic_alias;            // 0x23
  std::optional<std::uint8_t> maximum_qos;             // 0x24
  std::optional<std::uint8_t> retain_available;        // 0x25
  std::vector<std::pair<std::string, std::string>> user_properties; // 0x26
  std::optional<std::uint32_t> maximum_packet_size;    // 0x27
  std::optional<std::uint8_t> wildcard_sub_available;  // 0x28
  std::optional<std::uint8_t> sub_id_available;        // 0x29
  std::optional<std::uint8_t> shared_sub_available;    // 0x2A

  bool operator==(const properties&) const = default;
};

struct connect_packet {
  std::uint8_t version = v311; // protocol level
  bool clean_start = true;
  std::uint16_t keep_alive = 60;
  std::string client_id;
  properties props;
  bool has_will = false;
  message will;                       // topic, body, qos, retain, properties
  std::uint32_t will_delay = 0;       // v5 will delay interval, seconds
  std::optional<std::string> username;
  std::optional<std::string> password;

  bool operator==(const connect_packet& o) const;
};

struct connack_packet {
  bool session_present = false;
  std::uint8_t reason = 0; // v5 reason code or v3.1.1 return code
  properties props;
  bool operator==(const connack_packet&) const = default;
};

/// PUBLISH. `msg` holds topic, payload, qos, retain and the v5 message
/// properties; the rest is per hop.
struct publish_packet {
  message msg;
  std::uint16_t packet_id = 0;
  bool dup = false;
  std::uint16_t topic_alias = 0;              // 0: none
  std::vector<std::uint32_t> subscription_ids; // server to client only

  bool operator==(const publish_packet& o) const;
};

/// PUBACK, PUBREC, PUBREL, PUBCOMP.
struct ack_packet {
  packet_type type = packet_type::puback;
  std::uint16_t packet_id = 0;
  std::uint8_t reason = rc::success;
  properties props;
  bool operator==(const ack_packet&) const = default;
};

/// Subscription options byte (v5 3.8.3.1; v3.1.1 uses only the qos).
struct subscription_options {
  std::uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0; // 0 send, 1 send if new, 2 never
  bool operator==(const subscription_options&) const = default;
};

struct subscribe_packet {
  std::uint16_t packet_id = 0;
  properties props; // subscription identifier, user properties
  std::vector<std::pair<std::string, subscription_options>> filters;
  bool operator==(const subscribe_packet&) const = default;
};

/// SUBACK and UNSUBACK: one reason code per filter.
struct suback_packet {
  packet_type type = packet_type::suback;
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<std::uint8_t> reasons;
  bool operator==(const suback_packet&) const = default;
};

struct unsubscribe_packet {
  std::uint16_t packet_id = 0;
  properties props;
  std::vector<std::string> filters;
  bool operator==(const unsubscribe_packet&) const = default;
};

/// PINGREQ and PINGRESP.
struct ping_packet {
  packet_type type = packet_type::pingreq;
  bool operator==(const ping_packet&) const = default;
};

/// DISCONNECT (and AUTH, which has the same shape).
struct disconnect_packet {
  packet_type type = packet_type::disconnect;
  std::uint8_t reason = rc::success;
  properties props;
  bool operator==(const disconnect_packet&) const = default;
};

using packet = std::variant<connect_packet, connack_packet, publish_packet,
                            ack_packet, subscribe_packet, suback_packet,
                            unsubscribe_packet, ping_packet,
                            disconnect_packet>;

packet_type type_of(const packet& p);

// -- decoding -----------------------------------------------------------------

struct decode_options {
  /// Protocol level of the connection; 0 before CONNECT (then only CONNECT
  /// is accepted and its level is read from it).
  std::uint8_t version = 0;
  /// Largest whole packet (fixed header included) accepted.
  std::size_t max_packet_size = 268435455 + 5;
  /// User properties per property list (MQTT sets no bound; each costs two
  /// strings, so a 4 MiB packet could otherwise make a million of them).
  std::size_t max_user_properties = 65535;
  /// Whether packets are parsed as the server (true) or the client sees
  /// them. Decides which direction-specific rules apply.
  bool server = true;
};

enum class decode_status { ok, need_more, error };

struct decode_result {
  decode_status status = decode_status::need_more;
  std::size_t consumed = 0;     // bytes of the packet when ok
  std::uint8_t reason = 0;      // MQTT 5 reason code when error
  const char* what = "";        // static text describing the error
};

/// Decodes one packet from the front of `buf`. need_more when `buf` holds
/// no complete packet yet (but a packet already known to exceed
/// max_packet_size, or a remaining length longer than 4 bytes, is an error
/// at once).
decode_result decode(std::string_view buf, const decode_options& opts,
                     packet& out);

/// Keeps the bytes of an incomplete packet between reads and parses every
/// complete packet of each read in one go. Complete packets at the front of
/// a read are parsed straight from the read buffer (no copy).
class packet_reader {
public:
  /// Calls `on_packet(packet&)` for every complete packet; stops early when
  /// it returns false. Returns the error that ended parsing, or a result
  /// with status ok/need_more. `opts` is read before every packet, so the
  /// callback may change it (e.g. the version after CONNECT).
  template <class OnPacket>
  decode_result feed(std::string_view data, const decode_options& opts,
                     OnPacket&& on_packet) {
    if (!pending_.empty()) {
      pending_.append(data.data(), data.size());
      auto res = run(std::string_view{pending_}, opts, on_packet);
      pending_.erase(0, res.second);
      return res.first;
    }
    auto res = run(data, opts, on_packet);
    if (res.first.status != decode_status::error && res.second < data.size())
      pending_.assign(data.data() + res.second, data.size() - res.second);
    return res.first;
  }

  std::size_t buffered() const noexcept {
    return pending_.size();
  }

private:
  template <class OnPacket>
  std::pair<decode_result, std::size_t>
  run(std::string_view buf, const decode_options& opts, OnPacket& on_packet) {
    std::size_t offset = 0;
    for (;;) {
      auto res = decode(buf.substr(offset), opts, scratch_);
      if (res.status != decode_status::ok)
        return {res, offset};
      offset += res.consumed;
      if (!on_packet(scratch_))
        return {res, offset};
    }
  }

  std::string pending_;
  packet scratch_;
};

// -- encoding -----------------------------------------------------------------

/// Appends the encoding of `p` for protocol level `version` to `out`.
/// Properties are only written for v5.
void encode(const packet& p, std::uint8_t version, byte_buffer& out);

/// What varies per receiver of one PUBLISH.
struct publish_header {
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;
  std::uint16_t topic_alias = 0;    // v5: sent when non-zero
  bool omit_topic = false;          // v5: alias already known to the client
  std::span<const std::uint32_t> subscription_ids;
  /// v5: the remaining message expiry to send instead of the received one.
  std::optional<std::uint32_t> message_expiry;
};

/// The header a decoded PUBLISH carries (its subscription ids point into
/// `p`), to encode it again as it arrived.
publish_header header_of(const publish_packet& p);

/// Appends a PUBLISH of `msg` without copying anything but the payload
/// bytes into `out`. Returns the size of the encoded packet.
std::size_t encode_publish(const message& msg, const publish_header& h,
                           std::uint8_t version, byte_buffer& out);

/// Size encode_publish would produce (for the client's maximum packet size).
std::size_t publish_size(const message& msg, const publish_header& h,
                         std::uint8_t version);

/// Appends a 4-byte ack (PUBACK/PUBREC/PUBREL/PUBCOMP) with success.
void encode_simple_ack(packet_type type, std::uint16_t packet_id,
                       byte_buffer& out);

// -- helpers ------------------------------------------------------------------

/// Number of bytes of the variable byte integer encoding of `v`.
std::size_t varint_size(std::uint32_t v) noexcept;

} // namespace hubflow::mqtt
