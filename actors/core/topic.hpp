// MQTT's rules for topic names and filters, as free functions over strings:
// validity (wildcards, UTF-8, level and length bounds), matching a filter
// against a name (`+`, `#`, and the rule that wildcards at the first level
// do not match `$`-topics), levels (all of them, or the n-th) and taking
// the `$share/group/filter` form apart. The hub's subscription trie
// (hub/topic_tree.hpp), its permits (hub/auth), the SQL filter and the
// topic templates all judge topics by these.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hubflow {

/// Well-formed UTF-8 without U+0000 and without surrogates, as MQTT requires
/// of every UTF-8 string (topics, client ids, properties, a payload that
/// says it is UTF-8).
bool valid_mqtt_utf8(std::string_view s) noexcept;

/// True when `topic` (a topic name) matches `filter` (a topic filter).
bool topic_matches(std::string_view filter, std::string_view topic);

/// How deep and long a topic or filter may be (hub.max_topic_levels,
/// hub.max_topic_length). MQTT bounds only the length (65535 bytes, i.e.
/// up to 65536 levels); the level bound is Mosquitto's.
struct topic_limits {
  std::size_t max_levels = 200;
  std::size_t max_length = 65535;
};

/// A non-empty filter whose `#` is only the whole last level and whose `+`
/// only ever fills a whole level, in valid UTF-8 (`$share/g/f` passes too),
/// within `limits` (a shared filter's own levels are counted, not the
/// `$share/group/` prefix).
bool valid_topic_filter(std::string_view filter, const topic_limits& limits = {});

/// A non-empty topic name without wildcards, in valid UTF-8, within
/// `limits`.
bool valid_topic_name(std::string_view topic, const topic_limits& limits = {});

/// `$share/group/filter` split up; nullopt for a plain filter. A malformed
/// shared form (empty group, wildcard in the group, no filter) yields a
/// result with `valid == false`; the filter itself is valid_topic_filter's
/// to judge.
struct shared_filter {
  std::string_view group;
  std::string_view filter;
  bool valid = true;
};
std::optional<shared_filter> parse_shared_filter(std::string_view filter);

/// Splits a topic or filter at '/' (empty levels kept) into `out` (cleared
/// first).
void split_levels(std::string_view topic, std::vector<std::string_view>& out);

/// The `n`-th level (1-based) of an MQTT topic; nullopt when the topic has
/// fewer levels. SQL's topic(n) and the templates' ${topic.N} share it.
std::optional<std::string_view> topic_level(std::string_view topic,
                                            std::size_t n);

/// Why `topic` cannot be published to on MQTT (empty, longer than 65535
/// bytes, a wildcard, U+0000), in words, or nullopt when it can: what the
/// config loader says of a destination template's literal text.
/// valid_topic_name() is the hub's whole check (UTF-8, the hub's limits).
std::optional<std::string> check_mqtt_topic_name(std::string_view topic);

} // namespace hubflow
