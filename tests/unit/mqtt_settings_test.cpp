// The `type: mqtt` endpoint's settings through the config loader: defaults,
// every key, the errors (naming file, line and key) and the destination
// topic a rule's template renders. No broker.
#include <cstdlib>

#include <gtest/gtest.h>

#include "endpoints/endpoint.hpp"
#include "endpoints/mqtt/mqtt_settings.hpp"
#include "fixtures/fixtures.hpp"

using namespace hubflow;

namespace {

/// A config with endpoint `cloud` (its keys after name and type) and a
/// rule sending to it with `to_topic`.
std::string config_text(const std::string& keys,
                        const std::string& to_topic = "plant/${topic.2}/up") {
  return "endpoints:\n  - name: cloud\n    type: mqtt\n" + keys
         + "rules:\n  - name: up\n    from: {topic: 'site/#'}\n"
           "    to: {endpoint: cloud, topic: '" + to_topic + "', qos: 1}\n";
}

config load(const std::string& text) {
  return load_config_text(text, "/etc/hubflow/hubflow.yaml",
                          endpoint_registry());
}

/// The problems loading `text` reports, one per line.
std::string errors_of(const std::string& text) {
  try {
    load(text);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

const mqtt_settings& settings_of(const config& cfg) {
  auto* ep = cfg.find_endpoint("cloud");
  EXPECT_NE(ep, nullptr);
  auto* s = dynamic_cast<const mqtt_settings*>(ep->parsed.get());
  EXPECT_NE(s, nullptr);
  return *s;
}

message msg_on(std::string topic) {
  message m;
  m.topic = std::move(topic);
  m.body = payload{std::string{"21.5"}};
  m.qos = 1;
  return m;
}

} // namespace

TEST(mqtt_settings, defaults) {
  auto cfg = load(config_text("    address: tcp://broker.local:1883\n"));
  auto& link = settings_of(cfg).link;
  EXPECT_EQ(link.address, "tcp://broker.local:1883");
  EXPECT_EQ(link.at.host, "broker.local");
  EXPECT_EQ(link.at.port, 1883);
  EXPECT_FALSE(link.tls);
  EXPECT_EQ(link.client_id, "hubflow-cloud");
  EXPECT_EQ(link.protocol, 4);
  EXPECT_EQ(link.keepalive, 60);
  EXPECT_EQ(link.max_inflight, 20);
  EXPECT_TRUE(link.username.empty());
  EXPECT_EQ(link.stats_kind, "endpoint");
  EXPECT_EQ(link.stats_name, "cloud");
}

TEST(mqtt_settings, every_key) {
  setenv("HUBFLOW_TEST_MQTT_PASSWORD", "s3cret", 1);
  auto cfg = load(config_text("    address: mqtt://[::1]:2883\n"
                              "    clientid: edge-7\n"
                              "    username: edge\n"
                              "    password: {env: HUBFLOW_TEST_MQTT_PASSWORD}\n"
                              "    protocol: mqttv5\n"
                              "    keepalive: 2m\n"
                              "    max_inflight: 100\n"));
  auto& link = settings_of(cfg).link;
  EXPECT_EQ(link.at.host, "::1");
  EXPECT_EQ(link.at.port, 2883);
  EXPECT_EQ(link.client_id, "edge-7");
  EXPECT_EQ(link.username, "edge");
  EXPECT_EQ(link.password, "s3cret");
  EXPECT_EQ(link.protocol, 5);
  EXPECT_EQ(link.keepalive, 120);
  EXPECT_EQ(link.max_inflight, 100);
  EXPECT_TRUE(cfg.warnings.empty());
}

TEST(mqtt_settings, a_plain_password_is_warned_about_once) {
  auto cfg = load(config_text("    address: tcp://127.0.0.1:1883\n"
                              "    username: edge\n    password: hunter2\n"));
  int warned = 0;
  for (auto& w : cfg.warnings)
    if (w.find("endpoints[0].password") != std::string::npos)
      ++warned;
  EXPECT_EQ(warned, 1);
}

TEST(mqtt_settings, errors_name_file_line_and_key) {
  auto missing = errors_of(config_text("    clientid: edge\n"));
  EXPECT_NE(missing.find("/etc/hubflow/hubflow.yaml:"), std::string::npos)
    << missing;
  EXPECT_NE(missing.find("address"), std::string::npos) << missing;
  auto scheme = errors_of(config_text("    address: http://127.0.0.1:1883\n"));
  EXPECT_NE(scheme.find("/etc/hubflow/hubflow.yaml:4:"), std::string::npos)
    << scheme;
  EXPECT_NE(scheme.find("endpoints[0].address"), std::string::npos) << scheme;
  auto unknown = errors_of(config_text("    address: tcp://127.0.0.1:1883\n"
                                       "    bridge_qos: 1\n"));
  EXPECT_NE(unknown.find("/etc/hubflow/hubflow.yaml:5:"), std::string::npos)
    << unknown;
  EXPECT_NE(unknown.find("bridge_qos"), std::string::npos) << unknown;
  auto plain_tls = errors_of(config_text("    address: tcp://127.0.0.1:1883\n"
                                         "    insecureSkipVerify: true\n"));
  EXPECT_NE(plain_tls.find("endpoints[0].insecureSkipVerify: 'tcp://"
                           "127.0.0.1:1883' is not a TLS address"),
            std::string::npos)
    << plain_tls;
  auto no_ca = errors_of(config_text("    address: ssl://127.0.0.1:8883\n"
                                     "    ca: missing-ca.pem\n"));
  EXPECT_NE(no_ca.find("endpoints[0].ca"), std::string::npos) << no_ca;
  EXPECT_NE(no_ca.find("/etc/hubflow/missing-ca.pem"), std::string::npos)
    << no_ca;
  auto wildcard = errors_of(config_text("    address: tcp://127.0.0.1:1883\n",
                                        "plant/+/up"));
  EXPECT_NE(wildcard.find("rules[0].to.topic"), std::string::npos) << wildcard;
  EXPECT_NE(wildcard.find("wildcard"), std::string::npos) << wildcard;
}

TEST(mqtt_settings, the_rules_template_renders_the_remote_topic) {
  auto cfg = load(config_text("    address: tcp://127.0.0.1:1883\n"));
  auto& link = settings_of(cfg).link;
  ASSERT_TRUE(link.topic_of);
  std::string topic, error;
  ASSERT_TRUE(link.topic_of("plant/${topic.2}/up", msg_on("site/press-4/temp"),
                            topic, error))
    << error;
  EXPECT_EQ(topic, "plant/press-4/up");
  // No to.topic: the message's own topic.
  ASSERT_TRUE(link.topic_of("", msg_on("site/press-4/temp"), topic, error));
  EXPECT_EQ(topic, "site/press-4/temp");
  // A level the topic lacks renders nothing: refused, not published.
  EXPECT_FALSE(link.topic_of("plant/${topic.2}/up", msg_on("site"), topic,
                             error));
  EXPECT_FALSE(error.empty());
}
