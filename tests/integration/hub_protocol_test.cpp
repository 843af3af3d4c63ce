// Protocol details of the embedded hub checked byte by byte with a raw
// TCP client speaking MQTT through the codec: takeover, keep-alive, topic
// aliases, maximum packet size, subscription options and identifiers,
// message expiry, DISCONNECT reason codes.
#include "hub_test_env.hpp"

#include <random>
#include <thread>

using namespace hubflow;
using namespace hubflow::test;
using namespace hubflow::mqtt;

namespace {

class hub_protocol : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(env.hub) << env.error;
  }

  std::unique_ptr<raw_client> connect(const std::string& id,
                                      std::uint8_t version = v5,
                                      properties props = {},
                                      bool clean = true) {
    auto c = std::make_unique<raw_client>(env.port);
    EXPECT_TRUE(c->ok());
    auto ack = c->mqtt_connect(id, version, std::move(props), clean);
    EXPECT_TRUE(ack.has_value());
    if (ack) {
      EXPECT_EQ(ack->reason, 0);
    }
    return c;
  }

  void subscribe(raw_client& c, const std::string& filter,
                 subscription_options opts = {}, std::uint8_t version = v5,
                 std::uint32_t sub_id = 0) {
    subscribe_packet s;
    s.packet_id = 1;
    s.filters = {{filter, opts}};
    if (sub_id)
      s.props.subscription_ids = {sub_id};
    ASSERT_TRUE(c.send(s, version));
    auto p = c.read(version);
    ASSERT_TRUE(p && std::holds_alternative<suback_packet>(*p));
    ASSERT_EQ(std::get<suback_packet>(*p).reasons.size(), 1u);
    ASSERT_LT(std::get<suback_packet>(*p).reasons[0], 0x80);
  }

  static publish_packet make_publish(const std::string& topic,
                                     const std::string& body,
                                     std::uint8_t qos = 0,
                                     std::uint16_t id = 0) {
    publish_packet p;
    p.msg.topic = topic;
    p.msg.body = payload{body};
    p.msg.qos = qos;
    p.packet_id = id;
    return p;
  }

  hub_env env;
};

} // namespace

TEST_F(hub_protocol, assigns_client_id_and_announces_limits) {
  raw_client c{env.port};
  auto ack = c.mqtt_connect("", v5);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->reason, 0);
  ASSERT_TRUE(ack->props.assigned_client_id);
  EXPECT_FALSE(ack->props.assigned_client_id->empty());
  EXPECT_TRUE(ack->props.topic_alias_maximum.has_value());
  EXPECT_EQ(ack->props.receive_maximum, 1024);
  // MQTT 3.1.1 with an empty id and a persistent session is refused.
  raw_client old{env.port};
  auto refused = old.mqtt_connect("", v311, {}, false);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->reason, rc311::identifier_rejected);
}

TEST_F(hub_protocol, session_takeover_disconnects_the_old_connection) {
  auto first = connect("same-id");
  auto second = connect("same-id");
  auto p = first->read(v5);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::session_taken_over);
  EXPECT_TRUE(first->wait_closed());
  // The new connection works.
  ASSERT_TRUE(second->send(ping_packet{packet_type::pingreq}, v5));
  auto pong = second->read(v5);
  ASSERT_TRUE(pong && std::holds_alternative<ping_packet>(*pong));
}

TEST_F(hub_protocol, keep_alive_is_enforced) {
  raw_client c{env.port};
  connect_packet cp;
  cp.version = v5;
  cp.client_id = "sleepy";
  cp.keep_alive = 1;
  ASSERT_TRUE(c.send(cp, v5));
  auto ack = c.read(v5);
  ASSERT_TRUE(ack && std::holds_alternative<connack_packet>(*ack));
  // Silent for more than 1.5 keep-alive periods: the hub says why and goes.
  auto start = std::chrono::steady_clock::now();
  auto p = c.read(v5, 5s);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::keep_alive_timeout);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 1400ms);
  EXPECT_TRUE(c.wait_closed());
}

namespace {

/// The CONNACK to a CONNECT with `keep_alive` seconds.
std::optional<connack_packet> connack_for(std::uint16_t port, std::uint8_t version,
                                          std::uint16_t keep_alive) {
  raw_client c{port};
  connect_packet cp;
  cp.version = version;
  cp.client_id = "ka-" + std::to_string(keep_alive);
  cp.keep_alive = keep_alive;
  if (!c.send(cp, version))
    return std::nullopt;
  auto p = c.read(version);
  if (!p || !std::holds_alternative<connack_packet>(*p))
    return std::nullopt;
  return std::get<connack_packet>(*p);
}

} // namespace

TEST(hub_max_keepalive, mqtt5_is_told_and_311_is_refused_as_mosquitto_does) {
  auto cfg = test_hub_config();
  cfg.limits.max_keepalive = 30;
  hub_env env{cfg};
  ASSERT_TRUE(env.hub) << env.error;
  // MQTT 5: always announced; more than the maximum, or none, gets it.
  for (auto [asked, told] : {std::pair{60, 30}, {0, 30}, {10, 10}}) {
    auto ack = connack_for(env.port, v5, static_cast<std::uint16_t>(asked));
    ASSERT_TRUE(ack) << asked;
    EXPECT_EQ(ack->reason, 0);
    EXPECT_EQ(ack->props.server_keep_alive, told) << "asked " << asked;
  }
  // MQTT 3.1.1 cannot be told: refused with "identifier rejected" (2).
  for (auto [asked, code] : {std::pair{60, 2}, {0, 2}, {30, 0}}) {
    auto ack = connack_for(env.port, v311, static_cast<std::uint16_t>(asked));
    ASSERT_TRUE(ack) << asked;
    EXPECT_EQ(ack->reason, code) << "asked " << asked;
  }
  // Off (the default): the client's keep-alive stands, nothing announced.
  hub_env open{test_hub_config()};
  auto ack = connack_for(open.port, v5, 0);
  ASSERT_TRUE(ack);
  EXPECT_FALSE(ack->props.server_keep_alive.has_value());
}

TEST(hub_max_keepalive, the_announced_keep_alive_is_enforced) {
  auto cfg = test_hub_config();
  cfg.limits.max_keepalive = 1;
  hub_env env{cfg};
  ASSERT_TRUE(env.hub) << env.error;
  raw_client c{env.port};
  connect_packet cp;
  cp.version = v5;
  cp.client_id = "never-pings";
  cp.keep_alive = 0; // asks for none, gets 1 s
  ASSERT_TRUE(c.send(cp, v5));
  ASSERT_TRUE(c.read(v5)); // CONNACK
  auto p = c.read(v5, 5s);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::keep_alive_timeout);
}

TEST_F(hub_protocol, topic_aliases_to_a_client_that_allows_them) {
  properties props;
  props.topic_alias_maximum = 1;
  auto sub = connect("alias-taker", v5, props);
  subscription_options opts;
  opts.qos = 1;
  subscribe(*sub, "al/#", opts);
  auto pub = connect("alias-pub");
  for (auto topic : {"al/one", "al/one", "al/two", "al/one"})
    ASSERT_TRUE(pub->send(make_publish(topic, "x"), v5));
  std::vector<publish_packet> got;
  for (int i = 0; i < 4; ++i) {
    auto p = sub->read_publish(v5);
    ASSERT_TRUE(p) << i;
    got.push_back(*p);
  }
  // The first sets alias 1 with the topic, then the topic is left out.
  EXPECT_EQ(got[0].topic_alias, 1);
  EXPECT_EQ(got[0].msg.topic, "al/one");
  EXPECT_EQ(got[1].topic_alias, 1);
  EXPECT_EQ(got[1].msg.topic, "");
  // Its one alias is taken: another topic goes in full, without one.
  EXPECT_EQ(got[2].topic_alias, 0);
  EXPECT_EQ(got[2].msg.topic, "al/two");
  EXPECT_EQ(got[3].topic_alias, 1);
  EXPECT_EQ(got[3].msg.topic, "");
  // A client that announced none gets none.
  auto plain = connect("no-alias", v5);
  subscribe(*plain, "al/#", opts);
  ASSERT_TRUE(pub->send(make_publish("al/one", "y"), v5));
  auto p = plain->read_publish(v5);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->topic_alias, 0);
  EXPECT_EQ(p->msg.topic, "al/one");
}

TEST_F(hub_protocol, topic_alias_from_client_is_resolved) {
  auto sub = connect("alias-sub");
  subscribe(*sub, "alias/#");
  auto pub = connect("alias-pub");
  auto first = make_publish("alias/long/topic/name", "one");
  first.topic_alias = 7;
  ASSERT_TRUE(pub->send(first, v5));
  auto second = make_publish("", "two");
  second.topic_alias = 7;
  ASSERT_TRUE(pub->send(second, v5));
  auto a = sub->read_publish(v5);
  auto b = sub->read_publish(v5);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->msg.topic, "alias/long/topic/name");
  EXPECT_EQ(b->msg.topic, "alias/long/topic/name");
  EXPECT_EQ(b->msg.body.view(), "two");
  // An alias that was never set up is a protocol error.
  auto unknown = make_publish("", "three");
  unknown.topic_alias = 9;
  ASSERT_TRUE(pub->send(unknown, v5));
  auto p = pub->read(v5);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::protocol_error);
}

TEST_F(hub_protocol, maximum_packet_size_both_ways) {
  hub_config cfg = test_hub_config();
  cfg.max_message_size = 1024;
  hub_env small{cfg};
  ASSERT_TRUE(small.hub) << small.error;
  raw_client sub{small.port};
  properties sub_props;
  sub_props.maximum_packet_size = 200; // this client takes 200 bytes at most
  auto ack = sub.mqtt_connect("tiny", v5, sub_props);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->props.maximum_packet_size, 1024u);
  subscribe_packet s;
  s.packet_id = 1;
  s.filters = {{"big/#", {}}};
  ASSERT_TRUE(sub.send(s, v5));
  ASSERT_TRUE(sub.read(v5));
  raw_client pub{small.port};
  ASSERT_TRUE(pub.mqtt_connect("pub", v5));
  // Too large for the subscriber: dropped for it, others are unaffected.
  ASSERT_TRUE(pub.send(make_publish("big/a", std::string(500, 'x')), v5));
  ASSERT_TRUE(pub.send(make_publish("big/b", "small"), v5));
  auto got = sub.read_publish(v5);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->msg.topic, "big/b");
  EXPECT_EQ(small.counter("dropped_too_large"), 1);
  // Above the hub's maximum: the publisher is disconnected with 0x95.
  ASSERT_TRUE(pub.send(make_publish("big/c", std::string(2000, 'x')), v5));
  auto p = pub.read(v5);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::packet_too_large);
  EXPECT_TRUE(pub.wait_closed());
}

TEST_F(hub_protocol, subscription_options_and_identifiers) {
  auto c = connect("opts");
  subscription_options no_local;
  no_local.no_local = true;
  subscribe(*c, "own/#", no_local, v5, 42);
  subscription_options rap;
  rap.retain_as_published = true;
  subscribe(*c, "rap/#", rap, v5, 43);
  auto other = connect("other");
  // Own message on a no-local subscription is not echoed.
  ASSERT_TRUE(c->send(make_publish("own/x", "mine"), v5));
  ASSERT_TRUE(other->send(make_publish("own/x", "theirs"), v5));
  auto got = c->read_publish(v5);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->msg.body.view(), "theirs");
  EXPECT_EQ(got->subscription_ids, std::vector<std::uint32_t>{42});
  // Retain as published keeps the retain flag on live messages.
  auto retained = make_publish("rap/y", "kept");
  retained.msg.retain = true;
  ASSERT_TRUE(other->send(retained, v5));
  got = c->read_publish(v5);
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->msg.retain);
  EXPECT_EQ(got->subscription_ids, std::vector<std::uint32_t>{43});
  // Retain handling 2: no retained messages on subscribe.
  auto fresh = connect("fresh");
  subscription_options never;
  never.retain_handling = 2;
  subscribe(*fresh, "rap/#", never);
  ASSERT_TRUE(other->send(make_publish("rap/z", "live"), v5));
  got = fresh->read_publish(v5);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->msg.topic, "rap/z");
}

TEST_F(hub_protocol, v5_properties_pass_through_and_expiry_counts_down) {
  properties persistent;
  persistent.session_expiry = 600;
  {
    auto sub = connect("exp-sub", v5, persistent, false);
    subscription_options q1;
    q1.qos = 1;
    subscribe(*sub, "exp/#", q1);
    // Live message with every message property.
    auto pub = connect("exp-pub");
    auto p = make_publish("exp/live", "{\"a\":1}", 1, 5);
    auto& mp = p.msg.properties;
    mp.has_payload_format = true;
    mp.payload_format = 1;
    mp.content_type = "application/json";
    mp.response_topic = "reply/to";
    mp.correlation_data = "corr";
    mp.user_properties = {{"k", "v"}, {"k", "w"}};
    ASSERT_TRUE(pub->send(p, v5));
    auto got = sub->read_publish(v5);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->msg.properties, mp);
    ack_packet ack{packet_type::puback, got->packet_id, 0, {}};
    ASSERT_TRUE(sub->send(ack, v5));
    ASSERT_TRUE(sub->send(disconnect_packet{}, v5));
    ASSERT_TRUE(sub->wait_closed());
    // While the subscriber is away: one message that expires, one that
    // does not.
    auto short_lived = make_publish("exp/short", "x", 1, 6);
    short_lived.msg.properties.has_message_expiry = true;
    short_lived.msg.properties.message_expiry = 1;
    ASSERT_TRUE(pub->send(short_lived, v5));
    auto long_lived = make_publish("exp/long", "y", 1, 7);
    long_lived.msg.properties.has_message_expiry = true;
    long_lived.msg.properties.message_expiry = 100;
    ASSERT_TRUE(pub->send(long_lived, v5));
    ASSERT_TRUE(pub->read(v5));
    ASSERT_TRUE(pub->read(v5));
  }
  // Expiry is a matter of time: let the 1 s message expire (whole seconds
  // are counted, so 2 s are needed to be sure), then come back.
  std::this_thread::sleep_for(2100ms);
  auto back = connect("exp-sub", v5, persistent, false);
  auto got = back->read_publish(v5);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->msg.topic, "exp/long");
  ASSERT_TRUE(got->msg.properties.has_message_expiry);
  EXPECT_LT(got->msg.properties.message_expiry, 100u);
  EXPECT_GE(got->msg.properties.message_expiry, 95u);
  EXPECT_EQ(env.counter("dropped_expired"), 1);
}

TEST_F(hub_protocol, inflight_window_and_redelivery_with_dup) {
  hub_config cfg = test_hub_config();
  cfg.max_inflight = 2;
  hub_env small{cfg};
  ASSERT_TRUE(small.hub) << small.error;
  auto sub = std::make_unique<raw_client>(small.port);
  ASSERT_TRUE(sub->mqtt_connect("win", v311, {}, false));
  subscribe_packet s;
  s.packet_id = 1;
  s.filters = {{"w/#", {1}}};
  ASSERT_TRUE(sub->send(s, v311));
  ASSERT_TRUE(sub->read(v311));
  raw_client pub{small.port};
  ASSERT_TRUE(pub.mqtt_connect("wpub", v311));
  for (std::uint16_t i = 1; i <= 4; ++i)
    ASSERT_TRUE(
      pub.send(make_publish("w/t", "m" + std::to_string(i), 1, i), v311));
  // Only two in flight until acknowledged.
  auto a = sub->read_publish(v311);
  auto b = sub->read_publish(v311);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(sub->read_publish(v311, 300ms));
  // Acknowledge the first; drop the connection with the second unacked.
  ASSERT_TRUE(sub->send(ack_packet{packet_type::puback, a->packet_id, 0, {}},
                        v311));
  auto c = sub->read_publish(v311);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->msg.body.view(), "m3");
  sub.reset();
  auto again = std::make_unique<raw_client>(small.port);
  auto ack = again->mqtt_connect("win", v311, {}, false);
  ASSERT_TRUE(ack);
  EXPECT_TRUE(ack->session_present);
  auto r1 = again->read_publish(v311);
  auto r2 = again->read_publish(v311);
  ASSERT_TRUE(r1 && r2);
  EXPECT_TRUE(r1->dup);
  EXPECT_EQ(r1->msg.body.view(), "m2");
  EXPECT_TRUE(r2->dup);
  EXPECT_EQ(r2->msg.body.view(), "m3");
}

TEST_F(hub_protocol, garbage_closes_only_that_connection) {
  auto sub = connect("steady");
  subscribe(*sub, "still/#");
  auto pub = connect("steady-pub");
  std::mt19937 rng{7};
  for (int round = 0; round < 30; ++round) {
    raw_client bad{env.port};
    ASSERT_TRUE(bad.ok());
    std::string junk(static_cast<std::size_t>(1 + rng() % 300), '\0');
    for (auto& ch : junk)
      ch = static_cast<char>(rng());
    if (round % 3 == 1) {
      // A valid CONNECT first, then junk.
      connect_packet cp;
      cp.version = v311;
      cp.client_id = "junk" + std::to_string(round);
      mqtt::byte_buffer buf;
      encode(cp, v311, buf);
      junk = std::string{buf.data(), buf.size()} + junk;
    }
    bad.send(junk);
  }
  // Huge remaining length and a truncated packet that never completes.
  raw_client huge{env.port};
  ASSERT_TRUE(huge.mqtt_connect("huge", v5));
  huge.send(std::string{"\x30\xff\xff\xff\xff\x7f", 6});
  auto p = huge.read(v5);
  ASSERT_TRUE(p && std::holds_alternative<disconnect_packet>(*p));
  EXPECT_EQ(std::get<disconnect_packet>(*p).reason, rc::malformed_packet);
  raw_client truncated{env.port};
  ASSERT_TRUE(truncated.mqtt_connect("trunc", v311));
  // (Split literal: "\x03abc" would be one hex escape.)
  truncated.send(std::string{"\x30\x20\x00\x03" "abc", 7});
  // Everyone else keeps working.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(pub->send(make_publish("still/ok", std::to_string(i)), v5));
  for (int i = 0; i < 10; ++i) {
    auto got = sub->read_publish(v5);
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(got->msg.body.view(), std::to_string(i));
  }
  EXPECT_GT(env.counter("protocol_errors"), 0);
}

TEST_F(hub_protocol, will_delay_and_session_expiry) {
  auto watcher = connect("will-watcher");
  subscribe(*watcher, "wills/#");
  auto connect_with_will = [&](const std::string& id, std::uint32_t delay,
                               std::uint32_t expiry) {
    auto c = std::make_unique<raw_client>(env.port);
    connect_packet cp;
    cp.version = v5;
    cp.client_id = id;
    cp.clean_start = false;
    cp.props.session_expiry = expiry;
    cp.has_will = true;
    cp.will.topic = "wills/" + id;
    cp.will.body = payload{"gone"};
    cp.will_delay = delay;
    EXPECT_TRUE(c->send(cp, v5));
    auto ack = c->read(v5);
    EXPECT_TRUE(ack && std::holds_alternative<connack_packet>(*ack));
    return c;
  };
  // Delayed will: not at once, but after the delay.
  auto start = std::chrono::steady_clock::now();
  connect_with_will("delayed", 1, 60).reset(); // TCP gone, no DISCONNECT
  auto will = watcher->read_publish(v5, 5s);
  ASSERT_TRUE(will);
  EXPECT_EQ(will->msg.topic, "wills/delayed");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 900ms);
  // Coming back within the delay cancels the will.
  connect_with_will("returning", 3, 60).reset();
  ASSERT_TRUE(wait_until([&] { return env.counter("connections") == 1; }));
  auto back = connect_with_will("returning", 3, 60);
  EXPECT_FALSE(watcher->read_publish(v5, 4s)) << "cancelled will was sent";
  // A session with a 1 s expiry goes away after it.
  auto sessions = env.counter("sessions");
  {
    properties short_session;
    short_session.session_expiry = 1;
    auto c = connect("short-lived", v5, short_session, false);
    ASSERT_TRUE(wait_until(
      [&] { return env.counter("sessions") == sessions + 1; }));
    ASSERT_TRUE(c->send(disconnect_packet{}, v5));
  }
  EXPECT_TRUE(
    wait_until([&] { return env.counter("sessions") == sessions; }, 5s));
}

TEST_F(hub_protocol, slow_consumer_loses_qos0_without_stalling_others) {
  raw_client slow{env.port, 4096}; // subscribes, then never reads
  ASSERT_TRUE(slow.mqtt_connect("slow", v311));
  subscribe(slow, "flood/#", {}, v311);
  auto fast = connect("fast", v311);
  subscribe(*fast, "flood/#", {}, v311);
  auto pub = connect("flooder", v311);
  const std::string body(1024, 'f');
  constexpr int rounds = 100;
  constexpr int per_round = 100; // 10 MiB in all
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < per_round; ++i)
      ASSERT_TRUE(pub->send(make_publish("flood/x", body), v311));
    for (int i = 0; i < per_round; ++i)
      ASSERT_TRUE(fast->read_publish(v311, 10s))
        << "fast consumer stalled in round " << r << " at " << i;
  }
  EXPECT_GT(env.counter("dropped_qos0_slow"), 0);
}

TEST_F(hub_protocol, offline_queue_is_bounded_and_counts_drops) {
  hub_config cfg = test_hub_config();
  cfg.max_queued_messages = 3;
  hub_env small{cfg};
  ASSERT_TRUE(small.hub) << small.error;
  {
    raw_client sub{small.port};
    ASSERT_TRUE(sub.mqtt_connect("bounded", v311, {}, false));
    subscribe(sub, "b/#", {1}, v311);
  }
  ASSERT_TRUE(wait_until([&] { return small.counter("connections") == 0; }));
  raw_client pub{small.port};
  ASSERT_TRUE(pub.mqtt_connect("bpub", v311));
  for (std::uint16_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(
      pub.send(make_publish("b/t", "m" + std::to_string(i), 1, i), v311));
    ASSERT_TRUE(pub.read(v311)); // PUBACK
  }
  EXPECT_EQ(small.counter("dropped_queue_full"), 2);
  raw_client back{small.port};
  auto ack = back.mqtt_connect("bounded", v311, {}, false);
  ASSERT_TRUE(ack && ack->session_present);
  for (int i = 1; i <= 3; ++i) {
    auto got = back.read_publish(v311);
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(got->msg.body.view(), "m" + std::to_string(i));
    ASSERT_TRUE(
      back.send(ack_packet{packet_type::puback, got->packet_id, 0, {}}, v311));
  }
  EXPECT_FALSE(back.read_publish(v311, 300ms));
}
