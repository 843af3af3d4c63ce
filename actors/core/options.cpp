#include "core/options.hpp"

#include <algorithm>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/config.hpp"

namespace hubflow {

namespace {

const char* type_name(option_type t) {
  switch (t) {
    case option_type::string:
      return "string";
    case option_type::integer:
      return "integer";
    case option_type::boolean:
      return "boolean";
    case option_type::choice:
      return "choice";
    case option_type::duration:
      return "duration";
    case option_type::size:
      return "size";
    case option_type::secret:
      return "secret";
    case option_type::address:
      return "host:port list";
    case option_type::topic_template:
      return "template";
    default:
      return "mapping";
  }
}

std::string parent_of(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string{} : name.substr(0, dot);
}

std::string last_of(const std::string& name) {
  auto dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string join(const std::vector<std::string>& xs, const char* sep) {
  std::string out;
  for (auto& x : xs) {
    if (!out.empty())
      out += sep;
    out += x;
  }
  return out;
}

} // namespace

option_values::option_values(const option_table& table, const YAML::Node& map,
                             option_context context)
  : table_(table), map_(map), context_(std::move(context)) {
  errors_before_ = context_.errors->size();
  if (!map_ || !map_.IsMap()) {
    fail("", "a " + context_.kind + " must be a mapping");
    return;
  }
  check_keys(map_, "");
  for (auto& spec : table_) {
    // The node of `a.b` is the key `b` of the group `a`, when both exist.
    // yaml-cpp's Node assignment rebinds what the left side refers to, so
    // nodes are only ever copy-constructed here.
    auto parent = parent_of(spec.name);
    const value* group = parent.empty() ? nullptr : &values_[parent];
    bool in_map = group == nullptr || (group->written && group->valid);
    const YAML::Node container = group == nullptr ? map_ : group->node;
    const YAML::Node node = in_map && container.IsMap()
                              ? container[last_of(spec.name)]
                              : YAML::Node{};
    auto& v = values_[spec.name];
    if (node && !node.IsNull()) {
      v.written = true;
      v.node.reset(node);
      read(spec, node, v);
      if (!spec.deprecated.empty())
        warn(spec.name, "is deprecated: " + spec.deprecated);
      if (spec.type == option_type::group && v.valid)
        check_keys(node, spec.name);
    } else if (!spec.default_value.empty()) {
      read(spec, YAML::Node(spec.default_value), v);
    } else if (spec.required && (group == nullptr || group->written)) {
      fail(spec.name, "is required");
    }
  }
}

void option_values::check_keys(const YAML::Node& map, const std::string& prefix) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    auto key = it->first.IsScalar() ? it->first.Scalar() : std::string{};
    auto name = prefix.empty() ? key : prefix + "." + key;
    if (prefix.empty()
        && std::find(context_.entry_keys.begin(), context_.entry_keys.end(), key)
             != context_.entry_keys.end())
      continue;
    bool known = std::any_of(table_.begin(), table_.end(),
                             [&](auto& spec) { return spec.name == name; });
    if (!known)
      context_.errors->push_back(
        message(it->first, name, "unknown setting of a " + context_.kind));
  }
}

void option_values::read(const option_spec& spec, const YAML::Node& node,
                         value& v) {
  auto bad = [&](const std::string& text) {
    if (v.written)
      context_.errors->push_back(message(node, spec.name, text));
    v.valid = false;
  };
  if (spec.type == option_type::group) {
    if (!node.IsMap())
      return bad("must be a mapping");
    v.valid = true;
    return;
  }
  if (spec.type == option_type::secret) {
    std::string error;
    secret_source source{};
    if (!read_secret(node, v.text, error, &source, context_.file))
      return bad(error);
    if (source == secret_source::plain && context_.warnings)
      context_.warnings->push_back(message(node, spec.name, plain_secret_warning));
    v.valid = true;
    return;
  }
  if (!node.IsScalar())
    return bad(spec.type == option_type::integer ? "must be an integer"
                                                 : std::string("must be a ")
                                                     + type_name(spec.type));
  const auto& text = node.Scalar();
  v.text = text;
  switch (spec.type) {
    case option_type::string:
      if (text.size() < spec.min_length)
        return bad(spec.min_length == 1 ? "must not be empty"
                                        : "must be at least "
                                            + std::to_string(spec.min_length)
                                            + " characters long");
      break;
    case option_type::integer: {
      auto parsed = parse_integer(text);
      if (!parsed)
        return bad("must be an integer");
      auto n = *parsed;
      if (n < spec.min || n > spec.max)
        return bad("must be between " + std::to_string(spec.min) + " and "
                   + std::to_string(spec.max) + " (got " + std::to_string(n)
                   + ")");
      v.number = n;
      break;
    }
    case option_type::boolean:
      if (text == "true" || text == "True" || text == "TRUE")
        v.number = 1;
      else if (text == "false" || text == "False" || text == "FALSE")
        v.number = 0;
      else
        return bad("must be true or false (got '" + text + "')");
      break;
    case option_type::choice: {
      auto i = std::find(spec.choices.begin(), spec.choices.end(), text);
      if (i == spec.choices.end())
        return bad("must be one of " + join(spec.choices, ", ") + " (got '"
                   + text + "')");
      v.number = i - spec.choices.begin();
      break;
    }
    case option_type::duration: {
      auto d = parse_duration(text);
      bool positive = spec.min > 0;
      if (!d || d->count() < std::max<std::int64_t>(spec.min, 0))
        return bad("'" + text + "' is not a " + (positive ? "positive " : "")
                   + "duration (e.g. 500ms, 30s, 10m)");
      v.number = d->count();
      break;
    }
    case option_type::size: {
      auto s = parse_size(text);
      if (!s)
        return bad("not a size (examples: 512, 64k, 4m)");
      v.number = static_cast<std::int64_t>(*s);
      break;
    }
    case option_type::address: {
      std::string error;
      auto list = parse_host_port_list(text, {}, error);
      if (!list)
        return bad("must be <host>:<port>[,<host>:<port>...]: " + error);
      v.addresses = std::move(*list);
      break;
    }
    case option_type::topic_template: {
      std::string error;
      auto t = topic_template::compile(text, error, spec.dialect);
      if (!t)
        return bad(error);
      if (t->deprecated() && v.written && context_.warnings)
        context_.warnings->push_back(
          message(node, spec.name,
                  "'" + t->text() + "' is a deprecated template form; write '"
                    + t->canonical() + "' (topic levels count from 1)"));
      v.compiled = std::make_shared<const topic_template>(std::move(*t));
      break;
    }
    default:
      break;
  }
  v.valid = true;
}

const option_values::value& option_values::at(const std::string& name) const {
  static const value none;
  auto i = values_.find(name);
  return i == values_.end() ? none : i->second;
}

bool option_values::written(const std::string& name) const {
  return at(name).written;
}

bool option_values::has(const std::string& name) const {
  return at(name).valid;
}

const std::string& option_values::text(const std::string& name) const {
  return at(name).text;
}

std::int64_t option_values::integer(const std::string& name) const {
  return at(name).number;
}

bool option_values::boolean(const std::string& name) const {
  return at(name).number != 0;
}

std::chrono::milliseconds
option_values::duration(const std::string& name) const {
  return std::chrono::milliseconds{at(name).number};
}

std::size_t option_values::size(const std::string& name) const {
  return static_cast<std::size_t>(at(name).number);
}

const std::vector<host_port>&
option_values::address(const std::string& name) const {
  return at(name).addresses;
}

topic_template_ptr option_values::template_at(const std::string& name) const {
  return at(name).compiled;
}

std::size_t option_values::choice(const std::string& name) const {
  return static_cast<std::size_t>(at(name).number);
}

YAML::Node option_values::node(const std::string& name) const {
  if (auto& v = at(name); v.written)
    return v.node;
  // An unwritten option points at the closest written group, else the map.
  for (auto p = parent_of(name); !p.empty(); p = parent_of(p))
    if (auto& g = at(p); g.written)
      return g.node;
  return map_;
}

std::string option_values::message(const YAML::Node& where,
                                   const std::string& name,
                                   const std::string& text) const {
  source_position pos{context_.file, 0, 0};
  if (where && !where.Mark().is_null())
    pos = position_of(where, context_.file);
  auto path = name.empty() ? context_.key_path : context_.key_path + "." + name;
  return format_config_error(pos, path, text);
}

void option_values::fail(const std::string& name, const std::string& text) {
  context_.errors->push_back(message(node(name), name, text));
}

void option_values::warn(const std::string& name, const std::string& text) {
  if (context_.warnings)
    context_.warnings->push_back(message(node(name), name, text));
}

std::string options_markdown(const option_table& table) {
  std::ostringstream out;
  out << "| key | type | default | description |\n"
      << "|---|---|---|---|\n";
  for (auto& spec : table) {
    std::string type = type_name(spec.type);
    if (spec.type == option_type::choice)
      type = join(spec.choices, " \\| ");
    else if (spec.type == option_type::integer
             && spec.min != std::numeric_limits<std::int64_t>::min()
             && spec.max != std::numeric_limits<std::int64_t>::max())
      type += " " + std::to_string(spec.min) + "-" + std::to_string(spec.max);
    std::string def = spec.default_value.empty()
                        ? (spec.required ? "required" : "-")
                        : "`" + spec.default_value + "`";
    out << "| `" << spec.name << "` | " << type << " | " << def << " | "
        << spec.description << " |\n";
  }
  return out.str();
}

nlohmann::json options_schema(const option_table& table,
                              const std::string& type_name) {
  using json = nlohmann::json;
  auto object = [] {
    return json{{"type", "object"},
                {"additionalProperties", false},
                {"properties", json::object()}};
  };
  json root = object();
  root["required"] = json::array({"name", "type"});
  root["properties"]["name"] = {{"type", "string"}};
  root["properties"]["type"] = {{"const", type_name}};
  root["properties"]["buffer"] = {{"$ref", "#/definitions/endpointBuffer"}};
  std::map<std::string, json*> groups{{"", &root}};
  for (auto& spec : table) {
    json s;
    switch (spec.type) {
      case option_type::string:
        s["type"] = "string";
        if (spec.min_length > 0)
          s["minLength"] = spec.min_length;
        break;
      case option_type::integer:
        s["type"] = "integer";
        if (spec.min != std::numeric_limits<std::int64_t>::min())
          s["minimum"] = spec.min;
        if (spec.max != std::numeric_limits<std::int64_t>::max())
          s["maximum"] = spec.max;
        break;
      case option_type::boolean:
        s["type"] = "boolean";
        break;
      case option_type::choice:
        s["enum"] = spec.choices;
        break;
      case option_type::duration:
        s["$ref"] = "#/definitions/duration";
        break;
      case option_type::size:
        s["$ref"] = "#/definitions/size";
        break;
      case option_type::secret:
        s["$ref"] = "#/definitions/secret";
        break;
      case option_type::address:
      case option_type::topic_template:
        s["type"] = "string";
        s["minLength"] = 1;
        break;
      case option_type::group:
        s = object();
        break;
    }
    if (!spec.description.empty() && spec.type != option_type::duration
        && spec.type != option_type::size && spec.type != option_type::secret)
      s["description"] = spec.description;
    auto& parent = *groups.at(parent_of(spec.name));
    if (spec.required) {
      if (!parent.contains("required"))
        parent["required"] = json::array();
      parent["required"].push_back(last_of(spec.name));
    }
    auto& slot = parent["properties"][last_of(spec.name)];
    slot = std::move(s);
    if (spec.type == option_type::group)
      groups[spec.name] = &slot;
  }
  return root;
}

} // namespace hubflow
