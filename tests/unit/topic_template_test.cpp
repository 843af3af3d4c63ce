// The one template language of destination topics and keys
// (core/topic_template.hpp): every form, levels out of range, the older
// forms with the new form they name, and templates that yield topics a
// destination refuses.
#include <gtest/gtest.h>

#include "core/topic_template.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/kafka/kafka_mapping.hpp"

using namespace hubflow;

namespace {

message sample(std::string topic = "plant/line1/temp") {
  message m;
  m.topic = std::move(topic);
  m.qos = 1;
  m.origin = "sensor-7";
  m.properties.user_properties = {{"room", "kitchen"}};
  return m;
}

/// The rendering of `text` for `msg`, or "error: ..." / "compile: ...".
std::string render(const std::string& text, const message& msg = sample(),
                   template_dialect dialect = {}) {
  std::string error;
  auto t = topic_template::compile(text, error, dialect);
  if (!t)
    return "compile: " + error;
  std::string out;
  if (!t->render(msg, out, error))
    return "error: " + error;
  return out;
}

std::string canonical(const std::string& text, template_dialect dialect = {}) {
  std::string error;
  auto t = topic_template::compile(text, error, dialect);
  return t ? t->canonical() : "compile: " + error;
}

} // namespace

TEST(topic_template, every_placeholder) {
  auto m = sample();
  EXPECT_EQ(render("out/${topic}"), "out/plant/line1/temp");
  EXPECT_EQ(render("${topic.1}-${topic.2}-${topic.3}"), "plant-line1-temp");
  EXPECT_EQ(render("${property.room}/${origin}/${qos}"), "kitchen/sensor-7/1");
  // The same message: two samples may be received a millisecond apart.
  EXPECT_EQ(render("ts:${timestamp}", m), "ts:" + std::to_string(m.received_ms()));
  EXPECT_EQ(render("literal/topic"), "literal/topic");
  EXPECT_EQ(render("a$${topic}"), "a${topic}");
  EXPECT_EQ(render("$SYS/x"), "$SYS/x"); // a lone $ is literal
}

TEST(topic_template, literal_templates_are_known_as_such) {
  std::string error;
  EXPECT_TRUE(topic_template::compile("a/b", error)->is_literal());
  EXPECT_FALSE(topic_template::compile("a/${topic.1}", error)->is_literal());
  EXPECT_EQ(topic_template::compile("a-${topic.1}.b", error)->literal_text(),
            "a-.b");
}

TEST(topic_template, levels_out_of_range_are_errors) {
  EXPECT_EQ(render("${topic.4}"),
            "error: template '${topic.4}': topic 'plant/line1/temp' has no "
            "level 4");
  EXPECT_EQ(render("${topic.0}"),
            "compile: ${topic.0}: levels count from 1 (${topic.1} is the "
            "first)");
  EXPECT_EQ(render("${property.floor}"),
            "error: template '${property.floor}': the message on "
            "'plant/line1/temp' has no user property 'floor'");
  // An empty level is a level: a//b has three.
  EXPECT_EQ(render("x${topic.2}", sample("a//b")), "x");
}

TEST(topic_template, malformed_templates_do_not_compile) {
  EXPECT_NE(render("${nope}").find("compile: unknown placeholder ${nope}"),
            std::string::npos);
  EXPECT_NE(render("a/${topic").find("compile: unclosed '${'"),
            std::string::npos);
  EXPECT_NE(render("${topic.x}").find("unknown placeholder"), std::string::npos);
}

TEST(topic_template, the_kafka_form_is_deprecated_and_names_the_new_one) {
  EXPECT_EQ(render("t-${mqtt.topic.2}"), "t-line1");
  EXPECT_EQ(render("${mqtt.topic}"), "plant/line1/temp");
  EXPECT_EQ(canonical("t-${mqtt.topic.2}"), "t-${topic.2}");
  std::string error;
  EXPECT_TRUE(topic_template::compile("t-${mqtt.topic.2}", error)->deprecated());
  EXPECT_FALSE(topic_template::compile("t-${topic.2}", error)->deprecated());
}

TEST(topic_template, the_redis_brace_form_counts_from_0_and_is_deprecated) {
  template_dialect braces{true};
  EXPECT_EQ(render("k:{topic.0}:{topic.2}", sample(), braces), "k:plant:temp");
  EXPECT_EQ(canonical("k:{topic.0}:{topic.2}", braces), "k:${topic.1}:${topic.3}");
  EXPECT_EQ(render("{{x}}/{property.room}", sample(), braces), "{x}/kitchen");
  EXPECT_EQ(canonical("{{x}}/{property.room}", braces), "{x}/${property.room}");
  EXPECT_NE(render("x}", sample(), braces).find("unmatched '}'"),
            std::string::npos);
  // With a ${ the text is the current syntax: braces are literal (Redis
  // Cluster hash tags).
  EXPECT_EQ(render("{user}:${topic.1}", sample(), braces), "{user}:plant");
  // Without the dialect braces are plain characters of an MQTT topic.
  EXPECT_EQ(render("{topic}"), "{topic}");
}

TEST(topic_template, a_template_that_yields_an_invalid_topic_is_caught) {
  // MQTT destinations: the result must be a topic one can publish to.
  auto wild = sample();
  wild.properties.user_properties = {{"room", "+"}};
  auto out = render("r/${property.room}", wild);
  EXPECT_EQ(out, "r/+");
  EXPECT_TRUE(check_mqtt_topic_name(out));
  EXPECT_FALSE(check_mqtt_topic_name("r/kitchen"));
  // Kafka: the literal text is checked at load, the rendered topic when sent.
  EXPECT_TRUE(check_kafka_topic_template("bad topic-${topic.2}"));
  auto rendered = render("telemetry-${topic.2}", sample("plant/bad level/data"));
  EXPECT_EQ(rendered, "telemetry-bad level");
  EXPECT_FALSE(kafka::is_valid_topic_name(rendered));
}

TEST(topic_template, topic_levels_count_from_1) {
  EXPECT_EQ(topic_level("a/b/c", 1), "a");
  EXPECT_EQ(topic_level("a/b/c", 3), "c");
  EXPECT_FALSE(topic_level("a/b/c", 4));
  EXPECT_FALSE(topic_level("a/b/c", 0));
}
