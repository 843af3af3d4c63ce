// Recursive descent, one function per precedence level (lowest first):
//   or_expr   := and_expr (OR and_expr)*
//   and_expr  := not_expr (AND not_expr)*
//   not_expr  := NOT not_expr | predicate
//   predicate := additive [ cmp additive | [NOT] IN (expr, ...)
//                         | [NOT] LIKE additive | IS [NOT] NULL ]
//   additive  := term (('+' | '-') term)*
//   term      := unary (('*' | '/' | '%') unary)*
//   unary     := '-' unary | primary
//   primary   := number | string | TRUE | FALSE | NULL | '(' expr ')'
//              | function '(' [expr] ')' | path
//   path      := name ('.' name | '[' ['-'] integer ']')*
#include "functions/sql/sql_parser.hpp"

#include "core/topic.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>

namespace hubflow::sql {

namespace {

constexpr std::array reserved_words = {"SELECT", "FROM", "WHERE", "AS",
                                       "AND",    "OR",   "NOT",   "IN",
                                       "LIKE",   "IS",   "NULL",  "TRUE",
                                       "FALSE"};

bool is_reserved(const token& t) {
  for (auto word : reserved_words)
    if (t.is_keyword(word))
      return true;
  return false;
}

struct function_spec {
  const char* name;
  builtin id;
  std::size_t max_args;
};

constexpr std::array functions = {
  function_spec{"qos", builtin::qos, 0},
  function_spec{"topic", builtin::topic, 1},
  function_spec{"clientid", builtin::clientid, 0},
  function_spec{"timestamp", builtin::timestamp, 0},
};

/// How deep expressions may nest (parentheses, NOT, unary minus, chains of
/// operators): the parser and the evaluator recurse once per level, and a
/// statement needs far fewer (a long OR chain is better an IN list).
constexpr int max_expression_depth = 256;

/// The depth of `e` (walked with an explicit stack, using and filling the
/// depths already known), so measuring every node costs each node once.
int depth_of(expr& e) {
  if (e.depth > 0)
    return e.depth;
  int deepest = 0;
  std::vector<std::pair<const expr*, int>> pending{{&e, 0}};
  while (!pending.empty()) {
    auto [x, above] = pending.back();
    pending.pop_back();
    if (x->depth > 0) {
      deepest = std::max(deepest, above + x->depth);
      continue;
    }
    deepest = std::max(deepest, above + 1);
    for (auto& operand : x->operands)
      if (operand)
        pending.emplace_back(operand.get(), above + 1);
  }
  e.depth = deepest;
  return deepest;
}

class parser {
public:
  explicit parser(std::string_view text)
    : text_(text), tokens_(tokenize(text)) {
  }

  statement parse_statement() {
    statement result;
    result.text = std::string{text_};
    expect_keyword("SELECT", "SELECT");
    do {
      result.columns.push_back(parse_column());
    } while (accept_symbol(","));
    if (accept_keyword("FROM")) {
      if (peek().kind != token_kind::string)
        fail("a quoted topic filter");
      result.from = next().text;
      if (result.from->empty())
        fail_at(previous(), "the topic filter after FROM is empty");
      if (!valid_topic_filter(*result.from))
        fail_at(previous(), "'" + *result.from
                              + "' after FROM is not a valid MQTT topic filter");
    }
    if (accept_keyword("WHERE"))
      result.where = parse_expression();
    accept_symbol(";");
    if (peek().kind != token_kind::end) {
      if (result.where)
        fail("an operator or the end of the statement");
      else if (result.from)
        fail("WHERE or the end of the statement");
      else
        fail("',', AS, FROM, WHERE or the end of the statement");
    }
    result.reads_payload = reads_payload_;
    return result;
  }

private:
  // -- tokens -----------------------------------------------------------------

  const token& peek(std::size_t ahead = 0) const {
    auto i = std::min(pos_ + ahead, tokens_.size() - 1);
    return tokens_[i];
  }
  const token& previous() const {
    return tokens_[pos_ == 0 ? 0 : pos_ - 1];
  }
  const token& next() {
    auto& t = tokens_[pos_];
    if (t.kind != token_kind::end)
      ++pos_;
    return t;
  }
  bool accept_symbol(std::string_view symbol) {
    if (!peek().is_symbol(symbol))
      return false;
    next();
    return true;
  }
  bool accept_keyword(std::string_view keyword) {
    if (!peek().is_keyword(keyword))
      return false;
    next();
    return true;
  }
  void expect_symbol(std::string_view symbol) {
    if (!accept_symbol(symbol))
      fail("'" + std::string{symbol} + "'");
  }
  void expect_keyword(std::string_view keyword, std::string_view what) {
    if (!accept_keyword(keyword))
      fail(std::string{what});
  }

  /// "expected <what> after <previous token> at column N (found X)".
  [[noreturn]] void fail(const std::string& what) const {
    auto& here = peek();
    std::string message = "expected " + what;
    if (pos_ > 0)
      message += " after " + previous().describe();
    message += " at column " + std::to_string(here.column);
    if (here.kind != token_kind::end)
      message += " (found " + here.describe() + ")";
    throw parse_error(here.column, message);
  }
  [[noreturn]] void fail_at(const token& where, const std::string& message) const {
    throw parse_error(where.column, message + " at column "
                                      + std::to_string(where.column));
  }

  /// The statement text from `first` up to the last consumed token.
  std::string source_since(std::size_t first) const {
    auto begin = static_cast<std::size_t>(tokens_[first].column - 1);
    auto& last = previous();
    auto end = static_cast<std::size_t>(last.column - 1 + last.length);
    return std::string{text_.substr(begin, end - begin)};
  }

  // -- SELECT list ------------------------------------------------------------

  column parse_column() {
    column result;
    if (accept_symbol("*")) {
      result.star = true;
      reads_payload_ = true;
      return result;
    }
    auto first = pos_;
    if (peek().kind == token_kind::end || peek().is_keyword("FROM")
        || peek().is_keyword("WHERE") || peek().is_symbol(","))
      fail("a column (an expression or *)");
    result.value = parse_expression();
    if (accept_keyword("AS")) {
      auto& alias = peek();
      if (alias.kind == token_kind::quoted_identifier
          || alias.kind == token_kind::string
          || (alias.kind == token_kind::identifier && !is_reserved(alias)))
        result.name = next().text;
      else
        fail("a column name");
    } else {
      result.name = source_since(first);
    }
    return result;
  }

  // -- expressions ------------------------------------------------------------

  expr_ptr make(expr::kind what, int column) {
    auto e = std::make_unique<expr>();
    e->what = what;
    e->column = column;
    return e;
  }
  /// Fails once `e` is deeper than max_expression_depth.
  void check_depth(expr& e) const {
    if (depth_of(e) > max_expression_depth)
      throw parse_error(e.column, "the expression starting at column "
                                    + std::to_string(e.column)
                                    + " is nested deeper than "
                                    + std::to_string(max_expression_depth)
                                    + " levels");
  }

  expr_ptr make_binary(op oper, expr_ptr lhs, expr_ptr rhs) {
    auto e = make(expr::kind::binary, lhs->column);
    e->depth = 1 + std::max(depth_of(*lhs), depth_of(*rhs));
    check_depth(*e);
    e->oper = oper;
    e->operands.push_back(std::move(lhs));
    e->operands.push_back(std::move(rhs));
    return e;
  }

  expr_ptr parse_expression() {
    auto guard = nest();
    auto e = parse_or();
    check_depth(*e);
    return e;
  }

  /// Counts one level of the parser's own recursion; past the bound it
  /// fails before the stack can.
  struct nesting {
    explicit nesting(parser& p) : p_(p) {
      if (++p_.nesting_ > max_expression_depth)
        p_.fail("an expression nested at most "
                + std::to_string(max_expression_depth) + " levels deep");
    }
    ~nesting() {
      --p_.nesting_;
    }
    parser& p_;
  };
  nesting nest() {
    return nesting{*this};
  }

  expr_ptr parse_or() {
    auto lhs = parse_and();
    while (accept_keyword("OR"))
      lhs = make_binary(op::or_, std::move(lhs), parse_and());
    return lhs;
  }

  expr_ptr parse_and() {
    auto lhs = parse_not();
    while (accept_keyword("AND"))
      lhs = make_binary(op::and_, std::move(lhs), parse_not());
    return lhs;
  }

  expr_ptr parse_not() {
    if (peek().is_keyword("NOT")) {
      auto column = next().column;
      auto e = make(expr::kind::unary, column);
      e->oper = op::not_;
      auto guard = nest();
      e->operands.push_back(parse_not());
      return e;
    }
    return parse_predicate();
  }

  expr_ptr parse_predicate() {
    auto lhs = parse_additive();
    static constexpr std::pair<std::string_view, op> comparisons[] = {
      {"=", op::equal},          {"!=", op::not_equal}, {"<>", op::not_equal},
      {"<", op::less},           {"<=", op::less_equal}, {">", op::greater},
      {">=", op::greater_equal},
    };
    for (auto [symbol, oper] : comparisons)
      if (accept_symbol(symbol))
        return make_binary(oper, std::move(lhs), parse_additive());
    if (peek().is_keyword("IS")) {
      next();
      auto e = make(expr::kind::is_null, lhs->column);
      e->negated = accept_keyword("NOT");
      expect_keyword("NULL", e->negated ? "NULL" : "NULL or NOT NULL");
      e->operands.push_back(std::move(lhs));
      return e;
    }
    bool negated = false;
    if (peek().is_keyword("NOT")
        && (peek(1).is_keyword("IN") || peek(1).is_keyword("LIKE"))) {
      next();
      negated = true;
    }
    if (accept_keyword("IN")) {
      auto e = make(expr::kind::in_list, lhs->column);
      e->negated = negated;
      e->operands.push_back(std::move(lhs));
      expect_symbol("(");
      if (peek().is_symbol(")"))
        fail("a value in the IN list");
      do {
        e->operands.push_back(parse_expression());
      } while (accept_symbol(","));
      if (!accept_symbol(")"))
        fail("',' or ')' closing the IN list");
      return e;
    }
    if (accept_keyword("LIKE")) {
      auto e = make(expr::kind::like, lhs->column);
      e->negated = negated;
      e->operands.push_back(std::move(lhs));
      e->operands.push_back(parse_additive());
      return e;
    }
    return lhs;
  }

  expr_ptr parse_additive() {
    auto lhs = parse_term();
    for (;;) {
      if (accept_symbol("+"))
        lhs = make_binary(op::add, std::move(lhs), parse_term());
      else if (accept_symbol("-"))
        lhs = make_binary(op::subtract, std::move(lhs), parse_term());
      else
        return lhs;
    }
  }

  expr_ptr parse_term() {
    auto lhs = parse_unary();
    for (;;) {
      if (accept_symbol("*"))
        lhs = make_binary(op::multiply, std::move(lhs), parse_unary());
      else if (accept_symbol("/"))
        lhs = make_binary(op::divide, std::move(lhs), parse_unary());
      else if (accept_symbol("%"))
        lhs = make_binary(op::modulo, std::move(lhs), parse_unary());
      else
        return lhs;
    }
  }

  expr_ptr parse_unary() {
    if (peek().is_symbol("-")) {
      auto column = next().column;
      auto guard = nest();
      auto operand = parse_unary();
      // Fold "-5" into a literal so that it prints and compares as one.
      if (operand->what == expr::kind::literal && operand->value.is_number()) {
        operand->column = column;
        if (operand->value.is_number_integer())
          operand->value = -operand->value.get<std::int64_t>();
        else
          operand->value = -operand->value.get<double>();
        return operand;
      }
      auto e = make(expr::kind::unary, column);
      e->oper = op::negate;
      e->operands.push_back(std::move(operand));
      return e;
    }
    return parse_primary();
  }

  expr_ptr parse_primary() {
    auto& t = peek();
    switch (t.kind) {
      case token_kind::number: {
        auto e = make(expr::kind::literal, t.column);
        e->value = parse_number(next());
        return e;
      }
      case token_kind::string: {
        auto e = make(expr::kind::literal, t.column);
        e->value = next().text;
        return e;
      }
      case token_kind::quoted_identifier:
        return parse_path();
      case token_kind::identifier:
        if (t.is_keyword("TRUE") || t.is_keyword("FALSE")
            || t.is_keyword("NULL")) {
          auto e = make(expr::kind::literal, t.column);
          if (!t.is_keyword("NULL"))
            e->value = t.is_keyword("TRUE");
          next();
          return e;
        }
        if (is_reserved(t))
          break;
        if (peek(1).is_symbol("("))
          return parse_call();
        return parse_path();
      case token_kind::symbol:
        if (t.is_symbol("(")) {
          next();
          auto inner = parse_expression();
          expect_symbol(")");
          return inner;
        }
        break;
      case token_kind::end:
        break;
    }
    fail("an expression");
  }

  json parse_number(const token& t) {
    bool integral = t.text.find_first_of(".eE") == std::string::npos;
    if (integral) {
      std::int64_t value = 0;
      auto [end, ec] = std::from_chars(t.text.data(),
                                       t.text.data() + t.text.size(), value);
      if (ec == std::errc{} && end == t.text.data() + t.text.size())
        return value;
      // Too large for 64 bits: keep it as a double, as JSON parsers do.
    }
    return std::strtod(t.text.c_str(), nullptr);
  }

  expr_ptr parse_call() {
    auto& name = next();
    const function_spec* spec = nullptr;
    for (auto& f : functions)
      if (name.is_keyword(f.name))
        spec = &f;
    if (!spec)
      fail_at(name, "unknown function '" + name.text
                      + "' (known: qos(), topic(), topic(n), clientid(), "
                        "timestamp())");
    auto e = make(expr::kind::call, name.column);
    e->function = spec->id;
    next(); // '('
    if (!peek().is_symbol(")")) {
      do {
        if (e->operands.size() == spec->max_args)
          fail_at(peek(), std::string{spec->name} + "() takes "
                            + (spec->max_args == 0 ? "no arguments"
                                                   : "at most one argument"));
        e->operands.push_back(parse_expression());
      } while (accept_symbol(","));
    }
    if (!accept_symbol(")"))
      fail("')' closing " + std::string{spec->name} + "(");
    return e;
  }

  expr_ptr parse_path() {
    auto e = make(expr::kind::field, peek().column);
    reads_payload_ = true;
    e->path.push_back({next().text});
    for (;;) {
      if (accept_symbol(".")) {
        auto& t = peek();
        if (t.kind == token_kind::quoted_identifier
            || (t.kind == token_kind::identifier && !is_reserved(t)))
          e->path.push_back({next().text});
        else
          fail("a field name");
      } else if (accept_symbol("[")) {
        bool negative = accept_symbol("-");
        auto& t = peek();
        if (t.kind != token_kind::number
            || t.text.find_first_of(".eE") != std::string::npos)
          fail("an array index (an integer)");
        auto value = parse_number(next());
        if (!value.is_number_integer())
          fail_at(previous(), "array index out of range");
        auto index = value.get<std::int64_t>();
        if (index == 0)
          fail_at(previous(), "array indexes start at 1 (use -1 for the last "
                              "element)");
        e->path.push_back({{}, negative ? -index : index});
        if (!accept_symbol("]"))
          fail("']'");
      } else {
        return e;
      }
    }
  }

  std::string_view text_;
  std::vector<token> tokens_;
  std::size_t pos_ = 0;
  bool reads_payload_ = false;
  int nesting_ = 0; // recursion levels of parse_expression, NOT and minus
};

} // namespace

statement parse(std::string_view text) {
  return parser{text}.parse_statement();
}

} // namespace hubflow::sql
