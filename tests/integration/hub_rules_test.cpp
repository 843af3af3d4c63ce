// The embedded hub as seen by in-process rules (subscribe / deliver /
// publish), end-to-end acknowledgements, Baetyl remapping and permissions.
#include "hub_test_env.hpp"

#include "core/reply.hpp"

using namespace hubflow;
using namespace hubflow::test;
using namespace hubflow::mqtt;

namespace {

using hold_atom = caf::atom_constant<caf::atom("hold")>;
using fail_atom = caf::atom_constant<caf::atom("fail")>;
using release_atom = caf::atom_constant<caf::atom("release")>;

/// A rule subscriber that records deliveries and answers them now, later
/// (hold until release) or with an error (fail).
struct rule_probe_state {
  std::vector<message> got;
  std::vector<reply> held;
  bool hold = false;
  bool fail = false;
  static inline const char* name = "rule_probe";
};

using rule_probe_actor = caf::stateful_actor<rule_probe_state>;

void probe_delivery(rule_probe_actor* self, message& m, std::uint64_t ticket) {
  self->state.got.push_back(m);
  reply answer{self->current_sender(), ticket};
  if (self->state.fail)
    answer.deliver(caf::make_error(caf::sec::runtime_error, "rule failed"));
  else if (self->state.hold)
    self->state.held.push_back(std::move(answer));
  else
    answer.deliver(ok_atom::value);
}

caf::behavior rule_probe(rule_probe_actor* self) {
  return {
    [self](deliver_atom, message& m, std::uint64_t ticket) {
      probe_delivery(self, m, ticket);
    },
    // Hub connections deliver the publishes of one read as a burst.
    [self](deliver_atom, std::vector<message>& msgs,
           const std::vector<std::uint64_t>& tickets) {
      ASSERT_EQ(msgs.size(), tickets.size());
      for (std::size_t i = 0; i < msgs.size(); ++i)
        probe_delivery(self, msgs[i], tickets[i]);
    },
    [self](hold_atom) { self->state.hold = true; },
    [self](fail_atom) { self->state.fail = true; },
    [self](release_atom) {
      for (auto& rp : self->state.held)
        rp.deliver(ok_atom::value);
      self->state.held.clear();
      self->state.hold = false;
    },
    [self](get_atom) {
      // "topic=payload" per delivery, in order.
      std::string out;
      for (auto& m : self->state.got)
        out += m.topic + "=" + std::string{m.body.view()} + ";";
      return out;
    },
  };
}

class hub_rules : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(env.hub) << env.error;
    probe = env.sys().spawn(rule_probe);
  }
  void TearDown() override {
    caf::anon_send_exit(probe, caf::exit_reason::user_shutdown);
  }

  std::string deliveries() {
    std::string out;
    caf::scoped_actor self{env.sys()};
    self->request(probe, 5s, get_atom::value)
      .receive([&](const std::string& s) { out = s; }, [](caf::error&) {});
    return out;
  }

  bool request_ok(const caf::message& msg) {
    bool ok = false;
    caf::scoped_actor self{env.sys()};
    self->request(env.hub, 5s, msg)
      .receive([&](ok_atom) { ok = true; }, [&](caf::error&) { ok = false; });
    return ok;
  }

  bool subscribe_probe(const std::string& filter, std::uint8_t qos = 1) {
    return request_ok(
      caf::make_message(subscribe_atom::value, filter, qos, probe));
  }

  static publish_packet make_publish(const std::string& topic,
                                     const std::string& body,
                                     std::uint8_t qos, std::uint16_t id) {
    publish_packet p;
    p.msg.topic = topic;
    p.msg.body = payload{body};
    p.msg.qos = qos;
    p.packet_id = id;
    return p;
  }

  hub_env env;
  caf::actor probe;
};

} // namespace

TEST_F(hub_rules, rule_subscriber_receives_client_publishes) {
  ASSERT_TRUE(subscribe_probe("rules/+"));
  mqtt_client c{"feeder", 4};
  ASSERT_EQ(c.connect(env.port), 0);
  ASSERT_TRUE(c.publish("rules/a", "1", 1));
  ASSERT_TRUE(c.publish("other/b", "2", 1));
  ASSERT_TRUE(c.publish("rules/c", "3", 0));
  EXPECT_TRUE(wait_until([&] { return deliveries() == "rules/a=1;rules/c=3;"; }))
    << deliveries();
  // Unsubscribed: no more deliveries.
  ASSERT_TRUE(request_ok(caf::make_message(unsubscribe_atom::value,
                                           std::string{"rules/+"}, probe)));
  ASSERT_TRUE(c.publish("rules/d", "4", 1));
  EXPECT_EQ(deliveries(), "rules/a=1;rules/c=3;");
}

TEST_F(hub_rules, puback_waits_for_the_rule_and_is_withheld_on_error) {
  ASSERT_TRUE(subscribe_probe("e2e/#"));
  caf::anon_send(probe, hold_atom::value);
  raw_client c{env.port};
  ASSERT_TRUE(c.mqtt_connect("e2e", v311));
  ASSERT_TRUE(c.send(make_publish("e2e/x", "held", 1, 11), v311));
  ASSERT_TRUE(wait_until([&] { return deliveries() == "e2e/x=held;"; }));
  // The rule has not answered: no PUBACK yet.
  EXPECT_FALSE(c.read(v311, 300ms).has_value());
  caf::anon_send(probe, release_atom::value);
  auto ack = c.read(v311);
  ASSERT_TRUE(ack && std::holds_alternative<ack_packet>(*ack));
  EXPECT_EQ(std::get<ack_packet>(*ack).packet_id, 11);
  // A failing rule: the client gets no PUBACK (it resends later).
  caf::anon_send(probe, fail_atom::value);
  ASSERT_TRUE(c.send(make_publish("e2e/y", "lost", 1, 12), v311));
  ASSERT_TRUE(wait_until(
    [&] { return deliveries() == "e2e/x=held;e2e/y=lost;"; }));
  EXPECT_FALSE(c.read(v311, 500ms).has_value());
  EXPECT_GE(env.counter("rule_errors"), 1);
}

TEST_F(hub_rules, rule_publishes_reach_sessions_and_rules_and_are_retained) {
  ASSERT_TRUE(subscribe_probe("from/rule"));
  mqtt_client c{"listener", 5};
  ASSERT_EQ(c.connect(env.port), 0);
  ASSERT_EQ(c.subscribe("from/#", 1), 1);
  message m;
  m.topic = "from/rule";
  m.body = payload{"hello"};
  m.qos = 1;
  m.retain = true;
  m.properties.user_properties = {{"rule", "r1"}};
  ASSERT_TRUE(request_ok(caf::make_message(publish_atom::value, m)));
  ASSERT_TRUE(c.wait_messages(1));
  auto got = c.messages_on("from/rule");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "hello");
  EXPECT_EQ(got[0].user_properties,
            (std::vector<std::pair<std::string, std::string>>{{"rule", "r1"}}));
  EXPECT_EQ(deliveries(), "from/rule=hello;");
  EXPECT_EQ(env.counter("retained"), 1);
  // A new rule subscriber gets the retained message.
  auto second = env.sys().spawn(rule_probe);
  ASSERT_TRUE(request_ok(caf::make_message(
    subscribe_atom::value, std::string{"from/#"}, std::uint8_t{0}, second)));
  caf::scoped_actor self{env.sys()};
  EXPECT_TRUE(wait_until([&] {
    std::string out;
    self->request(second, 5s, get_atom::value)
      .receive([&](const std::string& s) { out = s; }, [](caf::error&) {});
    return out == "from/rule=hello;";
  }));
  caf::anon_send_exit(second, caf::exit_reason::user_shutdown);
  // Invalid topics are refused.
  m.topic = "bad/+";
  EXPECT_FALSE(request_ok(caf::make_message(publish_atom::value, m)));
  EXPECT_FALSE(request_ok(caf::make_message(
    subscribe_atom::value, std::string{"a/#/b"}, std::uint8_t{0}, probe)));
}

TEST_F(hub_rules, a_rule_that_stops_fails_the_publishes_it_still_held) {
  // A publish by another actor waits for every rule it reached; one that
  // stops without answering must not leave the publisher waiting forever.
  ASSERT_TRUE(subscribe_probe("held/#"));
  caf::anon_send(probe, hold_atom::value);
  message m;
  m.topic = "held/x";
  m.body = payload{"x"};
  m.qos = 1;
  caf::scoped_actor self{env.sys()};
  auto pending = self->request(env.hub, 10s, publish_atom::value, m);
  ASSERT_TRUE(wait_until([&] { return deliveries() == "held/x=x;"; }));
  caf::anon_send_exit(probe, caf::exit_reason::kill);
  std::string outcome;
  pending.receive([&](ok_atom) { outcome = "ok"; },
                  [&](caf::error& err) { outcome = env.sys().render(err); });
  EXPECT_NE(outcome.find("stopped before it handled the message"),
            std::string::npos)
    << outcome;
}

TEST(hub_remap, subscriptions_republish_source_on_target) {
  hub_config cfg = test_hub_config();
  remap_config r;
  r.source_topic = "t";
  r.source_qos = 1;
  r.target_topic = "t/topic";
  r.target_qos = 1;
  cfg.subscriptions = {r};
  hub_env env{cfg};
  ASSERT_TRUE(env.hub) << env.error;
  mqtt_client c{"remap", 4};
  ASSERT_EQ(c.connect(env.port), 0);
  ASSERT_EQ(c.subscribe("t/#", 1), 1);
  ASSERT_TRUE(c.publish("t", "payload", 1));
  ASSERT_TRUE(c.wait_messages(2));
  EXPECT_EQ(c.messages_on("t").size(), 1u);
  ASSERT_EQ(c.messages_on("t/topic").size(), 1u);
  EXPECT_EQ(c.messages_on("t/topic")[0].payload, "payload");
  EXPECT_EQ(env.counter("remapped"), 1);
}

namespace {

hub_config secured_config() {
  hub_config cfg = test_hub_config();
  cfg.allow_anonymous = false;
  principal_config dev;
  dev.username = "dev";
  dev.password = "secret";
  dev.pub = {"dev/#"};
  dev.sub = {"cmd/#"};
  cfg.principals = {dev};
  return cfg;
}

} // namespace

TEST(hub_permissions, credentials_and_anonymous_access) {
  hub_env env{secured_config()};
  ASSERT_TRUE(env.hub) << env.error;
  mqtt_client anonymous{"anon", 4};
  EXPECT_EQ(anonymous.connect(env.port), rc311::not_authorized);
  mqtt_client wrong{"wrong", 5};
  wrong.set_credentials("dev", "nope");
  EXPECT_EQ(wrong.connect(env.port), rc::bad_username_or_password);
  mqtt_client right{"right", 4};
  right.set_credentials("dev", "secret");
  EXPECT_EQ(right.connect(env.port), 0);
  EXPECT_EQ(env.counter("denied_connect"), 2);
}

TEST(hub_permissions, denied_publish_and_subscribe_v311_and_v5) {
  hub_env env{secured_config()};
  ASSERT_TRUE(env.hub) << env.error;
  for (std::uint8_t version : {v311, v5}) {
    raw_client c{env.port};
    connect_packet cp;
    cp.version = version;
    cp.client_id = "perm" + std::to_string(version);
    cp.username = "dev";
    cp.password = "secret";
    ASSERT_TRUE(c.send(cp, version));
    auto ack = c.read(version);
    ASSERT_TRUE(ack && std::holds_alternative<connack_packet>(*ack));
    ASSERT_EQ(std::get<connack_packet>(*ack).reason, 0);
    subscribe_packet s;
    s.packet_id = 3;
    s.filters = {{"cmd/#", {1}}, {"secret/#", {1}}};
    ASSERT_TRUE(c.send(s, version));
    auto suback = c.read(version);
    ASSERT_TRUE(suback && std::holds_alternative<suback_packet>(*suback));
    auto expected_denial = version == v5 ? rc::not_authorized
                                         : rc::unspecified_error;
    EXPECT_EQ(std::get<suback_packet>(*suback).reasons,
              (std::vector<std::uint8_t>{1, expected_denial}));
    // Publishing outside dev/#: v5 says 0x87, v3.1.1 acks and drops.
    publish_packet p;
    p.msg.topic = "cmd/denied";
    p.msg.body = payload{"x"};
    p.msg.qos = 1;
    p.packet_id = 9;
    ASSERT_TRUE(c.send(p, version));
    auto puback = c.read(version);
    ASSERT_TRUE(puback && std::holds_alternative<ack_packet>(*puback));
    EXPECT_EQ(std::get<ack_packet>(*puback).reason,
              version == v5 ? rc::not_authorized : rc::success);
    // The dropped message was not delivered to our own cmd/# subscription.
    EXPECT_FALSE(c.read_publish(version, 300ms));
  }
  EXPECT_EQ(env.counter("denied_publish"), 2);
  EXPECT_EQ(env.counter("denied_subscribe"), 2);
}
