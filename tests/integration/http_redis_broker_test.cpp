// The whole broker (build/bin/hubflow) with Redis endpoints and the HTTP
// API: Dapr's Get Started with curl, MQTT into a Redis stream through a rule,
// publish and invoke over HTTP, metrics and metadata, and Redis killed and
// restarted while hubflow keeps running.
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "fixtures/redis_fixture.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

std::string broker_config(std::uint16_t mqtt_port, std::uint16_t http_port,
                          std::uint16_t redis_port) {
  std::ostringstream yaml;
  yaml << "hub:\n  listen: [tcp://127.0.0.1:" << mqtt_port << "]\n"
       << "http:\n  listen: 127.0.0.1:" << http_port << "\n"
       << "endpoints:\n"
       << "  - name: statestore\n    type: redis\n    port: " << redis_port
       << "\n    reconnect_backoff_max: 300ms\n"
       << "  - name: telemetry\n    type: redis\n    port: " << redis_port
       << "\n    mode: xadd\n"
          "    reconnect_backoff_max: 300ms\n"
       << R"(rules:
  - name: to-redis
    from: {topic: 'plant/+/temp', qos: 1}
    to: {endpoint: telemetry, topic: 'telemetry:{topic.1}'}
functions:
  - name: filter
    runtime: sql
    handler: 'select qos() as qos, topic() as topic, * where id < 10'
)";
  return yaml.str();
}

struct curl_result {
  int status = 0;
  std::string body;
};

curl_result curl(const std::string& args) {
  auto r = run_command("curl -s -S --max-time 20 -w '\\n%{http_code}' " + args);
  curl_result out;
  auto nl = r.output.rfind('\n');
  if (nl != std::string::npos) {
    out.status = std::atoi(r.output.substr(nl + 1).c_str());
    out.body = r.output.substr(0, nl);
  }
  return out;
}

class http_redis_broker : public ::testing::Test {
protected:
  http_redis_broker()
    : mqtt_port_(free_port()),
      http_port_(free_port()),
      server_(broker_config(mqtt_port_, http_port_, redis_.port())) {
    base_ = "http://127.0.0.1:" + std::to_string(http_port_);
  }

  void SetUp() override {
    ASSERT_TRUE(wait_for_port(http_port_, 20s)) << server_.proc().output();
    ASSERT_TRUE(wait_for_port(mqtt_port_, 5s)) << server_.proc().output();
  }

  curl_result post(const std::string& path, const std::string& body) {
    return curl("-X POST -H 'Content-Type: application/json' --data-binary "
                + shell_quote(body) + " '" + base_ + path + "'");
  }

  redis_server redis_;
  std::uint16_t mqtt_port_;
  std::uint16_t http_port_;
  hubflow_server server_;
  std::string base_;
};

} // namespace

TEST_F(http_redis_broker, dapr_get_started_with_curl) {
  EXPECT_EQ(post("/v1.0/state/statestore",
                 R"([{"key":"weapon","value":"Death Star"}])")
              .status,
            204);
  EXPECT_EQ(post("/v1.0/state/statestore",
                 R"([{"key":"planets","value":{"name":"Tatooine","test":123}}])")
              .status,
            204);
  auto planets = curl(base_ + "/v1.0/state/statestore/planets");
  ASSERT_EQ(planets.status, 200);
  EXPECT_EQ(json::parse(planets.body)["test"], 123);
  EXPECT_EQ(json::parse(planets.body)["name"], "Tatooine");
  auto weapon = curl(base_ + "/v1.0/state/statestore/weapon");
  ASSERT_EQ(weapon.status, 200);
  EXPECT_EQ(weapon.body, "\"Death Star\"");
  EXPECT_EQ(curl(base_ + "/v1.0/state/nostore/weapon").status, 400);
  EXPECT_EQ(curl(base_ + "/v1.0/healthz").status, 204);
}

TEST_F(http_redis_broker, mqtt_into_a_redis_stream_and_http_into_mqtt) {
  mqtt_client device{"device-1"};
  ASSERT_EQ(device.connect(mqtt_port_), 0);
  // QoS 1: the PUBACK comes after Redis stored the entry.
  ASSERT_TRUE(device.publish("plant/line1/temp", "21.5", 1, false, 10s));
  ASSERT_TRUE(wait_until(
    [&] { return redis_.cli({"XLEN", "telemetry:line1"}) == "1"; }));
  auto entry = redis_.cli({"XRANGE", "telemetry:line1", "-", "+"});
  EXPECT_NE(entry.find("payload\n21.5"), std::string::npos) << entry;

  mqtt_client app{"app-1"};
  ASSERT_EQ(app.connect(mqtt_port_), 0);
  ASSERT_LT(app.subscribe("news/#", 1), 0x80);
  auto r = curl("-X POST -d 'hello from http' '" + base_
                + "/v1.0/publish/hub/news/today?qos=1'");
  EXPECT_EQ(r.status, 204) << r.body;
  ASSERT_TRUE(app.wait_messages(1, 10s));
  auto got = app.messages_on("news/today");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, "hello from http");
}

TEST_F(http_redis_broker, invoke_metrics_and_metadata) {
  auto r = post("/v1.0/invoke/filter/method/check", R"({"id":3})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = json::parse(r.body);
  EXPECT_EQ(out["id"], 3);
  EXPECT_EQ(out["topic"], "check");
  EXPECT_EQ(post("/v1.0/invoke/filter/method/check", R"({"id":30})").status,
            204);
  r = post("/v1.0/invoke/nope/method/check", "{}");
  EXPECT_EQ(r.status, 404);

  mqtt_client device{"device-2"};
  ASSERT_EQ(device.connect(mqtt_port_), 0);
  ASSERT_TRUE(device.publish("plant/line2/temp", "19", 1, false, 10s));
  // Counters reach the stats actor on its interval.
  EXPECT_TRUE(wait_until([&] {
    auto m = curl(base_ + "/metrics");
    return m.body.find("hubflow_endpoint_messages_out{name=\"telemetry\"} 1")
           != std::string::npos;
  }))
    << curl(base_ + "/metrics").body;
  auto meta = curl(base_ + "/v1.0/metadata");
  ASSERT_EQ(meta.status, 200);
  auto doc = json::parse(meta.body);
  bool found_store = false;
  for (auto& c : doc["components"])
    found_store = found_store || c["name"] == "statestore";
  EXPECT_TRUE(found_store) << meta.body;
  bool found_function = false;
  for (auto& f : doc["functions"])
    found_function = found_function || f["name"] == "filter";
  EXPECT_TRUE(found_function) << meta.body;
}

TEST_F(http_redis_broker, redis_restart_without_restarting_hubflow) {
  ASSERT_EQ(post("/v1.0/state/statestore", R"([{"key":"k","value":1}])").status,
            204);
  redis_.stop(9);
  auto r = post("/v1.0/state/statestore", R"([{"key":"k","value":2}])");
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("127.0.0.1:" + std::to_string(redis_.port())),
            std::string::npos)
    << r.body;
  // An MQTT QoS 1 publish while Redis is down is not acknowledged until it
  // is stored; it lands once Redis is back.
  mqtt_client device{"device-3"};
  ASSERT_EQ(device.connect(mqtt_port_), 0);
  device.publish("plant/line3/temp", "during-outage", 1, false, 500ms);
  redis_.start();
  EXPECT_TRUE(wait_until(
    [&] {
      return curl(base_ + "/v1.0/state/statestore/k").status == 200;
    },
    15s));
  EXPECT_EQ(curl(base_ + "/v1.0/state/statestore/k").body, "1");
  EXPECT_TRUE(wait_until(
    [&] {
      return redis_.cli({"XRANGE", "telemetry:line3", "-", "+"}).find(
               "during-outage")
             != std::string::npos;
    },
    20s))
    << server_.proc().output();
  EXPECT_TRUE(server_.proc().running());
}
