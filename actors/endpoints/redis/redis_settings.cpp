#include "endpoints/redis/redis_settings.hpp"

namespace hubflow {

namespace {

constexpr std::int64_t max_maxlen = std::int64_t{1} << 40;

// The brace forms ({topic.N} counted from 0) were Redis's own template
// syntax before the one template language; they still compile, warned.
constexpr template_dialect redis_dialect{true};

} // namespace

const option_table& redis_options() {
  static const option_table table = [] {
    option_table t;
    auto add = [&](const option_spec& spec) { t.push_back(spec); };
    option_spec s;
    s = option("host", option_type::string, "127.0.0.1", "Redis host name or address.");
    s.min_length = 1;
    add(s);
    s = option("port", option_type::integer, "6379", "Redis port.");
    s.min = 1;
    s.max = 65535;
    add(s);
    s = option("db", option_type::integer, "0", "Database number (SELECT).");
    s.min = 0;
    s.max = 1 << 20;
    add(s);
    s = option("username", option_type::string, "", "Redis 6 ACL user (AUTH username password).");
    s.min_length = 1;
    add(s);
    add(option("password", option_type::secret, "", "AUTH password: {file: PATH}, {env: NAME} (plain text is warned about)."));
    add(option("tls", option_type::boolean, "false", "Refused when true: Debian 12's hiredis has no TLS."));
    s = option("mode", option_type::choice, "publish", "How a message is written.");
    s.choices = {"set", "publish", "xadd", "lpush", "rpush"};
    add(s);
    s = option("key", option_type::topic_template, "${topic}", "Key (or channel) template; a rule's to.topic replaces it.");
    s.dialect = redis_dialect;
    add(s);
    s = option("ttl", option_type::duration, "", "Expiry of keys written in mode set.");
    s.min = 1;
    add(s);
    s = option("maxlen", option_type::integer, "", "Cap of streams and lists (xadd, lpush, rpush).");
    s.min = 1;
    s.max = max_maxlen;
    add(s);
    s = option("key_prefix", option_type::string, "", "Prefix of state store keys in Redis (none by default).");
    add(s);
    // Redis used to retry beneath the rule's own retries (up to 6 x 4
    // attempts); the rule is the one retry layer now.
    auto no_effect = [&](const char* name, option_type type) {
      s = option(name, type, "", "Deprecated, no effect: the rule's `retry` retries failed writes.");
      s.deprecated = "it has no effect; the rule's retry.max and backoff retry failed writes";
      add(s);
    };
    no_effect("retry_max", option_type::integer);
    no_effect("retry_backoff", option_type::duration);
    s = option("timeout", option_type::duration, "5s", "A command without a reply for this long drops the connection.");
    s.min = 1;
    add(s);
    s = option("connect_timeout", option_type::duration, "2s", "Connection attempt timeout.");
    s.min = 1;
    add(s);
    s = option("reconnect_backoff", option_type::duration, "100ms", "First reconnect delay; doubles per failure.");
    s.min = 1;
    add(s);
    s = option("reconnect_backoff_max", option_type::duration, "5s", "Longest reconnect delay.");
    s.min = 1;
    add(s);
    return t;
  }();
  return table;
}

redis_settings parse_redis_settings(option_values& in,
                                    const endpoint_config& cfg) {
  redis_settings s;
  auto& conn = s.connection;
  conn.host = in.text("host");
  conn.port = static_cast<std::uint16_t>(in.integer("port"));
  conn.db = static_cast<int>(in.integer("db"));
  conn.username = in.text("username");
  conn.password = in.text("password");
  if (in.has("tls") && in.boolean("tls"))
    in.fail("tls", "TLS is not available: Debian 12's hiredis 0.14 has no "
                   "hiredis_ssl; reach a TLS-only Redis through a local TLS "
                   "tunnel (e.g. stunnel on loopback)");
  s.mode = static_cast<redis_mode>(in.choice("mode"));
  s.key = in.template_at("key");
  if (in.has("ttl")) {
    if (s.mode != redis_mode::set)
      in.fail("ttl", "applies to mode 'set' only");
    s.ttl = in.duration("ttl");
  }
  if (in.has("maxlen")) {
    if (s.mode == redis_mode::set || s.mode == redis_mode::publish)
      in.fail("maxlen", "applies to modes 'xadd', 'lpush' and 'rpush' only");
    s.maxlen = in.integer("maxlen");
  }
  s.key_prefix = in.text("key_prefix");
  conn.command_timeout = in.duration("timeout");
  conn.connect_timeout = in.duration("connect_timeout");
  conn.backoff_min = in.duration("reconnect_backoff");
  conn.backoff_max = std::max(in.duration("reconnect_backoff_max"),
                              conn.backoff_min);
  if (cfg.usage.as_source)
    in.fail("", "a redis endpoint cannot be a rule source (`from`); it is a "
                "destination and a state store");
  s.usage = cfg.usage;
  return s;
}

redis_settings parse_redis_settings(const endpoint_config& cfg,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors,
                                    std::vector<std::string>* warnings) {
  std::vector<std::string> ignored;
  option_values values(redis_options(), cfg.settings,
                       {cfg.where.file, key_path, "redis endpoint", &errors,
                        warnings ? warnings : &ignored});
  if (!values.ok())
    return {};
  return parse_redis_settings(values, cfg);
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

topic_template_ptr redis_key_template(const std::string& text) {
  std::string error;
  auto t = topic_template::compile(text, error, redis_dialect);
  if (!t)
    throw config_error({}, "key", error);
  return std::make_shared<const topic_template>(std::move(*t));
}

std::optional<std::string> render_key(const redis_settings& s,
                                      const std::string& target,
                                      const message& msg, std::string& error) {
  std::string out;
  bool rendered = target.empty() && s.key
                    ? s.key->render(msg, out, error)
                    : s.usage.render(target, msg, out, error, redis_dialect);
  if (!rendered)
    return std::nullopt;
  return out;
}

} // namespace hubflow
