// The settings of a `type: redis` endpoint, parsed once from its YAML node
// (validation and spawning share this parser), and the pure functions that
// turn messages and state requests into Redis commands. No I/O here, so all
// of it is unit-testable without a server.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/message.hpp"
#include "endpoints/redis/redis_client.hpp"
#include "endpoints/redis/state_store.hpp"

namespace hubflow {

/// How messages sent to the endpoint by a rule are written.
enum class redis_mode : std::uint8_t { set, publish, xadd, lpush, rpush };

struct redis_settings {
  redis_client::options connection;
  redis_mode mode = redis_mode::publish;
  /// Template of the key (set, lists, streams) or channel (publish). A rule's
  /// `to.topic`, when given, takes its place.
  std::string key = "{topic}";
  std::optional<std::chrono::milliseconds> ttl; // set
  std::optional<std::int64_t> maxlen;           // xadd, lpush, rpush
  int retry_max = 5;
  std::chrono::milliseconds retry_backoff{200}; // doubles per attempt
  std::string key_prefix;                       // state store keys
  std::chrono::milliseconds stats_interval{500};
};

/// Parses `cfg.settings`. Problems are appended to `errors` as
/// `file:line:col: <key_path>.<key>: message`; the result is only meaningful
/// when none were added.
redis_settings parse_redis_settings(const endpoint_config& cfg,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors);

const char* to_string(redis_mode mode);

// -- key templates ------------------------------------------------------------
//
// `{topic}` the message topic, `{topic.N}` its N-th level (0-based),
// `{property.NAME}` an MQTT 5 user property, `{origin}`, `{qos}`,
// `{timestamp}` (receive time, ms since the epoch). `{{` and `}}` are literal
// braces.

/// Empty when `tmpl` is well formed, else what is wrong with it.
std::string check_key_template(const std::string& tmpl);

/// Renders `tmpl` for `msg`; on failure returns nullopt and sets `error`.
std::optional<std::string> render_key_template(const std::string& tmpl,
                                               const message& msg,
                                               std::string& error);

// -- commands -------------------------------------------------------------------

/// The one command that writes `msg` (mode of `s`) to `name`.
std::vector<std::string> make_write_command(const redis_settings& s,
                                            const std::string& name,
                                            const message& msg);

/// EVAL of the atomic bulk save; `error` set (and empty result) when an item
/// is unusable (empty key, etag that is not a version).
std::vector<std::string> make_save_command(const std::vector<state_item>& items,
                                           const std::string& key_prefix,
                                           caf::error& error);

/// EVAL reading every key's data and version in one step.
std::vector<std::string> make_get_command(const std::vector<std::string>& keys,
                                          const std::string& key_prefix);

std::vector<std::string> make_delete_command(const state_item& item,
                                             const std::string& key_prefix,
                                             caf::error& error);

/// Turns the replies of the scripts above into the protocol's results.
caf::error decode_save_reply(const redis_reply& reply,
                             const std::vector<state_item>& items);
caf::error decode_delete_reply(const redis_reply& reply,
                               const std::string& key);
std::vector<state_entry> decode_get_reply(const std::vector<std::string>& keys,
                                          const redis_reply& reply,
                                          caf::error& error);

/// A caf::error (category "state") for a failed reply.
caf::error state_error_from(const redis_reply& reply);

} // namespace hubflow
