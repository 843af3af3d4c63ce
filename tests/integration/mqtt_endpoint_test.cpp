// The `type: mqtt` endpoint through the real hubflow binary, with a real
// mosquitto on a free port as the remote broker: embedded hub -> rule ->
// endpoint -> remote subscriber on the rendered topic; remote publisher ->
// endpoint as a source -> rule -> embedded hub subscriber; a QoS 1
// publisher's PUBACK waits for the remote broker's and carries its refusal
// (an MQTT 5 reason code); a remote outage loses nothing behind `buffer:
// disk` and acknowledges nothing falsely without it; after the remote
// restarts, both directions work again (resubscribed); MQTT 5 user
// properties and QoS 2 cross it; mutual TLS with hub.address's keys; config
// errors name file, line and key.
#include <signal.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"
#include "fixtures/test_pki.hpp"

using namespace hubflow::test;

namespace {

/// The embedded hub on `port`, endpoint `cloud` towards `remote` (with
/// `extra` keys, e.g. a buffer), rule `up` (site/# -> plant/<level 2>/up on
/// the remote, QoS 1) and rule `down` (the remote's cmd/# -> local/cmd/...).
std::string bridge_config(std::uint16_t port, std::uint16_t remote,
                          const std::string& extra = "",
                          const std::string& top = "") {
  return top + "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
         + "]\nendpoints:\n  - name: cloud\n    type: mqtt\n"
           "    address: tcp://127.0.0.1:" + std::to_string(remote) + "\n"
         + extra
         + "rules:\n"
           "  - name: up\n"
           "    from: {topic: 'site/#', qos: 1}\n"
           "    to: {endpoint: cloud, topic: 'plant/${topic.2}/up', qos: 1}\n"
           "  - name: down\n"
           "    from: {endpoint: cloud, topic: 'cmd/#', qos: 1}\n"
           "    to: {topic: 'local/${topic}', qos: 1}\n";
}

std::int64_t endpoint_counter(hubflow_server& server, const char* name) {
  auto c = counters_of(server.stats_json(), "endpoint", "cloud");
  return c.is_object() && c.contains(name) ? c[name].get<std::int64_t>() : -1;
}

class mqtt_endpoint : public ::testing::Test {
protected:
  void start_hubflow(const std::string& extra = "", const std::string& top = "") {
    server = std::make_unique<hubflow_server>(
      bridge_config(port, remote->port(), extra, top));
    ASSERT_TRUE(server->wait_ready()) << server->proc().output();
    ASSERT_TRUE(wait_for_port(port)) << server->proc().output();
  }

  /// Waits until the endpoint has connected to the remote `n` times.
  bool wait_connects(std::int64_t n, std::chrono::milliseconds timeout = 15s) {
    return wait_until(
      [&] { return endpoint_counter(*server, "connects") >= n; }, timeout);
  }

  /// A client of the remote broker subscribed to `filter` (QoS 1).
  std::unique_ptr<mqtt_client> remote_subscriber(const std::string& filter,
                                                 const std::string& id = "",
                                                 bool clean = true) {
    auto c = std::make_unique<mqtt_client>(id, 4, clean);
    EXPECT_EQ(c->connect(remote->port()), 0);
    EXPECT_EQ(c->subscribe(filter, 1), 1);
    return c;
  }

  temp_dir data;
  std::unique_ptr<mosquitto_server> remote =
    std::make_unique<mosquitto_server>();
  std::uint16_t port = free_port();
  std::unique_ptr<hubflow_server> server;
};

} // namespace

TEST_F(mqtt_endpoint, the_hub_publishes_to_the_remote_on_the_rendered_topic) {
  start_hubflow();
  auto subscriber = remote_subscriber("plant/#");
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  ASSERT_TRUE(publisher.publish("site/press-4/temp", "21.5", 1));
  ASSERT_TRUE(subscriber->wait_messages(1)) << server->proc().output();
  auto got = subscriber->messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "plant/press-4/up");
  EXPECT_EQ(got[0].payload, "21.5");
  EXPECT_EQ(got[0].qos, 1);
  // Counted as the endpoint's (reported on stats.interval).
  EXPECT_TRUE(wait_until([&] { return endpoint_counter(*server, "out") >= 1; }))
    << server->stats_json();
}

TEST_F(mqtt_endpoint, the_remote_feeds_a_rule_into_the_hub) {
  start_hubflow();
  mqtt_client local;
  ASSERT_EQ(local.connect(port), 0);
  ASSERT_EQ(local.subscribe("local/#", 1), 1);
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  mqtt_client remote_publisher;
  ASSERT_EQ(remote_publisher.connect(remote->port()), 0);
  // The link subscribes once connected (its SUBACK is not visible here):
  // publish until the first arrives.
  ASSERT_TRUE(wait_until([&] {
    remote_publisher.publish("cmd/valve/open", "1", 1);
    return local.wait_messages(1, 300ms);
  })) << server->proc().output();
  local.clear();
  ASSERT_TRUE(remote_publisher.publish("cmd/valve/close", "0", 1));
  ASSERT_TRUE(local.wait_messages(1)) << server->proc().output();
  auto got = local.messages_on("local/cmd/valve/close");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "0");
  EXPECT_EQ(got[0].qos, 1);
}

TEST_F(mqtt_endpoint, a_qos1_puback_waits_for_the_remote_brokers) {
  start_hubflow();
  auto subscriber = remote_subscriber("plant/#");
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  ASSERT_TRUE(publisher.publish("site/press-1/temp", "warm-up", 1));
  // A remote that takes the connection's bytes but answers nothing: the
  // endpoint's PUBLISH is on the wire, its PUBACK is not.
  ASSERT_EQ(kill(remote->pid(), SIGSTOP), 0);
  ASSERT_TRUE(publisher.publish_async("site/press-2/temp", "held", 1));
  EXPECT_FALSE(wait_until([&] { return publisher.acknowledged() >= 2; }, 2s))
    << "the hub acknowledged before the remote broker did";
  ASSERT_EQ(kill(remote->pid(), SIGCONT), 0);
  EXPECT_TRUE(wait_until([&] { return publisher.acknowledged() >= 2; }, 10s))
    << server->proc().output();
  EXPECT_TRUE(wait_until([&] {
    return !subscriber->messages_on("plant/press-2/up").empty();
  })) << server->proc().output();
}

TEST_F(mqtt_endpoint, a_refusal_by_the_remote_reaches_the_mqtt5_publisher) {
  // The remote lets anonymous clients publish under plant/ only, and says
  // so in an MQTT 5 PUBACK's reason code.
  auto acl = data.write("acl", "topic readwrite plant/#\n");
  ASSERT_EQ(run_command("chmod -R a+rX " + data.path()).exit_code, 0);
  remote = std::make_unique<mosquitto_server>(0, "acl_file " + acl + "\n");
  server = std::make_unique<hubflow_server>(
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
    "endpoints:\n  - name: cloud\n    type: mqtt\n    protocol: mqttv5\n"
    "    address: tcp://127.0.0.1:" + std::to_string(remote->port()) + "\n"
    "rules:\n  - name: out\n    from: {topic: 'site/#', qos: 1}\n"
    "    to: {endpoint: cloud, topic: '${topic}', qos: 1}\n");
  ASSERT_TRUE(server->wait_ready()) << server->proc().output();
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  mqtt_client publisher("", 5);
  ASSERT_EQ(publisher.connect(port), 0);
  // ERROR, not RETRY: answered at once with the remote's reason code.
  EXPECT_EQ(publisher.publish_reason("site/press-1/temp", "denied", 1),
            0x87)
    << server->proc().output();
}

TEST_F(mqtt_endpoint, mqtt5_keeps_user_properties_and_qos_2_reaches_the_remote) {
  server = std::make_unique<hubflow_server>(
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
    "endpoints:\n  - name: cloud\n    type: mqtt\n    protocol: mqttv5\n"
    "    address: tcp://127.0.0.1:" + std::to_string(remote->port()) + "\n"
    "rules:\n  - name: v5\n    from: {topic: 'site/#', qos: 2}\n"
    "    to: {endpoint: cloud, topic: 'plant/${property.site}/${topic.2}', qos: 2}\n");
  ASSERT_TRUE(server->wait_ready()) << server->proc().output();
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  mqtt_client subscriber("", 5);
  ASSERT_EQ(subscriber.connect(remote->port()), 0);
  ASSERT_EQ(subscriber.subscribe("plant/#", 2), 2);
  // mosquitto_pub speaks MQTT 5 with a user property; it exits once its
  // QoS 2 flow with the hub (so with the remote) is complete.
  auto pub = run_command("mosquitto_pub -V 5 -p " + std::to_string(port)
                         + " -q 2 -t site/press-5 -m with-props"
                           " -D publish user-property site edge-7");
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  ASSERT_TRUE(subscriber.wait_messages(1)) << server->proc().output();
  auto m = subscriber.messages()[0];
  EXPECT_EQ(m.topic, "plant/edge-7/press-5");
  EXPECT_EQ(m.payload, "with-props");
  EXPECT_EQ(m.qos, 2);
  EXPECT_EQ(m.user_properties,
            (std::vector<std::pair<std::string, std::string>>{
              {"site", "edge-7"}}));
}

TEST_F(mqtt_endpoint, without_a_buffer_an_outage_acknowledges_nothing) {
  start_hubflow();
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  remote->stop();
  // The endpoint has seen the connection go (counted on stats.interval).
  ASSERT_TRUE(wait_until(
    [&] { return endpoint_counter(*server, "disconnects") >= 1; }))
    << server->proc().output();
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  ASSERT_TRUE(publisher.publish_async("site/press-3/temp", "lost?", 1));
  // RETRY: the rule retries (3 x, 100..300 ms apart), then leaves the
  // message with the publisher, which has no PUBACK for it.
  EXPECT_TRUE(wait_until(
    [&] { return server->proc().output().find("cannot deliver") != std::string::npos; },
    10s)) << server->proc().output();
  EXPECT_EQ(publisher.acknowledged(), 0u);
}

TEST_F(mqtt_endpoint, after_a_remote_restart_both_directions_work_again) {
  start_hubflow();
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  remote->stop(9);
  remote->start();
  ASSERT_TRUE(wait_connects(2, 20s)) << server->proc().output();
  mqtt_client local;
  ASSERT_EQ(local.connect(port), 0);
  ASSERT_EQ(local.subscribe("local/#", 1), 1);
  mqtt_client remote_publisher;
  ASSERT_EQ(remote_publisher.connect(remote->port()), 0);
  // The source's subscription was made again on the new connection.
  ASSERT_TRUE(wait_until([&] {
    remote_publisher.publish("cmd/fan", "on", 1);
    return local.wait_messages(1, 300ms);
  })) << server->proc().output();
  auto subscriber = remote_subscriber("plant/#");
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  ASSERT_TRUE(publisher.publish("site/press-9/temp", "back", 1));
  ASSERT_TRUE(subscriber->wait_messages(1)) << server->proc().output();
  EXPECT_EQ(subscriber->messages()[0].topic, "plant/press-9/up");
}

TEST_F(mqtt_endpoint, behind_a_disk_buffer_an_outage_loses_nothing) {
  // The remote keeps its subscriber's session across its restart, so what
  // the endpoint forwards once it is back waits for that subscriber.
  remote = std::make_unique<mosquitto_server>(
    0, "persistence true\npersistence_location " + data.path() + "/\n");
  { auto first = remote_subscriber("plant/#", "plant-sink", false); }
  start_hubflow("    buffer: disk\n",
                "persistence:\n  path: " + data.path() + "/store\n");
  ASSERT_TRUE(wait_connects(1)) << server->proc().output();
  remote->stop();
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  constexpr int count = 20;
  for (int i = 0; i < count; ++i)
    ASSERT_TRUE(publisher.publish_async("site/line" + std::to_string(i % 3)
                                          + "/temp",
                                        std::to_string(i), 1));
  // The buffer stores them and acknowledges, the remote being down.
  EXPECT_TRUE(wait_until([&] { return publisher.acknowledged() == count; }))
    << server->proc().output();
  remote->start();
  auto subscriber = remote_subscriber("plant/#", "plant-sink", false);
  ASSERT_TRUE(subscriber->wait_messages(count, 30s))
    << subscriber->messages().size() << " of " << count << "\n"
    << server->proc().output();
  std::vector<int> seen(count, 0);
  for (auto& m : subscriber->messages())
    ++seen.at(std::stoi(m.payload));
  for (int i = 0; i < count; ++i)
    EXPECT_GE(seen[i], 1) << "message " << i << " never arrived";
}

TEST(mqtt_endpoint_tls, the_endpoint_reaches_a_remote_that_wants_a_client_certificate) {
  test_pki pki;
  auto client = pki.client("hubflow-cloud");
  // Mosquitto started as root reads its files as user mosquitto.
  ASSERT_EQ(run_command("chmod -R a+rX " + pki.dir()).exit_code, 0);
  auto tls_port = free_port();
  mosquitto_server remote(
    0, "listener " + std::to_string(tls_port) + " 127.0.0.1\n"
         "cafile " + pki.ca() + "\ncertfile " + pki.server().cert
         + "\nkeyfile " + pki.server().key + "\nrequire_certificate true\n");
  auto port = free_port();
  hubflow_server server(
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
    "endpoints:\n  - name: cloud\n    type: mqtt\n"
    "    address: ssl://127.0.0.1:" + std::to_string(tls_port) + "\n"
    "    ca: " + pki.ca() + "\n    cert: " + client.cert + "\n"
    "    key: " + client.key + "\n    protocol: mqttv5\n"
    "rules:\n  - from: {topic: 'site/#', qos: 1}\n"
    "    to: {endpoint: cloud, topic: 'secure/${topic}', qos: 1}\n");
  ASSERT_TRUE(server.wait_ready()) << server.proc().output();
  ASSERT_TRUE(wait_until([&] {
    auto c = counters_of(server.stats_json(), "endpoint", "cloud");
    return c.is_object() && c.value("connects", 0) >= 1;
  })) << server.proc().output();
  mqtt_client subscriber; // on the remote's plain listener
  ASSERT_EQ(subscriber.connect(remote.port()), 0);
  ASSERT_EQ(subscriber.subscribe("secure/#", 1), 1);
  mqtt_client publisher;
  ASSERT_EQ(publisher.connect(port), 0);
  ASSERT_TRUE(publisher.publish("site/door", "closed", 1));
  ASSERT_TRUE(subscriber.wait_messages(1)) << server.proc().output();
  EXPECT_EQ(subscriber.messages()[0].topic, "secure/site/door");
  EXPECT_EQ(subscriber.messages()[0].payload, "closed");
}

TEST(mqtt_endpoint_config, errors_name_file_line_and_key) {
  temp_dir dir;
  auto check = [&](const std::string& keys) {
    auto path = dir.write("hubflow.yaml",
                          "endpoints:\n  - name: cloud\n    type: mqtt\n" + keys
                            + "rules:\n  - from: {topic: 'a/#'}\n"
                              "    to: {endpoint: cloud, topic: '${topic}'}\n");
    return std::make_pair(
      run_command(hubflow_binary() + " --check --config " + path), path);
  };
  auto refused = [&](const std::string& keys, const std::string& at) {
    auto [r, path] = check(keys);
    EXPECT_NE(r.exit_code, 0) << keys;
    EXPECT_NE(r.output.find(path + ":" + at), std::string::npos)
      << "expected " << path << ":" << at << " in:\n" << r.output;
  };
  refused("    clientid: edge\n", "2:5: endpoints[0]");
  refused("    address: http://127.0.0.1:1883\n", "4:14: endpoints[0].address");
  refused("    address: tcp://127.0.0.1:1883\n    bridge: yes\n",
          "5:5: endpoints[0].bridge");
  auto [fine, path] = check("    address: tcp://127.0.0.1:1883\n");
  EXPECT_EQ(fine.exit_code, 0) << fine.output;
}
