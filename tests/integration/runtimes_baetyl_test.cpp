// Baetyl's published sample handlers (index.py and index.js in
// ../shared/seeds/baetyl-function-manager.txt), extracted at test time and run
// unmodified: first straight through the python and node runtimes, then in
// Baetyl's function-manager scenario through a running hubflow with real
// MQTT clients, next to the SQL filter.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "functions/runtime.hpp"

using namespace hubflow;
using namespace hubflow::test;
using json = nlohmann::json;
using outcome = function_result::outcome;

namespace {

const std::string& seed_path = baetyl_seed_path;

/// The code block of the seed document that starts with `shebang`: every
/// line up to the document's next prose line (prose there is Chinese, code
/// is ASCII), without trailing blank lines.
std::string extract_handler(const std::string& shebang) {
  std::ifstream in{seed_path};
  std::string line, code;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line.rfind(shebang, 0) == 0)
      inside = true;
    if (!inside)
      continue;
    bool prose = false;
    for (unsigned char c : line)
      prose = prose || c >= 0x80;
    if (prose)
      break;
    code += line + "\n";
  }
  while (code.size() >= 2 && code.substr(code.size() - 2) == "\n\n")
    code.pop_back();
  return code;
}

/// A codedir holding Baetyl's index.py and index.js.
class baetyl_code {
public:
  baetyl_code() {
    python_ = extract_handler("#!/usr/bin/env python");
    node_ = extract_handler("#!/usr/bin/env node");
    dir_.write("index.py", python_);
    dir_.write("index.js", node_);
  }
  const std::string& path() const {
    return dir_.path();
  }
  const std::string& python() const {
    return python_;
  }
  const std::string& node() const {
    return node_;
  }

private:
  temp_dir dir_;
  std::string python_;
  std::string node_;
};

void expect_sayhi_output(const json& out, const std::string& topic, int qos,
                         const std::string& function) {
  EXPECT_EQ(out["id"], 1) << out;
  EXPECT_EQ(out["messageQOS"], qos) << out;
  EXPECT_EQ(out["messageTopic"], topic) << out;
  EXPECT_TRUE(out["messageTimestamp"].is_number_integer()) << out;
  EXPECT_EQ(out["functionName"], function) << out;
  EXPECT_TRUE(out["functionInvokeID"].is_string()) << out;
  EXPECT_FALSE(out["functionInvokeID"].get<std::string>().empty()) << out;
  EXPECT_EQ(out["Say"], "Hello Baetyl") << out;
}

} // namespace

TEST(baetyl_samples, are_extracted_from_the_seed_document) {
  HUBFLOW_SKIP_WITHOUT_FILE(seed_path);
  baetyl_code code;
  // Their first and last lines, as published.
  EXPECT_EQ(code.python().rfind("#!/usr/bin/env python\n", 0), 0u);
  EXPECT_NE(code.python().find("def handler(event, context):"), std::string::npos);
  EXPECT_EQ(code.python().substr(code.python().size() - 15), "    return res\n");
  EXPECT_EQ(code.node().rfind("#!/usr/bin/env node\n", 0), 0u);
  EXPECT_NE(code.node().find("exports.handler = (event, context, callback)"),
            std::string::npos);
  EXPECT_EQ(code.node().substr(code.node().size() - 3), "};\n");
}

class baetyl_sample_runtime : public testing::TestWithParam<std::string> {};

TEST_P(baetyl_sample_runtime, runs_unmodified) {
  HUBFLOW_SKIP_WITHOUT_FILE(seed_path);
  baetyl_code code;
  function_config cfg;
  cfg.name = GetParam() + "-sayhi";
  cfg.runtime = GetParam();
  cfg.handler = "index.handler";
  cfg.codedir = code.path();
  std::string error;
  auto runtime = make_runtime(cfg, runtime_options{}, error);
  ASSERT_TRUE(runtime) << error;
  auto instance = runtime->create_instance(error);
  ASSERT_TRUE(instance) << error;

  auto invoke = [&](std::string body) {
    message msg;
    msg.topic = "t";
    msg.body = payload{std::move(body)};
    return instance->invoke({msg, cfg.name, "id-42", std::chrono::seconds(10)});
  };
  auto result = invoke(R"({"id":1})");
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  auto out = json::parse(result.output.str());
  expect_sayhi_output(out, "t", 0, cfg.name);
  EXPECT_EQ(out["functionInvokeID"], "id-42");

  result = invoke("hello bytes");
  ASSERT_EQ(result.status, outcome::output) << result.error_message;
  EXPECT_EQ(json::parse(result.output.str())["bytes"], "hello bytes");

  result = invoke(R"({"err":"boom"})");
  ASSERT_EQ(result.status, outcome::handler_error);
  EXPECT_EQ(result.error_type, "TypeError");
  EXPECT_EQ(result.error_message.substr(0, 4), "boom");
}

INSTANTIATE_TEST_SUITE_P(languages, baetyl_sample_runtime,
                         testing::Values("python", "node"),
                         [](const auto& info) { return info.param; });

namespace {

/// hubflow with Baetyl's function-manager rules: Baetyl's own handlers for
/// t/py3hi and t/node8hi, the SQL filter for t/sqlfilter.
std::string scenario_config(std::uint16_t port, const std::string& codedir) {
  std::ostringstream yaml;
  yaml << "hub:\n"
          "  listen: [tcp://127.0.0.1:"
       << port << "]\n"
       << R"(rules:
  - clientid: func-sql-filter-1
    subscribe: {topic: t, qos: 1}
    function: {name: sql-filter}
    publish: {topic: t/sqlfilter, qos: 1}
  - clientid: func-python36-sayhi-1
    subscribe: {topic: t}
    function: {name: python36-sayhi}
    publish: {topic: t/py3hi}
  - clientid: func-node85-sayhi-1
    subscribe: {topic: t}
    function: {name: node85-sayhi}
    publish: {topic: t/node8hi}
functions:
  - name: sql-filter
    runtime: sql
    handler: 'select qos() as qos, topic() as topic, * where id < 10'
  - name: python36-sayhi
    runtime: python
    handler: 'index.handler'
    codedir: ')"
       << codedir << R"('
  - name: node85-sayhi
    runtime: node
    handler: 'index.handler'
    codedir: ')"
       << codedir << "'\n";
  return yaml.str();
}

json json_on(mqtt_client& client, const std::string& topic, std::size_t index = 0) {
  auto messages = client.messages_on(topic);
  if (messages.size() <= index)
    return nullptr;
  return json::parse(messages[index].payload, nullptr, false);
}

} // namespace

TEST(baetyl_scenario, through_the_broker) {
  HUBFLOW_SKIP_WITHOUT_FILE(seed_path);
  baetyl_code code;
  auto port = free_port();
  hubflow_server server{scenario_config(port, code.path())};
  ASSERT_TRUE(wait_for_port(port, 15s)) << server.proc().output();
  mqtt_client sub{"watcher"};
  ASSERT_EQ(sub.connect(port), 0);
  ASSERT_LT(sub.subscribe("t/#", 1), 0x80);
  mqtt_client pub{"device"};
  ASSERT_EQ(pub.connect(port), 0);

  ASSERT_TRUE(pub.publish("t", R"({"id":1})", 1));
  auto all_three = [&] {
    return !sub.messages_on("t/py3hi").empty()
           && !sub.messages_on("t/node8hi").empty()
           && !sub.messages_on("t/sqlfilter").empty();
  };
  ASSERT_TRUE(wait_until(all_three, 20s)) << server.proc().output();
  expect_sayhi_output(json_on(sub, "t/py3hi"), "t", 0, "python36-sayhi");
  expect_sayhi_output(json_on(sub, "t/node8hi"), "t", 0, "node85-sayhi");
  EXPECT_EQ(json_on(sub, "t/sqlfilter"), json::parse(R"({"qos":1,"topic":"t","id":1})"));
  EXPECT_EQ(sub.messages_on("t/sqlfilter")[0].qos, 1);

  // {"id":20} is filtered by the SQL WHERE; {"id":2} after it is not, so
  // once its output is in, the filtered one would have been too.
  sub.clear();
  ASSERT_TRUE(pub.publish("t", R"({"id":20})", 1));
  ASSERT_TRUE(pub.publish("t", R"({"id":2})", 1));
  ASSERT_TRUE(wait_until(
    [&] {
      return sub.messages_on("t/py3hi").size() == 2
             && sub.messages_on("t/node8hi").size() == 2
             && !sub.messages_on("t/sqlfilter").empty();
    },
    20s));
  auto filtered = sub.messages_on("t/sqlfilter");
  ASSERT_EQ(filtered.size(), 1u);
  EXPECT_EQ(json::parse(filtered[0].payload)["id"], 2);

  // {"err":"boom"}: error reports from both handlers, the broker serves on.
  sub.clear();
  ASSERT_TRUE(pub.publish("t", R"({"err":"boom"})", 1));
  ASSERT_TRUE(wait_until(
    [&] {
      return !sub.messages_on("t/py3hi").empty()
             && !sub.messages_on("t/node8hi").empty();
    },
    20s));
  for (auto topic : {"t/py3hi", "t/node8hi"}) {
    auto report = json_on(sub, topic);
    EXPECT_EQ(report["errorType"], "TypeError") << report;
    EXPECT_EQ(report["errorMessage"].get<std::string>().substr(0, 4), "boom")
      << report;
    EXPECT_EQ(report["functionMessage"], json::parse(R"({"err":"boom"})"))
      << report;
  }
  EXPECT_TRUE(sub.messages_on("t/sqlfilter").empty()); // id IS NULL
  sub.clear();
  ASSERT_TRUE(pub.publish("t", R"({"id":3})", 1));
  ASSERT_TRUE(wait_until(all_three, 20s));
  EXPECT_EQ(json_on(sub, "t/py3hi")["id"], 3);
  EXPECT_TRUE(server.proc().running());
}

namespace {

/// config/examples/baetyl-function-manager.yaml with its relative codedirs
/// made absolute (the server runs it from a temp copy).
std::string example_config() {
  const std::string examples = std::string{HUBFLOW_SOURCE_DIR} + "/config/examples";
  std::ifstream in{examples + "/baetyl-function-manager.yaml"};
  std::string yaml{std::istreambuf_iterator<char>{in}, {}};
  const std::string relative = "codedir: 'functions/";
  for (auto at = yaml.find(relative); at != std::string::npos;
       at = yaml.find(relative, at + 1))
    yaml.replace(at, relative.size(), "codedir: '" + examples + "/functions/");
  return yaml;
}

} // namespace

TEST(baetyl_scenario, the_example_config_with_hubflows_own_handlers) {
  auto port = free_port();
  hubflow_server server{example_config(),
                        {"--listen", "127.0.0.1:" + std::to_string(port)}};
  ASSERT_TRUE(wait_for_port(port, 15s)) << server.proc().output();
  mqtt_client sub{"watcher"};
  sub.set_credentials("test", "hahaha");
  ASSERT_EQ(sub.connect(port), 0);
  ASSERT_LT(sub.subscribe("#", 1), 0x80);
  mqtt_client pub{"device"};
  pub.set_credentials("test", "hahaha");
  ASSERT_EQ(pub.connect(port), 0);

  ASSERT_TRUE(pub.publish("t", R"({"id":1})", 1));
  const std::vector<std::string> sayhi_topics = {"t/py3hi", "t/node8hi",
                                                 "t/nativehi"};
  ASSERT_TRUE(wait_until(
    [&] {
      for (auto& topic : sayhi_topics)
        if (sub.messages_on(topic).empty())
          return false;
      return !sub.messages_on("t/sqlfilter").empty()
             && !sub.messages_on("t/topic").empty();
    },
    20s))
    << server.proc().output();
  for (auto& topic : sayhi_topics) {
    auto out = json_on(sub, topic);
    EXPECT_EQ(out["id"], 1) << topic << out;
    EXPECT_EQ(out["messageTopic"], "t") << topic << out;
    EXPECT_TRUE(out["functionInvokeID"].is_string()) << topic << out;
    EXPECT_EQ(out["Say"], "Hello hubflow") << topic << out;
  }
  EXPECT_EQ(json_on(sub, "t/sqlfilter"),
            json::parse(R"({"qos":1,"topic":"t","id":1})"));
  EXPECT_EQ(sub.messages_on("t/topic")[0].payload, R"({"id":1})"); // the remap

  sub.clear();
  ASSERT_TRUE(pub.publish("t", R"({"err":"boom"})", 1));
  ASSERT_TRUE(wait_until(
    [&] {
      for (auto& topic : sayhi_topics)
        if (sub.messages_on(topic).empty())
          return false;
      return true;
    },
    20s));
  for (auto& topic : sayhi_topics) {
    auto report = json_on(sub, topic);
    EXPECT_EQ(report["errorType"], "TypeError") << topic << report;
    EXPECT_EQ(report["errorMessage"].get<std::string>().substr(0, 4), "boom")
      << topic << report;
  }
}
