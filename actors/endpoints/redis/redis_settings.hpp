// The settings of a `type: redis` endpoint: its option table (every key,
// declared once: validation, defaults, docs/redis.md's table and the schema
// fragment come from it) and the immutable settings object parsed from it
// once at load. Commands are built in redis_commands.hpp, replies decoded
// in redis_replies.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/message.hpp"
#include "core/options.hpp"
#include "endpoints/redis/redis_client.hpp"

namespace hubflow {

/// How messages sent to the endpoint by a rule are written.
enum class redis_mode : std::uint8_t { set, publish, xadd, lpush, rpush };

/// `text` compiled as a Redis key template (the brace forms included);
/// throws config_error when it is malformed. For settings built in code.
topic_template_ptr redis_key_template(const std::string& text);

/// Built by parse_redis_settings from redis_options(), which holds every
/// default; nothing here repeats them.
struct redis_settings : endpoint_settings {
  redis_client::options connection;
  redis_mode mode{};
  /// Template of the key (set, lists, streams) or channel (publish). A rule's
  /// `to.topic`, when given, takes its place.
  topic_template_ptr key;
  std::optional<std::chrono::milliseconds> ttl; // set
  std::optional<std::int64_t> maxlen;           // xadd, lpush, rpush
  std::string key_prefix;                       // state store keys
  /// The rules' `to.topic` templates for this endpoint, compiled at load.
  endpoint_usage usage;
};

/// Every key of a `type: redis` entry.
const option_table& redis_options();

/// Builds the settings from values read against redis_options(); problems
/// go through `values.fail`.
redis_settings parse_redis_settings(option_values& values,
                                    const endpoint_config& cfg);

/// Reads and parses `cfg.settings` (what the config loader does for one
/// entry). Problems are appended to `errors` as
/// `file:line:col: <key_path>.<key>: message`; the result is only meaningful
/// when none were added.
redis_settings parse_redis_settings(const endpoint_config& cfg,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors,
                                    std::vector<std::string>* warnings = nullptr);

const char* to_string(redis_mode mode);

/// The key or channel a message goes to: `target` (a rule's `to.topic`,
/// compiled at load) or, when empty, the `key` setting, rendered for `msg`
/// (core/topic_template.hpp). nullopt with `error` set when it cannot be.
std::optional<std::string> render_key(const redis_settings& s,
                                      const std::string& target,
                                      const message& msg, std::string& error);

} // namespace hubflow
