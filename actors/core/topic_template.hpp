// The one template language of destination topics and keys: a rule's MQTT
// destination topic, a Kafka topic, a Redis key or channel. Compiled once
// when the config loads; rendering a compiled template for a message walks
// its parts and never parses again.
//
//   ${topic}          the message's topic
//   ${topic.N}        its N-th level, counted from 1 (`a/b/c`: ${topic.2} is b)
//   ${property.NAME}  the MQTT 5 user property NAME
//   ${origin}         where the message came from (client id or rule name)
//   ${qos}            its QoS (0, 1, 2)
//   ${timestamp}      its receive time, milliseconds since the epoch
//   $${               a literal `${`
//
// Levels count from 1 as SQL's topic(n) and the Kafka endpoint always did.
// The older forms still compile, each with a deprecation that names its
// replacement: Kafka's `${mqtt.topic}` and `${mqtt.topic.N}`, and (where a
// destination asks for them: Redis keys) the brace forms `{topic}`,
// `{topic.N}` counted from 0, `{property.NAME}`, `{origin}`, `{qos}`,
// `{timestamp}`, `{{` and `}}`, read as such when the text has no `${`.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"
#include "core/topic.hpp"

namespace hubflow {

/// What a template may be written in besides the current syntax.
struct template_dialect {
  /// Redis's brace forms (`{topic.N}` counted from 0).
  bool braces = false;
};

class topic_template {
public:
  /// Compiles `text`; nullopt with `error` set when it is malformed (an
  /// unknown placeholder, level 0, an unclosed `${`).
  static std::optional<topic_template>
  compile(std::string_view text, std::string& error,
          template_dialect dialect = {});

  /// The template as written.
  const std::string& text() const noexcept {
    return text_;
  }

  /// The template in the current syntax (equal to text() unless deprecated).
  const std::string& canonical() const noexcept {
    return canonical_;
  }

  /// True when text() uses a form that is kept for compatibility only.
  bool deprecated() const noexcept {
    return canonical_ != text_;
  }

  /// True when the template has no placeholder: it renders to itself.
  bool is_literal() const noexcept {
    return parts_.size() <= 1 && (parts_.empty() || parts_[0].what == part::literal);
  }

  /// The literal text between the placeholders, concatenated (what a
  /// destination checks for characters it refuses).
  std::string literal_text() const;

  /// Renders the template for `msg` into `out`. False with `error` set when
  /// the message lacks what a placeholder names (a level beyond the topic's
  /// last, a user property it does not carry) or the result is empty.
  bool render(const message& msg, std::string& out, std::string& error) const;

private:
  struct part {
    enum kind { literal, topic, level, property, origin, qos, timestamp };
    kind what = literal;
    std::string text;      // literal: the text; property: the name
    std::size_t n = 0;     // level: 1-based
  };

  std::string text_;
  std::string canonical_;
  std::vector<part> parts_;
};

using topic_template_ptr = std::shared_ptr<const topic_template>;

} // namespace hubflow
