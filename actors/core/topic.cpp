#include "core/topic.hpp"

#include <cstdint>

namespace hubflow {

bool valid_mqtt_utf8(std::string_view s) noexcept {
  auto p = reinterpret_cast<const std::uint8_t*>(s.data());
  auto end = p + s.size();
  while (p < end) {
    auto c = *p;
    if (c >= 0x01 && c < 0x80) {
      ++p;
      continue;
    }
    if (c == 0)
      return false;
    std::size_t n;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<std::size_t>(end - p) <= n)
      return false;
    for (std::size_t i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    // Overlong encodings, surrogates and values past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800)
        || (n == 3 && cp < 0x10000) || cp > 0x10FFFF
        || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    p += n + 1;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // Wildcards at the first level never match topics starting with '$'.
  if (!topic.empty() && topic.front() == '$' && !filter.empty()
      && (filter.front() == '+' || filter.front() == '#'))
    return false;
  std::size_t f = 0;
  std::size_t t = 0;
  for (;;) {
    auto f_end = filter.find('/', f);
    if (f_end == std::string_view::npos)
      f_end = filter.size();
    auto level = filter.substr(f, f_end - f);
    if (level == "#")
      return true; // matches the parent level and everything below
    auto t_end = topic.find('/', t);
    if (t > topic.size())
      return false; // topic has fewer levels than the filter
    if (t_end == std::string_view::npos)
      t_end = topic.size();
    if (level != "+" && level != topic.substr(t, t_end - t))
      return false;
    bool filter_done = f_end == filter.size();
    bool topic_done = t_end == topic.size();
    if (filter_done || topic_done) {
      if (filter_done && topic_done)
        return true;
      // "a/#" also matches "a": the filter may go on with exactly "/#".
      return topic_done && filter.substr(f_end) == "/#";
    }
    f = f_end + 1;
    t = t_end + 1;
  }
}

namespace {

/// Levels of `topic` ('/' count + 1), stopping once past `max`.
bool within_levels(std::string_view topic, std::size_t max) {
  std::size_t levels = 1;
  for (auto c : topic)
    if (c == '/' && ++levels > max)
      return false;
  return true;
}

} // namespace

bool valid_topic_filter(std::string_view filter, const topic_limits& limits) {
  if (filter.empty() || filter.size() > limits.max_length
      || !valid_mqtt_utf8(filter))
    return false;
  // A shared filter's levels are those of the filter it shares; a
  // malformed shared form ("$share/g", "$share//f") is no filter at all.
  if (auto shared = parse_shared_filter(filter)) {
    if (!shared->valid)
      return false;
    filter = shared->filter;
  }
  if (!within_levels(filter, limits.max_levels))
    return false;
  std::size_t start = 0;
  for (;;) {
    auto end = filter.find('/', start);
    auto last = end == std::string_view::npos;
    auto level = filter.substr(start, last ? std::string_view::npos
                                           : end - start);
    if (level.find_first_of("+#") != std::string_view::npos) {
      if (level.size() != 1)
        return false;
      if (level == "#" && !last)
        return false;
    }
    if (last)
      return true;
    start = end + 1;
  }
}

bool valid_topic_name(std::string_view topic, const topic_limits& limits) {
  return !topic.empty() && topic.size() <= limits.max_length
         && topic.find_first_of("+#") == std::string_view::npos
         && within_levels(topic, limits.max_levels) && valid_mqtt_utf8(topic);
}

void split_levels(std::string_view topic, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (;;) {
    auto end = topic.find('/', start);
    if (end == std::string_view::npos) {
      out.push_back(topic.substr(start));
      return;
    }
    out.push_back(topic.substr(start, end - start));
    start = end + 1;
  }
}

std::optional<shared_filter> parse_shared_filter(std::string_view filter) {
  constexpr std::string_view prefix = "$share/";
  if (filter.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  shared_filter result;
  auto rest = filter.substr(prefix.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) {
    result.valid = false;
    return result;
  }
  result.group = rest.substr(0, slash);
  result.filter = rest.substr(slash + 1);
  // The filter's own shape and limits are valid_topic_filter's to judge
  // (with the hub's limits, not the defaults).
  result.valid = result.group.find_first_of("+#") == std::string_view::npos
                 && !result.filter.empty();
  return result;
}

std::optional<std::string_view> topic_level(std::string_view topic,
                                            std::size_t n) {
  if (n == 0)
    return std::nullopt;
  std::size_t begin = 0;
  for (std::size_t level = 1; level < n; ++level) {
    begin = topic.find('/', begin);
    if (begin == std::string_view::npos)
      return std::nullopt;
    ++begin;
  }
  auto end = topic.find('/', begin);
  return topic.substr(begin, end == std::string_view::npos ? end : end - begin);
}

std::optional<std::string> check_mqtt_topic_name(std::string_view topic) {
  if (topic.empty())
    return "the topic is empty";
  if (topic.size() > 65535)
    return "the topic is longer than 65535 bytes";
  if (topic.find_first_of("+#") != std::string_view::npos)
    return "'" + std::string(topic) + "' holds a wildcard (+ or #)";
  if (topic.find('\0') != std::string_view::npos)
    return "the topic holds U+0000";
  return std::nullopt;
}

} // namespace hubflow
