// Baetyl's function-manager flow end to end: a real mosquitto as the
// external hub, build/bin/hubflow with a YAML config and the plugins of
// build/plugins, real MQTT clients publishing and subscribing, and
// `hubflowctl stats --json` as the window into the broker's counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;
using json = nlohmann::json;

namespace {

/// A counter of one component in a `hubflowctl stats --json` snapshot.
std::optional<std::int64_t> counter_in(const std::string& stats_json,
                                       const std::string& kind,
                                       const std::string& name,
                                       const std::string& counter) {
  auto doc = json::parse(stats_json, nullptr, false);
  if (doc.is_discarded() || !doc.contains("components"))
    return std::nullopt;
  for (auto& c : doc["components"]) {
    if (c.value("kind", "") != kind || c.value("name", "") != name)
      continue;
    auto& counters = c["counters"];
    if (counters.contains(counter))
      return counters[counter].get<std::int64_t>();
  }
  return std::nullopt;
}

/// The messages on `topic` whose JSON payload has `key` == `value`.
std::vector<json> json_messages_with(const mqtt_client& client,
                                     const std::string& topic,
                                     const std::string& key,
                                     const json& value) {
  std::vector<json> result;
  for (auto& m : client.messages_on(topic)) {
    auto doc = json::parse(m.payload, nullptr, false);
    if (doc.is_object() && doc.contains(key) && doc[key] == value)
      result.push_back(doc);
  }
  return result;
}

class function_manager : public ::testing::Test {
protected:
  mosquitto_server hub;
  std::unique_ptr<hubflow_server> broker;

  std::string hub_address() const {
    return "tcp://127.0.0.1:" + std::to_string(hub.port());
  }

  /// Starts hubflow with `body` (rules, functions) under an external-hub
  /// section pointing at our mosquitto.
  void start_hubflow(const std::string& body) {
    start_hubflow_with("hub:\n  address: " + hub_address() + "\n" + body);
  }

  /// Starts hubflow with a whole config of the test's own.
  void start_hubflow_with(const std::string& yaml) {
    broker = std::make_unique<hubflow_server>(yaml);
    ASSERT_TRUE(broker->wait_ready()) << broker->proc().output();
  }

  std::string stats() {
    return broker->stats_json();
  }

  std::optional<std::int64_t> counter(const std::string& kind,
                                      const std::string& name,
                                      const std::string& counter) {
    return counter_in(stats(), kind, name, counter);
  }

  /// Waits until a component's counter equals `expected`.
  bool wait_counter(const std::string& kind, const std::string& name,
                    const std::string& key, std::int64_t expected,
                    std::chrono::milliseconds timeout = 15s) {
    return wait_until([&] { return counter(kind, name, key) == expected; },
                      timeout);
  }

  /// A client connected to the hub, subscribed to `filters` with QoS 2 (so
  /// the QoS a message arrives with is the one it was published with).
  std::unique_ptr<mqtt_client>
  hub_client(const std::vector<std::string>& filters = {}) {
    auto client = std::make_unique<mqtt_client>();
    EXPECT_EQ(client->connect(hub.port()), 0);
    for (auto& f : filters)
      EXPECT_EQ(client->subscribe(f, 2), 2);
    return client;
  }

  /// The rule subscribes to the hub some time after hubflow started (its
  /// link connects in the background): publish numbered warm-up messages
  /// until one comes through on `out`. Tests then look only at their own
  /// messages, since late warm-ups may still arrive.
  bool wait_flowing(mqtt_client& client, const std::string& in,
                    const std::string& out,
                    std::chrono::milliseconds per_attempt = 300ms,
                    std::chrono::milliseconds timeout = 15s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (int n = 0; std::chrono::steady_clock::now() < deadline; ++n) {
      client.publish(in, R"({"warmup":)" + std::to_string(n) + "}", 1);
      if (wait_until([&] { return !client.messages_on(out).empty(); },
                     per_attempt))
        return true;
    }
    return false;
  }

  void TearDown() override {
    if (HasFailure() && broker)
      std::cerr << "--- hubflow output ---\n"
                << broker->proc().output() << "--- stats ---\n"
                << broker->stats_json() << "\n";
  }
};

/// Mosquitto config lines for a hub that only lets Baetyl's example user
/// (test/hahaha) in; the password file is written to `dir`.
std::string password_file_config(const temp_dir& dir) {
  auto passwords = dir.path() + "/passwd";
  auto made = run_command("mosquitto_passwd -b -c " + passwords
                          + " test hahaha");
  EXPECT_EQ(made.exit_code, 0) << made.output;
  // Mosquitto started as root reads it as its own unprivileged user.
  namespace fs = std::filesystem;
  fs::permissions(dir.path(), fs::perms::others_read | fs::perms::others_exec,
                  fs::perm_options::add);
  fs::permissions(passwords, fs::perms::others_read, fs::perm_options::add);
  return "allow_anonymous false\npassword_file " + passwords;
}

const std::string sayhi_rule = R"(
rules:
  - clientid: func-sayhi-1
    subscribe: {topic: t, qos: 1}
    function: {name: sayhi}
    publish: {topic: t/hi, qos: 1}
functions:
  - name: sayhi
    runtime: native
    plugin: sayhi
    instance: {min: 0, max: 10, idletime: 30s, timeout: 10s}
)";

} // namespace

// -- sayhi ------------------------------------------------------------------------

TEST_F(function_manager, json_event_comes_back_with_the_five_context_fields) {
  start_hubflow(sayhi_rule);
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  ASSERT_TRUE(client->publish("t", R"({"id":1})", 1));
  ASSERT_TRUE(wait_until(
    [&] { return !json_messages_with(*client, "t/hi", "id", 1).empty(); }));
  auto after = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto out = json_messages_with(*client, "t/hi", "id", 1).front();
  EXPECT_EQ(out["messageQOS"], 1);
  EXPECT_EQ(out["messageTopic"], "t");
  ASSERT_TRUE(out["messageTimestamp"].is_number_integer()) << out.dump();
  EXPECT_GE(out["messageTimestamp"].get<std::int64_t>(), before);
  EXPECT_LE(out["messageTimestamp"].get<std::int64_t>(), after);
  EXPECT_EQ(out["functionName"], "sayhi");
  static const std::regex uuid{
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"};
  EXPECT_TRUE(std::regex_match(out["functionInvokeID"].get<std::string>(),
                               uuid))
    << out.dump();
  EXPECT_EQ(out["Say"], "Hello hubflow");
  EXPECT_EQ(out.size(), 7u) << out.dump();
  // Published back with the rule's QoS 1.
  for (auto& m : client->messages_on("t/hi"))
    EXPECT_EQ(m.qos, 1);
}

TEST_F(function_manager, every_invocation_has_its_own_id) {
  start_hubflow(sayhi_rule);
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  for (int id = 10; id < 15; ++id)
    ASSERT_TRUE(client->publish("t", R"({"id":)" + std::to_string(id) + "}", 1));
  std::set<std::string> ids;
  ASSERT_TRUE(wait_until([&] {
    ids.clear();
    for (int id = 10; id < 15; ++id)
      for (auto& out : json_messages_with(*client, "t/hi", "id", id))
        ids.insert(out["functionInvokeID"].get<std::string>());
    return ids.size() == 5;
  }));
}

TEST_F(function_manager, bytes_payload_becomes_a_bytes_field) {
  start_hubflow(sayhi_rule);
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("t", "hello, bytes", 1));
  ASSERT_TRUE(wait_until([&] {
    return !json_messages_with(*client, "t/hi", "bytes", "hello, bytes")
              .empty();
  }));
  auto out = json_messages_with(*client, "t/hi", "bytes", "hello, bytes")
               .front();
  EXPECT_EQ(out["messageTopic"], "t");
  EXPECT_EQ(out["functionName"], "sayhi");
  EXPECT_EQ(out["Say"], "Hello hubflow");
}

TEST_F(function_manager, handler_error_is_reported_and_the_next_message_works) {
  start_hubflow(sayhi_rule);
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("t", R"({"err":"boom"})", 1));
  ASSERT_TRUE(wait_until([&] {
    return !json_messages_with(*client, "t/hi", "errorMessage", "boom").empty();
  }));
  auto report = json_messages_with(*client, "t/hi", "errorMessage", "boom")
                  .front();
  EXPECT_EQ(report["functionMessage"], json::parse(R"({"err":"boom"})"));
  EXPECT_EQ(report["errorType"], "TypeError");
  EXPECT_EQ(report.size(), 3u) << report.dump();

  ASSERT_TRUE(client->publish("t", R"({"id":2})", 1));
  ASSERT_TRUE(wait_until(
    [&] { return !json_messages_with(*client, "t/hi", "id", 2).empty(); }));
  EXPECT_EQ(json_messages_with(*client, "t/hi", "id", 2).front()["Say"],
            "Hello hubflow");
  // Counted once: a handler's own error is not retried.
  EXPECT_TRUE(wait_counter("rule", "func-sayhi-1", "errors", 1));
  EXPECT_TRUE(wait_counter("function", "sayhi", "handler_errors", 1));
}

TEST_F(function_manager, error_topic_receives_the_reports) {
  start_hubflow(R"(
rules:
  - clientid: func-sayhi-err
    subscribe: {topic: t, qos: 1}
    function: {name: sayhi}
    publish: {topic: t/hi, qos: 1}
    error_topic: t/errors
functions:
  - name: sayhi
    plugin: sayhi
)");
  auto client = hub_client({"t/hi", "t/errors"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("t", R"({"err":"bad input"})", 1));
  ASSERT_TRUE(client->publish("t", R"({"id":3})", 1));
  ASSERT_TRUE(wait_until([&] {
    return !json_messages_with(*client, "t/errors", "errorMessage",
                               "bad input")
              .empty()
           && !json_messages_with(*client, "t/hi", "id", 3).empty();
  }));
  auto report = json_messages_with(*client, "t/errors", "errorMessage",
                                   "bad input")
                  .front();
  EXPECT_EQ(report["functionMessage"]["err"], "bad input");
  EXPECT_EQ(report["errorType"], "TypeError");
  // The report went to the error topic only.
  for (auto& m : client->messages_on("t/hi"))
    EXPECT_EQ(m.payload.find("errorMessage"), std::string::npos) << m.payload;
  EXPECT_EQ(client->messages_on("t/errors").size(), 1u);
}

TEST_F(function_manager, baetyls_service_yml_runs_with_the_hubs_credentials) {
  // A hub that wants Baetyl's example user, and the issue's service.yml with
  // nothing changed but the port.
  temp_dir dir;
  mosquitto_server secured(0, password_file_config(dir));
  start_hubflow_with(R"(hub:
  address: tcp://127.0.0.1:)" + std::to_string(secured.port()) + R"(
  username: test
  password: hahaha
rules:
  - clientid: func-sayhi-1
    subscribe: {topic: t, qos: 1}
    function: {name: sayhi}
    publish: {topic: t/hi, qos: 1}
functions:
  - name: sayhi
    runtime: native          # native plugins now; sql, python, node come later
    plugin: sayhi            # resolved in the plugin dirs
    instance: {min: 0, max: 10, idletime: 30s, timeout: 10s}
)");
  mqtt_client client;
  client.set_credentials("test", "hahaha");
  ASSERT_EQ(client.connect(secured.port()), 0);
  ASSERT_EQ(client.subscribe("t/hi", 1), 1);
  ASSERT_TRUE(wait_flowing(client, "t", "t/hi"));
  ASSERT_TRUE(client.publish("t", R"({"id":1})", 1));
  ASSERT_TRUE(wait_until(
    [&] { return !json_messages_with(client, "t/hi", "id", 1).empty(); }));
  EXPECT_EQ(json_messages_with(client, "t/hi", "id", 1).front()["Say"],
            "Hello hubflow");
}

TEST_F(function_manager, refused_credentials_are_counted_and_not_connected) {
  temp_dir dir;
  mosquitto_server secured(0, password_file_config(dir));
  start_hubflow_with("hub:\n  address: tcp://127.0.0.1:"
                     + std::to_string(secured.port())
                     + "\n  username: test\n  password: wrong\n"
                     + sayhi_rule);
  EXPECT_TRUE(wait_until([&] {
    return counter("hub", "func-sayhi-1", "connect_refused").value_or(0) >= 1;
  }));
  EXPECT_EQ(counter("hub", "func-sayhi-1", "connects").value_or(0), 0);
  EXPECT_TRUE(broker->proc().running());
}

// -- scaling ----------------------------------------------------------------------

TEST_F(function_manager, slow_plugin_scales_to_max_under_load_and_back_to_zero) {
  start_hubflow(R"(
rules:
  - clientid: func-slow
    subscribe: {topic: slow/in, qos: 1}
    function: {name: slow}
    publish: {topic: slow/out, qos: 1}
functions:
  - name: slow
    plugin: slow
    env: {delay_ms: "1000"}
    instance: {min: 0, max: 4, idletime: 2s, timeout: 10s}
)");
  auto client = hub_client({"slow/out"});
  ASSERT_TRUE(wait_flowing(*client, "slow/in", "slow/out", 2s));
  // The warm-up instances retire after idletime: min is 0.
  ASSERT_TRUE(wait_counter("function", "slow", "instances", 0));
  auto started_before
    = counter("function", "slow", "instances_started").value_or(-1);

  // 12 one-second invocations at once: 4 instances busy for ~3 s.
  constexpr int burst = 12;
  for (int i = 0; i < burst; ++i)
    ASSERT_TRUE(
      client->publish("slow/in", R"({"n":)" + std::to_string(i) + "}", 1));
  std::int64_t most = 0;
  EXPECT_TRUE(wait_until([&] {
    auto now = counter("function", "slow", "instances").value_or(0);
    most = std::max(most, now);
    return now == 4;
  }));
  // Every message is handled, none by a fifth instance.
  EXPECT_TRUE(wait_until(
    [&] {
      for (int i = 0; i < burst; ++i)
        if (json_messages_with(*client, "slow/out", "n", i).empty())
          return false;
      return true;
    },
    15s));
  EXPECT_LE(most, 4);
  EXPECT_EQ(counter("function", "slow", "max"), 4);
  // Idle for 2 s: back to min 0.
  EXPECT_TRUE(wait_counter("function", "slow", "instances", 0));
  auto started = counter("function", "slow", "instances_started").value_or(0);
  auto retired = counter("function", "slow", "instances_retired").value_or(0);
  EXPECT_EQ(started, retired);
  EXPECT_EQ(started - started_before, 4);
}

// -- timeouts ----------------------------------------------------------------------

TEST_F(function_manager, timeout_is_reported_after_retries_and_the_broker_keeps_serving) {
  start_hubflow(R"(
rules:
  - clientid: func-stuck
    subscribe: {topic: stuck/in, qos: 1}
    function: {name: stuck}
    publish: {topic: stuck/out, qos: 1}
    retry: {max: 2}
  - clientid: func-sayhi-1
    subscribe: {topic: t, qos: 1}
    function: {name: sayhi}
    publish: {topic: t/hi, qos: 1}
functions:
  - name: stuck
    plugin: slow
    env: {delay_ms: "1500"}
    instance: {max: 1, timeout: 300ms}
  - name: sayhi
    plugin: sayhi
)");
  auto client = hub_client({"stuck/out", "t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("stuck/in", R"({"id":7})", 1));
  ASSERT_TRUE(wait_until([&] {
    return !json_messages_with(*client, "stuck/out", "errorType",
                               "TimeoutError")
              .empty();
  }));
  auto report = json_messages_with(*client, "stuck/out", "errorType",
                                   "TimeoutError")
                  .front();
  EXPECT_EQ(report["functionMessage"], json::parse(R"({"id":7})"));
  EXPECT_EQ(report["errorMessage"], "invocation timed out after 300 ms");
  // A timeout is the runtime's failure, not the handler's: retried
  // retry.max times before the report.
  EXPECT_TRUE(wait_counter("function", "stuck", "timeouts", 3));
  EXPECT_TRUE(wait_counter("rule", "func-stuck", "retries", 2));
  EXPECT_EQ(client->messages_on("stuck/out").size(), 1u);

  // The broker keeps serving, the other function and the stuck one alike.
  ASSERT_TRUE(client->publish("t", R"({"id":8})", 1));
  ASSERT_TRUE(client->publish("stuck/in", R"({"id":9})", 1));
  EXPECT_TRUE(wait_until(
    [&] { return !json_messages_with(*client, "t/hi", "id", 8).empty(); }));
  EXPECT_TRUE(wait_until([&] {
    return client->messages_on("stuck/out").size() == 2;
  }));
  EXPECT_TRUE(broker->proc().running());
}

TEST_F(function_manager, timeout_applies_to_each_invocation_of_a_batch) {
  // One instance, 120 ms per message, 300 ms timeout: the eight messages
  // queue and run as batches that take far longer than 300 ms in all, yet
  // no invocation times out.
  start_hubflow(R"(
rules:
  - clientid: func-batched
    subscribe: {topic: batched/in, qos: 1}
    function: {name: batched}
    publish: {topic: batched/out, qos: 1}
functions:
  - name: batched
    plugin: slow
    env: {delay_ms: "120"}
    instance: {max: 1, timeout: 300ms}
)");
  auto client = hub_client({"batched/out"});
  ASSERT_TRUE(wait_flowing(*client, "batched/in", "batched/out", 2s));
  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE(client->publish("batched/in",
                                R"({"n":)" + std::to_string(i) + "}", 1));
  EXPECT_TRUE(wait_until([&] {
    for (int i = 0; i < 8; ++i)
      if (json_messages_with(*client, "batched/out", "n", i).empty())
        return false;
    return true;
  }));
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(json_messages_with(*client, "batched/out", "n", i).size(), 1u)
      << "message " << i;
  // (An invocation that timed out would have produced an error report,
  // not the echo checked above.)
  EXPECT_EQ(counter("function", "batched", "timeouts").value_or(0), 0);
  EXPECT_EQ(counter("function", "batched", "instances_started").value_or(-1),
            1);
}

// -- hub failures ------------------------------------------------------------------

TEST_F(function_manager, reconnects_after_the_hub_is_killed_and_restarted) {
  start_hubflow(sayhi_rule);
  {
    auto client = hub_client({"t/hi"});
    ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  }
  ASSERT_TRUE(wait_counter("hub", "func-sayhi-1", "connects", 1));

  hub.stop(SIGKILL);
  ASSERT_TRUE(wait_counter("hub", "func-sayhi-1", "disconnects", 1));
  hub.start(); // same port, same config
  ASSERT_TRUE(wait_counter("hub", "func-sayhi-1", "connects", 2, 25s));

  // The link resubscribed: messages flow again. (Its SUBSCRIBE may still
  // be on the way when the counter shows the connect, hence wait_flowing.)
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("t", R"({"id":42})", 1));
  EXPECT_TRUE(wait_until(
    [&] { return !json_messages_with(*client, "t/hi", "id", 42).empty(); }));
  EXPECT_EQ(counter("hub", "func-sayhi-1", "connects"), 2);
}

TEST_F(function_manager, connects_once_a_hub_that_was_down_at_start_comes_up) {
  hub.stop(); // an edge box where hubflow starts before its broker
  start_hubflow(sayhi_rule);
  EXPECT_EQ(counter("hub", "func-sayhi-1", "connects").value_or(0), 0);
  hub.start();
  ASSERT_TRUE(wait_counter("hub", "func-sayhi-1", "connects", 1, 25s));
  auto client = hub_client({"t/hi"});
  EXPECT_TRUE(wait_flowing(*client, "t", "t/hi"));
}

// -- plain forwards ----------------------------------------------------------------

TEST_F(function_manager, rule_without_function_forwards_unchanged_with_its_qos) {
  start_hubflow(R"(
rules:
  - name: remap-1
    from: {topic: sensors/+/raw, qos: 1}
    to: {topic: ingest, qos: 1}
  - name: remap-0
    from: {topic: sensors/+/raw, qos: 1}
    to: {topic: ingest/q0, qos: 0}
)");
  auto client = hub_client({"ingest", "ingest/q0"});
  auto arrived = [&](const std::string& topic, const std::string& payload) {
    auto msgs = client->messages_on(topic);
    return std::find_if(msgs.begin(), msgs.end(), [&](auto& m) {
      return m.payload == payload;
    }) != msgs.end();
  };
  // Warm up until both rules are subscribed.
  ASSERT_TRUE(wait_until(
    [&] {
      client->publish("sensors/w/raw", "warmup", 1);
      return wait_until([&] { return arrived("ingest", "warmup")
                                     && arrived("ingest/q0", "warmup"); },
                        300ms);
    },
    15s));
  // Bytes that are neither JSON nor text, a NUL among them.
  std::string body = std::string("\x01\x02 not json ") + '\0' + "\xff";
  ASSERT_TRUE(client->publish("sensors/dev7/raw", body, 1));
  ASSERT_TRUE(wait_until(
    [&] { return arrived("ingest", body) && arrived("ingest/q0", body); }));
  auto qos_on = [&](const std::string& topic) {
    for (auto& m : client->messages_on(topic))
      if (m.payload == body)
        return m.qos;
    return -1;
  };
  EXPECT_EQ(qos_on("ingest"), 1);
  EXPECT_EQ(qos_on("ingest/q0"), 0);
  EXPECT_TRUE(wait_until([&] {
    return counter("rule", "remap-1", "out").value_or(0) >= 2;
  }));
}

TEST_F(function_manager, mqtt5_hub_link_keeps_user_properties_and_qos_2) {
  start_hubflow_with("hub:\n  address: " + hub_address()
                     + "\n  protocol: mqttv5\n"
                       "rules:\n"
                       "  - name: v5-forward\n"
                       "    from: {topic: v5/in, qos: 2}\n"
                       "    to: {topic: v5/out, qos: 2}\n");
  mqtt_client client("", 5);
  ASSERT_EQ(client.connect(hub.port()), 0);
  ASSERT_EQ(client.subscribe("v5/out", 2), 2);
  ASSERT_TRUE(wait_until(
    [&] {
      client.publish("v5/in", "warmup", 1);
      return wait_until([&] { return !client.messages_on("v5/out").empty(); },
                        300ms);
    },
    15s));
  // mosquitto_pub speaks MQTT 5 with a user property.
  auto pub = run_command("mosquitto_pub -V 5 -p " + std::to_string(hub.port())
                         + " -q 2 -t v5/in -m with-props"
                           " -D publish user-property site edge-7");
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  ASSERT_TRUE(wait_until([&] {
    for (auto& m : client.messages_on("v5/out"))
      if (m.payload == "with-props")
        return true;
    return false;
  }));
  for (auto& m : client.messages_on("v5/out")) {
    if (m.payload != "with-props")
      continue;
    EXPECT_EQ(m.qos, 2);
    EXPECT_EQ(m.user_properties,
              (std::vector<std::pair<std::string, std::string>>{
                {"site", "edge-7"}}));
  }
}

// -- limits --------------------------------------------------------------------

TEST_F(function_manager, min_instances_are_kept_warm_without_traffic) {
  start_hubflow(R"(
rules:
  - subscribe: {topic: t}
    function: {name: warm}
    publish: {topic: t/out}
functions:
  - name: warm
    plugin: identity
    instance: {min: 2, max: 3, idletime: 100ms}
)");
  ASSERT_TRUE(wait_counter("function", "warm", "instances", 2));
  EXPECT_EQ(counter("function", "warm", "min"), 2);
  EXPECT_EQ(counter("function", "warm", "max"), 3);
  // Well past idletime, still at min: nothing retires below it. (A sleep
  // because this proves that something does not happen.)
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(counter("function", "warm", "instances"), 2);
  EXPECT_EQ(counter("function", "warm", "instances_retired").value_or(0), 0);
}

TEST_F(function_manager, full_queue_is_an_error_report_never_a_silent_drop) {
  // One instance, one queue slot, no retries: of a burst of six one-second
  // invocations at most two are taken; the rest overflow.
  start_hubflow(R"(
rules:
  - clientid: func-busy
    subscribe: {topic: busy/in, qos: 1}
    function: {name: busy}
    publish: {topic: busy/out, qos: 1}
    retry: {max: 0}
functions:
  - name: busy
    plugin: slow
    env: {delay_ms: "1000"}
    instance: {min: 1, max: 1, queue: 1}
)");
  auto client = hub_client({"busy/out"});
  ASSERT_TRUE(wait_flowing(*client, "busy/in", "busy/out", 2s));
  ASSERT_TRUE(wait_until([&] {
    return counter("function", "busy", "busy") == 0
           && counter("function", "busy", "queue_depth") == 0;
  }));
  constexpr int burst = 6;
  for (int i = 0; i < burst; ++i)
    ASSERT_TRUE(
      client->publish("busy/in", R"({"n":)" + std::to_string(i) + "}", 1));
  // Every message comes back: as the echo or inside an Overloaded report.
  auto answered = [&](int n) {
    if (!json_messages_with(*client, "busy/out", "n", n).empty())
      return true;
    for (auto& report :
         json_messages_with(*client, "busy/out", "errorType", "Overloaded"))
      if (report["functionMessage"] == json{{"n", n}})
        return true;
    return false;
  };
  ASSERT_TRUE(wait_until(
    [&] {
      for (int i = 0; i < burst; ++i)
        if (!answered(i))
          return false;
      return true;
    },
    15s));
  auto reports = json_messages_with(*client, "busy/out", "errorType",
                                    "Overloaded");
  EXPECT_GE(reports.size(), 1u);
  EXPECT_LE(reports.size(), burst - 2u);
  EXPECT_NE(reports.front()["errorMessage"].get<std::string>().find(
              "function busy is overloaded"),
            std::string::npos)
    << reports.front().dump();
  EXPECT_TRUE(wait_counter("function", "busy", "overflows",
                           static_cast<std::int64_t>(reports.size())));
}

TEST_F(function_manager, message_over_the_size_limit_is_reported) {
  start_hubflow(R"(
rules:
  - clientid: func-small
    subscribe: {topic: small/in, qos: 1}
    function: {name: small}
    publish: {topic: small/out, qos: 1}
functions:
  - name: small
    plugin: sayhi
    instance: {message: {length: {max: 64}}}
)");
  auto client = hub_client({"small/out"});
  ASSERT_TRUE(wait_flowing(*client, "small/in", "small/out"));
  std::string big = R"({"id":5,"pad":")" + std::string(100, 'x') + "\"}";
  ASSERT_TRUE(client->publish("small/in", big, 1));
  ASSERT_TRUE(wait_until([&] {
    return !json_messages_with(*client, "small/out", "errorType",
                               "MessageTooLarge")
              .empty();
  }));
  auto report = json_messages_with(*client, "small/out", "errorType",
                                   "MessageTooLarge")
                  .front();
  EXPECT_EQ(report["functionMessage"]["id"], 5);
  EXPECT_EQ(report["errorMessage"],
            "message of " + std::to_string(big.size())
              + " bytes exceeds the function's limit of 64");
  EXPECT_TRUE(wait_counter("function", "small", "too_large", 1));
}

// -- stats ---------------------------------------------------------------------

TEST_F(function_manager, every_component_reports_its_counters) {
  start_hubflow(sayhi_rule);
  auto client = hub_client({"t/hi"});
  ASSERT_TRUE(wait_flowing(*client, "t", "t/hi"));
  ASSERT_TRUE(client->publish("t", R"({"id":1})", 1));
  ASSERT_TRUE(wait_until(
    [&] { return !json_messages_with(*client, "t/hi", "id", 1).empty(); }));
  // Counters are reported on a timer: wait for the ones we caused.
  EXPECT_TRUE(wait_until([&] {
    auto s = stats();
    auto in = counter_in(s, "rule", "func-sayhi-1", "in").value_or(0);
    auto out = counter_in(s, "rule", "func-sayhi-1", "out").value_or(0);
    auto outputs = counter_in(s, "function", "sayhi", "outputs").value_or(0);
    auto hub_in = counter_in(s, "hub", "func-sayhi-1", "in").value_or(0);
    auto hub_out = counter_in(s, "hub", "func-sayhi-1", "out").value_or(0);
    return in >= 2 && out >= 2 && outputs >= 2 && hub_in >= 2 && hub_out >= 2;
  })) << stats();
  auto s = stats();
  EXPECT_TRUE(counter_in(s, "function", "sayhi", "latency_p50_us")) << s;
  EXPECT_TRUE(counter_in(s, "function", "sayhi", "latency_p99_us")) << s;
  EXPECT_TRUE(counter_in(s, "function", "sayhi", "queue_depth")) << s;
  EXPECT_TRUE(counter_in(s, "rule", "func-sayhi-1", "latency_p50_us")) << s;
  auto doc = json::parse(s);
  EXPECT_TRUE(doc["version"].is_string());
  EXPECT_TRUE(doc["uptime_ms"].is_number_integer());
}
