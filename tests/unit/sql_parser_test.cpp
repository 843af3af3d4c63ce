// The rule SQL parser: each construct parses into the expected tree, and each
// malformed statement is refused with its column and what was expected.
#include <gtest/gtest.h>

#include "functions/sql/sql_parser.hpp"

using namespace hubflow::sql;

namespace {

/// The message of the parse error `text` raises, or "" when it parses.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const parse_error& e) {
    return e.what();
  }
  return "";
}

int error_column(const std::string& text) {
  try {
    parse(text);
  } catch (const parse_error& e) {
    return e.column();
  }
  return 0;
}

} // namespace

TEST(sql_parser, baetyl_example) {
  auto s = parse("select qos() as qos, topic() as topic, * where id < 10");
  ASSERT_EQ(s.columns.size(), 3u);
  EXPECT_EQ(s.columns[0].name, "qos");
  EXPECT_EQ(s.columns[0].value->what, expr::kind::call);
  EXPECT_EQ(s.columns[0].value->function, builtin::qos);
  EXPECT_EQ(s.columns[1].name, "topic");
  EXPECT_TRUE(s.columns[2].star);
  ASSERT_TRUE(s.where);
  EXPECT_EQ(s.where->what, expr::kind::binary);
  EXPECT_EQ(s.where->oper, op::less);
  EXPECT_EQ(s.where->operands[0]->what, expr::kind::field);
  EXPECT_EQ(s.where->operands[0]->path[0].name, "id");
  EXPECT_EQ(s.where->operands[1]->value, 10);
  EXPECT_TRUE(s.reads_payload);
  EXPECT_FALSE(s.from);
}

TEST(sql_parser, keywords_ignore_case) {
  auto s = parse("SeLeCt * FrOm \"a/+\" WhErE x Is NoT nUlL AnD y iN (1) oR "
                 "NOT z LiKe 'a%'");
  EXPECT_EQ(s.from, "a/+");
  EXPECT_EQ(s.where->oper, op::or_);
}

TEST(sql_parser, column_names_default_to_the_expression_as_written) {
  auto s = parse("SELECT a.b[2], topic( 2 ), x + 1, `odd name`, y AS 'quoted alias'");
  EXPECT_EQ(s.columns[0].name, "a.b[2]");
  EXPECT_EQ(s.columns[1].name, "topic( 2 )");
  EXPECT_EQ(s.columns[2].name, "x + 1");
  EXPECT_EQ(s.columns[3].name, "`odd name`");
  EXPECT_EQ(s.columns[4].name, "quoted alias");
}

TEST(sql_parser, paths) {
  auto s = parse("SELECT a.b.c, a[1], a[-1].`x y`, `weird-key`");
  auto& p0 = s.columns[0].value->path;
  ASSERT_EQ(p0.size(), 3u);
  EXPECT_EQ(p0[2].name, "c");
  auto& p1 = s.columns[1].value->path;
  ASSERT_EQ(p1.size(), 2u);
  EXPECT_TRUE(p1[1].is_index());
  EXPECT_EQ(p1[1].index, 1);
  auto& p2 = s.columns[2].value->path;
  EXPECT_EQ(p2[1].index, -1);
  EXPECT_EQ(p2[2].name, "x y");
  EXPECT_EQ(s.columns[3].value->path[0].name, "weird-key");
}

TEST(sql_parser, literals) {
  auto s = parse("SELECT 1, -2, 2.5, 1e3, 'it''s', \"dq\", true, FALSE, null, "
                 "99999999999999999999");
  EXPECT_EQ(s.columns[0].value->value, 1);
  EXPECT_TRUE(s.columns[0].value->value.is_number_integer());
  EXPECT_EQ(s.columns[1].value->value, -2);
  EXPECT_EQ(s.columns[2].value->value, 2.5);
  EXPECT_EQ(s.columns[3].value->value, 1000.0);
  EXPECT_EQ(s.columns[4].value->value, "it's");
  EXPECT_EQ(s.columns[5].value->value, "dq");
  EXPECT_EQ(s.columns[6].value->value, true);
  EXPECT_EQ(s.columns[7].value->value, false);
  EXPECT_TRUE(s.columns[8].value->value.is_null());
  EXPECT_TRUE(s.columns[9].value->value.is_number_float());
  EXPECT_FALSE(s.reads_payload);
}

TEST(sql_parser, precedence) {
  // a OR (b AND (NOT c))
  auto s = parse("SELECT * WHERE a OR b AND NOT c");
  EXPECT_EQ(s.where->oper, op::or_);
  EXPECT_EQ(s.where->operands[1]->oper, op::and_);
  EXPECT_EQ(s.where->operands[1]->operands[1]->oper, op::not_);
  // (1 + (2 * 3)) = 7
  s = parse("SELECT * WHERE 1 + 2 * 3 = 7");
  EXPECT_EQ(s.where->oper, op::equal);
  EXPECT_EQ(s.where->operands[0]->oper, op::add);
  EXPECT_EQ(s.where->operands[0]->operands[1]->oper, op::multiply);
  // Parentheses override.
  s = parse("SELECT * WHERE (1 + 2) * 3 = 9");
  EXPECT_EQ(s.where->operands[0]->oper, op::multiply);
}

TEST(sql_parser, operators) {
  struct {
    const char* text;
    op expected;
  } cases[] = {
    {"a = 1", op::equal},       {"a != 1", op::not_equal},
    {"a <> 1", op::not_equal},  {"a < 1", op::less},
    {"a <= 1", op::less_equal}, {"a > 1", op::greater},
    {"a >= 1", op::greater_equal}, {"a + 1", op::add},
    {"a - 1", op::subtract},    {"a * 1", op::multiply},
    {"a / 1", op::divide},      {"a % 1", op::modulo},
  };
  for (auto& c : cases) {
    auto s = parse(std::string{"SELECT * WHERE "} + c.text);
    EXPECT_EQ(s.where->oper, c.expected) << c.text;
  }
}

TEST(sql_parser, predicates) {
  auto s = parse("SELECT * WHERE a NOT IN (1, 'x', b) AND c LIKE 'x_%' AND "
                 "d NOT LIKE 'y' AND e IS NULL AND f IS NOT NULL");
  auto* e = s.where.get();
  std::vector<const expr*> preds;
  while (e->what == expr::kind::binary && e->oper == op::and_) {
    preds.insert(preds.begin(), e->operands[1].get());
    e = e->operands[0].get();
  }
  preds.insert(preds.begin(), e);
  ASSERT_EQ(preds.size(), 5u);
  EXPECT_EQ(preds[0]->what, expr::kind::in_list);
  EXPECT_TRUE(preds[0]->negated);
  EXPECT_EQ(preds[0]->operands.size(), 4u);
  EXPECT_EQ(preds[1]->what, expr::kind::like);
  EXPECT_FALSE(preds[1]->negated);
  EXPECT_TRUE(preds[2]->negated);
  EXPECT_EQ(preds[3]->what, expr::kind::is_null);
  EXPECT_FALSE(preds[3]->negated);
  EXPECT_TRUE(preds[4]->negated);
}

TEST(sql_parser, functions) {
  auto s = parse("SELECT qos(), topic(), topic(1), clientid(), TIMESTAMP()");
  EXPECT_EQ(s.columns[0].value->function, builtin::qos);
  EXPECT_EQ(s.columns[1].value->function, builtin::topic);
  EXPECT_TRUE(s.columns[1].value->operands.empty());
  EXPECT_EQ(s.columns[2].value->operands.size(), 1u);
  EXPECT_EQ(s.columns[3].value->function, builtin::clientid);
  EXPECT_EQ(s.columns[4].value->function, builtin::timestamp);
}

TEST(sql_parser, from_and_trailing_semicolon) {
  auto s = parse("SELECT * FROM 'sensors/#';");
  EXPECT_EQ(s.from, "sensors/#");
  EXPECT_FALSE(s.where);
}

TEST(sql_parser, errors_name_column_and_expectation) {
  EXPECT_EQ(error_of("SELECT * FROM \"t\" WHERE"),
            "expected an expression after WHERE at column 24");
  EXPECT_EQ(error_of("SELECT * FROM \"t\" WHERE )"),
            "expected an expression after WHERE at column 25 (found ')')");
  EXPECT_EQ(error_column("SELECT * FROM \"t\" WHERE )"), 25);
  EXPECT_EQ(error_of(""), "expected SELECT at column 1");
  EXPECT_EQ(error_of("UPDATE x"), "expected SELECT at column 1 (found 'UPDATE')");
  EXPECT_EQ(error_of("SELECT"),
            "expected a column (an expression or *) after SELECT at column 7");
  EXPECT_EQ(error_of("SELECT WHERE a"),
            "expected a column (an expression or *) after SELECT at column 8 "
            "(found WHERE)");
  EXPECT_EQ(error_of("SELECT a,"),
            "expected a column (an expression or *) after ',' at column 10");
  EXPECT_EQ(error_of("SELECT a b"),
            "expected ',', AS, FROM, WHERE or the end of the statement after "
            "'a' at column 10 (found 'b')");
  EXPECT_EQ(error_of("SELECT a AS"),
            "expected a column name after AS at column 12");
  EXPECT_EQ(error_of("SELECT a AS from"),
            "expected a column name after AS at column 13 (found FROM)");
  EXPECT_EQ(error_of("SELECT * FROM t"),
            "expected a quoted topic filter after FROM at column 15 (found 't')");
  EXPECT_EQ(error_of("SELECT * FROM ''"),
            "the topic filter after FROM is empty at column 15");
  EXPECT_EQ(error_of("SELECT * FROM 'a/#/b'"),
            "'a/#/b' after FROM is not a valid MQTT topic filter at column 15");
  EXPECT_EQ(error_of("SELECT * FROM 'a+'"),
            "'a+' after FROM is not a valid MQTT topic filter at column 15");
  EXPECT_EQ(error_of("SELECT * FROM 't' x"),
            "expected WHERE or the end of the statement after string 't' at "
            "column 19 (found 'x')");
  EXPECT_EQ(error_of("SELECT * WHERE a = 1 b"),
            "expected an operator or the end of the statement after '1' at "
            "column 22 (found 'b')");
  EXPECT_EQ(error_of("SELECT * WHERE a ="),
            "expected an expression after '=' at column 19");
  EXPECT_EQ(error_of("SELECT * WHERE (a = 1"),
            "expected ')' after '1' at column 22");
  EXPECT_EQ(error_of("SELECT * WHERE a IS 1"),
            "expected NULL or NOT NULL after IS at column 21 (found '1')");
  EXPECT_EQ(error_of("SELECT * WHERE a IS NOT 1"),
            "expected NULL after NOT at column 25 (found '1')");
  EXPECT_EQ(error_of("SELECT * WHERE a IN 1"),
            "expected '(' after IN at column 21 (found '1')");
  EXPECT_EQ(error_of("SELECT * WHERE a IN ()"),
            "expected a value in the IN list after '(' at column 22 (found ')')");
  EXPECT_EQ(error_of("SELECT * WHERE a IN (1 2)"),
            "expected ',' or ')' closing the IN list after '1' at column 24 "
            "(found '2')");
  EXPECT_EQ(error_of("SELECT * WHERE a LIKE"),
            "expected an expression after LIKE at column 22");
  EXPECT_EQ(error_of("SELECT a."),
            "expected a field name after '.' at column 10");
  EXPECT_EQ(error_of("SELECT a[x]"),
            "expected an array index (an integer) after '[' at column 10 "
            "(found 'x')");
  EXPECT_EQ(error_of("SELECT a[1.5]"),
            "expected an array index (an integer) after '[' at column 10 "
            "(found '1.5')");
  EXPECT_EQ(error_of("SELECT a[0]"),
            "array indexes start at 1 (use -1 for the last element) at column 10");
  EXPECT_EQ(error_of("SELECT a[1"), "expected ']' after '1' at column 11");
  EXPECT_EQ(error_of("SELECT nosuch(1)"),
            "unknown function 'nosuch' (known: qos(), topic(), topic(n), "
            "clientid(), timestamp()) at column 8");
  EXPECT_EQ(error_of("SELECT qos(1)"), "qos() takes no arguments at column 12");
  EXPECT_EQ(error_of("SELECT topic(1, 2)"),
            "topic() takes at most one argument at column 17");
  EXPECT_EQ(error_of("SELECT topic(1"),
            "expected ')' closing topic( after '1' at column 15");
  EXPECT_EQ(error_of("SELECT -"), "expected an expression after '-' at column 9");
  EXPECT_EQ(error_of("SELECT * WHERE NOT"),
            "expected an expression after NOT at column 19");
}

TEST(sql_parser, lexer_errors) {
  EXPECT_EQ(error_of("SELECT 'abc"),
            "unterminated string starting at column 8");
  EXPECT_EQ(error_of("SELECT `abc"),
            "unterminated quoted field name starting at column 8");
  EXPECT_EQ(error_of("SELECT a # b"), "unexpected character '#' at column 10");
  EXPECT_EQ(error_of("SELECT 12abc"), "unexpected 'a' in a number at column 10");
  EXPECT_EQ(error_column("SELECT a & b"), 10);
}

TEST(sql_parser, reserved_words_are_not_field_names) {
  EXPECT_EQ(error_of("SELECT select"),
            "expected an expression after SELECT at column 8 (found SELECT)");
  EXPECT_EQ(error_of("SELECT * WHERE from = 1"),
            "expected an expression after WHERE at column 16 (found FROM)");
  // Backquotes make any name a field.
  EXPECT_NO_THROW(parse("SELECT `from` WHERE `select` = 1"));
}
