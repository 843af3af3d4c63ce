// Options declared once (core/options.hpp): the reader checks keys, types
// and ranges against a table and fills defaults; the schema fragments in
// schemas/hubflow.schema.json and the option tables of docs/kafka.md,
// docs/redis.md and docs/mqtt.md are the ones the tables generate.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/options.hpp"
#include "endpoints/kafka/kafka_settings.hpp"
#include "endpoints/mqtt/mqtt_settings.hpp"
#include "endpoints/redis/redis_settings.hpp"

using namespace hubflow;

namespace {

std::string read_source(const std::string& relative) {
  std::ifstream in(std::string(HUBFLOW_SOURCE_DIR) + "/" + relative);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const option_table& sample_table() {
  static const option_table table = [] {
    option_table t;
    auto n = option("count", option_type::integer, "3", "How many.");
    n.min = 1;
    n.max = 10;
    t.push_back(n);
    auto c = option("mode", option_type::choice, "a", "Which.");
    c.choices = {"a", "b"};
    t.push_back(c);
    t.push_back(option("wait", option_type::duration, "1s", "How long."));
    t.push_back(option("limits", option_type::group, "", "Bounds."));
    auto r = option("limits.max", option_type::size, "", "Most bytes.");
    r.required = true;
    t.push_back(r);
    t.push_back(option("at", option_type::address, "", "Where."));
    return t;
  }();
  return table;
}

struct read_result {
  std::vector<std::string> errors, warnings;
  std::unique_ptr<option_values> values;
};

read_result read(const std::string& yaml) {
  read_result r;
  r.values = std::make_unique<option_values>(
    sample_table(), YAML::Load(yaml),
    option_context{"x.yaml", "things[0]", "thing", &r.errors, &r.warnings});
  return r;
}

} // namespace

TEST(options, defaults_fill_what_is_not_written) {
  auto r = read("name: n\n");
  ASSERT_TRUE(r.errors.empty()) << r.errors.front();
  EXPECT_EQ(r.values->integer("count"), 3);
  EXPECT_EQ(r.values->text("mode"), "a");
  EXPECT_EQ(r.values->duration("wait").count(), 1000);
  EXPECT_FALSE(r.values->written("count"));
  EXPECT_FALSE(r.values->has("at"));
}

TEST(options, values_are_typed_and_checked_with_their_place) {
  auto r = read("count: 12\nmode: c\nwait: soon\nlimits: {max: 4k, min: 1}\n"
                "at: h:99999\nextra: 1\n");
  ASSERT_EQ(r.errors.size(), 6u);
  EXPECT_EQ(r.errors[0], "x.yaml:6:1: things[0].extra: unknown setting of a thing");
  EXPECT_EQ(r.errors[1], "x.yaml:1:8: things[0].count: must be between 1 and 10 (got 12)");
  EXPECT_EQ(r.errors[2], "x.yaml:2:7: things[0].mode: must be one of a, b (got 'c')");
  EXPECT_EQ(r.errors[3], "x.yaml:3:7: things[0].wait: 'soon' is not a duration "
                         "(e.g. 500ms, 30s, 10m)");
  EXPECT_EQ(r.errors[4], "x.yaml:4:19: things[0].limits.min: unknown setting of a thing");
  EXPECT_NE(r.errors[5].find("things[0].at: must be <host>:<port>"), std::string::npos);
  auto ok = read("limits: {max: 4k}\nat: 'a:1,[::1]:2'\n");
  ASSERT_TRUE(ok.errors.empty()) << ok.errors.front();
  EXPECT_EQ(ok.values->size("limits.max"), 4096u);
  ASSERT_EQ(ok.values->address("at").size(), 2u);
  EXPECT_EQ(ok.values->address("at")[1].host, "::1");
}

TEST(options, required_keys_of_a_written_group) {
  auto r = read("limits: {}\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0], "x.yaml:1:9: things[0].limits.max: is required");
  EXPECT_TRUE(read("count: 2\n").errors.empty()); // the group is absent
}

TEST(options, the_schema_fragments_are_the_tables) {
  auto schema = nlohmann::json::parse(read_source("schemas/hubflow.schema.json"));
  auto& defs = schema["definitions"];
  // What the file says of itself is not part of the table.
  defs["kafkaEndpoint"].erase("description");
  defs["redisEndpoint"].erase("description");
  defs["mqttEndpoint"].erase("description");
  EXPECT_EQ(defs["kafkaEndpoint"], options_schema(kafka::kafka_options(), "kafka"))
    << "schemas/hubflow.schema.json definitions.kafkaEndpoint should be:\n"
    << options_schema(kafka::kafka_options(), "kafka").dump();
  EXPECT_EQ(defs["redisEndpoint"], options_schema(redis_options(), "redis"))
    << "schemas/hubflow.schema.json definitions.redisEndpoint should be:\n"
    << options_schema(redis_options(), "redis").dump();
  EXPECT_EQ(defs["mqttEndpoint"], options_schema(mqtt_options(), "mqtt"))
    << "schemas/hubflow.schema.json definitions.mqttEndpoint should be:\n"
    << options_schema(mqtt_options(), "mqtt").dump();
}

TEST(options, the_docs_tables_are_the_tables) {
  auto kafka = options_markdown(kafka::kafka_options());
  EXPECT_NE(read_source("docs/kafka.md").find(kafka), std::string::npos)
    << "docs/kafka.md should hold this table:\n" << kafka;
  auto redis = options_markdown(redis_options());
  EXPECT_NE(read_source("docs/redis.md").find(redis), std::string::npos)
    << "docs/redis.md should hold this table:\n" << redis;
  auto mqtt = options_markdown(mqtt_options());
  EXPECT_NE(read_source("docs/mqtt.md").find(mqtt), std::string::npos)
    << "docs/mqtt.md should hold this table:\n" << mqtt;
}
