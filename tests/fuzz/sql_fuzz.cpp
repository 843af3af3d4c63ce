// Rule SQL end to end: lexer, parser and evaluator, as the sql runtime runs
// them. The input is `statement NUL topic NUL payload` (missing parts are
// empty; a topic that is not a valid topic name becomes "t", as the hub
// never hands such a message to a rule). A statement either parses or
// throws parse_error with a column inside it (or just past its end);
// one that parses is evaluated against the message and its output row is
// printed as JSON, as sql_runtime does, which must not throw. Statements
// that are not valid UTF-8 are skipped: their string literals make every
// output row's dump() throw type_error.316 (the function instance fails
// and is replaced; the statement comes from the operator's config). Also
// fuzzes LIKE with the topic as text and the payload as pattern.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "functions/sql/sql_evaluator.hpp"
#include "functions/sql/sql_parser.hpp"
#include "fuzz_input.hpp"
#include "hub/topic_tree.hpp"

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

  if (!mqtt::valid_utf8(text))
    return 0;
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
    (void) row->dump();
  return 0;
}
