// Loading the YAML config: parse, convert to JSON with positions, validate
// against the compiled-in JSON Schema, check references, build the structs.
#include "core/config.hpp"

#include "core/json_text.hpp"
#include "core/tls_context.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validation_results.hpp>
#include <valijson/validator.hpp>

#include "embedded.hpp"

namespace hubflow {

using json = nlohmann::json;

// -- errors -------------------------------------------------------------------

std::string format_config_error(const source_position& where,
                                const std::string& key_path,
                                const std::string& message) {
  std::ostringstream out;
  out << where.file;
  if (where.line > 0)
    out << ':' << where.line;
  if (where.line > 0 && where.column > 0) // files without columns: file:line
    out << ':' << where.column;
  out << ": ";
  if (!key_path.empty())
    out << key_path << ": ";
  out << message;
  return out.str();
}

static std::string join_lines(const std::vector<std::string>& lines) {
  std::string result;
  for (auto& line : lines) {
    if (!result.empty())
      result += '\n';
    result += line;
  }
  return result;
}

config_error::config_error(const source_position& where,
                           const std::string& key_path,
                           const std::string& message)
  : std::runtime_error(format_config_error(where, key_path, message)) {
  messages_.push_back(what());
}

config_error::config_error(const std::vector<std::string>& messages)
  : std::runtime_error(join_lines(messages)), messages_(messages) {
}

source_position position_of(const YAML::Node& node, const std::string& file) {
  auto mark = node.Mark();
  if (mark.is_null())
    return {file, 0, 0};
  return {file, mark.line + 1, mark.column + 1};
}

// -- YAML to JSON with positions -----------------------------------------------

namespace {

/// A YAML document as JSON (for schema validation) plus where each value
/// sits, keyed by its key path (`rules[1].function`).
struct positioned_document {
  json root;
  std::map<std::string, YAML::Node> nodes;
  std::string file;

  source_position where(const std::string& path) const {
    // Fall back to the closest enclosing value that has a position.
    std::string p = path;
    for (;;) {
      auto i = nodes.find(p);
      if (i != nodes.end())
        return position_of(i->second, file);
      auto cut = p.find_last_of(".[");
      if (cut == std::string::npos)
        return {file, 0, 0};
      p = p.substr(0, cut);
    }
  }
};

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

/// Plain YAML scalars get JSON types (int, float, bool, null); quoted ones
/// stay strings, so `'5'` is a string and `5` a number, as a reader expects.
json scalar_to_json(const YAML::Node& node) {
  const auto& text = node.Scalar();
  if (node.Tag() != "?")
    return text;
  if (text == "true" || text == "True" || text == "TRUE")
    return true;
  if (text == "false" || text == "False" || text == "FALSE")
    return false;
  if (text.empty() || text == "~" || text == "null" || text == "Null")
    return nullptr;
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(text.c_str(), &end, 10);
  if (errno == 0 && end && *end == '\0')
    return i;
  double d = std::strtod(text.c_str(), &end);
  if (end && *end == '\0' && text.find_first_of("0123456789") == 0)
    return d;
  return text;
}

json to_json(const YAML::Node& node, const std::string& path,
             positioned_document& doc) {
  doc.nodes[path] = node;
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      json obj = json::object();
      for (auto kv : node) {
        if (!kv.first.IsScalar()) {
          auto mark = kv.first.Mark();
          throw config_error({doc.file, mark.line + 1, mark.column + 1}, path,
                             "a key must be plain text, not a list or map");
        }
        auto key = kv.first.as<std::string>();
        auto p = child_path(path, key);
        obj[key] = to_json(kv.second, p, doc);
        // Errors about a key point at the key itself.
        doc.nodes[p + "#key"] = kv.first;
      }
      return obj;
    }
    case YAML::NodeType::Sequence: {
      json arr = json::array();
      for (std::size_t i = 0; i < node.size(); ++i)
        arr.push_back(to_json(node[i], index_path(path, i), doc));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return scalar_to_json(node);
    default:
      return nullptr;
  }
}

// -- schema validation ---------------------------------------------------------

const valijson::Schema& config_schema() {
  static const auto schema = [] {
    auto result = std::make_unique<valijson::Schema>();
    auto doc = json::parse(embedded::config_schema);
    valijson::SchemaParser parser;
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    parser.populateSchema(adapter, *result);
    return result;
  }();
  return *schema;
}

/// valijson's context `["<root>", "[rules]", "[1]", "[function]"]` as the key
/// path `rules[1].function`.
std::string context_to_path(const std::vector<std::string>& context) {
  std::string path;
  for (std::size_t i = 1; i < context.size(); ++i) {
    auto part = context[i];
    if (part.size() >= 2 && part.front() == '[' && part.back() == ']')
      part = part.substr(1, part.size() - 2);
    bool is_index = !part.empty()
                    && std::all_of(part.begin(), part.end(), ::isdigit);
    if (is_index)
      path += "[" + part + "]";
    else
      path = child_path(path, part);
  }
  return path;
}

/// valijson's messages where a reader cannot tell what to change, said in
/// the config's own terms; other messages pass unchanged.
std::string readable(const std::string& path, const std::string& description) {
  auto cut = path.find_last_of(".]");
  auto key = cut == std::string::npos ? path : path.substr(cut + 1);
  bool is_rule = path.rfind("rules[", 0) == 0 && key.empty(); // rules[N]
  if (path == "hub" && description.find("'not' constraint") != std::string::npos)
    return "`listen` (the embedded hub) and `address` (an external hub) "
           "exclude each other";
  if (is_rule && description.find("exactly one child schema") != std::string::npos)
    return "a rule has one source and one destination: `from` or Baetyl's "
           "`subscribe`, and `to` or Baetyl's `publish`, not both";
  if (is_rule && description == "Missing required property 'from'.")
    return "a rule needs `from` (or Baetyl's `subscribe`)";
  if (is_rule && description == "Missing required property 'to'.")
    return "a rule needs `to` (or Baetyl's `publish`)";
  if (description.find("'pattern' constraint") != std::string::npos) {
    if (key == "idletime" || key == "timeout" || key == "interval"
        || key == "ttl")
      return "not a duration (examples: 500ms, 30s, 10m, 1h)";
    if (key == "max" || key == "maxBody")
      return "not a size (examples: 512, 64k, 4m)";
  }
  return description;
}

/// valijson reports every failing subschema; keep the most specific message
/// per location and drop locations that merely contain a failing child.
std::vector<std::string> schema_errors(const positioned_document& doc) {
  valijson::Validator validator(valijson::Validator::kStrongTypes);
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc.root);
  if (validator.validate(config_schema(), target, &results))
    return {};
  // Each error as (key path, message, point at the key rather than value).
  struct problem {
    std::string path;
    std::string description;
    bool at_key;
  };
  std::vector<problem> found;
  valijson::ValidationResults::Error error;
  static const std::regex unknown_key{R"(additionalProperties' constraints: '([^']*)')"};
  static const std::regex float_zeros{R"((\d)\.0+\b)"};
  while (results.popError(error)) {
    auto path = context_to_path(error.context);
    std::smatch m;
    if (std::regex_search(error.description, m, unknown_key))
      found.push_back({child_path(path, m[1]), "unknown key '" + m[1].str() + "'",
                       true});
    else
      found.push_back({path,
                       readable(path, std::regex_replace(error.description,
                                                         float_zeros, "$1")),
                       false});
  }
  // valijson reports every failing subschema up the tree; the most specific
  // location says what is wrong, its ancestors only that a child failed.
  std::vector<std::string> messages;
  std::set<std::string> seen;
  for (auto& p : found) {
    bool has_deeper = std::any_of(found.begin(), found.end(), [&](auto& other) {
      return other.path.size() > p.path.size()
             && other.path.compare(0, p.path.size(), p.path) == 0
             && (p.path.empty() || other.path[p.path.size()] == '.'
                 || other.path[p.path.size()] == '[');
    });
    if (has_deeper || !seen.insert(p.path).second)
      continue;
    messages.push_back(format_config_error(
      doc.where(p.at_key ? p.path + "#key" : p.path), p.path, p.description));
  }
  return messages;
}

// -- building the structs ------------------------------------------------------

struct builder {
  const positioned_document& doc;
  const endpoint_types& types;
  std::vector<std::string> errors;

  void fail(const std::string& path, const std::string& message) {
    errors.push_back(format_config_error(doc.where(path), path, message));
  }

  std::size_t size_at(const json& v, const std::string& path,
                      std::size_t fallback) {
    if (v.is_null())
      return fallback;
    auto parsed = parse_size(v.is_string() ? v.get<std::string>()
                                           : std::to_string(v.get<long long>()));
    if (!parsed) {
      fail(path, "not a size (examples: 512, 64k, 4m)");
      return fallback;
    }
    return *parsed;
  }

  milliseconds duration_at(const json& v, const std::string& path,
                           milliseconds fallback) {
    if (v.is_null())
      return fallback;
    auto parsed = parse_duration(v.is_string()
                                   ? v.get<std::string>()
                                   : std::to_string(v.get<long long>()));
    if (!parsed) {
      fail(path, "not a duration (examples: 500ms, 30s, 10m, 1h, 2d)");
      return fallback;
    }
    return *parsed;
  }

  static const json& at(const json& obj, const char* key) {
    static const json null_value;
    if (!obj.is_object())
      return null_value;
    auto i = obj.find(key);
    return i == obj.end() ? null_value : *i;
  }

  static std::string str(const json& obj, const char* key,
                         std::string fallback = {}) {
    auto& v = at(obj, key);
    return v.is_string() ? v.get<std::string>() : fallback;
  }

  std::vector<std::string> warnings;

  /// A `permissions` list (`{action: pub|sub, permit: [...]}` entries)
  /// appended to `pub` and `sub`.
  static void add_permits(const json& permissions, std::vector<std::string>& pub,
                          std::vector<std::string>& sub) {
    for (auto& perm : permissions) {
      auto permits = at(perm, "permit").get<std::vector<std::string>>();
      auto& target = str(perm, "action") == "pub" ? pub : sub;
      target.insert(target.end(), permits.begin(), permits.end());
    }
  }

  /// Mosquitto's password_file and acl_file (read later, by
  /// read_mosquitto_files) and the anonymous clients' own permissions.
  void build_mosquitto_files(const json& j, hub_config& hub) {
    auto file_at = [&](const char* key, named_file& target) {
      if (!at(j, key).is_string())
        return;
      target.path = config_relative(str(j, key), doc.file);
      target.where = doc.where(std::string{"hub."} + key);
    };
    file_at("password_file", hub.password_file);
    file_at("acl_file", hub.acl_file);
    if (j.contains("anonymous_permissions")) {
      permit_lists lists;
      add_permits(at(j, "anonymous_permissions"), lists.pub, lists.sub);
      hub.anonymous_permissions = std::move(lists);
    }
  }

  hub_config build_hub(const json& j) {
    hub_config hub;
    hub.where = doc.where("hub");
    if (j.contains("address")) {
      hub.embedded = false;
      hub.listen.clear();
      hub.address = str(j, "address");
      std::string bad;
      if (auto a = parse_host_port(hub.address, hub_address_rules, bad))
        hub.address_parsed = *a;
      else
        fail("hub.address", bad);
      build_address_tls(j, hub);
      hub.username = str(j, "username");
      hub.protocol = str(j, "protocol", "mqttv311") == "mqttv5" ? 5 : 4;
      if (j.contains("password")) {
        std::string error;
        secret_source source{};
        if (!read_secret(doc.nodes.at("hub.password"), hub.password, error,
                         &source, doc.file))
          fail("hub.password", error);
        else if (source == secret_source::plain)
          warnings.push_back(format_config_error(
            doc.where("hub.password"), "hub.password", plain_secret_warning));
      }
    } else if (j.contains("listen")) {
      build_listeners(j, hub);
    }
    for (std::size_t i = 0; i < at(j, "principals").size(); ++i) {
      auto& p = at(j, "principals")[i];
      principal_config principal;
      principal.username = str(p, "username");
      principal.password = str(p, "password");
      add_permits(at(p, "permissions"), principal.pub, principal.sub);
      if (principal.password.rfind("$", 0) != 0)
        warnings.push_back(format_config_error(
          doc.where(index_path("hub.principals", i) + ".password"),
          index_path("hub.principals", i) + ".password",
          "plain-text password for '" + principal.username
            + "'; `hubflowctl passwd` makes a hash"));
      hub.principals.push_back(std::move(principal));
    }
    for (auto& s : at(j, "subscriptions")) {
      remap_config remap;
      remap.source_topic = str(at(s, "source"), "topic");
      remap.source_qos = at(at(s, "source"), "qos").is_number()
                           ? at(at(s, "source"), "qos").get<int>()
                           : 0;
      remap.target_topic = str(at(s, "target"), "topic");
      remap.target_qos = at(at(s, "target"), "qos").is_number()
                           ? at(at(s, "target"), "qos").get<int>()
                           : 0;
      hub.subscriptions.push_back(std::move(remap));
    }
    build_mosquitto_files(j, hub);
    bool has_users = !hub.principals.empty() || !hub.password_file.path.empty();
    auto anonymous = str(j, "anonymous", has_users ? "none" : "loopback");
    hub.allow_anonymous = anonymous != "none";
    hub.anonymous_loopback_only = anonymous == "loopback";
    auto& msg = at(j, "message");
    hub.max_message_size = size_at(at(at(msg, "length"), "max"),
                                   "hub.message.length.max",
                                   hub.max_message_size);
    if (at(msg, "inflight").is_number())
      hub.max_inflight = at(msg, "inflight").get<std::size_t>();
    if (at(msg, "queued").is_number())
      hub.max_queued_messages = at(msg, "queued").get<std::size_t>();
    // The schema allows only these three names.
    auto full = str(msg, "queue_full", "backpressure");
    hub.queue_full = full == "drop_new"      ? queue_full_policy::drop_new
                     : full == "drop_oldest" ? queue_full_policy::drop_oldest
                                             : queue_full_policy::backpressure;
    build_limits(j, hub.limits);
    return hub;
  }

  /// An ssl:// or mqtts:// `hub.address`: the inline `ca`, `cert`, `key`
  /// and `insecureSkipVerify` of Baetyl's function manager, checked now so
  /// --check reports what the link would hit when it connects.
  void build_address_tls(const json& j, hub_config& hub) {
    if (!is_tls_address(hub.address)) {
      for (auto key : tls_address_keys)
        if (j.contains(key))
          fail(std::string{"hub."} + key,
               "'" + hub.address + "' is not a TLS address: write ssl://");
      return;
    }
    tls_client_settings tls;
    tls.ca = config_file(j, "ca");
    tls.cert = config_file(j, "cert");
    tls.key = config_file(j, "key");
    tls.insecure_skip_verify = at(j, "insecureSkipVerify").is_boolean()
                               && at(j, "insecureSkipVerify").get<bool>();
    tls_problem problem;
    if (!check_client_tls(tls, problem))
      fail(key_path_of(tls.key_path, problem), problem.message);
    hub.address_tls = std::move(tls);
  }

  /// The file named by `j[key]`, resolved against the config file; empty
  /// when not given.
  std::string config_file(const json& j, const char* key) {
    auto value = str(j, key);
    return value.empty() ? value : config_relative(value, doc.file);
  }

  /// `hub.listen` (URLs, or {url, certificate} for a listener with its
  /// own certificate) and `hub.certificate`; every TLS listener's files
  /// are checked by building its context, each certificate block once.
  void build_listeners(const json& j, hub_config& hub) {
    if (j.contains("certificate"))
      hub.certificate = build_tls(at(j, "certificate"), "hub.certificate");
    auto& list = at(j, "listen");
    hub.listen.clear();
    bool hub_certificate_used = false;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto path = index_path("hub.listen", i);
      auto& entry = list[i];
      auto url = entry.is_string() ? entry.get<std::string>()
                                   : str(entry, "url");
      hub.listen.push_back(url);
      std::string bad;
      auto address = parse_listener(url, bad);
      if (!address) {
        fail(entry.is_string() ? path : path + ".url", bad);
        continue;
      }
      bool own = entry.is_object() && entry.contains("certificate");
      if (own && !address->secure()) {
        fail(path + ".certificate",
             "'" + url + "' is not a TLS listener (ssl://, mqtts://, wss://)");
        continue;
      }
      if (own) {
        hub.listen_certificates.emplace_back(
          url, build_tls(at(entry, "certificate"), path + ".certificate"));
        check_tls(hub.listen_certificates.back().second);
      } else if (address->secure() && !hub.certificate) {
        fail(path, "'" + url + "' is a TLS listener: give hub.certificate "
                   "(or the listener's own certificate)");
      } else if (address->secure()) {
        hub_certificate_used = true;
      }
    }
    if (hub_certificate_used)
      check_tls(*hub.certificate);
  }

  tls_settings build_tls(const json& j, const std::string& key_path) {
    tls_settings tls;
    tls.key_path = key_path;
    tls.ca = config_file(j, "ca");
    tls.cert = config_file(j, "cert");
    tls.key = config_file(j, "key");
    tls.require_certificate = at(j, "require_certificate").is_boolean()
                              && at(j, "require_certificate").get<bool>();
    tls.use_identity_as_username =
      at(j, "use_identity_as_username").is_boolean()
      && at(j, "use_identity_as_username").get<bool>();
    tls.tls_version = str(j, "tls_version", tls.tls_version);
    tls.ciphers = str(j, "ciphers");
    tls.ciphersuites = str(j, "ciphers_tls1.3");
    return tls;
  }

  /// Readable, PEM, key matching the certificate, within its validity:
  /// what the hub checks when it starts, so --check says it first.
  void check_tls(const tls_settings& tls) {
    tls_problem problem;
    if (!make_server_tls_context(tls, problem))
      fail(key_path_of(tls.key_path, problem), problem.message);
  }

  /// The bounds of what one client may make the hub hold (Mosquitto's key
  /// names where Mosquitto has one).
  void build_limits(const json& j, hub_limits& limits) {
    auto count = [&](const char* key, std::size_t& target) {
      if (at(j, key).is_number())
        target = at(j, key).get<std::size_t>();
    };
    count("max_connections", limits.max_connections);
    count("max_topic_levels", limits.max_topic_levels);
    count("max_topic_length", limits.max_topic_length);
    count("max_subscriptions", limits.max_subscriptions);
    count("max_user_properties", limits.max_user_properties);
    count("max_keepalive", limits.max_keepalive);
    limits.max_queued_bytes = size_at(at(j, "max_queued_bytes"),
                                      "hub.max_queued_bytes",
                                      limits.max_queued_bytes);
    limits.max_queued_bytes_total = size_at(at(j, "max_queued_bytes_total"),
                                            "hub.max_queued_bytes_total",
                                            limits.max_queued_bytes_total);
    limits.persistent_client_expiration =
      duration_at(at(j, "persistent_client_expiration"),
                  "hub.persistent_client_expiration",
                  limits.persistent_client_expiration);
  }

  rule_end build_end(const json& j) {
    rule_end end;
    end.endpoint = str(j, "endpoint");
    end.topic = str(j, "topic");
    if (at(j, "qos").is_number())
      end.qos = static_cast<std::uint8_t>(at(j, "qos").get<int>());
    if (at(j, "retain").is_boolean())
      end.retain = at(j, "retain").get<bool>();
    return end;
  }

  rule_config build_rule(const json& j, std::size_t index) {
    rule_config rule;
    auto path = index_path("rules", index);
    rule.where = doc.where(path);
    rule.clientid = str(j, "clientid");
    rule.name = str(j, "name", rule.clientid.empty()
                                 ? "rule-" + std::to_string(index + 1)
                                 : rule.clientid);
    rule.from = build_end(j.contains("from") ? at(j, "from")
                                             : at(j, "subscribe"));
    rule.to = build_end(j.contains("to") ? at(j, "to") : at(j, "publish"));
    rule.function = str(at(j, "function"), "name");
    rule.error_topic = str(j, "error_topic");
    if (at(at(j, "retry"), "max").is_number())
      rule.retry_max = at(at(j, "retry"), "max").get<int>();
    return rule;
  }

  function_config build_function(const json& j, std::size_t index) {
    function_config fn;
    auto path = index_path("functions", index);
    fn.where = doc.where(path);
    fn.name = str(j, "name");
    // Baetyl's function manager names the service that runs the function;
    // what the service is lives in application.yml, which only --baetyl
    // reads.
    if (j.contains("service"))
      fail(path + ".service",
           "'" + str(j, "service") + "' names a Baetyl service: run the "
           "whole deployment with `hubflow --baetyl DIR` (or give this "
           "function its runtime, handler and codedir)");
    fn.runtime = str(j, "runtime", "native");
    fn.plugin = str(j, "plugin");
    fn.handler = str(j, "handler");
    fn.codedir = str(j, "codedir");
    fn.interpreter = str(j, "interpreter");
    if (at(j, "env").is_object())
      for (auto& [k, v] : at(j, "env").items())
        fn.env.emplace_back(k, v.get<std::string>());
    fn.module = str(j, "module");
    if (at(j, "args").is_array())
      for (auto& arg : at(j, "args"))
        fn.args.push_back(arg.get<std::string>());
    if (at(j, "preopens").is_object())
      for (auto& [guest, host] : at(j, "preopens").items())
        fn.preopens.emplace_back(guest, host.get<std::string>());
    auto& inst = at(j, "instance");
    auto ipath = path + ".instance";
    if (at(inst, "min").is_number())
      fn.instance.min = at(inst, "min").get<std::size_t>();
    if (at(inst, "max").is_number())
      fn.instance.max = at(inst, "max").get<std::size_t>();
    if (at(inst, "queue").is_number())
      fn.instance.queue = at(inst, "queue").get<std::size_t>();
    fn.instance.idletime = duration_at(at(inst, "idletime"),
                                       ipath + ".idletime",
                                       fn.instance.idletime);
    fn.instance.timeout = duration_at(at(inst, "timeout"), ipath + ".timeout",
                                      fn.instance.timeout);
    fn.instance.message_size = size_at(
      at(at(at(inst, "message"), "length"), "max"),
      ipath + ".message.length.max", fn.instance.message_size);
    fn.instance.memory = size_at(at(inst, "memory"), ipath + ".memory",
                                 fn.instance.memory);
    if (fn.instance.min > fn.instance.max)
      fail(ipath + ".min", "min (" + std::to_string(fn.instance.min)
                             + ") is larger than max ("
                             + std::to_string(fn.instance.max) + ")");
    // What each runtime needs, said here so the error names the key.
    if (fn.runtime == "native" && fn.plugin.empty())
      fail(path, "a native function needs `plugin: <name or .so path>`");
    if (fn.runtime == "wasm" && fn.module.empty())
      fail(path, "a wasm function needs `module: <file>.wasm`");
    if (fn.runtime != "native" && fn.runtime != "wasm" && fn.handler.empty())
      fail(path, "a " + fn.runtime + " function needs `handler:`");
    if ((fn.runtime == "python" || fn.runtime == "node") && fn.codedir.empty())
      fail(path, "a " + fn.runtime + " function needs `codedir:`");
    return fn;
  }

  /// An endpoint's `buffer:`: `disk`, or `{type: disk, max_bytes: ...}`
  /// (the schema allows nothing else).
  endpoint_buffer_config build_buffer(const json& j, const std::string& path) {
    endpoint_buffer_config b;
    if (j.is_null())
      return b;
    b.disk = true;
    auto key = path + ".buffer.max_bytes";
    b.max_bytes = size_at(at(j, "max_bytes"), key, b.max_bytes);
    if (b.max_bytes == 0)
      fail(key, "a buffer needs room for at least one record (above 0)");
    return b;
  }

  persistence_config build_persistence(const json& j) {
    persistence_config p;
    p.enabled = true;
    p.path = str(j, "path");
    if (p.path.empty())
      fail("persistence.path", "persistence needs `path: <directory>`");
    auto sync = str(j, "sync", "batch");
    p.sync = sync == "always" ? persistence_sync::always
             : sync == "off"  ? persistence_sync::off
                              : persistence_sync::batch;
    p.max_size = size_at(at(j, "max_size"), "persistence.max_size", 0);
    return p;
  }

  config build(const std::string& file) {
    config cfg;
    cfg.file = file;
    auto& root = doc.root;
    if (root.contains("hub"))
      cfg.hub = build_hub(at(root, "hub"));
    cfg.hub.where = doc.where("hub");
    for (std::size_t i = 0; i < at(root, "functions").size(); ++i)
      cfg.functions.push_back(build_function(at(root, "functions")[i], i));
    for (std::size_t i = 0; i < at(root, "endpoints").size(); ++i) {
      auto& e = at(root, "endpoints")[i];
      auto path = index_path("endpoints", i);
      endpoint_config ep;
      ep.name = str(e, "name");
      ep.type = str(e, "type");
      ep.settings = doc.nodes.at(path);
      ep.where = doc.where(path);
      ep.buffer = build_buffer(at(e, "buffer"), path);
      cfg.endpoints.push_back(std::move(ep));
    }
    for (std::size_t i = 0; i < at(root, "rules").size(); ++i)
      cfg.rules.push_back(build_rule(at(root, "rules")[i], i));
    auto& stats = at(root, "stats");
    cfg.stats.host = str(stats, "host", cfg.stats.host);
    cfg.stats.token_file = str(stats, "token_file");
    if (at(stats, "port").is_number())
      cfg.stats.port = at(stats, "port").get<std::uint16_t>();
    cfg.stats.report_interval = duration_at(at(stats, "interval"),
                                            "stats.interval",
                                            cfg.stats.report_interval);
    if (root.contains("http")) {
      cfg.http.enabled = true;
      cfg.http.listen = str(at(root, "http"), "listen", cfg.http.listen);
      std::string bad;
      if (!parse_host_port(cfg.http.listen, http_listen_rules, bad))
        fail("http.listen", bad);
      cfg.http.max_body = size_at(at(at(root, "http"), "maxBody"),
                                  "http.maxBody", cfg.http.max_body);
      auto& http = at(root, "http");
      cfg.http.request_timeout = duration_at(at(http, "request_timeout"),
                                             "http.request_timeout",
                                             cfg.http.request_timeout);
      cfg.http.idle_timeout = duration_at(at(http, "idle_timeout"),
                                          "http.idle_timeout",
                                          cfg.http.idle_timeout);
      if (at(http, "max_connections").is_number())
        cfg.http.max_connections
          = at(http, "max_connections").get<std::size_t>();
      if (http.contains("certificate")) {
        cfg.http.certificate
          = build_tls(at(http, "certificate"), "http.certificate");
        if (cfg.http.certificate->use_identity_as_username)
          fail("http.certificate.use_identity_as_username",
               "the HTTP API has no principals: a client certificate is "
               "only verified (require_certificate)");
        else
          check_tls(*cfg.http.certificate);
      }
    }
    if (root.contains("persistence")) {
      cfg.persistence = build_persistence(at(root, "persistence"));
      if (!cfg.hub.embedded)
        fail("persistence", "persistence stores the embedded hub's sessions; "
                            "with an external hub (hub.address) there are none");
    }
    for (std::size_t i = 0; i < cfg.endpoints.size(); ++i) {
      auto& ep = cfg.endpoints[i];
      if (!ep.buffer.disk)
        continue;
      if (!cfg.persistence.enabled)
        fail(index_path("endpoints", i) + ".buffer",
             "buffer: disk keeps its records under persistence.path; add a "
             "`persistence:` section with `path: <directory>`");
      ep.buffer_path = cfg.persistence.path;
      ep.buffer_sync = cfg.persistence.sync;
    }
    cfg.logger.level = str(at(root, "logger"), "level", cfg.logger.level);
    cfg.logger.path = str(at(root, "logger"), "path");
    check_references(cfg);
    cfg.warnings = warnings;
    return cfg;
  }

  template <class T>
  void check_unique(const std::vector<T>& items, const char* section) {
    std::set<std::string> names;
    for (std::size_t i = 0; i < items.size(); ++i)
      if (!names.insert(items[i].name).second)
        fail(index_path(section, i) + ".name",
             "duplicate name '" + items[i].name + "'");
  }

  void check_end(const config& cfg, const rule_end& end,
                 const std::string& path) {
    if (!end.endpoint.empty() && !cfg.find_endpoint(end.endpoint))
      fail(path + ".endpoint", "unknown endpoint '" + end.endpoint + "'");
  }

  /// Compiles a rule's destination template once, as its destination
  /// reads it (a hub topic; an endpoint type's dialect and checks: a Kafka
  /// topic template must expand to a topic Kafka accepts); the endpoint
  /// gets it in its usage.
  void compile_target(const config& cfg, rule_end& end,
                      const std::string& path,
                      std::map<std::string, endpoint_usage>& usage) {
    auto ep = end.endpoint.empty() ? nullptr : cfg.find_endpoint(end.endpoint);
    if (!end.endpoint.empty() && !ep)
      return; // reported by check_end
    auto type = ep ? types.find(ep->type) : types.end();
    if (ep && type == types.end())
      return; // reported with the endpoint
    std::string error;
    auto compiled = topic_template::compile(
      end.topic, error, ep ? type->second.target_dialect : template_dialect{});
    if (!compiled) {
      fail(path + ".topic", error);
      return;
    }
    if (compiled->deprecated())
      warnings.push_back(format_config_error(
        doc.where(path + ".topic"), path + ".topic",
        "'" + compiled->text() + "' is a deprecated template form; write '"
          + compiled->canonical() + "' (topic levels count from 1)"));
    if (ep && type->second.check_target)
      if (auto problem = type->second.check_target(*compiled)) {
        fail(path + ".topic", *problem);
        return;
      }
    if (!ep && compiled->is_literal())
      if (auto problem = check_mqtt_topic_name(compiled->literal_text())) {
        fail(path + ".topic", *problem);
        return;
      }
    auto ptr = std::make_shared<const topic_template>(std::move(*compiled));
    if (ep)
      usage[ep->name].targets.emplace(end.topic, ptr);
    else
      end.topic_template = std::move(ptr);
  }

  /// A rule may only name functions and endpoints that exist; endpoints
  /// learn how they are used (source, destination) for their own checks.
  void check_references(config& cfg) {
    check_unique(cfg.functions, "functions");
    check_unique(cfg.endpoints, "endpoints");
    check_unique(cfg.rules, "rules");
    std::map<std::string, endpoint_usage> usage;
    for (std::size_t i = 0; i < cfg.rules.size(); ++i) {
      auto& rule = cfg.rules[i];
      auto& json_rule = at(doc.root, "rules")[i];
      auto path = index_path("rules", i);
      auto from_key = json_rule.contains("from") ? ".from" : ".subscribe";
      auto to_key = json_rule.contains("to") ? ".to" : ".publish";
      if (!rule.function.empty() && !cfg.find_function(rule.function))
        fail(path + ".function",
             "unknown function '" + rule.function + "'");
      check_end(cfg, rule.from, path + from_key);
      check_end(cfg, rule.to, path + to_key);
      compile_target(cfg, rule.to, path + to_key, usage);
      if (!rule.from.endpoint.empty())
        usage[rule.from.endpoint].as_source = true;
      if (!rule.to.endpoint.empty())
        usage[rule.to.endpoint].as_destination = true;
    }
    for (std::size_t i = 0; i < cfg.endpoints.size(); ++i) {
      auto& ep = cfg.endpoints[i];
      auto path = index_path("endpoints", i);
      auto type = types.find(ep.type);
      if (type == types.end()) {
        fail(path + ".type", "endpoint type '" + ep.type
                               + "' is not available in this build");
        continue;
      }
      ep.usage = usage[ep.name];
      parse_endpoint(type->second, ep, path, errors, warnings);
    }
  }
};

} // namespace

const endpoint_types& no_endpoint_types() {
  static const endpoint_types none;
  return none;
}

void parse_endpoint(const endpoint_type& type, endpoint_config& cfg,
                    const std::string& key_path,
                    std::vector<std::string>& errors,
                    std::vector<std::string>& warnings) {
  static const option_table no_options;
  option_context context{cfg.where.file, key_path, cfg.type + " endpoint",
                         &errors, &warnings};
  option_values values(type.options ? *type.options : no_options,
                       cfg.settings, std::move(context));
  // Parsed even after a problem, so that every problem is reported at once;
  // the settings are kept only when there was none.
  if (!cfg.settings.IsMap() || !type.parse)
    return;
  auto before = errors.size();
  auto parsed = type.parse(values, cfg);
  if (values.ok() && errors.size() == before)
    cfg.parsed = std::move(parsed);
}

config load_config_text(const std::string& text, const std::string& file,
                        const endpoint_types& types) {
  // YAML is UTF-8, and the schema validator measures strings by their UTF-8
  // sequences (valijson reads past its tables on stray continuation bytes).
  std::size_t line_start = 0;
  for (int line = 1; line_start < text.size(); ++line) {
    auto end = text.find('\n', line_start);
    auto len = (end == std::string::npos ? text.size() : end) - line_start;
    if (!is_valid_utf8(std::string_view{text}.substr(line_start, len)))
      throw config_error({file, line, 0}, "", "the text is not valid UTF-8");
    if (end == std::string::npos)
      break;
    line_start = end + 1;
  }
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    source_position where{file, e.mark.is_null() ? 0 : e.mark.line + 1,
                          e.mark.is_null() ? 0 : e.mark.column + 1};
    throw config_error(where, "", "YAML syntax error: " + e.msg);
  }
  if (root.IsNull())
    root = YAML::Node(YAML::NodeType::Map);
  positioned_document doc;
  doc.file = file;
  doc.root = to_json(root, "", doc);
  if (!doc.root.is_object())
    throw config_error({file, 1, 1}, "", "the config must be a YAML mapping");
  if (auto errors = schema_errors(doc); !errors.empty())
    throw config_error(errors);
  builder b{doc, types, {}, {}};
  auto cfg = b.build(file);
  if (!b.errors.empty())
    throw config_error(b.errors);
  return cfg;
}

std::string read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw config_error({path, 0, 0}, "", "cannot open the config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

config load_config_file(const std::string& path,
                        const endpoint_types& types) {
  return load_config_text(read_config_file(path), path, types);
}

const char* default_config_text() {
  return embedded::default_config;
}

config default_config() {
  return load_config_text(embedded::default_config, "<embedded default>");
}

// -- hub listeners ---------------------------------------------------------------

std::optional<listener_address> parse_listener(std::string_view url,
                                               std::string& error) {
  struct scheme {
    std::string_view prefix;
    listener_kind kind;
  };
  static constexpr scheme schemes[] = {
    {"tcp://", listener_kind::tcp},  {"mqtt://", listener_kind::tcp},
    {"ssl://", listener_kind::tls},  {"mqtts://", listener_kind::tls},
    {"ws://", listener_kind::ws},    {"wss://", listener_kind::wss},
  };
  listener_address out;
  auto rest = url;
  for (auto& s : schemes)
    if (rest.substr(0, s.prefix.size()) == s.prefix) {
      out.kind = s.kind;
      rest.remove_prefix(s.prefix.size());
      break;
    }
  auto quoted = "'" + std::string{url} + "'";
  if (rest.find("://") != std::string_view::npos) {
    error = quoted + ": unsupported scheme (known: tcp:// mqtt:// ssl:// "
                     "mqtts:// ws:// wss://)";
    return std::nullopt;
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    if (!out.websocket()) {
      error = quoted + ": only ws:// and wss:// listeners have a path";
      return std::nullopt;
    }
    out.path = std::string{rest.substr(slash)};
    rest = rest.substr(0, slash);
    // What an HTTP request line can carry: no spaces, controls, query.
    if (std::any_of(out.path.begin(), out.path.end(), [](unsigned char c) {
          return c <= ' ' || c >= 0x7f || c == '?' || c == '#';
        })) {
      error = quoted + ": the path may not hold spaces, '?' or '#'";
      return std::nullopt;
    }
  } else if (out.websocket()) {
    out.path = "/mqtt";
  }
  auto at = parse_host_port(rest, hub_listen_rules, error);
  if (!at)
    return std::nullopt;
  out.at = std::move(*at);
  return out;
}

const tls_settings* hub_config::certificate_for(std::string_view url) const {
  for (auto& [listener, tls] : listen_certificates)
    if (listener == url)
      return &tls;
  return certificate ? &*certificate : nullptr;
}

const function_config* config::find_function(const std::string& name) const {
  for (auto& fn : functions)
    if (fn.name == name)
      return &fn;
  return nullptr;
}

const endpoint_config* config::find_endpoint(const std::string& name) const {
  for (auto& ep : endpoints)
    if (ep.name == name)
      return &ep;
  return nullptr;
}

} // namespace hubflow
