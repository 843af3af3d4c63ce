// Dapr's JavaScript SDK (@dapr/dapr from npm, installed into tests/dapr-js by
// tools/setup.sh), unchanged, against the whole broker (build/bin/hubflow)
// with the HTTP API and a Redis state store: tests/dapr-js/drive.mjs runs
// each SDK call and reports it; this test checks every report (a partial
// bulk failure included: the SDK names the refused entry), what Redis holds
// afterwards and what MQTT clients of the hub received.
#include <sys/stat.h>

#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "fixtures/redis_fixture.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

const std::string sdk_dir = std::string{HUBFLOW_SOURCE_DIR} + "/tests/dapr-js";

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// The HTTP API, a Redis state store, and a rule that makes the hub refuse
/// some bulk entries: {"ok": 1} on sdk/partial goes on to a Redis endpoint
/// nothing listens for (`dead_port`), without retries; the rest is dropped.
std::string broker_config(std::uint16_t mqtt_port, std::uint16_t http_port,
                          std::uint16_t redis_port, std::uint16_t dead_port) {
  std::ostringstream yaml;
  yaml << "hub:\n  listen: [tcp://127.0.0.1:" << mqtt_port << "]\n"
       << "http:\n  listen: 127.0.0.1:" << http_port << "\n"
       << "endpoints:\n"
       << "  - name: statestore\n    type: redis\n    port: " << redis_port
       << "\n"
       << "  - name: deadstore\n    type: redis\n    port: " << dead_port
       << "\n"
       << R"(functions:
  - name: only-ok
    runtime: sql
    handler: 'select * where ok = 1'
rules:
  - name: partial
    from: {topic: 'sdk/partial', qos: 1}
    function: {name: only-ok}
    to: {endpoint: deadstore, topic: partial}
    retry: {max: 0}
)";
  return yaml.str();
}

/// The steps drive.mjs reports, by name: every line of its output that is
/// a JSON object with "step".
std::map<std::string, json> steps_of(const std::string& output) {
  std::map<std::string, json> steps;
  std::istringstream in{output};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{')
      continue;
    auto doc = json::parse(line, nullptr, false);
    if (doc.is_object() && doc.contains("step"))
      steps[doc["step"].get<std::string>()] = doc;
  }
  return steps;
}

} // namespace

TEST(dapr_sdk, the_js_sdk_unchanged_drives_state_pubsub_metadata_and_health) {
  if (!file_exists(sdk_dir + "/node_modules/@dapr/dapr/package.json"))
    GTEST_SKIP() << "Dapr's JS SDK is not installed: " << sdk_dir
                 << "/node_modules/@dapr/dapr is missing (tools/setup.sh "
                    "installs it; or run `npm ci` in tests/dapr-js)";
  if (run_command("node --version").exit_code != 0)
    GTEST_SKIP() << "node is not installed (tools/setup.sh installs it)";

  redis_server redis;
  auto mqtt_port = free_port();
  auto http_port = free_port();
  hubflow_server server(
    broker_config(mqtt_port, http_port, redis.port(), free_port()));
  ASSERT_TRUE(wait_for_port(http_port, 20s)) << server.proc().output();
  ASSERT_TRUE(wait_for_port(mqtt_port, 5s)) << server.proc().output();

  mqtt_client live{"dapr-sdk-live"};
  ASSERT_EQ(live.connect(mqtt_port), 0);
  ASSERT_EQ(live.subscribe("sdk/#", 2), 2);

  auto run = run_command("node " + shell_quote(sdk_dir + "/drive.mjs") + " "
                         + std::to_string(http_port) + " 2>&1");
  auto steps = steps_of(run.output);
  for (auto name : {"health",
                    "state.save with metadata ttlInSeconds",
                    "state.get",
                    "state.getBulk",
                    "state.delete with etag",
                    "state.transaction",
                    "pubsub.publish with metadata qos and retain",
                    "pubsub.publishBulk",
                    "pubsub.publishBulk with an entry the hub refuses",
                    "pubsub.publishBulk to a pubsub that does not exist",
                    "metadata.set",
                    "metadata.get",
                    "health after everything"}) {
    auto i = steps.find(name);
    if (i == steps.end()) {
      ADD_FAILURE() << "drive.mjs did not report step '" << name << "'";
      continue;
    }
    EXPECT_TRUE(i->second.value("ok", false))
      << name << ": " << i->second.value("err", std::string{"?"});
  }
  EXPECT_EQ(run.exit_code, 0) << run.output;

  // What the state calls left in Redis: the query's ttlInSeconds applied,
  // the transaction's upsert there and its delete done, sdk-b deleted.
  auto ttl = std::atoi(redis.cli({"TTL", "sdk-ttl"}).c_str());
  EXPECT_GT(ttl, 0) << "sdk-ttl has no expiry";
  EXPECT_LE(ttl, 120);
  EXPECT_EQ(redis.cli({"HGET", "sdk-tx", "data"}), R"({"from":"transaction"})");
  EXPECT_EQ(redis.cli({"EXISTS", "sdk-a"}), "0");
  EXPECT_EQ(redis.cli({"EXISTS", "sdk-b"}), "0");

  // What MQTT clients got: the single publish and the bulk entries in their
  // order, each with the QoS its metadata asked for (the bulk request's
  // qos 1, "second" its own 0).
  ASSERT_TRUE(live.wait_messages(4, 10s)) << live.messages().size();
  auto single = live.messages_on("sdk/single");
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].payload, R"({"n":1})");
  EXPECT_EQ(single[0].qos, 1);
  auto bulk = live.messages_on("sdk/bulk");
  ASSERT_EQ(bulk.size(), 3u);
  EXPECT_EQ(bulk[0].payload, "first");
  EXPECT_EQ(bulk[0].qos, 1);
  EXPECT_EQ(bulk[1].payload, "second");
  EXPECT_EQ(bulk[1].qos, 0);
  EXPECT_EQ(bulk[2].payload, R"({"n":3})");
  EXPECT_EQ(bulk[2].qos, 1);
  EXPECT_TRUE(live.messages_on("sdk/nowhere").empty());

  // retain=true kept the single publish and the third entry: a client that
  // subscribes now gets them as retained messages.
  mqtt_client late{"dapr-sdk-late"};
  ASSERT_EQ(late.connect(mqtt_port), 0);
  ASSERT_EQ(late.subscribe("sdk/#", 2), 2);
  ASSERT_TRUE(late.wait_messages(2, 10s)) << late.messages().size();
  auto retained_single = late.messages_on("sdk/single");
  ASSERT_EQ(retained_single.size(), 1u);
  EXPECT_TRUE(retained_single[0].retain);
  EXPECT_EQ(retained_single[0].payload, R"({"n":1})");
  auto retained_bulk = late.messages_on("sdk/bulk");
  ASSERT_EQ(retained_bulk.size(), 1u);
  EXPECT_TRUE(retained_bulk[0].retain);
  EXPECT_EQ(retained_bulk[0].payload, R"({"n":3})");
}
