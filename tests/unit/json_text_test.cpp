// core/json_text: the depth pre-scan, the bounded parser, the UTF-8 check
// (against nlohmann's own strict dump) and the dump that never throws.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/json_text.hpp"

using namespace hubflow;

namespace {

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

/// What nlohmann's strict dump says about `text` as a JSON string.
bool nlohmann_accepts(const std::string& text) {
  try {
    nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

} // namespace

TEST(json_text, nesting_counts_arrays_and_objects_outside_strings) {
  EXPECT_EQ(json_nesting("", 10), 0u);
  EXPECT_EQ(json_nesting("42", 10), 0u);
  EXPECT_EQ(json_nesting(R"({"a":[1,{"b":[]}]})", 10), 4u);
  EXPECT_EQ(json_nesting(R"(["[[[[", "{{{{"])", 10), 1u);
  // An escaped quote does not end the string; an escaped backslash does not
  // escape the closing quote.
  EXPECT_EQ(json_nesting(R"(["\"[[[", "\\", [[]]])", 10), 3u);
  EXPECT_EQ(json_nesting("]]]][", 10), 1u);
  // Counting stops right above the limit.
  EXPECT_EQ(json_nesting(nested_arrays(50000), 64), 65u);
}

TEST(json_text, bounded_parse_refuses_deep_text_before_parsing) {
  std::string error;
  auto deep = parse_json_bounded(nested_arrays(50000), default_json_depth,
                                 &error);
  EXPECT_TRUE(deep.is_discarded());
  EXPECT_EQ(error, "JSON nested deeper than 64 levels");

  error.clear();
  auto at_limit = parse_json_bounded(nested_arrays(64), 64, &error);
  ASSERT_FALSE(at_limit.is_discarded()) << error;
  EXPECT_TRUE(error.empty());
  EXPECT_EQ(dump_json(at_limit), nested_arrays(64));
  EXPECT_TRUE(parse_json_bounded(nested_arrays(65), 64).is_discarded());

  // Deep inside a string is just text.
  auto text = "\"" + nested_arrays(50000) + "\"";
  EXPECT_TRUE(parse_json_bounded(text, 4).is_string());
}

TEST(json_text, bounded_parse_reports_syntax_errors_without_throwing) {
  std::string error;
  for (std::string bad : {"", "{", "[1,]", "nul", "\"\xff\"", "{\"a\":1}x"}) {
    error.clear();
    EXPECT_TRUE(parse_json_bounded(bad, 8, &error).is_discarded()) << bad;
    EXPECT_FALSE(error.empty()) << bad;
    EXPECT_TRUE(parse_json_bounded(bad, 8).is_discarded()) << bad;
  }
  auto doc = parse_json_bounded<nlohmann::json>(R"({"b":1,"a":[true]})", 8);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["a"][0], true);
  // The default keeps the order of the text.
  EXPECT_EQ(dump_json(parse_json_bounded(R"({"b":1,"a":2})")),
            R"({"b":1,"a":2})");
}

TEST(json_text, utf8_check_matches_nlohmann_dump) {
  for (std::string good : std::vector<std::string>{
         "", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
         "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf", std::string("a\0b", 3)}) {
    EXPECT_TRUE(is_valid_utf8(good)) << good;
    EXPECT_TRUE(nlohmann_accepts(good)) << good;
  }
  for (std::string bad :
       {"\xff", "%\xff", "\xc0\xaf", "\xc3", "\xe2\x82", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\x80", "ok\xc3(",
        "\xf0\x8f\xbf\xbf"}) {
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
    EXPECT_FALSE(nlohmann_accepts(bad)) << bad;
  }
  // Every lead byte with every second byte and a few continuations: the
  // check says yes exactly when nlohmann's strict dump does.
  const unsigned char tails[] = {0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0};
  for (unsigned lead = 0x80; lead <= 0xff; ++lead)
    for (unsigned second = 0; second <= 0xff; ++second)
      for (auto third : tails) {
        std::string s{static_cast<char>(lead), static_cast<char>(second),
                      static_cast<char>(third), static_cast<char>(0x80)};
        ASSERT_EQ(is_valid_utf8(s), nlohmann_accepts(s))
          << std::hex << lead << " " << second << " " << int{third};
      }
}

TEST(json_text, dump_never_throws_on_invalid_utf8) {
  nlohmann::ordered_json doc{{"message", "state store \xff is not found"},
                             {"\xc0key", {"\xed\xa0\x80"}}};
  std::string text;
  ASSERT_NO_THROW(text = dump_json(doc));
  EXPECT_TRUE(is_valid_utf8(text)) << text;
  EXPECT_NE(text.find("state store \xef\xbf\xbd is not found"),
            std::string::npos)
    << text;
  // The result is JSON again.
  EXPECT_FALSE(parse_json_bounded(text).is_discarded());
}
