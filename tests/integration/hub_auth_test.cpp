// Principals end to end through the real binaries: a Mosquitto password
// file's hash (written by the real mosquitto_passwd) and a `hubflowctl
// passwd` hash both log in to a running hubflow, real clients (mosquitto_pub
// and libmosquitto) are refused or admitted, and the pub/sub permit lists
// decide what flows.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r'))
    s.pop_back();
  return s;
}

// What mosquitto_passwd stores for `user`: the line `user:hash`.
std::string mosquitto_passwd_hash(const temp_dir& dir, const std::string& user,
                                  const std::string& password) {
  auto file = dir.path() + "/mosquitto.pw";
  auto r = run_command("mosquitto_passwd -c -b " + file + " " + user + " '"
                       + password + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line.rfind(user + ":", 0), 0u) << line;
  return trim(line.substr(user.size() + 1));
}

class hub_auth : public ::testing::Test {
protected:
  void SetUp() override {
    sensor_hash = mosquitto_passwd_hash(dir, "sensor", "sensor pw");
    auto ctl = run_command("printf '%s' 'app pw' | " + hubflowctl_binary()
                           + " passwd");
    ASSERT_EQ(ctl.exit_code, 0) << ctl.output;
    app_hash = trim(ctl.output);
    ASSERT_EQ(app_hash.rfind("$7$", 0), 0u) << app_hash;

    port = free_port();
    // Single quotes: the hashes contain '$' and '/', never a quote.
    std::string yaml = "hub:\n"
                       "  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
                       "  anonymous: none\n"
                       "  principals:\n"
                       "    - username: sensor\n"
                       "      password: '" + sensor_hash + "'\n"
                       "      permissions:\n"
                       "        - {action: pub, permit: ['sensors/+/temp']}\n"
                       "        - {action: sub, permit: ['cmd/sensor/#']}\n"
                       "    - username: app\n"
                       "      password: '" + app_hash + "'\n"
                       "      permissions:\n"
                       "        - {action: pub, permit: ['#']}\n"
                       "        - {action: sub, permit: ['sensors/#']}\n"
                       "    - username: legacy\n"
                       "      password: plain-text\n"
                       "      permissions:\n"
                       "        - {action: pub, permit: ['legacy/#']}\n";
    server = std::make_unique<hubflow_server>(yaml);
    ASSERT_TRUE(server->wait_ready()) << server->proc().output();
    ASSERT_TRUE(wait_for_port(port)) << server->proc().output();
  }

  command_result mosquitto_pub(const std::string& user,
                               const std::string& password,
                               const std::string& topic,
                               const std::string& version = "mqttv311") {
    std::string credentials =
      user.empty() ? "" : " -u " + user + " -P '" + password + "'";
    return run_command("mosquitto_pub -V " + version + " -h 127.0.0.1 -p "
                       + std::to_string(port) + credentials + " -t '" + topic
                       + "' -m 21");
  }

  temp_dir dir;
  std::string sensor_hash;
  std::string app_hash;
  std::uint16_t port = 0;
  std::unique_ptr<hubflow_server> server;
};

} // namespace

TEST_F(hub_auth, mosquitto_passwd_and_hubflowctl_hashes_log_in) {
  for (const char* version : {"mqttv311", "mqttv5"}) {
    auto sensor = mosquitto_pub("sensor", "sensor pw", "sensors/s1/temp", version);
    EXPECT_EQ(sensor.exit_code, 0) << version << ": " << sensor.output;
    auto app = mosquitto_pub("app", "app pw", "anything", version);
    EXPECT_EQ(app.exit_code, 0) << version << ": " << app.output;
    auto legacy = mosquitto_pub("legacy", "plain-text", "legacy/x", version);
    EXPECT_EQ(legacy.exit_code, 0) << version << ": " << legacy.output;
  }
}

TEST_F(hub_auth, wrong_passwords_and_anonymous_clients_are_refused) {
  for (const char* version : {"mqttv311", "mqttv5"}) {
    auto wrong = mosquitto_pub("sensor", "app pw", "sensors/s1/temp", version);
    EXPECT_NE(wrong.exit_code, 0) << version;
    auto hash_as_password = mosquitto_pub("app", app_hash, "x", version);
    EXPECT_NE(hash_as_password.exit_code, 0) << version;
    auto unknown = mosquitto_pub("nobody", "sensor pw", "x", version);
    EXPECT_NE(unknown.exit_code, 0) << version;
    auto anonymous = mosquitto_pub("", "", "x", version);
    EXPECT_NE(anonymous.exit_code, 0) << version;
  }
  mqtt_client wrong{"wrong-v5", 5};
  wrong.set_credentials("sensor", "nope");
  EXPECT_EQ(wrong.connect(port), 0x86); // bad user name or password
  mqtt_client anonymous{"anonymous-v311", 4};
  EXPECT_EQ(anonymous.connect(port), 5); // not authorized
}

TEST_F(hub_auth, permit_lists_decide_what_flows) {
  mqtt_client app{"app-client", 4};
  app.set_credentials("app", "app pw");
  ASSERT_EQ(app.connect(port), 0);
  EXPECT_EQ(app.subscribe("#"), 0x80);         // wider than sensors/#
  EXPECT_EQ(app.subscribe("cmd/sensor/x"), 0x80);
  EXPECT_EQ(app.subscribe("sensors/+/temp"), 0);

  mqtt_client sensor{"sensor-client", 4};
  sensor.set_credentials("sensor", "sensor pw");
  ASSERT_EQ(sensor.connect(port), 0);
  EXPECT_EQ(sensor.subscribe("cmd/sensor/#"), 0);
  EXPECT_EQ(sensor.subscribe("sensors/#"), 0x80);
  // Same connection, in order: the denied publish would arrive first.
  ASSERT_TRUE(sensor.publish("sensors/s1/temp/raw", "denied", 0));
  ASSERT_TRUE(sensor.publish("sensors/s1/temp", "allowed", 0));
  ASSERT_TRUE(app.wait_messages(1));
  auto got = app.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "sensors/s1/temp");
  EXPECT_EQ(got[0].payload, "allowed");

  // The app may publish anywhere, so commands reach the sensor.
  ASSERT_TRUE(app.publish("cmd/sensor/reboot", "now", 1));
  ASSERT_TRUE(sensor.wait_messages(1));
  EXPECT_EQ(sensor.messages()[0].topic, "cmd/sensor/reboot");
}

TEST_F(hub_auth, plain_text_passwords_are_warned_about) {
  auto log = server->proc().output();
  EXPECT_NE(log.find("'legacy' has a plain-text password"), std::string::npos)
    << log;
  EXPECT_EQ(log.find("'sensor' has a plain-text password"), std::string::npos)
    << log;
}
