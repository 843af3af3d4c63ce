// Rule SQL end to end: lexer, parser and evaluator, as the sql runtime runs
// them. The input is `statement NUL topic NUL payload` (missing parts are
// empty; a topic that is not a valid topic name becomes "t", as the hub
// never hands such a message to a rule). A statement either parses or
// throws parse_error with a column inside it (or just past its end);
// one that parses is evaluated against the message and its output row is
// printed as JSON with dump_json, as sql_runtime does, which must not
// throw (string literals need not be UTF-8). Expressions nest at most 256
// levels (deeper ones are a parse_error, not a stack overflow). Also
// fuzzes LIKE with the topic as text and the payload as pattern.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json_text.hpp"
#include "core/topic.hpp"
#include "functions/sql/sql_evaluator.hpp"
#include "functions/sql/sql_parser.hpp"
#include "fuzz_input.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

namespace {

std::string_view until_nul(std::string_view& rest) {
  auto end = rest.find('\0');
  auto part = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
  return part;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string_view rest{reinterpret_cast<const char*>(data), size};
  auto text = until_nul(rest);
  auto topic = until_nul(rest);
  auto body = rest;

  message msg;
  msg.topic = valid_topic_name(topic) ? std::string{topic} : "t";
  msg.body = payload{std::string{body}};
  msg.qos = 1;
  msg.origin = "fuzz-client";
  (void) sql::like_match(msg.topic, body);

  sql::statement stmt;
  try {
    stmt = sql::parse(text);
  } catch (const sql::parse_error& e) {
    check(e.column() >= 1
            && static_cast<std::size_t>(e.column()) <= text.size() + 1,
          "a parse error pointing outside the statement");
    check(*e.what() != '\0', "a parse error without a message");
    return 0;
  }
  if (auto row = sql::select(stmt, msg))
    (void) dump_json(*row);
  return 0;
}
