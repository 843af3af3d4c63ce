#include "core/json_text.hpp"

namespace hubflow {

std::size_t json_nesting(std::string_view text, std::size_t limit) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > limit)
            return limit + 1;
        }
        break;
      case ']':
      case '}':
        // Unbalanced text is the parser's to refuse; just do not wrap.
        if (depth > 0)
          --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

bool is_valid_utf8(std::string_view text) {
  auto byte = [&](std::size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The well-formed sequences of Unicode's table 3-7: the second byte's
    // range depends on the first, which excludes overlong forms, UTF-16
    // surrogates (ED A0..BF) and code points above U+10FFFF.
    std::size_t length;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    } else {
      return false;
    }
    if (text.size() - i < length)
      return false;
    if (byte(i + 1) < lo || byte(i + 1) > hi)
      return false;
    for (std::size_t k = 2; k < length; ++k)
      if (byte(i + k) < 0x80 || byte(i + k) > 0xBF)
        return false;
    i += length;
  }
  return true;
}

std::string json_depth_error(std::size_t max_depth) {
  return "JSON nested deeper than " + std::to_string(max_depth) + " levels";
}

} // namespace hubflow
