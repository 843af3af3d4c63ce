// Redis endpoint settings, key templates and command building: no server.
#include <algorithm>
#include <cstdlib>

#include <gtest/gtest.h>

#include "endpoints/endpoint.hpp"
#include "endpoints/redis/redis_commands.hpp"
#include "endpoints/redis/redis_replies.hpp"
#include "endpoints/redis/redis_settings.hpp"
#include "fixtures/fixtures.hpp"

using namespace hubflow;

namespace {

/// The config loader as the broker calls it: with every endpoint type.
config load_text(const std::string& text, const std::string& file) {
  return load_config_text(text, file, endpoint_registry());
}

endpoint_config endpoint_from(const std::string& yaml) {
  endpoint_config cfg;
  cfg.name = "cache";
  cfg.type = "redis";
  cfg.settings = YAML::Load(yaml);
  cfg.where = {"hubflow.yaml", 3, 5};
  return cfg;
}

std::vector<std::string> errors_of(const std::string& yaml) {
  std::vector<std::string> errors;
  parse_redis_settings(endpoint_from(yaml), "endpoints[0]", errors);
  return errors;
}

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (auto& e : errors)
    out += e + "\n";
  return out;
}

message msg_on(std::string topic, std::string body = "42") {
  message m;
  m.topic = std::move(topic);
  m.body = payload{std::move(body)};
  m.qos = 1;
  m.origin = "sensor-7";
  m.properties.user_properties = {{"room", "kitchen"}};
  return m;
}

} // namespace

TEST(redis_settings, defaults_and_full_settings) {
  std::vector<std::string> errors;
  auto s = parse_redis_settings(endpoint_from("name: cache\ntype: redis\n"),
                                "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(s.connection.host, "127.0.0.1");
  EXPECT_EQ(s.connection.port, 6379);
  EXPECT_EQ(s.mode, redis_mode::publish);
  ASSERT_TRUE(s.key);
  EXPECT_EQ(s.key->text(), "${topic}");

  s = parse_redis_settings(endpoint_from(R"(
host: redis.local
port: 6380
db: 2
mode: set
key: "dev:{topic.1}"
ttl: 90s
timeout: 3s
connect_timeout: 1s
reconnect_backoff: 20ms
reconnect_backoff_max: 2s
key_prefix: "app||"
tls: false
)"),
                           "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(s.connection.host, "redis.local");
  EXPECT_EQ(s.connection.port, 6380);
  EXPECT_EQ(s.connection.db, 2);
  EXPECT_EQ(s.mode, redis_mode::set);
  EXPECT_EQ(s.ttl, std::chrono::milliseconds(90000));
  EXPECT_EQ(s.connection.command_timeout.count(), 3000);
  EXPECT_EQ(s.connection.connect_timeout.count(), 1000);
  EXPECT_EQ(s.connection.backoff_min.count(), 20);
  EXPECT_EQ(s.connection.backoff_max.count(), 2000);
  EXPECT_EQ(s.key_prefix, "app||");
  // A bare number is seconds, as in the rest of the config.
  s = parse_redis_settings(endpoint_from("mode: set\nttl: 30\n"),
                           "endpoints[0]", errors);
  EXPECT_EQ(s.ttl, std::chrono::milliseconds(30000));
}

TEST(redis_settings, errors_name_position_and_key_path) {
  auto errors = errors_of("port: 70000\nmode: upsert\n");
  ASSERT_EQ(errors.size(), 2u) << joined(errors);
  EXPECT_EQ(errors[0], "hubflow.yaml:1:7: endpoints[0].port: must be between "
                       "1 and 65535 (got 70000)");
  EXPECT_NE(errors[1].find("hubflow.yaml:2:7: endpoints[0].mode: must be one "
                           "of set, publish, xadd, lpush, rpush (got 'upsert')"),
            std::string::npos)
    << errors[1];
}

TEST(redis_settings, refuses_tls_with_a_reason) {
  auto errors = errors_of("tls: true\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("endpoints[0].tls: TLS is not available"),
            std::string::npos)
    << errors[0];
  EXPECT_NE(errors[0].find("hiredis"), std::string::npos);
}

TEST(redis_settings, password_comes_from_a_file_or_the_environment) {
  test::temp_dir dir;
  auto file = dir.write("redis.pw", "s3cret\n");
  std::vector<std::string> errors;
  auto s = parse_redis_settings(
    endpoint_from("password: {file: " + file + "}\n"), "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(s.connection.password, "s3cret"); // trailing newline dropped

  ::setenv("HUBFLOW_TEST_REDIS_PW", "from-env", 1);
  s = parse_redis_settings(endpoint_from("password: {env: HUBFLOW_TEST_REDIS_PW}\n"),
                           "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(s.connection.password, "from-env");

  // A plain string works (with a logged warning), as everywhere in hubflow.
  s = parse_redis_settings(endpoint_from("password: plain-text\n"),
                           "endpoints[0]", errors);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  EXPECT_EQ(s.connection.password, "plain-text");
  errors = errors_of("password: [a, b]\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("endpoints[0].password: give the secret as"),
            std::string::npos);
  errors = errors_of("password: {env: HUBFLOW_TEST_UNSET_VARIABLE}\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("endpoints[0].password: environment variable "
                           "'HUBFLOW_TEST_UNSET_VARIABLE' is not set"),
            std::string::npos)
    << errors[0];
  errors = errors_of("password: {file: /nonexistent/pw}\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("cannot read secret file '/nonexistent/pw'"),
            std::string::npos);
}

TEST(redis_settings, mode_specific_options_are_checked) {
  EXPECT_EQ(errors_of("mode: publish\nttl: 10s\n").size(), 1u);
  EXPECT_EQ(errors_of("mode: set\nmaxlen: 10\n").size(), 1u);
  EXPECT_TRUE(errors_of("mode: xadd\nmaxlen: 10\n").empty());
  EXPECT_TRUE(errors_of("mode: lpush\nmaxlen: 10\n").empty());
  EXPECT_EQ(errors_of("mode: set\nttl: soon\n").size(), 1u);
  EXPECT_EQ(errors_of("key: \"{nope}\"\n").size(), 1u);
}

TEST(redis_settings, registered_as_endpoint_type) {
  auto& registry = endpoint_registry();
  ASSERT_EQ(registry.count("redis"), 1u);
  std::vector<std::string> errors, warnings;
  auto cfg = endpoint_from("mode: set\n");
  cfg.usage.as_source = true;
  parse_endpoint(registry["redis"], cfg, "endpoints[0]", errors, warnings);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("cannot be a rule source"), std::string::npos);
  EXPECT_FALSE(cfg.parsed);
}

TEST(redis_key_template, renders_the_key_setting_or_the_rules_target) {
  std::string error;
  auto m = msg_on("home/kitchen/temp");
  std::vector<std::string> errors, warnings;
  auto s = parse_redis_settings(endpoint_from("key: \"t:${topic.2}\"\n"),
                                "endpoints[0]", errors, &warnings);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  EXPECT_EQ(render_key(s, "", m, error), "t:kitchen");
  // A target no rule declared at load is compiled for the call.
  EXPECT_EQ(render_key(s, "${property.room}/${origin}", m, error),
            "kitchen/sensor-7");
  EXPECT_FALSE(render_key(s, "${topic.5}", m, error));
  EXPECT_NE(error.find("has no level 5"), std::string::npos) << error;
}

TEST(redis_key_template, the_old_brace_form_works_with_a_warning) {
  std::string error;
  auto m = msg_on("home/kitchen/temp");
  std::vector<std::string> errors, warnings;
  auto s = parse_redis_settings(
    endpoint_from("key: \"t:{topic.1}:{topic.2}\"\n"), "endpoints[0]",
    errors, &warnings);
  ASSERT_TRUE(errors.empty()) << joined(errors);
  // Counted from 0 as before: {topic.1} is the second level.
  EXPECT_EQ(render_key(s, "", m, error), "t:kitchen:temp");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("endpoints[0].key: 't:{topic.1}:{topic.2}' is a "
                             "deprecated template form; write "
                             "'t:${topic.2}:${topic.3}'"),
            std::string::npos)
    << warnings[0];
  errors = errors_of("key: \"{bogus}\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("unknown placeholder {bogus}"), std::string::npos);
}

TEST(redis_settings, a_plain_password_is_warned_about_once) {
  // Parsed once at load: the warning is in the config's warnings, once.
  auto cfg = load_text(R"(
endpoints:
  - name: cache
    type: redis
    password: plain-text
)",
                       "hubflow.yaml");
  auto count = std::count_if(cfg.warnings.begin(), cfg.warnings.end(),
                             [](auto& w) {
                               return w.find("endpoints[0].password: the secret "
                                             "is written in the config file")
                                      != std::string::npos;
                             });
  EXPECT_EQ(count, 1) << joined(cfg.warnings);
  ASSERT_TRUE(cfg.endpoints[0].parsed);
}

TEST(redis_commands, one_command_per_mode) {
  redis_settings s;
  auto m = msg_on("a/b", "hello");
  s.mode = redis_mode::set;
  EXPECT_EQ(make_write_command(s, "k", m),
            (std::vector<std::string>{"SET", "k", "hello"}));
  s.ttl = std::chrono::milliseconds(1500);
  EXPECT_EQ(make_write_command(s, "k", m),
            (std::vector<std::string>{"SET", "k", "hello", "PX", "1500"}));
  s.mode = redis_mode::publish;
  EXPECT_EQ(make_write_command(s, "ch", m),
            (std::vector<std::string>{"PUBLISH", "ch", "hello"}));
  s.mode = redis_mode::rpush;
  EXPECT_EQ(make_write_command(s, "l", m),
            (std::vector<std::string>{"RPUSH", "l", "hello"}));
  s.maxlen = 3;
  auto capped = make_write_command(s, "l", m);
  EXPECT_EQ(capped[0], "EVAL");
  EXPECT_EQ(capped[3], "l");
  EXPECT_EQ(capped[4], "RPUSH");
  s.mode = redis_mode::xadd;
  auto xadd = make_write_command(s, "st", m);
  std::vector<std::string> head(xadd.begin(), xadd.begin() + 6);
  EXPECT_EQ(head, (std::vector<std::string>{"XADD", "st", "MAXLEN", "=", "3",
                                            "*"}));
  EXPECT_NE(std::find(xadd.begin(), xadd.end(), "property.room"), xadd.end());
}

TEST(redis_commands, state_items_are_checked_before_any_io) {
  caf::error err;
  state_item empty_key;
  EXPECT_TRUE(make_save_command({empty_key}, "", err).empty());
  EXPECT_EQ(state_error_code(err), state_errc::bad_request);
  state_item bad_etag{"k", "1", "abc"};
  err = caf::none;
  EXPECT_TRUE(make_save_command({bad_etag}, "", err).empty());
  EXPECT_EQ(state_error_code(err), state_errc::etag_invalid);
  EXPECT_NE(error_text(err).find("invalid etag 'abc'"), std::string::npos);
  state_item ok{"k", "\"v\"", "3"};
  err = caf::none;
  auto cmd = make_save_command({ok}, "pre:", err);
  EXPECT_FALSE(err);
  ASSERT_GE(cmd.size(), 8u);
  EXPECT_EQ(cmd[2], "1");
  EXPECT_EQ(cmd[3], "pre:k");
}

TEST(redis_settings, whole_config_validation_reaches_the_endpoint) {
  auto cfg = load_text(R"(
endpoints:
  - name: statestore
    type: redis
    host: 127.0.0.1
    port: 6379
    mode: set
    key: "dev:{topic}"
    ttl: 30s
    reconnect_backoff_max: 2s
http:
  listen: 127.0.0.1:3500
)",
                              "hubflow.yaml");
  ASSERT_EQ(cfg.endpoints.size(), 1u);
  EXPECT_EQ(cfg.endpoints[0].type, "redis");
  EXPECT_TRUE(cfg.http.enabled);
  try {
    load_text(R"(
endpoints:
  - name: cache
    type: redis
    tls: true
    key: "{nope}"
)",
                     "bad.yaml");
    FAIL() << "invalid redis settings were accepted";
  } catch (const config_error& e) {
    std::string all = e.what();
    EXPECT_NE(all.find("bad.yaml:5:10: endpoints[0].tls: TLS is not available"),
              std::string::npos)
      << all;
    EXPECT_NE(all.find("bad.yaml:6:10: endpoints[0].key: unknown placeholder"),
              std::string::npos)
      << all;
  }
}

TEST(redis_settings, retry_options_load_with_a_deprecation_warning) {
  // The rule is the one retry layer: Redis's own retries are gone, the
  // keys still load and say so.
  std::vector<std::string> errors, warnings;
  parse_redis_settings(endpoint_from("retry_max: 2\nretry_backoff: 50ms\n"),
                       "endpoints[0]", errors, &warnings);
  EXPECT_TRUE(errors.empty()) << joined(errors);
  ASSERT_EQ(warnings.size(), 2u) << joined(warnings);
  EXPECT_NE(warnings[0].find("endpoints[0].retry_max: is deprecated: it has "
                             "no effect; the rule's retry.max"),
            std::string::npos)
    << warnings[0];
  EXPECT_NE(warnings[1].find("endpoints[0].retry_backoff: is deprecated"),
            std::string::npos)
    << warnings[1];
}
