// The broker's supervision, from outside: the broker main.cpp runs is started
// in-process (broker/broker.hpp) so that the test can kill its long-lived
// actors as a crash would (exit_reason::kill: no handler runs). Each comes
// back through the keeper, counted, and everyone who held it goes on with
// the replacement: MQTT clients stay connected and keep their sessions and
// retained messages through a hub restart, rules route through a restarted
// function and into a restarted endpoint, the HTTP API publishes to the new
// hub, and $SYS feeds keep coming.
#include <gtest/gtest.h>

#include <sstream>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "broker/broker.hpp"
#include "core/type_ids.hpp"
#include "endpoints/endpoint.hpp"
#include "fixtures/fixtures.hpp"
#include "fixtures/http_client.hpp"
#include "fixtures/redis_fixture.hpp"
#include "hub/embedded_hub.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

std::string broker_config(std::uint16_t mqtt_port, std::uint16_t redis_port,
                          const std::string& token_file) {
  std::ostringstream yaml;
  yaml << "hub:\n  listen: [tcp://127.0.0.1:" << mqtt_port << "]\n"
       << "stats:\n  port: 0\n  token_file: " << token_file << "\n"
       << "http:\n  listen: 127.0.0.1:0\n"
       << "endpoints:\n  - name: store\n    type: redis\n    port: "
       << redis_port << "\n    mode: rpush\n"
       << R"(functions:
  - name: small
    runtime: sql
    handler: 'select * where id < 10'
rules:
  - name: filter
    from: {topic: in, qos: 1}
    function: {name: small}
    to: {topic: out, qos: 1}
  - name: watch
    from: {topic: status, qos: 1}
    to: {topic: status/seen, qos: 1}
  - name: to-redis
    from: {topic: keep, qos: 1}
    to: {endpoint: store, topic: kept}
)";
  return yaml.str();
}

class supervision : public ::testing::Test {
protected:
  supervision() : mqtt_port_(free_port()) {
    sys_cfg_.load<caf::io::middleman>();
    sys_cfg_.add_message_types<caf::id_block::hubflow>();
    sys_ = std::make_unique<caf::actor_system>(sys_cfg_);
  }

  void SetUp() override {
    auto cfg = load_config_text(
      broker_config(mqtt_port_, redis_.port(), dir_.path() + "/stats.token"),
      "supervision.yaml", endpoint_registry());
    runtimes_ = build_runtimes(cfg, runtime_options{});
    auto error = start_broker(*sys_, cfg, runtimes_, broker_);
    ASSERT_EQ(error, "");
    ASSERT_TRUE(wait_for_port(mqtt_port_, 5s));
  }

  void TearDown() override {
    stop_broker(broker_);
  }

  /// Kills `victim` as a crash would and waits until it is gone.
  void kill(const caf::actor& victim) {
    caf::scoped_actor self{*sys_};
    self->monitor(victim);
    self->send_exit(victim, caf::exit_reason::kill);
    bool down = false;
    self->receive([&](caf::down_msg&) { down = true; },
                  caf::after(std::chrono::seconds(5)) >> [] {});
    ASSERT_TRUE(down);
  }

  /// The keeper's child `name` as it runs now.
  caf::actor current(const std::string& name) {
    caf::scoped_actor self{*sys_};
    caf::actor child;
    self->request(broker_.keeper, std::chrono::seconds(5), get_atom::value,
                  name)
      .receive([&](caf::actor& a) { child = std::move(a); },
               [](caf::error&) {});
    return child;
  }

  /// A counter of a component from the stats actor's snapshot; -1 when absent.
  std::int64_t counter(const std::string& kind, const std::string& name,
                       const std::string& key) {
    caf::scoped_actor self{*sys_};
    auto stats = sys_->registry().get<caf::actor>(stats_registry_name);
    stats_snapshot snapshot;
    self->request(stats, std::chrono::seconds(5), get_atom::value)
      .receive([&](stats_snapshot& s) { snapshot = std::move(s); },
               [](caf::error&) {});
    for (auto& c : snapshot.components)
      if (c.kind == kind && c.name == name)
        if (auto v = counter_of(c, key))
          return *v;
    return -1;
  }

  /// Connects a publisher and an application that reads the rule's output.
  void connect(mqtt_client& device, mqtt_client& app) {
    ASSERT_EQ(device.connect(mqtt_port_), 0);
    ASSERT_EQ(app.connect(mqtt_port_), 0);
    ASSERT_EQ(app.subscribe("out", 1), 1);
  }

  /// Whether `client` gets `payload` on `topic` after publishing it to `in`.
  bool routes(mqtt_client& publisher, mqtt_client& client,
              const std::string& in, const std::string& topic,
              const std::string& payload, bool retain = false) {
    if (!publisher.publish(in, payload, 1, retain))
      return false;
    return wait_until([&] {
      for (auto& m : client.messages_on(topic))
        if (m.payload == payload)
          return true;
      return false;
    });
  }

  redis_server redis_;
  temp_dir dir_;
  std::uint16_t mqtt_port_;
  caf::actor_system_config sys_cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  runtime_map runtimes_;
  broker broker_;
};

} // namespace

TEST_F(supervision, the_hub_comes_back_with_its_clients_sessions_and_rules) {
  mqtt_client device{"device"};
  mqtt_client app{"app", 4, false};
  ASSERT_NO_FATAL_FAILURE(connect(device, app));
  ASSERT_EQ(app.subscribe("status/seen", 1), 1);
  ASSERT_TRUE(routes(device, app, "status", "status/seen", "on", true));
  ASSERT_TRUE(routes(device, app, "in", "out", R"({"id":1})"));

  kill(broker_.hub);

  EXPECT_TRUE(wait_until([&] { return counter("keeper", "hub", "restarts") == 1; }))
    << counter("keeper", "hub", "restarts");
  // The clients connected before stay connected and are served: a publish
  // goes through the rule, which subscribed again to the replacement.
  EXPECT_TRUE(device.connected());
  EXPECT_TRUE(routes(device, app, "in", "out", R"({"id":2})"));
  // The rules subscribed again to filters they had: the watch rule does
  // not get the retained status a second time.
  ASSERT_TRUE(routes(device, app, "status", "status/seen", "off", true));
  std::vector<std::string> seen;
  for (auto& m : app.messages_on("status/seen"))
    seen.push_back(m.payload);
  EXPECT_EQ(seen, (std::vector<std::string>{"on", "off"}));
  // New clients connect on the same port and see the retained message.
  mqtt_client late{"late"};
  ASSERT_EQ(late.connect(mqtt_port_), 0);
  ASSERT_LT(late.subscribe("status", 1), 0x80);
  ASSERT_TRUE(late.wait_messages(1));
  EXPECT_EQ(late.messages().front().payload, "off");
  // The persistent session survived: app's subscription still delivers
  // after it reconnects.
  app.disconnect();
  mqtt_client app_again{"app", 4, false};
  ASSERT_EQ(app_again.connect(mqtt_port_), 0);
  EXPECT_TRUE(routes(device, app_again, "in", "out", R"({"id":3})"));
  // The HTTP API publishes to the replacement.
  auto published = http_request(broker_.http_port, "POST",
                                "/v1.0/publish/hub/out", R"({"id":4})");
  EXPECT_EQ(published.status, 204) << published.body;
  EXPECT_TRUE(wait_until([&] {
    for (auto& m : app_again.messages_on("out"))
      if (m.payload == R"({"id":4})")
        return true;
    return false;
  }));
}

TEST_F(supervision, a_hub_killed_again_and_again_comes_back_each_time) {
  mqtt_client device{"device"};
  mqtt_client app{"app"};
  ASSERT_NO_FATAL_FAILURE(connect(device, app));
  for (int i = 1; i <= 3; ++i) {
    kill(current("hub"));
    ASSERT_TRUE(wait_until(
      [&] { return counter("keeper", "hub", "restarts") == i; }, 10s))
      << "restart " << i;
    EXPECT_TRUE(routes(device, app, "in", "out",
                       R"({"id":)" + std::to_string(i) + "}"))
      << "after restart " << i;
  }
  EXPECT_EQ(counter("keeper", "hub", "exits"), 3);
}

TEST_F(supervision, a_killed_function_supervisor_is_replaced_under_its_rule) {
  mqtt_client device{"device"};
  mqtt_client app{"app"};
  ASSERT_NO_FATAL_FAILURE(connect(device, app));
  kill(broker_.functions.at("small"));
  // Published while the keeper waits its backoff: the rule keeps the
  // message and hands it to the replacement.
  EXPECT_TRUE(routes(device, app, "in", "out", R"({"id":5})"));
  EXPECT_EQ(counter("keeper", "function:small", "restarts"), 1);
  // The filter still applies.
  ASSERT_TRUE(device.publish("in", R"({"id":50})", 1));
  EXPECT_TRUE(routes(device, app, "in", "out", R"({"id":6})"));
  for (auto& m : app.messages_on("out"))
    EXPECT_NE(m.payload, R"({"id":50})");
}

TEST_F(supervision, a_killed_endpoint_is_replaced_and_loses_nothing) {
  mqtt_client device{"device"};
  ASSERT_EQ(device.connect(mqtt_port_), 0);
  ASSERT_TRUE(device.publish("keep", "a", 1));
  kill(broker_.endpoints.at("store"));
  // Acknowledged only once the replacement wrote it.
  EXPECT_TRUE(device.publish("keep", "b", 1, false, 10s));
  EXPECT_TRUE(wait_until([&] {
    return redis_.cli({"LRANGE", "kept", "0", "-1"}) == "a\nb";
  })) << redis_.cli({"LRANGE", "kept", "0", "-1"});
  EXPECT_EQ(counter("keeper", "endpoint:store", "restarts"), 1);
}

// CAF 0.17.6's brokers keep their mailbox open after they stopped
// (core/broker_exit.hpp): a request to a replaced hub or HTTP API was never
// answered, and messages for it stayed allocated.
TEST_F(supervision, a_stopped_broker_refuses_requests_at_once) {
  for (auto victim : {broker_.hub, broker_.http}) {
    kill(victim);
    caf::scoped_actor self{*sys_};
    caf::error refused;
    self->request(victim, std::chrono::seconds(5), get_atom::value,
                  std::string{"stats"})
      .receive([](caf::message&) {}, [&](caf::error& err) { refused = err; });
    EXPECT_EQ(refused, caf::sec::request_receiver_down)
      << sys_->render(refused);
  }
}

// SIGHUP (main.cpp) and a reload's new functions and stores (broker.cpp)
// reach the hub and the HTTP API through the registry.
TEST_F(supervision, a_replacement_is_registered_in_place_of_the_killed_one) {
  for (auto [child, key] : {std::pair{"hub", hub_registry_name},
                            std::pair{"http_api", http_registry_name}}) {
    kill(current(child));
    ASSERT_TRUE(wait_until(
      [&] { return counter("keeper", child, "restarts") == 1; }))
      << child;
    auto registered = sys_->registry().get(key);
    EXPECT_EQ(registered, caf::actor_cast<caf::strong_actor_ptr>(current(child)))
      << child;
  }
}

TEST_F(supervision, the_http_api_and_stats_keep_their_ports) {
  kill(broker_.http);
  EXPECT_TRUE(wait_until([&] {
    return http_request(broker_.http_port, "GET", "/v1.0/healthz").status
           == 204;
  }));
  kill(broker_.stats);
  EXPECT_TRUE(wait_until(
    [&] { return counter("keeper", "stats", "restarts") == 1; }));
  // The $SYS feed goes on through the new stats actor.
  mqtt_client watcher{"watcher"};
  ASSERT_EQ(watcher.connect(mqtt_port_), 0);
  ASSERT_LT(watcher.subscribe("$SYS/hubflow/keeper/#", 0), 0x80);
  EXPECT_TRUE(watcher.wait_messages(1, 10s));
}
