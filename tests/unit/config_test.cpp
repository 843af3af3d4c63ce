// Config loading: every kind of error names file:line:column, the key path
// and what is wrong; defaults follow Baetyl's function manager; Baetyl's own
// function-manager service.yml loads unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "endpoints/endpoint.hpp"
#include "fixtures/fixtures.hpp"

using namespace hubflow;
using namespace std::chrono_literals;

namespace {

/// The config loader as the broker calls it: with every endpoint type.
config load_text(const std::string& text, const std::string& file) {
  return load_config_text(text, file, endpoint_registry());
}

/// The error lines a config text produces (empty when it loads).
std::vector<std::string> errors_of(const std::string& yaml,
                                   const std::string& file = "hubflow.yaml") {
  try {
    load_text(yaml, file);
  } catch (const config_error& e) {
    return e.messages();
  }
  return {};
}

/// The one error a config produces; fails the test when there are more or
/// none, listing them.
std::string only_error(const std::string& yaml) {
  auto errors = errors_of(yaml);
  std::string all;
  for (auto& e : errors)
    all += "\n  " + e;
  EXPECT_EQ(errors.size(), 1u) << "errors:" << all;
  return errors.empty() ? std::string{} : errors.front();
}

/// A valid external-hub config with one function, to which the tests add
/// the one mistake they are about. Line numbers matter: see each test.
const std::string hub_block = "hub:\n"
                              "  address: tcp://127.0.0.1:1883\n";

const std::string sayhi_function = "functions:\n"
                                   "  - name: sayhi\n"
                                   "    plugin: sayhi\n";

} // namespace

// -- errors ---------------------------------------------------------------------

TEST(config_errors, yaml_syntax_error_names_line_and_column) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - from: {topic: t\n"
                                      "    to: {topic: u}\n");
  EXPECT_EQ(error.rfind("hubflow.yaml:", 0), 0u) << error;
  EXPECT_NE(error.find("YAML syntax error"), std::string::npos) << error;
  // The position is the one yaml-cpp reports (the unterminated flow map),
  // not 0:0.
  EXPECT_EQ(error.find("hubflow.yaml:0:0"), std::string::npos) << error;
  EXPECT_EQ(error.find("hubflow.yaml: "), std::string::npos) << error;
}

TEST(config_errors, unknown_key_points_at_the_key) {
  auto error = only_error(hub_block + sayhi_function
                          + "rules:\n"
                            "  - from: {topic: t}\n"
                            "    fuction: {name: sayhi}\n"
                            "    to: {topic: t/hi}\n");
  EXPECT_EQ(error, "hubflow.yaml:8:5: rules[0].fuction: unknown key 'fuction'");
}

TEST(config_errors, unknown_top_level_key) {
  auto error = only_error(hub_block + "rulez: []\n");
  EXPECT_EQ(error, "hubflow.yaml:3:1: rulez: unknown key 'rulez'");
}

TEST(config_errors, unknown_key_inside_instance) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {min: 0, maxx: 3}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:24: functions[0].instance.maxx: "
                   "unknown key 'maxx'");
}

TEST(config_errors, wrong_type_names_the_key) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {max: many}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:21: functions[0].instance.max: "
                   "Value type not permitted by 'type' constraint.");
}

TEST(config_errors, quoted_number_is_a_string) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - from: {topic: t, qos: '1'}\n"
                                      "    to: {topic: u}\n");
  EXPECT_EQ(error, "hubflow.yaml:4:27: rules[0].from.qos: "
                   "Value type not permitted by 'type' constraint.");
}

TEST(config_errors, qos_out_of_range) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - subscribe: {topic: t, qos: 3}\n"
                                      "    publish: {topic: u}\n");
  EXPECT_EQ(error, "hubflow.yaml:4:32: rules[0].subscribe.qos: "
                   "Expected number less than or equal to 2");
}

TEST(config_errors, unknown_function_as_in_the_issue) {
  // Laid out so that rules[1].function sits at line 14, column 7.
  auto yaml = hub_block              // 1-2
              + sayhi_function       // 3-5
              + "rules:\n"           // 6
                "  - clientid: a\n"  // 7
                "    subscribe: {topic: t}\n"
                "    function: {name: sayhi}\n"
                "    publish: {topic: t/hi}\n" // 10
                "  - clientid: b\n"
                "    subscribe: {topic: p}\n"
                "    function:\n"
                "      name: pyhi\n" // 14, column 7
                "    publish: {topic: p/hi}\n";
  EXPECT_EQ(only_error(yaml),
            "hubflow.yaml:14:7: rules[1].function: unknown function 'pyhi'");
}

TEST(config_errors, unknown_endpoint) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - from: {topic: t}\n"
                                      "    to: {endpoint: kafka1, topic: x}\n");
  EXPECT_EQ(error, "hubflow.yaml:5:20: rules[0].to.endpoint: "
                   "unknown endpoint 'kafka1'");
}

TEST(config_errors, kafka_topic_template_is_checked_at_load) {
  auto config = [](const std::string& topic) {
    return hub_block + "endpoints:\n"
                       "  - name: kafka1\n"
                       "    type: kafka\n"
                       "    host: 127.0.0.1:9092\n"
                       "rules:\n"
                       "  - from: {topic: 'factory/+/telemetry'}\n"
                       "    to: {endpoint: kafka1, topic: '"
           + topic + "'}\n";
  };
  EXPECT_TRUE(errors_of(config("telemetry-${mqtt.topic.2}")).empty());
  EXPECT_EQ(only_error(config("telemetry-${mqtt.topc}")),
            "hubflow.yaml:9:35: rules[0].to.topic: unknown placeholder "
            "${mqtt.topc} (known: ${topic}, ${topic.N} (N from 1), "
            "${property.NAME}, ${origin}, ${qos}, ${timestamp})");
  EXPECT_EQ(only_error(config("tele metry")),
            "hubflow.yaml:9:35: rules[0].to.topic: Kafka topics may hold only "
            "[a-zA-Z0-9._-], not ' '");
}

TEST(config_errors, duplicate_function_names) {
  auto error = only_error(hub_block + sayhi_function
                          + "  - name: sayhi\n"
                            "    plugin: slow\n");
  EXPECT_EQ(error, "hubflow.yaml:6:11: functions[1].name: "
                   "duplicate name 'sayhi'");
}

TEST(config_errors, duplicate_rule_names) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - name: r\n"
                                      "    from: {topic: a}\n"
                                      "    to: {topic: b}\n"
                                      "  - name: r\n"
                                      "    from: {topic: c}\n"
                                      "    to: {topic: d}\n");
  EXPECT_EQ(error, "hubflow.yaml:7:11: rules[1].name: duplicate name 'r'");
}

TEST(config_errors, rules_named_by_the_same_clientid_are_duplicates) {
  // A rule's name defaults to its clientid; two rules with one client id
  // would fight over one MQTT session on the hub.
  auto error = only_error(hub_block + "rules:\n"
                                      "  - clientid: c\n"
                                      "    from: {topic: a}\n"
                                      "    to: {topic: b}\n"
                                      "  - clientid: c\n"
                                      "    from: {topic: c}\n"
                                      "    to: {topic: d}\n");
  EXPECT_NE(error.find("rules[1]"), std::string::npos) << error;
  EXPECT_NE(error.find("duplicate name 'c'"), std::string::npos) << error;
}

TEST(config_errors, min_larger_than_max) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {min: 5, max: 2}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:21: functions[0].instance.min: "
                   "min (5) is larger than max (2)");
}

TEST(config_errors, min_larger_than_default_max) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {min: 2}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:21: functions[0].instance.min: "
                   "min (2) is larger than max (1)");
}

TEST(config_errors, bad_duration) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {idletime: 10 minutes}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:26: functions[0].instance.idletime: "
                   "not a duration (examples: 500ms, 30s, 10m, 1h)");
}

TEST(config_errors, negative_duration) {
  auto error = only_error(hub_block + sayhi_function
                          + "    instance: {timeout: -5}\n");
  EXPECT_EQ(error, "hubflow.yaml:6:25: functions[0].instance.timeout: "
                   "Expected number greater than or equal to 0");
}

TEST(config_errors, native_function_without_plugin) {
  auto error = only_error(hub_block + "functions:\n"
                                      "  - name: sayhi\n"
                                      "    runtime: native\n");
  EXPECT_EQ(error, "hubflow.yaml:4:5: functions[0]: a native function needs "
                   "`plugin: <name or .so path>`");
}

TEST(config_errors, hub_with_both_listen_and_address) {
  auto error = only_error("hub:\n"
                          "  listen: [tcp://127.0.0.1:1883]\n"
                          "  address: tcp://127.0.0.1:1884\n");
  EXPECT_EQ(error, "hubflow.yaml:2:3: hub: `listen` (the embedded hub) and "
                   "`address` (an external hub) exclude each other");
}

TEST(config_errors, rule_without_destination) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - from: {topic: t}\n");
  EXPECT_EQ(error, "hubflow.yaml:4:5: rules[0]: a rule needs `to` (or Baetyl's "
                   "`publish`)");
}

TEST(config_errors, every_problem_is_reported_at_once) {
  auto errors = errors_of(hub_block + sayhi_function
                          + "    instance: {min: 3, max: 2}\n"
                            "rules:\n"
                            "  - from: {topic: t}\n"
                            "    function: {name: nope}\n"
                            "    to: {endpoint: nada, topic: x}\n");
  ASSERT_EQ(errors.size(), 3u);
  std::string all;
  for (auto& e : errors)
    all += e + "\n";
  EXPECT_NE(all.find("functions[0].instance.min: min (3)"), std::string::npos)
    << all;
  EXPECT_NE(all.find("rules[0].function: unknown function 'nope'"),
            std::string::npos)
    << all;
  EXPECT_NE(all.find("rules[0].to.endpoint: unknown endpoint 'nada'"),
            std::string::npos)
    << all;
}

TEST(config_errors, unknown_key_and_a_bad_value_in_one_rule_are_both_reported) {
  auto errors = errors_of(hub_block + "rules:\n"
                                      "  - from: {topic: t}\n"
                                      "    fuction: {name: x}\n"
                                      "    to: {topic: u, qos: 5}\n");
  std::sort(errors.begin(), errors.end()); // valijson's order is its own
  EXPECT_EQ(errors, (std::vector<std::string>{
                      "hubflow.yaml:5:5: rules[0].fuction: unknown key 'fuction'",
                      "hubflow.yaml:6:25: rules[0].to.qos: Expected number less "
                      "than or equal to 2"}));
}

TEST(config_errors, the_exception_text_is_every_line) {
  try {
    load_text(hub_block + "bogus: 1\n"
                                 "rules:\n"
                                 "  - from: {topic: t, qos: 9}\n"
                                 "    to: {topic: u}\n",
                     "x.yaml");
    FAIL() << "the config should not load";
  } catch (const config_error& e) {
    ASSERT_EQ(e.messages().size(), 2u);
    EXPECT_EQ(std::string{e.what()},
              e.messages()[0] + "\n" + e.messages()[1]);
  }
}

TEST(config_errors, missing_file_is_named) {
  try {
    load_config_file("/nonexistent/hubflow.yaml");
    FAIL() << "a missing file should not load";
  } catch (const config_error& e) {
    EXPECT_EQ(std::string{e.what()},
              "/nonexistent/hubflow.yaml: cannot open the config file");
  }
}

TEST(config_errors, errors_name_the_file_they_were_read_from) {
  hubflow::test::temp_dir dir;
  auto path = dir.write("my.yaml", hub_block + "nope: 1\n");
  try {
    load_config_file(path);
    FAIL() << "the config should not load";
  } catch (const config_error& e) {
    EXPECT_EQ(std::string{e.what()}, path + ":3:1: nope: unknown key 'nope'");
  }
}

// -- defaults -------------------------------------------------------------------

TEST(config_defaults, follow_baetyls_function_manager) {
  auto cfg = load_text(hub_block + sayhi_function
                                + "rules:\n"
                                  "  - from: {topic: t}\n"
                                  "    function: {name: sayhi}\n"
                                  "    to: {topic: t/hi}\n",
                              "hubflow.yaml");
  ASSERT_EQ(cfg.functions.size(), 1u);
  auto& fn = cfg.functions[0];
  EXPECT_EQ(fn.runtime, "native");
  EXPECT_EQ(fn.instance.min, 0u);
  EXPECT_EQ(fn.instance.max, 1u);
  EXPECT_EQ(fn.instance.idletime, std::chrono::milliseconds(10min));
  EXPECT_EQ(fn.instance.timeout, std::chrono::milliseconds(30s));
  EXPECT_EQ(fn.instance.message_size, 4u * 1024 * 1024);
  ASSERT_EQ(cfg.rules.size(), 1u);
  auto& rule = cfg.rules[0];
  EXPECT_EQ(rule.retry_max, 3);
  EXPECT_EQ(rule.from.qos, 0);
  EXPECT_EQ(rule.to.qos, 0);
  EXPECT_EQ(rule.name, "rule-1");
  EXPECT_TRUE(rule.error_topic.empty());
  EXPECT_EQ(cfg.hub.max_message_size, 4u * 1024 * 1024);
  EXPECT_EQ(cfg.stats.port, 9883);
}

TEST(config_defaults, durations_and_sizes_take_units) {
  auto cfg = load_text(hub_block + sayhi_function
                                + "    instance:\n"
                                  "      idletime: 1500ms\n"
                                  "      timeout: 2\n"
                                  "      message: {length: {max: 64k}}\n",
                              "hubflow.yaml");
  auto& inst = cfg.functions.at(0).instance;
  EXPECT_EQ(inst.idletime, 1500ms);
  EXPECT_EQ(inst.timeout, 2s); // a bare number is seconds
  EXPECT_EQ(inst.message_size, 64u * 1024);
}

TEST(config_defaults, parse_duration) {
  EXPECT_EQ(parse_duration("500ms"), 500ms);
  EXPECT_EQ(parse_duration("30s"), 30s);
  EXPECT_EQ(parse_duration("10m"), std::chrono::milliseconds(10min));
  EXPECT_EQ(parse_duration("1h"), std::chrono::milliseconds(1h));
  EXPECT_EQ(parse_duration("7"), 7s);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("s"));
  EXPECT_FALSE(parse_duration("-1s"));
  EXPECT_FALSE(parse_duration("10 minutes"));
  EXPECT_FALSE(parse_duration("1y"));
  // Days and weeks, as Mosquitto's persistent_client_expiration takes them.
  EXPECT_EQ(parse_duration("2d"), std::chrono::milliseconds(48h));
  EXPECT_EQ(parse_duration("1w"), std::chrono::milliseconds(168h));
}

TEST(config_defaults, embedded_default_config_loads) {
  auto cfg = default_config();
  EXPECT_TRUE(cfg.hub.embedded);
  EXPECT_EQ(cfg.hub.listen, std::vector<std::string>{"tcp://127.0.0.1:1883"});
  EXPECT_TRUE(cfg.rules.empty());
}

// -- Baetyl's layout --------------------------------------------------------------

TEST(config_baetyl, function_manager_service_yml_loads_unchanged) {
  // Issue 2's service.yml, byte for byte.
  const std::string service_yml = R"(hub:
  address: tcp://127.0.0.1:1883
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
)";
  auto errors = errors_of(service_yml, "service.yml");
  ASSERT_TRUE(errors.empty()) << errors.front();
  auto cfg = load_text(service_yml, "service.yml");
  EXPECT_FALSE(cfg.hub.embedded);
  EXPECT_EQ(cfg.hub.address, "tcp://127.0.0.1:1883");
  EXPECT_EQ(cfg.hub.username, "test");
  EXPECT_EQ(cfg.hub.password, "hahaha");
  EXPECT_EQ(cfg.hub.protocol, 4);
  ASSERT_EQ(cfg.rules.size(), 1u);
  auto& rule = cfg.rules[0];
  EXPECT_EQ(rule.clientid, "func-sayhi-1");
  EXPECT_EQ(rule.name, "func-sayhi-1");
  // subscribe/publish are from/to.
  EXPECT_EQ(rule.from.topic, "t");
  EXPECT_EQ(rule.from.qos, 1);
  EXPECT_TRUE(rule.from.endpoint.empty());
  EXPECT_EQ(rule.to.topic, "t/hi");
  EXPECT_EQ(rule.to.qos, 1);
  EXPECT_EQ(rule.function, "sayhi");
  ASSERT_EQ(cfg.functions.size(), 1u);
  auto& fn = cfg.functions[0];
  EXPECT_EQ(fn.name, "sayhi");
  EXPECT_EQ(fn.runtime, "native");
  EXPECT_EQ(fn.plugin, "sayhi");
  EXPECT_EQ(fn.instance.min, 0u);
  EXPECT_EQ(fn.instance.max, 10u);
  EXPECT_EQ(fn.instance.idletime, 30s);
  EXPECT_EQ(fn.instance.timeout, 10s);
  // Positions are kept for later errors (the function's runtime check).
  EXPECT_EQ(fn.where.file, "service.yml");
  EXPECT_EQ(fn.where.line, 11);
}

TEST(config_baetyl, from_and_to_are_the_same_as_subscribe_and_publish) {
  auto a = load_text(hub_block + "rules:\n"
                                        "  - from: {topic: t, qos: 1}\n"
                                        "    to: {topic: u, qos: 2}\n",
                            "a.yaml");
  auto b = load_text(hub_block + "rules:\n"
                                        "  - subscribe: {topic: t, qos: 1}\n"
                                        "    publish: {topic: u, qos: 2}\n",
                            "b.yaml");
  ASSERT_EQ(a.rules.size(), 1u);
  ASSERT_EQ(b.rules.size(), 1u);
  EXPECT_EQ(a.rules[0].from.topic, b.rules[0].from.topic);
  EXPECT_EQ(a.rules[0].from.qos, b.rules[0].from.qos);
  EXPECT_EQ(a.rules[0].to.topic, b.rules[0].to.topic);
  EXPECT_EQ(a.rules[0].to.qos, b.rules[0].to.qos);
  EXPECT_TRUE(a.rules[0].function.empty()); // a plain forward
}

TEST(config_baetyl, from_and_subscribe_together_are_refused) {
  auto error = only_error(hub_block + "rules:\n"
                                      "  - from: {topic: t}\n"
                                      "    subscribe: {topic: t}\n"
                                      "    to: {topic: u}\n");
  EXPECT_EQ(error, "hubflow.yaml:4:5: rules[0]: a rule has one source and one "
                   "destination: `from` or Baetyl's `subscribe`, and `to` or "
                   "Baetyl's `publish`, not both");
}

TEST(config_baetyl, error_topic_and_retry_are_read) {
  auto cfg = load_text(hub_block + sayhi_function
                                + "rules:\n"
                                  "  - from: {topic: t}\n"
                                  "    function: {name: sayhi}\n"
                                  "    to: {topic: t/hi}\n"
                                  "    error_topic: t/err\n"
                                  "    retry: {max: 0}\n",
                              "hubflow.yaml");
  EXPECT_EQ(cfg.rules.at(0).error_topic, "t/err");
  EXPECT_EQ(cfg.rules.at(0).retry_max, 0);
}

TEST(config_defaults, queue_full_and_max_keepalive) {
  auto cfg = load_text("hub:\n  listen: [tcp://127.0.0.1:0]\n", "hubflow.yaml");
  EXPECT_EQ(cfg.hub.queue_full, queue_full_policy::backpressure);
  EXPECT_EQ(cfg.hub.limits.max_keepalive, 0u);
  cfg = load_text("hub:\n  listen: [tcp://127.0.0.1:0]\n"
                  "  message: {queue_full: drop_oldest}\n"
                  "  max_keepalive: 30\n",
                  "hubflow.yaml");
  EXPECT_EQ(cfg.hub.queue_full, queue_full_policy::drop_oldest);
  EXPECT_EQ(cfg.hub.limits.max_keepalive, 30u);
  auto error = only_error("hub:\n  listen: [tcp://127.0.0.1:0]\n"
                          "  message: {queue_full: block}\n");
  EXPECT_NE(error.find("hubflow.yaml:3:"), std::string::npos) << error;
  EXPECT_NE(error.find("hub.message.queue_full"), std::string::npos) << error;
}

TEST(config_hub, mosquitto_files_and_anonymous_permissions) {
  auto cfg = load_text("hub:\n  listen: [tcp://127.0.0.1:0]\n"
                       "  password_file: users/passwd\n"
                       "  acl_file: /etc/mosquitto/acl\n"
                       "  anonymous_permissions:\n"
                       "    - {action: pub, permit: ['in/+']}\n"
                       "    - {action: sub, permit: ['out/#', 'x']}\n",
                       "/srv/hubflow/hubflow.yaml");
  // Relative to the config's folder, as every path the config names.
  EXPECT_EQ(cfg.hub.password_file.path, "/srv/hubflow/users/passwd");
  EXPECT_EQ(cfg.hub.password_file.where.line, 3);
  EXPECT_EQ(cfg.hub.acl_file.path, "/etc/mosquitto/acl");
  ASSERT_TRUE(cfg.hub.anonymous_permissions);
  EXPECT_EQ(cfg.hub.anonymous_permissions->pub,
            std::vector<std::string>{"in/+"});
  EXPECT_EQ(cfg.hub.anonymous_permissions->sub,
            (std::vector<std::string>{"out/#", "x"}));
  // A password file counts as principals: anonymous defaults to none.
  EXPECT_FALSE(cfg.hub.allow_anonymous);
  // The files are read later (read_mosquitto_files), not by the loader.
  EXPECT_EQ(cfg.hub.files, nullptr);

  cfg = load_text("hub:\n  listen: [tcp://127.0.0.1:0]\n", "hubflow.yaml");
  EXPECT_FALSE(cfg.hub.anonymous_permissions);
  EXPECT_TRUE(cfg.hub.password_file.path.empty());
  EXPECT_TRUE(cfg.hub.allow_anonymous);

  auto error = only_error("hub:\n  listen: [tcp://127.0.0.1:0]\n"
                          "  anonymous_permissions: [{action: publish, "
                          "permit: [a]}]\n");
  EXPECT_NE(error.find("hubflow.yaml:3:"), std::string::npos) << error;
  EXPECT_NE(error.find("hub.anonymous_permissions[0].action"),
            std::string::npos)
    << error;
}
