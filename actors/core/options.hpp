// Options declared once. A component that is configured by a YAML mapping
// (an endpoint type, a listener kind, a store) describes each of its keys in
// one table: name, type, default, description, and the bounds or choices.
// That table is the validation (unknown keys, types, ranges, with
// file:line:col and the key path), the defaults, the docs table
// (options_markdown) and the JSON schema fragment (options_schema, which
// tests compare with schemas/hubflow.schema.json). Fluent Bit's config maps
// are the model.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <yaml-cpp/yaml.h>

#include "core/topic_template.hpp"
#include "core/values.hpp"

namespace hubflow {

enum class option_type {
  string,   // any text (min_length applies)
  integer,  // within [min, max]
  boolean,  // true | false
  choice,   // one of `choices`
  duration, // core/values.hpp parse_duration, at least `min` ms
  size,     // core/values.hpp parse_size
  secret,   // {file: PATH}, {env: NAME} or plain text (warned about)
  address,  // host:port[,host:port...] (core/values.hpp)
  topic_template, // core/topic_template.hpp, compiled at load
  group,    // a mapping whose keys are the options named `<name>.<key>`
};

/// One option of a table. `name` is the key path inside the mapping,
/// dotted for the keys of a group (`batching.latencyMs`).
struct option_spec {
  std::string name;
  option_type type = option_type::string;
  /// The default as a user would write it; empty: none (absent means unset).
  std::string default_value;
  std::string description;
  std::vector<std::string> choices; // choice
  std::int64_t min = std::numeric_limits<std::int64_t>::min(); // integer, duration (ms)
  std::int64_t max = std::numeric_limits<std::int64_t>::max(); // integer
  std::size_t min_length = 0;    // string
  bool required = false;
  template_dialect dialect;      // topic_template
  /// Non-empty: the option is kept only so old configs load; written, it
  /// loads with the warning "is deprecated: <this>".
  std::string deprecated;
};

using option_table = std::vector<option_spec>;

/// An option with the four fields every one has; the rest set after.
inline option_spec option(std::string name, option_type type,
                          std::string default_value, std::string description) {
  option_spec s;
  s.name = std::move(name);
  s.type = type;
  s.default_value = std::move(default_value);
  s.description = std::move(description);
  return s;
}

/// Where a mapping sits and where its problems go.
struct option_context {
  std::string file;     // the config file, for positions and relative paths
  std::string key_path; // `endpoints[2]`
  std::string kind;     // `kafka endpoint`, for "unknown setting of a ..."
  std::vector<std::string>* errors = nullptr;
  std::vector<std::string>* warnings = nullptr;
  /// Keys of the mapping that belong to the enclosing entry (name, type,
  /// and an endpoint's buffer, which the config loader reads).
  std::vector<std::string> entry_keys{"name", "type", "buffer"};
};

/// The values of one mapping read against a table: every option has its
/// value or its default; absent options without a default are unset.
class option_values {
public:
  /// Reads `map` (checking every key, type and range against `table`).
  option_values(const option_table& table, const YAML::Node& map,
                option_context context);

  bool ok() const noexcept {
    return errors_before_ == context_.errors->size();
  }

  /// True when the option was written (not only defaulted).
  bool written(const std::string& name) const;
  /// True when it has a value, written or defaulted, that is well formed.
  bool has(const std::string& name) const;

  const std::string& text(const std::string& name) const; // string, choice, secret, address
  std::int64_t integer(const std::string& name) const;
  bool boolean(const std::string& name) const;
  std::chrono::milliseconds duration(const std::string& name) const;
  std::size_t size(const std::string& name) const;
  const std::vector<host_port>& address(const std::string& name) const;
  topic_template_ptr template_at(const std::string& name) const;

  /// The index of a choice's value in the spec's `choices`.
  std::size_t choice(const std::string& name) const;

  /// Records a problem at the option's place (its node when written, else
  /// the mapping): `file:line:col: key_path.name: message`.
  void fail(const std::string& name, const std::string& message);
  void warn(const std::string& name, const std::string& message);

  /// The position the option's problems point at.
  YAML::Node node(const std::string& name) const;
  const option_context& context() const noexcept {
    return context_;
  }

private:
  struct value {
    bool written = false;
    bool valid = false;
    YAML::Node node;
    std::string text;
    std::int64_t number = 0;
    std::vector<host_port> addresses;
    topic_template_ptr compiled;
  };

  void read(const option_spec& spec, const YAML::Node& node, value& v);
  void check_keys(const YAML::Node& map, const std::string& prefix);
  const value& at(const std::string& name) const;
  std::string message(const YAML::Node& where, const std::string& name,
                      const std::string& text) const;

  const option_table& table_;
  YAML::Node map_;
  option_context context_;
  std::size_t errors_before_ = 0;
  std::map<std::string, value> values_;
};

/// The docs table of `table`: `| key | type | default | description |`.
std::string options_markdown(const option_table& table);

/// The JSON schema of a mapping holding `table`'s options, the entry keys
/// (`name`, `type` = `type_name`, `buffer`) included.
nlohmann::json options_schema(const option_table& table,
                              const std::string& type_name);

} // namespace hubflow
