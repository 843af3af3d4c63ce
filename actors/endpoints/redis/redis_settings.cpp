#include "endpoints/redis/redis_settings.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

namespace hubflow {

namespace {

// -- settings -------------------------------------------------------------------

class settings_reader {
public:
  settings_reader(const endpoint_config& cfg, const std::string& key_path,
                  std::vector<std::string>& errors)
    : cfg_(cfg), key_path_(key_path), errors_(errors) {
  }

  void fail(const YAML::Node& node, const std::string& key,
            const std::string& text) {
    auto where = node && node.IsDefined() && node.Mark().line >= 0
                   ? position_of(node, cfg_.where.file)
                   : cfg_.where;
    errors_.push_back(where.file + ":" + std::to_string(where.line) + ":"
                      + std::to_string(where.column) + ": " + key_path_ + "."
                      + key + ": " + text);
  }

  YAML::Node get(const std::string& key) const {
    if (!cfg_.settings || !cfg_.settings.IsMap())
      return YAML::Node{};
    return cfg_.settings[key];
  }

  template <class T>
  std::optional<T> scalar(const std::string& key, const char* expected) {
    auto node = get(key);
    if (!node)
      return std::nullopt;
    try {
      if (!node.IsScalar())
        throw YAML::Exception(node.Mark(), "not a scalar");
      return node.as<T>();
    } catch (const YAML::Exception&) {
      fail(node, key, std::string{"expected "} + expected);
      return std::nullopt;
    }
  }

  std::optional<std::int64_t> integer(const std::string& key,
                                      std::int64_t min, std::int64_t max) {
    auto value = scalar<std::int64_t>(key, "an integer");
    if (value && (*value < min || *value > max)) {
      fail(get(key), key, "must be between " + std::to_string(min) + " and "
                            + std::to_string(max));
      return std::nullopt;
    }
    return value;
  }

  std::optional<std::chrono::milliseconds> duration(const std::string& key) {
    auto text = scalar<std::string>(key, "a duration such as 500ms or 30s");
    if (!text)
      return std::nullopt;
    auto parsed = parse_duration(*text);
    if (!parsed || parsed->count() <= 0) {
      fail(get(key), key, "'" + *text
                            + "' is not a positive duration (e.g. 500ms, 30s, "
                              "10m)");
      return std::nullopt;
    }
    return parsed;
  }

  /// `password: {file: path}` or `{env: NAME}` (a plain string works, with
  /// a warning).
  std::string secret(const std::string& key) {
    auto node = get(key);
    if (!node)
      return {};
    if (node.IsScalar()) {
      // Accepted like everywhere in hubflow's config, but secrets belong in
      // files or the environment, not in a config file people share.
      auto where = position_of(node, cfg_.where.file);
      spdlog::warn("{}:{}:{}: {}.{}: the password is written in the config "
                   "file; prefer {{file: PATH}} or {{env: NAME}}",
                   where.file, where.line, where.column, key_path_, key);
      return node.as<std::string>();
    }
    if (!node.IsMap() || node.size() != 1
        || !(node["file"] || node["env"])) {
      fail(node, key,
           "give the secret as {file: /path/to/file} or {env: VARIABLE}");
      return {};
    }
    if (auto file = node["file"]) {
      auto path = file.as<std::string>("");
      std::ifstream in{path};
      if (!in) {
        fail(file, key + ".file", "cannot read '" + path + "'");
        return {};
      }
      std::stringstream buf;
      buf << in.rdbuf();
      auto text = buf.str();
      // Files written by `echo` end with a newline that is not the secret.
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
      if (text.empty())
        fail(file, key + ".file", "'" + path + "' is empty");
      return text;
    }
    auto env = node["env"];
    auto name = env.as<std::string>("");
    const char* value = name.empty() ? nullptr : std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') {
      fail(env, key + ".env",
           "environment variable '" + name + "' is not set or empty");
      return {};
    }
    return value;
  }

private:
  const endpoint_config& cfg_;
  const std::string& key_path_;
  std::vector<std::string>& errors_;
};

std::optional<redis_mode> mode_from(const std::string& text) {
  if (text == "set")
    return redis_mode::set;
  if (text == "publish")
    return redis_mode::publish;
  if (text == "xadd")
    return redis_mode::xadd;
  if (text == "lpush")
    return redis_mode::lpush;
  if (text == "rpush")
    return redis_mode::rpush;
  return std::nullopt;
}

// -- templates --------------------------------------------------------------------

/// Calls `literal(text)` and `placeholder(name)` in order; returns an error
/// text for unbalanced braces.
template <class Literal, class Placeholder>
std::string walk_template(const std::string& tmpl, Literal literal,
                          Placeholder placeholder) {
  std::string text;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      text += '{';
      ++i;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      text += '}';
      ++i;
    } else if (c == '{') {
      auto end = tmpl.find('}', i);
      if (end == std::string::npos)
        return "unclosed '{' at offset " + std::to_string(i);
      if (!text.empty()) {
        literal(text);
        text.clear();
      }
      if (auto err = placeholder(tmpl.substr(i + 1, end - i - 1));
          !err.empty())
        return err;
      i = end;
    } else if (c == '}') {
      return "unmatched '}' at offset " + std::to_string(i)
             + " (write '}}' for a literal brace)";
    } else {
      text += c;
    }
  }
  if (!text.empty())
    literal(text);
  return {};
}

bool all_digits(const std::string& s) {
  return !s.empty()
         && std::all_of(s.begin(), s.end(),
                        [](unsigned char c) { return std::isdigit(c); });
}

std::string check_placeholder(const std::string& name) {
  if (name == "topic" || name == "origin" || name == "qos"
      || name == "timestamp")
    return {};
  if (name.rfind("topic.", 0) == 0 && all_digits(name.substr(6)))
    return {};
  if (name.rfind("property.", 0) == 0 && name.size() > 9)
    return {};
  return "unknown placeholder {" + name
         + "} (known: {topic}, {topic.N}, {property.NAME}, {origin}, {qos}, "
           "{timestamp})";
}

std::string topic_level(const std::string& topic, size_t index, bool& found) {
  size_t start = 0;
  for (size_t level = 0;; ++level) {
    auto end = topic.find('/', start);
    if (level == index) {
      found = true;
      return topic.substr(start, end == std::string::npos ? std::string::npos
                                                           : end - start);
    }
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  found = false;
  return {};
}

// -- Lua scripts ------------------------------------------------------------------
// Values live in a hash {data, version} (Dapr's Redis layout); the version is
// the etag. Each script checks everything before writing anything, so a
// refused bulk save leaves every key as it was.

constexpr const char* save_script = R"lua(
local n = #KEYS
for i = 1, n do
  local b = (i - 1) * 4
  local etag, mode = ARGV[b + 1], ARGV[b + 2]
  local cur = redis.call('HGET', KEYS[i], 'version')
  if mode ~= 'last' then
    if etag ~= '' then
      if cur ~= etag then return {'mismatch', i} end
    elseif mode == 'first' and cur then
      return {'exists', i}
    end
  end
end
for i = 1, n do
  local b = (i - 1) * 4
  redis.call('HSET', KEYS[i], 'data', ARGV[b + 3])
  redis.call('HINCRBY', KEYS[i], 'version', 1)
  local ttl = tonumber(ARGV[b + 4])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[i], ttl)
  else
    redis.call('PERSIST', KEYS[i])
  end
end
return {'ok'}
)lua";

constexpr const char* get_script = R"lua(
local r = {}
for i = 1, #KEYS do
  r[i] = redis.call('HMGET', KEYS[i], 'data', 'version')
end
return r
)lua";

constexpr const char* delete_script = R"lua(
local cur = redis.call('HGET', KEYS[1], 'version')
if ARGV[2] ~= 'last' and ARGV[1] ~= '' and cur ~= ARGV[1] then
  return {'mismatch', 1}
end
redis.call('DEL', KEYS[1])
return {'ok'}
)lua";

// A capped list: push and trim in one atomic step.
constexpr const char* capped_push_script = R"lua(
redis.call(ARGV[1], KEYS[1], ARGV[2])
local n = tonumber(ARGV[3])
if ARGV[1] == 'LPUSH' then
  redis.call('LTRIM', KEYS[1], 0, n - 1)
else
  redis.call('LTRIM', KEYS[1], -n, -1)
end
return 1
)lua";

const char* mode_arg(state_concurrency c) {
  switch (c) {
    case state_concurrency::first_write:
      return "first";
    case state_concurrency::last_write:
      return "last";
    default:
      return "check";
  }
}

caf::error check_item(const state_item& item) {
  if (item.key.empty())
    return make_state_error(state_errc::bad_request, "a state key is empty");
  if (!item.etag.empty() && (!all_digits(item.etag) || item.etag.size() > 18))
    return make_state_error(state_errc::etag_invalid,
                            "invalid etag '" + item.etag + "' for key '"
                              + item.key
                              + "': etags are the decimal versions this "
                                "store returned");
  return caf::none;
}

std::string script_status(const redis_reply& reply, std::int64_t& index) {
  index = 0;
  if (reply.type != redis_reply::kind::array || reply.elements.empty())
    return {};
  if (reply.elements.size() > 1)
    index = reply.elements[1].integer;
  return reply.elements[0].str;
}

} // namespace

redis_settings parse_redis_settings(const endpoint_config& cfg,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors) {
  redis_settings s;
  settings_reader r{cfg, key_path, errors};
  auto& conn = s.connection;
  if (auto host = r.scalar<std::string>("host", "a host name or address")) {
    if (host->empty())
      r.fail(r.get("host"), "host", "must not be empty");
    conn.host = *host;
  }
  if (auto port = r.integer("port", 1, 65535))
    conn.port = static_cast<std::uint16_t>(*port);
  if (auto db = r.integer("db", 0, 1 << 20))
    conn.db = static_cast<int>(*db);
  if (auto user = r.scalar<std::string>("username", "a string"))
    conn.username = *user;
  conn.password = r.secret("password");
  if (auto tls = r.get("tls")) {
    bool wanted = !tls.IsScalar() || tls.as<std::string>("") != "false";
    if (wanted)
      r.fail(tls, "tls",
             "TLS is not available: Debian 12's hiredis 0.14 has no "
             "hiredis_ssl; reach a TLS-only Redis through a local TLS tunnel "
             "(e.g. stunnel on loopback)");
  }
  if (auto mode = r.scalar<std::string>("mode", "a string")) {
    if (auto parsed = mode_from(*mode))
      s.mode = *parsed;
    else
      r.fail(r.get("mode"), "mode",
             "unknown mode '" + *mode
               + "' (known: set, publish, xadd, lpush, rpush)");
  }
  if (auto key = r.scalar<std::string>("key", "a key template")) {
    if (auto err = check_key_template(*key); !err.empty())
      r.fail(r.get("key"), "key", err);
    else if (key->empty())
      r.fail(r.get("key"), "key", "must not be empty");
    s.key = *key;
  }
  if (auto ttl = r.duration("ttl")) {
    if (s.mode != redis_mode::set)
      r.fail(r.get("ttl"), "ttl", "applies to mode 'set' only");
    s.ttl = ttl;
  }
  if (auto maxlen = r.integer("maxlen", 1, std::int64_t{1} << 40)) {
    if (s.mode == redis_mode::set || s.mode == redis_mode::publish)
      r.fail(r.get("maxlen"), "maxlen",
             "applies to modes 'xadd', 'lpush' and 'rpush' only");
    s.maxlen = maxlen;
  }
  if (auto retries = r.integer("retry_max", 0, 1000))
    s.retry_max = static_cast<int>(*retries);
  if (auto d = r.duration("retry_backoff"))
    s.retry_backoff = *d;
  if (auto d = r.duration("timeout"))
    conn.command_timeout = *d;
  if (auto d = r.duration("connect_timeout"))
    conn.connect_timeout = *d;
  if (auto d = r.duration("reconnect_backoff"))
    conn.backoff_min = *d;
  if (auto d = r.duration("reconnect_backoff_max"))
    conn.backoff_max = *d;
  if (conn.backoff_max < conn.backoff_min)
    conn.backoff_max = conn.backoff_min;
  if (auto prefix = r.scalar<std::string>("key_prefix", "a string"))
    s.key_prefix = *prefix;
  return s;
}

const char* to_string(redis_mode mode) {
  switch (mode) {
    case redis_mode::set:
      return "set";
    case redis_mode::publish:
      return "publish";
    case redis_mode::xadd:
      return "xadd";
    case redis_mode::lpush:
      return "lpush";
    default:
      return "rpush";
  }
}

std::string check_key_template(const std::string& tmpl) {
  return walk_template(
    tmpl, [](const std::string&) {}, check_placeholder);
}

std::optional<std::string> render_key_template(const std::string& tmpl,
                                               const message& msg,
                                               std::string& error) {
  std::string out;
  auto err = walk_template(
    tmpl, [&](const std::string& text) { out += text; },
    [&](const std::string& name) -> std::string {
      if (auto bad = check_placeholder(name); !bad.empty())
        return bad;
      if (name == "topic") {
        out += msg.topic;
      } else if (name == "origin") {
        out += msg.origin;
      } else if (name == "qos") {
        out += std::to_string(msg.qos);
      } else if (name == "timestamp") {
        out += std::to_string(msg.received_ms());
      } else if (name.rfind("topic.", 0) == 0) {
        bool found = false;
        out += topic_level(msg.topic, std::stoul(name.substr(6)), found);
        if (!found)
          return "topic '" + msg.topic + "' has no level " + name.substr(6);
      } else {
        auto prop = name.substr(9);
        for (auto& [k, v] : msg.properties.user_properties)
          if (k == prop) {
            out += v;
            return {};
          }
        return "message on '" + msg.topic + "' has no user property '" + prop
               + "'";
      }
      return {};
    });
  if (!err.empty()) {
    error = "key template '" + tmpl + "': " + err;
    return std::nullopt;
  }
  if (out.empty()) {
    error = "key template '" + tmpl + "' rendered an empty key";
    return std::nullopt;
  }
  return out;
}

std::vector<std::string> make_write_command(const redis_settings& s,
                                            const std::string& name,
                                            const message& msg) {
  const auto& body = msg.body.str();
  switch (s.mode) {
    case redis_mode::set: {
      std::vector<std::string> cmd{"SET", name, body};
      if (s.ttl) {
        cmd.emplace_back("PX");
        cmd.push_back(std::to_string(s.ttl->count()));
      }
      return cmd;
    }
    case redis_mode::publish:
      return {"PUBLISH", name, body};
    case redis_mode::xadd: {
      std::vector<std::string> cmd{"XADD", name};
      if (s.maxlen) {
        cmd.emplace_back("MAXLEN");
        cmd.emplace_back("=");
        cmd.push_back(std::to_string(*s.maxlen));
      }
      cmd.emplace_back("*");
      auto field = [&](std::string k, std::string v) {
        cmd.push_back(std::move(k));
        cmd.push_back(std::move(v));
      };
      field("topic", msg.topic);
      field("payload", body);
      field("qos", std::to_string(msg.qos));
      field("timestamp", std::to_string(msg.received_ms()));
      if (!msg.properties.content_type.empty())
        field("content_type", msg.properties.content_type);
      for (auto& [k, v] : msg.properties.user_properties)
        field("property." + k, v);
      return cmd;
    }
    default: {
      const char* push = s.mode == redis_mode::lpush ? "LPUSH" : "RPUSH";
      if (!s.maxlen)
        return {push, name, body};
      return {"EVAL", capped_push_script, "1", name, push, body,
              std::to_string(*s.maxlen)};
    }
  }
}

std::vector<std::string> make_save_command(const std::vector<state_item>& items,
                                           const std::string& key_prefix,
                                           caf::error& error) {
  std::vector<std::string> cmd{"EVAL", save_script,
                               std::to_string(items.size())};
  for (auto& item : items) {
    if (auto err = check_item(item)) {
      error = std::move(err);
      return {};
    }
    cmd.push_back(key_prefix + item.key);
  }
  for (auto& item : items) {
    cmd.push_back(item.concurrency == state_concurrency::last_write
                    ? std::string{}
                    : item.etag);
    cmd.emplace_back(mode_arg(item.concurrency));
    cmd.push_back(item.value);
    cmd.push_back(std::to_string(item.ttl_seconds > 0 ? item.ttl_seconds : 0));
  }
  return cmd;
}

std::vector<std::string> make_get_command(const std::vector<std::string>& keys,
                                          const std::string& key_prefix) {
  std::vector<std::string> cmd{"EVAL", get_script,
                               std::to_string(keys.size())};
  for (auto& key : keys)
    cmd.push_back(key_prefix + key);
  return cmd;
}

std::vector<std::string> make_delete_command(const state_item& item,
                                             const std::string& key_prefix,
                                             caf::error& error) {
  if (auto err = check_item(item)) {
    error = std::move(err);
    return {};
  }
  return {"EVAL",
          delete_script,
          "1",
          key_prefix + item.key,
          item.etag,
          mode_arg(item.concurrency)};
}

caf::error state_error_from(const redis_reply& reply) {
  if (reply.transient())
    return make_state_error(state_errc::unavailable, reply.str);
  return make_state_error(state_errc::failed, "redis: " + reply.str);
}

caf::error decode_save_reply(const redis_reply& reply,
                             const std::vector<state_item>& items) {
  if (reply.failed())
    return state_error_from(reply);
  std::int64_t index = 0;
  auto status = script_status(reply, index);
  auto key = index >= 1 && index <= static_cast<std::int64_t>(items.size())
               ? items[index - 1].key
               : std::string{"?"};
  if (status == "ok")
    return caf::none;
  if (status == "mismatch")
    return make_state_error(state_errc::etag_mismatch,
                            "possible etag mismatch: the etag for key '" + key
                              + "' does not match its current version; "
                                "nothing was saved");
  if (status == "exists")
    return make_state_error(state_errc::etag_mismatch,
                            "first-write: key '" + key
                              + "' already exists and no etag was given; "
                                "nothing was saved");
  return make_state_error(state_errc::failed,
                          "redis: unexpected reply to the save script");
}

caf::error decode_delete_reply(const redis_reply& reply,
                               const std::string& key) {
  if (reply.failed())
    return state_error_from(reply);
  std::int64_t index = 0;
  auto status = script_status(reply, index);
  if (status == "ok")
    return caf::none;
  if (status == "mismatch")
    return make_state_error(state_errc::etag_mismatch,
                            "possible etag mismatch: the etag for key '" + key
                              + "' does not match its current version; "
                                "nothing was deleted");
  return make_state_error(state_errc::failed,
                          "redis: unexpected reply to the delete script");
}

std::vector<state_entry> decode_get_reply(const std::vector<std::string>& keys,
                                          const redis_reply& reply,
                                          caf::error& error) {
  if (reply.failed()) {
    error = state_error_from(reply);
    return {};
  }
  if (reply.type != redis_reply::kind::array
      || reply.elements.size() != keys.size()) {
    error = make_state_error(state_errc::failed,
                             "redis: unexpected reply to the get script");
    return {};
  }
  std::vector<state_entry> out;
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    state_entry entry;
    entry.key = keys[i];
    auto& pair = reply.elements[i];
    if (pair.elements.size() == 2
        && pair.elements[0].type == redis_reply::kind::string) {
      entry.found = true;
      entry.value = pair.elements[0].str;
      entry.etag = pair.elements[1].str;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

} // namespace hubflow
