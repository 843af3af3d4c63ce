// JSON text from outside hubflow (HTTP bodies, message payloads read by SQL
// functions, values read back from a store) and JSON text built from what
// clients sent. Two hazards, one place:
// - nlohmann's parser is iterative, but dump() and a few other operations
//   recurse once per nesting level, so a 100 KB text of 50000 nested arrays
//   overflows the stack. parse_json_bounded refuses such text before
//   parsing, with a scan that does not recurse either.
// - dump() throws type_error.316 on a string that is not valid UTF-8.
//   dump_json never throws for that: invalid bytes become U+FFFD.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace hubflow {

/// Nesting depth allowed in JSON from outside. Dapr-style bodies and sensor
/// payloads are a few levels deep; 64 leaves room and keeps dump()'s
/// recursion far from any stack limit.
inline constexpr std::size_t default_json_depth = 64;

/// The deepest nesting of arrays and objects in `text` (brackets inside
/// strings do not count), or `limit + 1` as soon as it passes `limit`. Does
/// not validate the text.
std::size_t json_nesting(std::string_view text, std::size_t limit);

/// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates,
/// nothing above U+10FFFF): exactly the strings nlohmann's dump() accepts.
bool is_valid_utf8(std::string_view text);

/// "JSON nested deeper than <max_depth> levels".
std::string json_depth_error(std::size_t max_depth);

/// Parses JSON text from outside. On text that nests deeper than
/// `max_depth` or is not JSON, returns a discarded value (is_discarded())
/// and, when `error` is given, stores why there (the depth error above, or
/// nlohmann's parse error, which may quote the input: send it through
/// dump_json). Never throws for any input.
template <class Json = nlohmann::ordered_json>
Json parse_json_bounded(std::string_view text,
                        std::size_t max_depth = default_json_depth,
                        std::string* error = nullptr) {
  if (json_nesting(text, max_depth) > max_depth) {
    if (error)
      *error = json_depth_error(max_depth);
    return Json(Json::value_t::discarded);
  }
  if (!error)
    return Json::parse(text, nullptr, false);
  try {
    return Json::parse(text);
  } catch (const std::exception& e) {
    *error = e.what();
    return Json(Json::value_t::discarded);
  }
}

/// Compact JSON text of `doc` that never throws for invalid UTF-8 in its
/// strings (those bytes become U+FFFD). `doc` must be bounded in depth
/// (built by hubflow, or from parse_json_bounded), as dump() recurses.
template <class Json>
std::string dump_json(const Json& doc) {
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
}

} // namespace hubflow
