#include "hub/mqtt_codec.hpp"

#include <array>
#include <cstring>

#include "core/topic.hpp"

namespace hubflow::mqtt {

namespace {

// -- property table -----------------------------------------------------------

// Where a property may appear: one bit per packet type, bit 0 for the will
// properties inside CONNECT.
constexpr std::uint32_t bit(packet_type t) {
  return 1u << static_cast<unsigned>(t);
}
constexpr std::uint32_t will_bit = 1u;

enum class prop_kind : std::uint8_t { none, byte, u16, u32, varint, str, bin, pair };

struct prop_info {
  prop_kind kind = prop_kind::none;
  std::uint32_t allowed = 0;
};

constexpr std::uint32_t all_packets = 0xFFFEu;
constexpr std::uint32_t publish_will = bit(packet_type::publish) | will_bit;
constexpr std::uint32_t acks = bit(packet_type::puback)
                               | bit(packet_type::pubrec)
                               | bit(packet_type::pubrel)
                               | bit(packet_type::pubcomp);

constexpr auto make_prop_table() {
  std::array<prop_info, 0x2B> t{};
  using pt = packet_type;
  t[0x01] = {prop_kind::byte, publish_will};
  t[0x02] = {prop_kind::u32, publish_will};
  t[0x03] = {prop_kind::str, publish_will};
  t[0x08] = {prop_kind::str, publish_will};
  t[0x09] = {prop_kind::bin, publish_will};
  t[0x0B] = {prop_kind::varint, bit(pt::publish) | bit(pt::subscribe)};
  t[0x11] = {prop_kind::u32,
             bit(pt::connect) | bit(pt::connack) | bit(pt::disconnect)};
  t[0x12] = {prop_kind::str, bit(pt::connack)};
  t[0x13] = {prop_kind::u16, bit(pt::connack)};
  t[0x15] = {prop_kind::str,
             bit(pt::connect) | bit(pt::connack) | bit(pt::auth)};
  t[0x16] = {prop_kind::bin,
             bit(pt::connect) | bit(pt::connack) | bit(pt::auth)};
  t[0x17] = {prop_kind::byte, bit(pt::connect)};
  t[0x18] = {prop_kind::u32, will_bit};
  t[0x19] = {prop_kind::byte, bit(pt::connect)};
  t[0x1A] = {prop_kind::str, bit(pt::connack)};
  t[0x1C] = {prop_kind::str, bit(pt::connack) | bit(pt::disconnect)};
  t[0x1F] = {prop_kind::str, bit(pt::connack) | acks | bit(pt::suback)
                               | bit(pt::unsuback) | bit(pt::disconnect)
                               | bit(pt::auth)};
  t[0x21] = {prop_kind::u16, bit(pt::connect) | bit(pt::connack)};
  t[0x22] = {prop_kind::u16, bit(pt::connect) | bit(pt::connack)};
  t[0x23] = {prop_kind::u16, bit(pt::publish)};
  t[0x24] = {prop_kind::byte, bit(pt::connack)};
  t[0x25] = {prop_kind::byte, bit(pt::connack)};
  t[0x26] = {prop_kind::pair, all_packets | will_bit};
  t[0x27] = {prop_kind::u32, bit(pt::connect) | bit(pt::connack)};
  t[0x28] = {prop_kind::byte, bit(pt::connack)};
  t[0x29] = {prop_kind::byte, bit(pt::connack)};
  t[0x2A] = {prop_kind::byte, bit(pt::connack)};
  return t;
}

constexpr auto prop_table = make_prop_table();

// -- reading ------------------------------------------------------------------

struct decode_failure {
  std::uint8_t reason;
  const char* what;
};

/// Bounds-checked reader over one packet's body. Every read that runs past
/// the end is a malformed packet.
class reader {
public:
  reader(const char* p, std::size_t n, std::size_t max_user_properties)
    : p_(reinterpret_cast<const std::uint8_t*>(p)),
      end_(p_ + n),
      max_user_properties_(max_user_properties) {
  }

  /// decode_options::max_user_properties, for every property list read.
  std::size_t max_user_properties() const noexcept {
    return max_user_properties_;
  }

  std::size_t left() const noexcept {
    return static_cast<std::size_t>(end_ - p_);
  }
  bool empty() const noexcept {
    return p_ == end_;
  }
  const char* pos() const noexcept {
    return reinterpret_cast<const char*>(p_);
  }

  std::uint8_t u8() {
    need(1);
    return *p_++;
  }
  std::uint16_t u16() {
    need(2);
    auto v = static_cast<std::uint16_t>((p_[0] << 8) | p_[1]);
    p_ += 2;
    return v;
  }
  std::uint32_t u32() {
    need(4);
    auto v = (std::uint32_t{p_[0]} << 24) | (std::uint32_t{p_[1]} << 16)
             | (std::uint32_t{p_[2]} << 8) | std::uint32_t{p_[3]};
    p_ += 4;
    return v;
  }
  std::uint32_t varint() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      auto b = u8();
      v |= std::uint32_t{b & 0x7Fu} << (7 * i);
      if ((b & 0x80) == 0)
        return v;
    }
    throw decode_failure{rc::malformed_packet,
                         "variable byte integer longer than 4 bytes"};
  }
  std::string_view bin_view() {
    auto n = u16();
    need(n);
    std::string_view v{reinterpret_cast<const char*>(p_), n};
    p_ += n;
    return v;
  }
  std::string bin() {
    return std::string{bin_view()};
  }
  std::string str() {
    auto v = bin_view();
    if (!valid_mqtt_utf8(v))
      throw decode_failure{rc::malformed_packet, "invalid UTF-8 string"};
    return std::string{v};
  }
  std::string_view rest() {
    std::string_view v{reinterpret_cast<const char*>(p_), left()};
    p_ = end_;
    return v;
  }
  reader sub(std::size_t n) {
    need(n);
    reader r{reinterpret_cast<const char*>(p_), n, max_user_properties_};
    p_ += n;
    return r;
  }

private:
  void need(std::size_t n) {
    if (left() < n)
      throw decode_failure{rc::malformed_packet, "packet shorter than its fields"};
  }

  const std::uint8_t* p_;
  const std::uint8_t* end_;
  std::size_t max_user_properties_;
};

[[noreturn]] void fail(std::uint8_t reason, const char* what) {
  throw decode_failure{reason, what};
}

template <class T>
void set_once(std::optional<T>& slot, T value) {
  if (slot)
    fail(rc::protocol_error, "property included more than once");
  slot = std::move(value);
}

std::uint8_t flag_byte(reader& r) {
  auto v = r.u8();
  if (v > 1)
    fail(rc::protocol_error, "property value must be 0 or 1");
  return v;
}

/// Reads a property block (its length first). `where` is the packet type bit
/// (or will_bit) the properties belong to.
void read_properties(reader& outer, std::uint32_t where, properties& out) {
  auto len = outer.varint();
  auto r = outer.sub(len);
  while (!r.empty()) {
    auto id = r.varint();
    if (id >= prop_table.size() || prop_table[id].kind == prop_kind::none)
      fail(rc::malformed_packet, "unknown property identifier");
    if ((prop_table[id].allowed & where) == 0)
      fail(rc::protocol_error, "property not allowed in this packet");
    switch (id) {
      case 0x01: set_once(out.payload_format, flag_byte(r)); break;
      case 0x02: set_once(out.message_expiry, r.u32()); break;
      case 0x03: set_once(out.content_type, r.str()); break;
      case 0x08: set_once(out.response_topic, r.str()); break;
      case 0x09: set_once(out.correlation_data, r.bin()); break;
      case 0x0B: {
        auto v = r.varint();
        if (v == 0)
          fail(rc::protocol_error, "subscription identifier 0");
        out.subscription_ids.push_back(v);
        break;
      }
      case 0x11: set_once(out.session_expiry, r.u32()); break;
      case 0x12: set_once(out.assigned_client_id, r.str()); break;
      case 0x13: set_once(out.server_keep_alive, r.u16()); break;
      case 0x15: set_once(out.auth_method, r.str()); break;
      case 0x16: set_once(out.auth_data, r.bin()); break;
      case 0x17: set_once(out.request_problem_info, flag_byte(r)); break;
      case 0x18: set_once(out.will_delay, r.u32()); break;
      case 0x19: set_once(out.request_response_info, flag_byte(r)); break;
      case 0x1A: set_once(out.response_info, r.str()); break;
      case 0x1C: set_once(out.server_reference, r.str()); break;
      case 0x1F: set_once(out.reason_string, r.str()); break;
      case 0x21: {
        auto v = r.u16();
        if (v == 0)
          fail(rc::protocol_error, "receive maximum 0");
        set_once(out.receive_maximum, v);
        break;
      }
      case 0x22: set_once(out.topic_alias_maximum, r.u16()); break;
      case 0x23: set_once(out.topic_alias, r.u16()); break;
      case 0x24: set_once(out.maximum_qos, flag_byte(r)); break;
      case 0x25: set_once(out.retain_available, flag_byte(r)); break;
      case 0x26: {
        if (out.user_properties.size() >= r.max_user_properties())
          fail(rc::quota_exceeded, "too many user properties");
        auto k = r.str();
        auto v = r.str();
        out.user_properties.emplace_back(std::move(k), std::move(v));
        break;
      }
      case 0x27: {
        auto v = r.u32();
        if (v == 0)
          fail(rc::protocol_error, "maximum packet size 0");
        set_once(out.maximum_packet_size, v);
        break;
      }
      case 0x28: set_once(out.wildcard_sub_available, flag_byte(r)); break;
      case 0x29: set_once(out.sub_id_available, flag_byte(r)); break;
      case 0x2A: set_once(out.shared_sub_available, flag_byte(r)); break;
      default: fail(rc::malformed_packet, "unknown property identifier");
    }
  }
}

/// Moves the message properties out of a decoded property block.
void take_message_properties(properties& p, mqtt_properties& m) {
  if (p.payload_format) {
    m.has_payload_format = true;
    m.payload_format = *p.payload_format;
  }
  if (p.message_expiry) {
    m.has_message_expiry = true;
    m.message_expiry = *p.message_expiry;
  }
  if (p.content_type)
    m.content_type = std::move(*p.content_type);
  if (p.response_topic)
    m.response_topic = std::move(*p.response_topic);
  if (p.correlation_data)
    m.correlation_data = std::move(*p.correlation_data);
  m.user_properties = std::move(p.user_properties);
}

void check_topic_name(std::string_view topic) {
  // Wildcards are not allowed in topic names; an empty name is only valid
  // with a topic alias, which the session checks.
  // A plain loop: find_first_of runs memchr over "+#" for every byte.
  for (char c : topic)
    if (c == '+' || c == '#')
      fail(rc::topic_name_invalid, "wildcard in topic name");
}

connect_packet read_connect(reader& r) {
  connect_packet c;
  auto name = r.bin_view();
  auto level = r.u8();
  if (!((name == "MQTT" && (level == v311 || level == v5))
        || (name == "MQIsdp" && level == v31))) {
    if (name != "MQTT" && name != "MQIsdp")
      fail(rc::malformed_packet, "unknown protocol name");
    fail(rc::unsupported_protocol_version, "unsupported protocol level");
  }
  c.version = level;
  auto flags = r.u8();
  if (flags & 0x01)
    fail(rc::malformed_packet, "reserved CONNECT flag set");
  c.clean_start = (flags & 0x02) != 0;
  c.has_will = (flags & 0x04) != 0;
  std::uint8_t will_qos = (flags >> 3) & 0x03;
  bool will_retain = (flags & 0x20) != 0;
  bool has_password = (flags & 0x40) != 0;
  bool has_username = (flags & 0x80) != 0;
  if (!c.has_will && (will_qos != 0 || will_retain))
    fail(rc::malformed_packet, "will qos/retain without will flag");
  if (will_qos == 3)
    fail(rc::malformed_packet, "will qos 3");
  if (level != v5 && has_password && !has_username)
    fail(rc::malformed_packet, "password without username");
  c.keep_alive = r.u16();
  if (level == v5)
    read_properties(r, bit(packet_type::connect), c.props);
  c.client_id = r.str();
  if (c.has_will) {
    if (level == v5) {
      properties wp;
      read_properties(r, will_bit, wp);
      c.will_delay = wp.will_delay.value_or(0);
      take_message_properties(wp, c.will.properties);
    }
    c.will.topic = r.str();
    if (c.will.topic.empty())
      fail(rc::topic_name_invalid, "empty will topic");
    check_topic_name(c.will.topic);
    c.will.body = payload{r.bin()};
    c.will.qos = will_qos;
    c.will.retain = will_retain;
  }
  if (has_username)
    c.username = r.str();
  if (has_password)
    c.password = r.bin();
  if (!r.empty())
    fail(rc::malformed_packet, "trailing bytes after CONNECT payload");
  return c;
}

connack_packet read_connack(reader& r, std::uint8_t version) {
  connack_packet c;
  auto flags = r.u8();
  if (flags & 0xFE)
    fail(rc::malformed_packet, "reserved CONNACK flag set");
  c.session_present = flags & 0x01;
  c.reason = r.u8();
  if (version == v5)
    read_properties(r, bit(packet_type::connack), c.props);
  return c;
}

void read_publish(reader& r, std::uint8_t flags, const decode_options& o,
                  publish_packet& p) {
  p.dup = (flags & 0x08) != 0;
  p.msg.qos = (flags >> 1) & 0x03;
  p.msg.retain = (flags & 0x01) != 0;
  if (p.msg.qos == 3)
    fail(rc::malformed_packet, "PUBLISH with qos 3");
  if (p.dup && p.msg.qos == 0)
    fail(rc::malformed_packet, "PUBLISH qos 0 with DUP set");
  p.msg.topic = r.str();
  check_topic_name(p.msg.topic);
  if (p.msg.qos > 0) {
    p.packet_id = r.u16();
    if (p.packet_id == 0)
      fail(rc::protocol_error, "PUBLISH packet identifier 0");
  }
  if (o.version == v5) {
    // Most publishes carry no properties: skip the property block cheaply.
    if (r.left() > 0 && *r.pos() == 0) {
      r.u8();
    } else {
      properties props;
      read_properties(r, bit(packet_type::publish), props);
      if (props.topic_alias) {
        if (*props.topic_alias == 0)
          fail(rc::topic_alias_invalid, "topic alias 0");
        p.topic_alias = *props.topic_alias;
      }
      if (!props.subscription_ids.empty() && o.server)
        fail(rc::protocol_error, "subscription identifier from a client");
      p.subscription_ids = std::move(props.subscription_ids);
      take_message_properties(props, p.msg.properties);
    }
  }
  if (p.msg.topic.empty() && p.topic_alias == 0)
    fail(o.version == v5 ? rc::protocol_error : rc::malformed_packet,
         "empty topic name");
  auto body = r.rest();
  if (p.msg.properties.has_payload_format && p.msg.properties.payload_format == 1
      && !valid_mqtt_utf8(body))
    fail(rc::payload_format_invalid, "payload is not the UTF-8 it claims");
  p.msg.body = payload{std::string{body}};
}

ack_packet read_ack(reader& r, packet_type t, std::uint8_t version) {
  ack_packet a;
  a.type = t;
  a.packet_id = r.u16();
  if (a.packet_id == 0)
    fail(rc::protocol_error, "packet identifier 0");
  if (version == v5) {
    if (!r.empty())
      a.reason = r.u8();
    if (!r.empty())
      read_properties(r, bit(t), a.props);
  }
  if (!r.empty())
    fail(rc::malformed_packet, "trailing bytes after acknowledgement");
  return a;
}

subscribe_packet read_subscribe(reader& r, std::uint8_t version) {
  subscribe_packet s;
  s.packet_id = r.u16();
  if (s.packet_id == 0)
    fail(rc::protocol_error, "packet identifier 0");
  if (version == v5) {
    read_properties(r, bit(packet_type::subscribe), s.props);
    if (s.props.subscription_ids.size() > 1)
      fail(rc::protocol_error, "more than one subscription identifier");
  }
  while (!r.empty()) {
    auto filter = r.str();
    auto b = r.u8();
    subscription_options o;
    o.qos = b & 0x03;
    if (o.qos == 3)
      fail(rc::malformed_packet, "subscription qos 3");
    if (version == v5) {
      if (b & 0xC0)
        fail(rc::malformed_packet, "reserved subscription option bits set");
      o.no_local = (b & 0x04) != 0;
      o.retain_as_published = (b & 0x08) != 0;
      o.retain_handling = (b >> 4) & 0x03;
      if (o.retain_handling == 3)
        fail(rc::protocol_error, "retain handling 3");
    } else if (b & 0xFC) {
      fail(rc::malformed_packet, "reserved subscription option bits set");
    }
    s.filters.emplace_back(std::move(filter), o);
  }
  if (s.filters.empty())
    fail(rc::protocol_error, "SUBSCRIBE without topic filters");
  return s;
}

suback_packet read_suback(reader& r, packet_type t, std::uint8_t version) {
  suback_packet s;
  s.type = t;
  s.packet_id = r.u16();
  if (version == v5)
    read_properties(r, bit(t), s.props);
  // A 3.1.1 UNSUBACK is the packet id alone (3.11.1: remaining length 2).
  if (version != v5 && t == packet_type::unsuback && !r.empty())
    fail(rc::malformed_packet, "MQTT 3.1.1 UNSUBACK longer than 2 bytes");
  while (!r.empty())
    s.reasons.push_back(r.u8());
  return s;
}

unsubscribe_packet read_unsubscribe(reader& r, std::uint8_t version) {
  unsubscribe_packet u;
  u.packet_id = r.u16();
  if (u.packet_id == 0)
    fail(rc::protocol_error, "packet identifier 0");
  if (version == v5)
    read_properties(r, bit(packet_type::unsubscribe), u.props);
  while (!r.empty())
    u.filters.push_back(r.str());
  if (u.filters.empty())
    fail(rc::protocol_error, "UNSUBSCRIBE without topic filters");
  return u;
}

disconnect_packet read_disconnect(reader& r, packet_type t,
                                  std::uint8_t version) {
  disconnect_packet d;
  d.type = t;
  if (version == v5) {
    if (!r.empty())
      d.reason = r.u8();
    if (!r.empty())
      read_properties(r, bit(t), d.props);
  } else if (t == packet_type::auth) {
    fail(rc::malformed_packet, "AUTH before MQTT 5");
  }
  if (!r.empty())
    fail(rc::malformed_packet, "trailing bytes after DISCONNECT");
  return d;
}

bool server_may_receive(packet_type t) {
  switch (t) {
    case packet_type::connack:
    case packet_type::suback:
    case packet_type::unsuback:
    case packet_type::pingresp:
      return false;
    default:
      return true;
  }
}

// -- writing ------------------------------------------------------------------

struct size_sink {
  std::size_t n = 0;
  void byte(std::uint8_t) {
    ++n;
  }
  void bytes(const void*, std::size_t k) {
    n += k;
  }
};

struct buffer_sink {
  byte_buffer& out;
  void byte(std::uint8_t b) {
    out.push_back(static_cast<char>(b));
  }
  void bytes(const void* p, std::size_t k) {
    auto c = static_cast<const char*>(p);
    out.insert(out.end(), c, c + k);
  }
};

template <class S>
void put16(S& s, std::uint16_t v) {
  s.byte(static_cast<std::uint8_t>(v >> 8));
  s.byte(static_cast<std::uint8_t>(v));
}

template <class S>
void put32(S& s, std::uint32_t v) {
  s.byte(static_cast<std::uint8_t>(v >> 24));
  s.byte(static_cast<std::uint8_t>(v >> 16));
  s.byte(static_cast<std::uint8_t>(v >> 8));
  s.byte(static_cast<std::uint8_t>(v));
}

template <class S>
void putvar(S& s, std::uint32_t v) {
  do {
    std::uint8_t b = v & 0x7F;
    v >>= 7;
    if (v)
      b |= 0x80;
    s.byte(b);
  } while (v);
}

template <class S>
void putstr(S& s, std::string_view v) {
  put16(s, static_cast<std::uint16_t>(v.size()));
  s.bytes(v.data(), v.size());
}

template <class S>
void prop_byte(S& s, std::uint8_t id, const std::optional<std::uint8_t>& v) {
  if (v) {
    s.byte(id);
    s.byte(*v);
  }
}
template <class S>
void prop_u16(S& s, std::uint8_t id, const std::optional<std::uint16_t>& v) {
  if (v) {
    s.byte(id);
    put16(s, *v);
  }
}
template <class S>
void prop_u32(S& s, std::uint8_t id, const std::optional<std::uint32_t>& v) {
  if (v) {
    s.byte(id);
    put32(s, *v);
  }
}
template <class S>
void prop_str(S& s, std::uint8_t id, const std::optional<std::string>& v) {
  if (v) {
    s.byte(id);
    putstr(s, *v);
  }
}

template <class S>
void put_user_properties(
  S& s, const std::vector<std::pair<std::string, std::string>>& ups) {
  for (auto& [k, v] : ups) {
    s.byte(0x26);
    putstr(s, k);
    putstr(s, v);
  }
}

/// Message properties of a PUBLISH or will (without the length prefix).
template <class S>
void put_message_properties(S& s, const mqtt_properties& m,
                            std::optional<std::uint32_t> expiry_override) {
  if (m.has_payload_format) {
    s.byte(0x01);
    s.byte(m.payload_format);
  }
  if (expiry_override || m.has_message_expiry) {
    s.byte(0x02);
    put32(s, expiry_override ? *expiry_override : m.message_expiry);
  }
  if (!m.content_type.empty()) {
    s.byte(0x03);
    putstr(s, m.content_type);
  }
  if (!m.response_topic.empty()) {
    s.byte(0x08);
    putstr(s, m.response_topic);
  }
  if (!m.correlation_data.empty()) {
    s.byte(0x09);
    putstr(s, m.correlation_data);
  }
  put_user_properties(s, m.user_properties);
}

/// The property list without its length prefix.
template <class S>
void put_property_list(S& s, const properties& p) {
  prop_byte(s, 0x01, p.payload_format);
  prop_u32(s, 0x02, p.message_expiry);
  prop_str(s, 0x03, p.content_type);
  prop_str(s, 0x08, p.response_topic);
  prop_str(s, 0x09, p.correlation_data);
  for (auto id : p.subscription_ids) {
    s.byte(0x0B);
    putvar(s, id);
  }
  prop_u32(s, 0x11, p.session_expiry);
  prop_str(s, 0x12, p.assigned_client_id);
  prop_u16(s, 0x13, p.server_keep_alive);
  prop_str(s, 0x15, p.auth_method);
  prop_str(s, 0x16, p.auth_data);
  prop_byte(s, 0x17, p.request_problem_info);
  prop_u32(s, 0x18, p.will_delay);
  prop_byte(s, 0x19, p.request_response_info);
  prop_str(s, 0x1A, p.response_info);
  prop_str(s, 0x1C, p.server_reference);
  prop_str(s, 0x1F, p.reason_string);
  prop_u16(s, 0x21, p.receive_maximum);
  prop_u16(s, 0x22, p.topic_alias_maximum);
  prop_u16(s, 0x23, p.topic_alias);
  prop_byte(s, 0x24, p.maximum_qos);
  prop_byte(s, 0x25, p.retain_available);
  put_user_properties(s, p.user_properties);
  prop_u32(s, 0x27, p.maximum_packet_size);
  prop_byte(s, 0x28, p.wildcard_sub_available);
  prop_byte(s, 0x29, p.sub_id_available);
  prop_byte(s, 0x2A, p.shared_sub_available);
}

template <class S>
void put_properties(S& s, const properties& p) {
  size_sink n;
  put_property_list(n, p);
  putvar(s, static_cast<std::uint32_t>(n.n));
  put_property_list(s, p);
}

template <class S>
void put_body(S& s, const connect_packet& c, std::uint8_t) {
  putstr(s, c.version == v31 ? "MQIsdp" : "MQTT");
  s.byte(c.version);
  std::uint8_t flags = 0;
  if (c.clean_start)
    flags |= 0x02;
  if (c.has_will)
    flags |= 0x04 | (c.will.qos << 3) | (c.will.retain ? 0x20 : 0);
  if (c.password)
    flags |= 0x40;
  if (c.username)
    flags |= 0x80;
  s.byte(flags);
  put16(s, c.keep_alive);
  if (c.version == v5)
    put_properties(s, c.props);
  putstr(s, c.client_id);
  if (c.has_will) {
    if (c.version == v5) {
      auto list = [&](auto& sink) {
        if (c.will_delay) {
          sink.byte(0x18);
          put32(sink, c.will_delay);
        }
        put_message_properties(sink, c.will.properties, std::nullopt);
      };
      size_sink n;
      list(n);
      putvar(s, static_cast<std::uint32_t>(n.n));
      list(s);
    }
    putstr(s, c.will.topic);
    putstr(s, c.will.body.view());
  }
  if (c.username)
    putstr(s, *c.username);
  if (c.password)
    putstr(s, *c.password);
}

template <class S>
void put_body(S& s, const connack_packet& c, std::uint8_t version) {
  s.byte(c.session_present ? 1 : 0);
  s.byte(c.reason);
  if (version == v5)
    put_properties(s, c.props);
}

template <class S>
void put_body(S& s, const ack_packet& a, std::uint8_t version) {
  put16(s, a.packet_id);
  if (version != v5)
    return;
  bool has_props = a.props != properties{};
  if (a.reason != rc::success || has_props)
    s.byte(a.reason);
  if (has_props)
    put_properties(s, a.props);
}

template <class S>
void put_body(S& s, const subscribe_packet& sp, std::uint8_t version) {
  put16(s, sp.packet_id);
  if (version == v5)
    put_properties(s, sp.props);
  for (auto& [filter, o] : sp.filters) {
    putstr(s, filter);
    std::uint8_t b = o.qos;
    if (version == v5)
      b |= (o.no_local ? 0x04 : 0) | (o.retain_as_published ? 0x08 : 0)
           | (o.retain_handling << 4);
    s.byte(b);
  }
}

template <class S>
void put_body(S& s, const suback_packet& sp, std::uint8_t version) {
  put16(s, sp.packet_id);
  if (version == v5)
    put_properties(s, sp.props);
  if (sp.type == packet_type::suback || version == v5)
    for (auto r : sp.reasons)
      s.byte(r);
}

template <class S>
void put_body(S& s, const unsubscribe_packet& u, std::uint8_t version) {
  put16(s, u.packet_id);
  if (version == v5)
    put_properties(s, u.props);
  for (auto& f : u.filters)
    putstr(s, f);
}

template <class S>
void put_body(S&, const ping_packet&, std::uint8_t) {
}

template <class S>
void put_body(S& s, const disconnect_packet& d, std::uint8_t version) {
  if (version != v5)
    return;
  bool has_props = d.props != properties{};
  if (d.reason != rc::success || has_props)
    s.byte(d.reason);
  if (has_props)
    put_properties(s, d.props);
}

template <class S>
void put_body(S& s, const publish_packet& p, std::uint8_t version) {
  put16(s, 0); // never used: publishes go through encode_publish
}

std::uint8_t first_byte(const packet& p) {
  auto t = static_cast<std::uint8_t>(type_of(p)) << 4;
  switch (type_of(p)) {
    case packet_type::pubrel:
    case packet_type::subscribe:
    case packet_type::unsubscribe:
      return t | 0x02;
    default:
      return t;
  }
}

std::size_t publish_body_size(const message& msg, const publish_header& h,
                              std::uint8_t version, std::size_t& props_len) {
  std::size_t n = 2 + (h.omit_topic ? 0 : msg.topic.size())
                  + (h.qos > 0 ? 2 : 0) + msg.body.size();
  props_len = 0;
  if (version == v5) {
    size_sink s;
    put_message_properties(s, msg.properties, h.message_expiry);
    if (h.topic_alias)
      s.n += 3;
    for (auto id : h.subscription_ids)
      s.n += 1 + varint_size(id);
    props_len = s.n;
    n += varint_size(static_cast<std::uint32_t>(props_len)) + props_len;
  }
  return n;
}

} // namespace

// -- public API ---------------------------------------------------------------

const char* to_string(packet_type t) {
  static constexpr const char* names[] = {
    "RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
    "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
  return names[static_cast<unsigned>(t) & 0x0F];
}

bool connect_packet::operator==(const connect_packet& o) const {
  auto same_will = [](const message& a, const message& b) {
    return a.topic == b.topic && a.body.view() == b.body.view()
           && a.qos == b.qos && a.retain == b.retain
           && a.properties == b.properties;
  };
  return version == o.version && clean_start == o.clean_start
         && keep_alive == o.keep_alive && client_id == o.client_id
         && props == o.props && has_will == o.has_will
         && (!has_will || same_will(will, o.will)) && will_delay == o.will_delay
         && username == o.username && password == o.password;
}

bool publish_packet::operator==(const publish_packet& o) const {
  return msg.topic == o.msg.topic && msg.body.view() == o.msg.body.view()
         && msg.qos == o.msg.qos && msg.retain == o.msg.retain
         && msg.properties == o.msg.properties && packet_id == o.packet_id
         && dup == o.dup && topic_alias == o.topic_alias
         && subscription_ids == o.subscription_ids;
}

packet_type type_of(const packet& p) {
  return std::visit(
    [](const auto& x) -> packet_type {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, connect_packet>)
        return packet_type::connect;
      else if constexpr (std::is_same_v<T, connack_packet>)
        return packet_type::connack;
      else if constexpr (std::is_same_v<T, publish_packet>)
        return packet_type::publish;
      else if constexpr (std::is_same_v<T, subscribe_packet>)
        return packet_type::subscribe;
      else if constexpr (std::is_same_v<T, unsubscribe_packet>)
        return packet_type::unsubscribe;
      else
        return x.type;
    },
    p);
}

decode_result decode(std::string_view buf, const decode_options& opts,
                     packet& out) {
  decode_result res;
  if (buf.size() < 2)
    return res;
  // Fixed header: type/flags byte, then the remaining length (1 to 4 bytes).
  auto b = reinterpret_cast<const std::uint8_t*>(buf.data());
  std::uint32_t remaining = 0;
  std::size_t header = 1;
  for (int i = 0;; ++i) {
    if (i == 4) {
      res.status = decode_status::error;
      res.reason = rc::malformed_packet;
      res.what = "remaining length longer than 4 bytes";
      return res;
    }
    if (header >= buf.size())
      return res; // need more
    auto byte = b[header++];
    remaining |= std::uint32_t{byte & 0x7Fu} << (7 * i);
    if ((byte & 0x80) == 0)
      break;
  }
  auto total = header + remaining;
  if (total > opts.max_packet_size) {
    res.status = decode_status::error;
    res.reason = rc::packet_too_large;
    res.what = "packet larger than the maximum packet size";
    return res;
  }
  if (buf.size() < total)
    return res;
  auto type = static_cast<packet_type>(b[0] >> 4);
  std::uint8_t flags = b[0] & 0x0F;
  res.consumed = total;
  try {
    if (opts.version == 0 && type != packet_type::connect)
      fail(rc::protocol_error, "first packet is not CONNECT");
    if (opts.version != 0 && type == packet_type::connect)
      fail(rc::protocol_error, "second CONNECT");
    if (opts.server && !server_may_receive(type))
      fail(rc::protocol_error, "packet type a server never receives");
    std::uint8_t expected_flags = 0;
    switch (type) {
      case packet_type::pubrel:
      case packet_type::subscribe:
      case packet_type::unsubscribe:
        expected_flags = 0x02;
        break;
      default:
        break;
    }
    if (type != packet_type::publish && flags != expected_flags)
      fail(rc::malformed_packet, "invalid fixed header flags");
    reader r{buf.data() + header, remaining, opts.max_user_properties};
    auto version = opts.version;
    switch (type) {
      case packet_type::connect:
        out = read_connect(r);
        break;
      case packet_type::connack:
        out = read_connack(r, version);
        break;
      case packet_type::publish: {
        // Reuse the variant's publish slot to keep its allocations.
        if (!std::holds_alternative<publish_packet>(out))
          out.emplace<publish_packet>();
        auto& p = std::get<publish_packet>(out);
        p.msg.properties = mqtt_properties{};
        p.msg.received = message::clock::now();
        p.topic_alias = 0;
        p.packet_id = 0;
        p.subscription_ids.clear();
        read_publish(r, flags, opts, p);
        break;
      }
      case packet_type::puback:
      case packet_type::pubrec:
      case packet_type::pubrel:
      case packet_type::pubcomp:
        out = read_ack(r, type, version);
        break;
      case packet_type::subscribe:
        out = read_subscribe(r, version);
        break;
      case packet_type::suback:
      case packet_type::unsuback:
        out = read_suback(r, type, version);
        break;
      case packet_type::unsubscribe:
        out = read_unsubscribe(r, version);
        break;
      case packet_type::pingreq:
      case packet_type::pingresp:
        if (remaining != 0)
          fail(rc::malformed_packet, "PINGREQ/PINGRESP with a body");
        out = ping_packet{type};
        break;
      case packet_type::disconnect:
      case packet_type::auth:
        out = read_disconnect(r, type, version);
        break;
      default:
        fail(rc::malformed_packet, "reserved packet type 0");
    }
  } catch (const decode_failure& e) {
    res.status = decode_status::error;
    res.reason = e.reason;
    res.what = e.what;
    return res;
  }
  res.status = decode_status::ok;
  return res;
}

publish_header header_of(const publish_packet& p) {
  publish_header h;
  h.qos = p.msg.qos;
  h.retain = p.msg.retain;
  h.dup = p.dup;
  h.packet_id = p.packet_id;
  h.topic_alias = p.topic_alias;
  h.omit_topic = p.topic_alias != 0 && p.msg.topic.empty();
  h.subscription_ids = p.subscription_ids;
  return h;
}

void encode(const packet& p, std::uint8_t version, byte_buffer& out) {
  if (auto pub = std::get_if<publish_packet>(&p)) {
    encode_publish(pub->msg, header_of(*pub), version, out);
    return;
  }
  std::visit(
    [&](const auto& x) {
      size_sink n;
      put_body(n, x, version);
      buffer_sink s{out};
      s.byte(first_byte(p));
      putvar(s, static_cast<std::uint32_t>(n.n));
      put_body(s, x, version);
    },
    p);
}

std::size_t publish_size(const message& msg, const publish_header& h,
                         std::uint8_t version) {
  std::size_t props_len = 0;
  auto body = publish_body_size(msg, h, version, props_len);
  return 1 + varint_size(static_cast<std::uint32_t>(body)) + body;
}

std::size_t encode_publish(const message& msg, const publish_header& h,
                           std::uint8_t version, byte_buffer& out) {
  std::size_t props_len = 0;
  auto body = publish_body_size(msg, h, version, props_len);
  auto start = out.size();
  out.reserve(start + body + 5);
  buffer_sink s{out};
  s.byte(static_cast<std::uint8_t>(0x30 | (h.dup ? 0x08 : 0) | (h.qos << 1)
                                   | (h.retain ? 0x01 : 0)));
  putvar(s, static_cast<std::uint32_t>(body));
  putstr(s, h.omit_topic ? std::string_view{} : std::string_view{msg.topic});
  if (h.qos > 0)
    put16(s, h.packet_id);
  if (version == v5) {
    putvar(s, static_cast<std::uint32_t>(props_len));
    put_message_properties(s, msg.properties, h.message_expiry);
    if (h.topic_alias) {
      s.byte(0x23);
      put16(s, h.topic_alias);
    }
    for (auto id : h.subscription_ids) {
      s.byte(0x0B);
      putvar(s, id);
    }
  }
  auto body_view = msg.body.view();
  s.bytes(body_view.data(), body_view.size());
  return out.size() - start;
}

void encode_simple_ack(packet_type type, std::uint16_t packet_id,
                       byte_buffer& out) {
  auto t = static_cast<std::uint8_t>(type) << 4;
  if (type == packet_type::pubrel)
    t |= 0x02;
  out.push_back(static_cast<char>(t));
  out.push_back(2);
  out.push_back(static_cast<char>(packet_id >> 8));
  out.push_back(static_cast<char>(packet_id & 0xFF));
}

std::size_t varint_size(std::uint32_t v) noexcept {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

} // namespace hubflow::mqtt
