// MQTT codec: round trips of every packet type for 3.1.1 and 5.0, the
// incremental reader, and the reason codes of malformed input.
#include "hub/mqtt_codec.hpp"

#include <random>

#include <gtest/gtest.h>

#include "core/topic.hpp"

using namespace hubflow;
using namespace hubflow::mqtt;

namespace {

decode_options server_opts(std::uint8_t version) {
  decode_options o;
  o.version = version;
  return o;
}

decode_options client_opts(std::uint8_t version) {
  decode_options o;
  o.version = version;
  o.server = false;
  return o;
}

std::string bytes(const byte_buffer& b) {
  return std::string{b.data(), b.size()};
}

packet round_trip(const packet& p, std::uint8_t version,
                  decode_options opts) {
  byte_buffer buf;
  encode(p, version, buf);
  packet out;
  auto res = decode(bytes(buf), opts, out);
  EXPECT_EQ(res.status, decode_status::ok) << res.what;
  EXPECT_EQ(res.consumed, buf.size());
  return out;
}

decode_result decode_bytes(std::string raw, decode_options opts) {
  packet out;
  return decode(raw, opts, out);
}

connect_packet full_connect_v5() {
  connect_packet c;
  c.version = v5;
  c.clean_start = false;
  c.keep_alive = 30;
  c.client_id = "dev-1";
  c.props.session_expiry = 3600;
  c.props.receive_maximum = 10;
  c.props.maximum_packet_size = 1024;
  c.props.topic_alias_maximum = 5;
  c.props.request_problem_info = 1;
  c.props.user_properties = {{"a", "1"}, {"a", "2"}};
  c.has_will = true;
  c.will.topic = "dev/1/status";
  c.will.body = payload{"offline"};
  c.will.qos = 1;
  c.will.retain = true;
  c.will.properties.has_message_expiry = true;
  c.will.properties.message_expiry = 60;
  c.will.properties.content_type = "text/plain";
  c.will_delay = 5;
  c.username = "user";
  c.password = std::string{"p\0ss", 4};
  return c;
}

} // namespace

TEST(mqtt_codec, connect_round_trip_v311_and_v5) {
  connect_packet c311;
  c311.version = v311;
  c311.client_id = "c";
  c311.username = "u";
  c311.password = "p";
  auto out = round_trip(c311, v311, server_opts(0));
  EXPECT_EQ(std::get<connect_packet>(out), c311);

  auto c5 = full_connect_v5();
  out = round_trip(c5, v5, server_opts(0));
  EXPECT_EQ(std::get<connect_packet>(out), c5);
}

TEST(mqtt_codec, publish_round_trip_with_every_message_property) {
  publish_packet p;
  p.msg.topic = "a/b";
  p.msg.body = payload{std::string(300, 'x')}; // two-byte remaining length
  p.msg.qos = 2;
  p.msg.retain = true;
  p.dup = true;
  p.packet_id = 77;
  p.msg.properties.has_payload_format = true;
  p.msg.properties.payload_format = 1;
  p.msg.properties.has_message_expiry = true;
  p.msg.properties.message_expiry = 9;
  p.msg.properties.content_type = "application/json";
  p.msg.properties.response_topic = "reply/here";
  p.msg.properties.correlation_data = std::string{"\x01\x00\x02", 3};
  p.msg.properties.user_properties = {{"k", "v"}};
  p.topic_alias = 3;
  auto out = round_trip(p, v5, server_opts(v5));
  EXPECT_EQ(std::get<publish_packet>(out), p);

  // Server to client: subscription identifiers are allowed there.
  p.subscription_ids = {1, 300000};
  out = round_trip(p, v5, client_opts(v5));
  EXPECT_EQ(std::get<publish_packet>(out), p);

  publish_packet q0;
  q0.msg.topic = "t";
  q0.msg.body = payload{"hello"};
  out = round_trip(q0, v311, server_opts(v311));
  EXPECT_EQ(std::get<publish_packet>(out), q0);
}

TEST(mqtt_codec, publish_size_matches_encoding) {
  message m;
  m.topic = "some/topic";
  m.body = payload{std::string(20000, 'y')};
  m.properties.user_properties = {{"x", "y"}};
  std::uint32_t ids[] = {5};
  publish_header h;
  h.qos = 1;
  h.packet_id = 9;
  h.subscription_ids = ids;
  h.message_expiry = 12;
  for (auto v : {v311, v5}) {
    byte_buffer buf;
    auto n = encode_publish(m, h, v, buf);
    EXPECT_EQ(n, buf.size());
    EXPECT_EQ(publish_size(m, h, v), buf.size());
  }
}

TEST(mqtt_codec, acks_subscribe_unsubscribe_ping_disconnect_round_trip) {
  for (auto v : {v311, v5}) {
    for (auto t : {packet_type::puback, packet_type::pubrec,
                   packet_type::pubrel, packet_type::pubcomp}) {
      ack_packet a{t, 513, rc::success, {}};
      EXPECT_EQ(std::get<ack_packet>(round_trip(a, v, server_opts(v))), a);
    }
    subscribe_packet s;
    s.packet_id = 4;
    s.filters = {{"a/+", {1, false, false, 0}}, {"#", {2, false, false, 0}}};
    if (v == v5) {
      s.filters.push_back({"x", {0, true, true, 2}});
      s.props.subscription_ids = {42};
    }
    EXPECT_EQ(std::get<subscribe_packet>(round_trip(s, v, server_opts(v))), s);

    unsubscribe_packet u{9, {}, {"a/+", "b"}};
    EXPECT_EQ(std::get<unsubscribe_packet>(round_trip(u, v, server_opts(v))),
              u);

    suback_packet sa{packet_type::suback, 4, {}, {0, 1, 0x80}};
    EXPECT_EQ(std::get<suback_packet>(round_trip(sa, v, client_opts(v))), sa);

    ping_packet ping{packet_type::pingreq};
    EXPECT_EQ(std::get<ping_packet>(round_trip(ping, v, server_opts(v))), ping);

    disconnect_packet d;
    EXPECT_EQ(std::get<disconnect_packet>(round_trip(d, v, server_opts(v))), d);
  }
  ack_packet failed{packet_type::puback, 1, rc::not_authorized, {}};
  failed.props.reason_string = "denied";
  EXPECT_EQ(std::get<ack_packet>(round_trip(failed, v5, server_opts(v5))),
            failed);
  disconnect_packet d{packet_type::disconnect, rc::disconnect_with_will, {}};
  d.props.session_expiry = 0;
  EXPECT_EQ(std::get<disconnect_packet>(round_trip(d, v5, server_opts(v5))), d);
}

TEST(mqtt_codec, connack_carries_server_properties) {
  connack_packet c;
  c.session_present = true;
  c.reason = rc::success;
  c.props.assigned_client_id = "auto-1";
  c.props.receive_maximum = 20;
  c.props.maximum_qos = 1;
  c.props.retain_available = 1;
  c.props.topic_alias_maximum = 10;
  c.props.server_keep_alive = 60;
  c.props.shared_sub_available = 1;
  c.props.wildcard_sub_available = 1;
  c.props.sub_id_available = 1;
  c.props.maximum_packet_size = 4096;
  EXPECT_EQ(std::get<connack_packet>(round_trip(c, v5, client_opts(v5))), c);
  connack_packet c311{false, rc311::not_authorized, {}};
  EXPECT_EQ(std::get<connack_packet>(round_trip(c311, v311, client_opts(v311))),
            c311);
}

TEST(mqtt_codec, reader_parses_across_arbitrary_splits) {
  byte_buffer stream;
  encode(full_connect_v5(), v5, stream);
  for (int i = 0; i < 50; ++i) {
    publish_packet p;
    p.msg.topic = "t/" + std::to_string(i);
    p.msg.body = payload{std::string(static_cast<std::size_t>(i * 7), 'z')};
    p.msg.qos = i % 3;
    p.packet_id = p.msg.qos ? static_cast<std::uint16_t>(i + 1) : 0;
    encode(p, v5, stream);
  }
  auto all = bytes(stream);
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{64},
                            all.size()}) {
    packet_reader reader;
    decode_options opts;
    std::vector<std::string> topics;
    for (std::size_t off = 0; off < all.size(); off += chunk) {
      auto res = reader.feed(std::string_view{all}.substr(off, chunk), opts,
                             [&](packet& p) {
                               if (auto c = std::get_if<connect_packet>(&p))
                                 opts.version = c->version;
                               else
                                 topics.push_back(
                                   std::get<publish_packet>(p).msg.topic);
                               return true;
                             });
      ASSERT_NE(res.status, decode_status::error) << res.what;
    }
    ASSERT_EQ(topics.size(), 50u) << "chunk " << chunk;
    EXPECT_EQ(topics[49], "t/49");
    EXPECT_EQ(reader.buffered(), 0u);
  }
}

TEST(mqtt_codec, truncated_packets_need_more) {
  byte_buffer buf;
  encode(full_connect_v5(), v5, buf);
  auto all = bytes(buf);
  for (std::size_t n = 0; n < all.size(); ++n) {
    auto res = decode_bytes(all.substr(0, n), server_opts(0));
    EXPECT_EQ(res.status, decode_status::need_more) << "prefix " << n;
  }
}

TEST(mqtt_codec, remaining_length_longer_than_four_bytes_is_malformed) {
  auto res = decode_bytes(std::string{"\x30\xFF\xFF\xFF\xFF\x7F", 6},
                          server_opts(v311));
  EXPECT_EQ(res.status, decode_status::error);
  EXPECT_EQ(res.reason, rc::malformed_packet);
}

TEST(mqtt_codec, oversized_packet_is_rejected_from_its_header) {
  auto opts = server_opts(v311);
  opts.max_packet_size = 1024;
  // Header claims 268435455 bytes: rejected before any body arrived.
  auto res = decode_bytes(std::string{"\x30\xFF\xFF\xFF\x7F", 5}, opts);
  EXPECT_EQ(res.status, decode_status::error);
  EXPECT_EQ(res.reason, rc::packet_too_large);
}

TEST(mqtt_codec, protocol_violations_carry_reason_codes) {
  struct case_t {
    std::string raw;
    std::uint8_t version;
    std::uint8_t reason;
  };
  std::vector<case_t> cases = {
    // PUBLISH before CONNECT.
    {std::string{"\x30\x03\x00\x01t", 5}, 0, rc::protocol_error},
    // CONNECT with protocol level 6.
    {std::string{"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 14}, 0,
     rc::unsupported_protocol_version},
    // CONNECT with the reserved flag.
    {std::string{"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", 14}, 0,
     rc::malformed_packet},
    // PUBLISH qos 3.
    {std::string{"\x36\x05\x00\x01t\x00\x01", 7}, v311, rc::malformed_packet},
    // SUBSCRIBE with wrong fixed header flags.
    {std::string{"\x80\x06\x00\x01\x00\x01t\x00", 8}, v311,
     rc::malformed_packet},
    // SUBSCRIBE without filters.
    {std::string{"\x82\x02\x00\x01", 4}, v311, rc::protocol_error},
    // PUBLISH with a wildcard in the topic name.
    {std::string{"\x30\x03\x00\x01+", 5}, v311, rc::topic_name_invalid},
    // PUBLISH with invalid UTF-8 in the topic.
    {std::string{"\x30\x03\x00\x01\xff", 5}, v311, rc::malformed_packet},
    // v5 PUBLISH with an unknown property 0x7F.
    {std::string{"\x30\x06\x00\x01t\x02\x7f\x00", 8}, v5, rc::malformed_packet},
    // v5 PUBLISH with a property that belongs to CONNACK (0x24 max qos).
    {std::string{"\x30\x06\x00\x01t\x02\x24\x00", 8}, v5, rc::protocol_error},
    // v5 PUBLISH with the message expiry twice.
    {std::string{"\x30\x0f\x00\x01t\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x01",
                 17},
     v5, rc::protocol_error},
    // v5 PUBLISH with a property block longer than the packet.
    {std::string{"\x30\x05\x00\x01t\x09\x01", 7}, v5, rc::malformed_packet},
    // A server never receives SUBACK.
    {std::string{"\x90\x03\x00\x01\x00", 5}, v311, rc::protocol_error},
    // PINGREQ with a body.
    {std::string{"\xc0\x01\x00", 3}, v311, rc::malformed_packet},
    // Second CONNECT.
    {std::string{"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 14}, v311,
     rc::protocol_error},
    // Reserved packet type 0.
    {std::string{"\x00\x00", 2}, v311, rc::malformed_packet},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto res = decode_bytes(cases[i].raw, server_opts(cases[i].version));
    EXPECT_EQ(res.status, decode_status::error) << "case " << i;
    EXPECT_EQ(int{res.reason}, int{cases[i].reason})
      << "case " << i << ": " << res.what;
  }
}

TEST(mqtt_codec, random_garbage_never_crashes_and_ends_in_error_or_need_more) {
  std::mt19937 rng{12345};
  std::uniform_int_distribution<int> byte{0, 255};
  int errors = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string raw(static_cast<std::size_t>(1 + round % 64), '\0');
    for (auto& c : raw)
      c = static_cast<char>(byte(rng));
    for (std::uint8_t v : {std::uint8_t{0}, v311, v5}) {
      packet_reader reader;
      auto res = reader.feed(raw, server_opts(v), [](packet&) { return true; });
      if (res.status == decode_status::error) {
        ++errors;
        EXPECT_GE(res.reason, 0x80);
      }
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(mqtt_codec, utf8_validation) {
  EXPECT_TRUE(valid_mqtt_utf8("plain/ascii"));
  EXPECT_TRUE(valid_mqtt_utf8("\xc3\xa9t\xc3\xa9"));          // été
  EXPECT_TRUE(valid_mqtt_utf8("\xf0\x9f\x98\x80"));           // emoji
  EXPECT_FALSE(valid_mqtt_utf8(std::string_view{"a\0b", 3})); // U+0000
  EXPECT_FALSE(valid_mqtt_utf8("\xc0\xaf"));                  // overlong
  EXPECT_FALSE(valid_mqtt_utf8("\xed\xa0\x80"));              // surrogate
  EXPECT_FALSE(valid_mqtt_utf8("\xe2\x82"));                  // truncated
}

TEST(mqtt_codec, varint_sizes_follow_the_spec_boundaries) {
  EXPECT_EQ(varint_size(127), 1u);
  EXPECT_EQ(varint_size(128), 2u);
  EXPECT_EQ(varint_size(16383), 2u);
  EXPECT_EQ(varint_size(16384), 3u);
  EXPECT_EQ(varint_size(2097151), 3u);
  EXPECT_EQ(varint_size(2097152), 4u);
  EXPECT_EQ(varint_size(268435455), 4u);
}
