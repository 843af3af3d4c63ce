// Evaluates a parsed rule SQL statement against one message.
//
// Values are JSON. Whatever cannot be computed is NULL rather than an error,
// so one odd message never fails a filter: a missing field, a field of a
// payload that is not a JSON object, arithmetic on non-numbers, division by
// zero, comparing a string with a number by order. Comparisons and logic use
// SQL's three-valued logic: NULL = 1 is NULL, and only a WHERE that is TRUE
// passes a message.
#pragma once

#include <optional>

#include "core/message.hpp"
#include "functions/sql/sql_parser.hpp"

namespace hubflow::sql {

/// What an expression sees: the message and its payload parsed as JSON
/// (null when it is not a JSON object).
struct row_context {
  const message& msg;
  const json* payload;
};

json evaluate(const expr& e, const row_context& ctx);

/// The output row of `stmt` for `msg`, or nullopt when the message is
/// filtered out: its topic does not match FROM (MQTT matching), WHERE is not TRUE, or the row
/// has no columns (`SELECT *` over a payload that is not a JSON object).
std::optional<json> select(const statement& stmt, const message& msg);

/// SQL LIKE: `%` matches any run of characters, `_` exactly one (UTF-8 aware).
bool like_match(std::string_view text, std::string_view pattern);

} // namespace hubflow::sql
