// The rule SQL evaluator and the `sql` runtime: what each construct computes
// over real messages, what passes WHERE, and what a runtime refuses.
#include <gtest/gtest.h>

#include "functions/sql/sql_evaluator.hpp"
#include "functions/sql/sql_runtime.hpp"

using namespace hubflow;
using sql::json;

namespace {

message make_message(std::string body, std::string topic = "t",
                     std::uint8_t qos = 0) {
  message m;
  m.topic = std::move(topic);
  m.body = payload{std::move(body)};
  m.qos = qos;
  m.origin = "client-7";
  return m;
}

/// The row `statement` selects from `body`, or "<filtered>".
std::string run(const std::string& statement, const std::string& body,
                const std::string& topic = "t") {
  auto row = sql::select(sql::parse(statement), make_message(body, topic, 1));
  return row ? row->dump() : "<filtered>";
}

/// The value of `expression` over `body`, as JSON text.
std::string value_of(const std::string& expression,
                     const std::string& body = R"({})") {
  auto stmt = sql::parse("SELECT " + expression + " AS v");
  auto msg = make_message(body, "a/b/c", 2);
  auto row = sql::select(stmt, msg);
  return row ? (*row)["v"].dump() : "<filtered>";
}

} // namespace

TEST(sql_evaluator, baetyl_example) {
  const auto stmt = "select qos() as qos, topic() as topic, * where id < 10";
  EXPECT_EQ(run(stmt, R"({"id":1})"), R"({"qos":1,"topic":"t","id":1})");
  EXPECT_EQ(run(stmt, R"({"id":20})"), "<filtered>");
  EXPECT_EQ(run(stmt, R"({"name":"x"})"), "<filtered>"); // id is NULL
}

TEST(sql_evaluator, star_keeps_payload_order_and_named_columns_win) {
  EXPECT_EQ(run("SELECT *", R"({"z":1,"a":{"b":2}})"), R"({"z":1,"a":{"b":2}})");
  // Columns come in SELECT order; `*` skips the names chosen explicitly.
  EXPECT_EQ(run("SELECT *, 5 AS z", R"({"z":1,"a":2})"), R"({"a":2,"z":5})");
  EXPECT_EQ(run("SELECT topic() AS topic, *", R"({"topic":"old","k":1})"),
            R"({"topic":"t","k":1})");
}

TEST(sql_evaluator, non_json_payloads) {
  // Fields are NULL, `*` adds nothing, functions still work.
  EXPECT_EQ(run("SELECT topic() AS t, raw", "\x01\x02 not json"),
            R"({"t":"t","raw":null})");
  EXPECT_EQ(run("SELECT *", "plain text"), "<filtered>"); // empty row
  EXPECT_EQ(run("SELECT *", "[1,2]"), "<filtered>");
  EXPECT_EQ(run("SELECT * WHERE id < 10", "5"), "<filtered>");
  EXPECT_EQ(run("SELECT qos() AS q", ""), R"({"q":1})");
}

TEST(sql_evaluator, functions) {
  EXPECT_EQ(value_of("qos()"), "2");
  EXPECT_EQ(value_of("topic()"), R"("a/b/c")");
  EXPECT_EQ(value_of("topic(1)"), R"("a")");
  EXPECT_EQ(value_of("topic(3)"), R"("c")");
  EXPECT_EQ(value_of("topic(4)"), "null");
  EXPECT_EQ(value_of("topic(0)"), "null");
  EXPECT_EQ(value_of("topic('x')"), "null");
  EXPECT_EQ(value_of("topic(n)", R"({"n":2})"), R"("b")");
  EXPECT_EQ(value_of("clientid()"), R"("client-7")");
  auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  auto stamp = std::stoll(value_of("timestamp()"));
  EXPECT_LE(std::abs(stamp - before), 60'000);
}

TEST(sql_evaluator, empty_topic_levels) {
  auto stmt = sql::parse("SELECT topic(1) AS a, topic(2) AS b, topic(3) AS c");
  auto row = sql::select(stmt, make_message("{}", "/x/"));
  EXPECT_EQ(row->dump(), R"({"a":"","b":"x","c":""})");
}

TEST(sql_evaluator, paths) {
  auto body = R"({"a":{"b":{"c":7}},"l":[10,20,{"x y":3}],"s":"str"})";
  EXPECT_EQ(value_of("a.b.c", body), "7");
  EXPECT_EQ(value_of("a.b", body), R"({"c":7})");
  EXPECT_EQ(value_of("l[1]", body), "10");
  EXPECT_EQ(value_of("l[2]", body), "20");
  EXPECT_EQ(value_of("l[-1].`x y`", body), "3");
  EXPECT_EQ(value_of("l[-3]", body), "10");
  EXPECT_EQ(value_of("l[4]", body), "null");
  EXPECT_EQ(value_of("l[-4]", body), "null");
  EXPECT_EQ(value_of("a.missing.deeper", body), "null");
  EXPECT_EQ(value_of("s.x", body), "null");
  EXPECT_EQ(value_of("s[1]", body), "null");
  EXPECT_EQ(value_of("a[1]", body), "null");
}

TEST(sql_evaluator, arithmetic) {
  EXPECT_EQ(value_of("1 + 2 * 3"), "7");
  EXPECT_EQ(value_of("(1 + 2) * 3"), "9");
  EXPECT_EQ(value_of("7 - 10"), "-3");
  EXPECT_EQ(value_of("8 / 2"), "4");
  EXPECT_EQ(value_of("7 / 2"), "3.5");
  EXPECT_EQ(value_of("7 % 3"), "1");
  EXPECT_EQ(value_of("-7 % 3"), "-1");
  EXPECT_EQ(value_of("7.5 % 2"), "1.5");
  EXPECT_EQ(value_of("1.5 + 1"), "2.5");
  EXPECT_EQ(value_of("1 / 0"), "null");
  EXPECT_EQ(value_of("1 % 0"), "null");
  EXPECT_EQ(value_of("1.0 / 0"), "null");
  EXPECT_EQ(value_of("-x", R"({"x":4})"), "-4");
  EXPECT_EQ(value_of("-x", R"({"x":"a"})"), "null");
  EXPECT_EQ(value_of("'a' + 'b'"), R"("ab")");
  EXPECT_EQ(value_of("'a' + 1"), "null");
  EXPECT_EQ(value_of("'a' * 2"), "null");
  EXPECT_EQ(value_of("missing + 1"), "null");
  EXPECT_EQ(value_of("9223372036854775807 + 1"), "9.223372036854776e+18");
}

TEST(sql_evaluator, comparisons) {
  EXPECT_EQ(value_of("1 = 1"), "true");
  EXPECT_EQ(value_of("1 = 1.0"), "true");
  EXPECT_EQ(value_of("1 != 2"), "true");
  EXPECT_EQ(value_of("1 <> 1"), "false");
  EXPECT_EQ(value_of("1 < 2"), "true");
  EXPECT_EQ(value_of("2 <= 2"), "true");
  EXPECT_EQ(value_of("1.5 > 2"), "false");
  EXPECT_EQ(value_of("3 >= 2.5"), "true");
  EXPECT_EQ(value_of("'abc' < 'abd'"), "true");
  EXPECT_EQ(value_of("'b' > 'abc'"), "true");
  EXPECT_EQ(value_of("'1' = 1"), "false");
  EXPECT_EQ(value_of("'1' != 1"), "true");
  EXPECT_EQ(value_of("'1' < 2"), "null");
  EXPECT_EQ(value_of("true = true"), "true");
  EXPECT_EQ(value_of("true < false"), "null");
  EXPECT_EQ(value_of("null = null"), "null");
  EXPECT_EQ(value_of("x = 1"), "null");
  EXPECT_EQ(value_of("o = o", R"({"o":{"a":[1]}})"), "true");
}

TEST(sql_evaluator, three_valued_logic) {
  EXPECT_EQ(value_of("true AND false"), "false");
  EXPECT_EQ(value_of("true AND true"), "true");
  EXPECT_EQ(value_of("true AND null"), "null");
  EXPECT_EQ(value_of("false AND null"), "false");
  EXPECT_EQ(value_of("null AND false"), "false");
  EXPECT_EQ(value_of("true OR null"), "true");
  EXPECT_EQ(value_of("null OR true"), "true");
  EXPECT_EQ(value_of("false OR null"), "null");
  EXPECT_EQ(value_of("false OR false"), "false");
  EXPECT_EQ(value_of("NOT true"), "false");
  EXPECT_EQ(value_of("NOT null"), "null");
  EXPECT_EQ(value_of("NOT 1"), "null");
  EXPECT_EQ(value_of("1 AND true"), "null"); // numbers are not booleans
}

TEST(sql_evaluator, in_lists) {
  EXPECT_EQ(value_of("2 IN (1, 2, 3)"), "true");
  EXPECT_EQ(value_of("'b' IN ('a', 'b')"), "true");
  EXPECT_EQ(value_of("4 IN (1, 2)"), "false");
  EXPECT_EQ(value_of("4 NOT IN (1, 2)"), "true");
  EXPECT_EQ(value_of("2 NOT IN (1, 2)"), "false");
  EXPECT_EQ(value_of("4 IN (1, null)"), "null");
  EXPECT_EQ(value_of("1 IN (1, null)"), "true");
  EXPECT_EQ(value_of("x IN (1)"), "null");
  EXPECT_EQ(value_of("x IN (y, 5)", R"({"x":5,"y":1})"), "true");
}

TEST(sql_evaluator, like) {
  EXPECT_EQ(value_of("'sensor-12' LIKE 'sensor-%'"), "true");
  EXPECT_EQ(value_of("'sensor-12' LIKE 'sensor-_'"), "false");
  EXPECT_EQ(value_of("'sensor-1' LIKE 'sensor-_'"), "true");
  EXPECT_EQ(value_of("'abc' NOT LIKE 'a%'"), "false");
  EXPECT_EQ(value_of("1 LIKE '1'"), "null");
  EXPECT_TRUE(sql::like_match("", ""));
  EXPECT_TRUE(sql::like_match("", "%"));
  EXPECT_FALSE(sql::like_match("", "_"));
  EXPECT_TRUE(sql::like_match("abc", "%c"));
  EXPECT_TRUE(sql::like_match("abcbc", "%bc"));
  EXPECT_TRUE(sql::like_match("abc", "a%%c"));
  EXPECT_FALSE(sql::like_match("abc", "%b"));
  EXPECT_TRUE(sql::like_match("a%c", "a%c"));
  EXPECT_TRUE(sql::like_match("xay", "%a%"));
  EXPECT_TRUE(sql::like_match("温度", "_度"));   // `_` is one character
  EXPECT_FALSE(sql::like_match("温度", "__度"));
  EXPECT_TRUE(sql::like_match("温度计", "%计"));
}

TEST(sql_evaluator, is_null) {
  EXPECT_EQ(value_of("x IS NULL"), "true");
  EXPECT_EQ(value_of("x IS NOT NULL"), "false");
  EXPECT_EQ(value_of("x IS NULL", R"({"x":null})"), "true");
  EXPECT_EQ(value_of("x IS NOT NULL", R"({"x":0})"), "true");
}

TEST(sql_evaluator, from_matches_topics_like_the_hub) {
  EXPECT_EQ(run("SELECT * FROM 'sensors/+/temp'", R"({"v":1})", "sensors/a/temp"),
            R"({"v":1})");
  EXPECT_EQ(run("SELECT * FROM 'sensors/+/temp'", R"({"v":1})", "sensors/a/hum"),
            "<filtered>");
  EXPECT_EQ(run("SELECT * FROM 'sensors/#' WHERE v > 0", R"({"v":1})",
                "sensors/a/b"),
            R"({"v":1})");
  EXPECT_EQ(run("SELECT * FROM 'sensors/#' WHERE v > 0", R"({"v":0})",
                "sensors/a/b"),
            "<filtered>");
  // Wildcards at the first level do not match `$` topics.
  EXPECT_EQ(run("SELECT * FROM '#'", R"({"v":1})", "$SYS/x"), "<filtered>");
}

TEST(sql_evaluator, where_must_be_true) {
  EXPECT_EQ(run("SELECT * WHERE 1", R"({"a":1})"), "<filtered>");
  EXPECT_EQ(run("SELECT * WHERE null", R"({"a":1})"), "<filtered>");
  EXPECT_EQ(run("SELECT * WHERE a = 1 AND b LIKE 'x%'", R"({"a":1,"b":"xy"})"),
            R"({"a":1,"b":"xy"})");
}

TEST(sql_runtime, invokes_through_the_runtime_interface) {
  function_config cfg;
  cfg.name = "filter";
  cfg.runtime = "sql";
  cfg.handler = "select qos() as qos, topic() as topic, * where id < 10";
  std::string error;
  auto runtime = make_sql_runtime(cfg, runtime_options{}, error);
  ASSERT_TRUE(runtime) << error;
  auto instance = runtime->create_instance(error);
  ASSERT_TRUE(instance) << error;
  EXPECT_EQ(instance->pid(), 0);
  auto msg = make_message(R"({"id":1})", "t", 1);
  invocation call{msg, "filter", "1", std::chrono::milliseconds(100)};
  auto out = instance->invoke(call);
  ASSERT_EQ(out.status, function_result::outcome::output);
  EXPECT_EQ(out.output.str(), R"({"qos":1,"topic":"t","id":1})");
  auto big = make_message(R"({"id":20})", "t", 1);
  EXPECT_EQ(instance->invoke({big, "filter", "2", std::chrono::milliseconds(100)})
              .status,
            function_result::outcome::nothing);
}

TEST(sql_runtime, refuses_statements_that_do_not_parse) {
  function_config cfg;
  cfg.runtime = "sql";
  cfg.handler = "select * where";
  std::string error;
  EXPECT_FALSE(make_sql_runtime(cfg, runtime_options{}, error));
  EXPECT_EQ(error,
            "SQL statement: expected an expression after WHERE at column 15");
}
