// The parsed form of a rule SQL statement:
//   SELECT <expr> [AS alias], ... | * [FROM "<topic filter>"] [WHERE <cond>]
// Parsed once at config load; evaluated per message by sql_evaluator.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "functions/sql/sql_lexer.hpp"

namespace hubflow::sql {

/// JSON values keep the key order of the payload and of the SELECT list.
using json = nlohmann::ordered_json;

/// One step of a field path: `.name` or `[index]` (1-based like EMQX's rule
/// SQL, negative counts from the end: -1 is the last element).
struct path_step {
  std::string name;
  std::int64_t index = 0; // used when name is empty
  bool is_index() const {
    return name.empty();
  }
};

enum class builtin { qos, topic, clientid, timestamp };

enum class op {
  negate, not_, // unary
  add, subtract, multiply, divide, modulo,
  equal, not_equal, less, less_equal, greater, greater_equal,
  and_, or_,
};

struct expr;
using expr_ptr = std::unique_ptr<expr>;

struct expr {
  enum class kind {
    literal,  // value
    field,    // path into the JSON payload
    call,     // function (+ operands: its arguments)
    unary,    // oper, operands[0]
    binary,   // oper, operands[0], operands[1]
    in_list,  // operands[0] [NOT] IN (operands[1..])
    like,     // operands[0] [NOT] LIKE operands[1]
    is_null,  // operands[0] IS [NOT] NULL
  };
  kind what;
  int column = 0; // where the expression starts, for messages
  json value;
  std::vector<path_step> path;
  builtin function = builtin::qos;
  op oper = op::add;
  std::vector<expr_ptr> operands;
  bool negated = false; // NOT IN, NOT LIKE, IS NOT NULL
  /// Levels from here to the deepest leaf, once the parser measured it (0:
  /// not yet); the parser refuses expressions deeper than it can evaluate.
  int depth = 0;
};

/// One entry of the SELECT list: `*` or an expression with its output name
/// (the alias, else the expression as written).
struct column {
  bool star = false;
  expr_ptr value;
  std::string name;
};

struct statement {
  std::string text;
  std::vector<column> columns;
  std::optional<std::string> from; // topic filter
  expr_ptr where;                  // null: no WHERE
  /// False when nothing reads the payload (no fields, no `*`), so the
  /// evaluator can skip parsing it.
  bool reads_payload = false;
};

/// Parses a statement or throws parse_error naming the column and what was
/// expected there.
statement parse(std::string_view text);

} // namespace hubflow::sql
