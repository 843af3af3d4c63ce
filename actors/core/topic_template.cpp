#include "core/topic_template.hpp"

#include <algorithm>
#include <cctype>

namespace hubflow {

namespace {

constexpr const char* known_placeholders =
  "${topic}, ${topic.N} (N from 1), ${property.NAME}, ${origin}, ${qos}, "
  "${timestamp}";

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() <= 6
         && std::all_of(s.begin(), s.end(),
                        [](unsigned char c) { return std::isdigit(c); });
}

std::string escape_current(std::string_view literal) {
  // Only `${` is special in the current syntax.
  std::string out;
  for (std::size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '$' && i + 1 < literal.size() && literal[i + 1] == '{')
      out += '$';
    out += literal[i];
  }
  return out;
}

} // namespace

std::optional<topic_template>
topic_template::compile(std::string_view text, std::string& error,
                        template_dialect dialect) {
  topic_template out;
  out.text_ = std::string(text);
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) {
      out.parts_.push_back({part::literal, std::move(literal), 0});
      literal.clear();
    }
  };
  // One placeholder name as part; `zero_based` for the brace forms.
  auto placeholder = [&](std::string_view name, bool zero_based) -> bool {
    flush();
    auto legacy_kafka = name.substr(0, 5) == "mqtt." && !zero_based;
    if (legacy_kafka && (name == "mqtt.topic" || name.substr(0, 11) == "mqtt.topic."))
      name.remove_prefix(5);
    if (name == "topic") {
      out.parts_.push_back({part::topic, {}, 0});
    } else if (name.substr(0, 6) == "topic." && all_digits(name.substr(6))) {
      auto n = std::stoul(std::string(name.substr(6)));
      if (zero_based)
        ++n;
      if (n == 0) {
        error = "${" + std::string(name) + "}: levels count from 1 (${topic.1} "
                "is the first)";
        return false;
      }
      out.parts_.push_back({part::level, {}, n});
    } else if (name.substr(0, 9) == "property." && name.size() > 9) {
      out.parts_.push_back({part::property, std::string(name.substr(9)), 0});
    } else if (name == "origin") {
      out.parts_.push_back({part::origin, {}, 0});
    } else if (name == "qos") {
      out.parts_.push_back({part::qos, {}, 0});
    } else if (name == "timestamp") {
      out.parts_.push_back({part::timestamp, {}, 0});
    } else {
      auto written = zero_based ? "{" + std::string(name) + "}"
                                : "${" + std::string(name) + "}";
      error = "unknown placeholder " + written + " (known: "
              + known_placeholders + ")";
      return false;
    }
    return true;
  };
  bool braces = dialect.braces && text.find("${") == std::string_view::npos;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (braces) {
      if ((c == '{' || c == '}') && i + 1 < text.size() && text[i + 1] == c) {
        literal += c;
        ++i;
      } else if (c == '{') {
        auto end = text.find('}', i);
        if (end == std::string_view::npos) {
          error = "unclosed '{' at offset " + std::to_string(i);
          return std::nullopt;
        }
        if (!placeholder(text.substr(i + 1, end - i - 1), true))
          return std::nullopt;
        i = end;
      } else if (c == '}') {
        error = "unmatched '}' at offset " + std::to_string(i)
                + " (write '}}' for a literal brace)";
        return std::nullopt;
      } else {
        literal += c;
      }
      continue;
    }
    if (c == '$' && text.substr(i, 3) == "$${") {
      literal += "${";
      i += 2;
    } else if (c == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto end = text.find('}', i);
      if (end == std::string_view::npos) {
        error = "unclosed '${' at offset " + std::to_string(i);
        return std::nullopt;
      }
      if (!placeholder(text.substr(i + 2, end - i - 2), false))
        return std::nullopt;
      i = end;
    } else {
      literal += c;
    }
  }
  flush();
  // The same template in the current syntax.
  for (auto& p : out.parts_) {
    switch (p.what) {
      case part::literal:
        out.canonical_ += escape_current(p.text);
        break;
      case part::topic:
        out.canonical_ += "${topic}";
        break;
      case part::level:
        out.canonical_ += "${topic." + std::to_string(p.n) + "}";
        break;
      case part::property:
        out.canonical_ += "${property." + p.text + "}";
        break;
      case part::origin:
        out.canonical_ += "${origin}";
        break;
      case part::qos:
        out.canonical_ += "${qos}";
        break;
      case part::timestamp:
        out.canonical_ += "${timestamp}";
        break;
    }
  }
  return out;
}

std::string topic_template::literal_text() const {
  std::string out;
  for (auto& p : parts_)
    if (p.what == part::literal)
      out += p.text;
  return out;
}

bool topic_template::render(const message& msg, std::string& out,
                            std::string& error) const {
  out.clear();
  for (auto& p : parts_) {
    switch (p.what) {
      case part::literal:
        out += p.text;
        break;
      case part::topic:
        out += msg.topic;
        break;
      case part::level:
        if (auto level = topic_level(msg.topic, p.n)) {
          out += *level;
        } else {
          error = "template '" + text_ + "': topic '" + msg.topic
                  + "' has no level " + std::to_string(p.n);
          return false;
        }
        break;
      case part::property: {
        auto& props = msg.properties.user_properties;
        auto i = std::find_if(props.begin(), props.end(),
                              [&](auto& kv) { return kv.first == p.text; });
        if (i == props.end()) {
          error = "template '" + text_ + "': the message on '" + msg.topic
                  + "' has no user property '" + p.text + "'";
          return false;
        }
        out += i->second;
        break;
      }
      case part::origin:
        out += msg.origin;
        break;
      case part::qos:
        out += std::to_string(msg.qos);
        break;
      case part::timestamp:
        out += std::to_string(msg.received_ms());
        break;
    }
  }
  if (out.empty()) {
    error = "template '" + text_ + "' rendered an empty name";
    return false;
  }
  return true;
}

} // namespace hubflow
