#include "core/values.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

namespace hubflow {

using std::chrono::milliseconds;

std::optional<std::int64_t> parse_integer(std::string_view text) {
  std::int64_t n = 0;
  auto end = text.data() + text.size();
  auto [used, ec] = std::from_chars(text.data(), end, n);
  if (text.empty() || ec != std::errc{} || used != end)
    return std::nullopt;
  return n;
}

namespace {

/// The leading digits of `text` as a number and what follows them; nullopt
/// without digits or beyond 64 bits.
std::optional<std::pair<std::uint64_t, std::string_view>>
number_and_unit(std::string_view text) {
  std::uint64_t n = 0;
  auto end = text.data() + text.size();
  auto [used, ec] = std::from_chars(text.data(), end, n);
  if (used == text.data() || ec != std::errc{})
    return std::nullopt;
  return std::pair{n, text.substr(used - text.data())};
}

} // namespace

std::optional<milliseconds> parse_duration(const std::string& text) {
  auto parsed = number_and_unit(text);
  if (!parsed)
    return std::nullopt;
  auto [n, unit] = *parsed;
  static constexpr std::pair<std::string_view, std::int64_t> units[] = {
    {"ms", 1},
    {"s", 1000},
    {"", 1000},
    {"m", 60 * 1000},
    {"h", 3600 * 1000},
    // Mosquitto's persistent_client_expiration takes d and w.
    {"d", 24 * 3600 * 1000},
    {"w", 7 * 24 * 3600 * 1000},
  };
  for (auto [name, factor] : units)
    if (unit == name) {
      if (n > static_cast<std::uint64_t>(
            std::numeric_limits<std::int64_t>::max() / factor))
        return std::nullopt; // beyond what a duration can hold
      return milliseconds{static_cast<std::int64_t>(n) * factor};
    }
  return std::nullopt;
}

std::optional<std::size_t> parse_size(const std::string& text) {
  auto parsed = number_and_unit(text);
  if (!parsed)
    return std::nullopt;
  auto [n, suffix] = *parsed;
  std::string unit{suffix};
  std::transform(unit.begin(), unit.end(), unit.begin(), ::tolower);
  if (unit.empty() || unit == "b")
    return n;
  static const char* suffixes[] = {"", "i", "b", "ib"};
  int shift = unit[0] == 'k' ? 10 : unit[0] == 'm' ? 20 : unit[0] == 'g' ? 30 : 0;
  if (shift == 0)
    return std::nullopt;
  if (n > (std::numeric_limits<std::size_t>::max() >> shift))
    return std::nullopt; // beyond what a size can hold
  auto rest = unit.substr(1);
  for (auto s : suffixes)
    if (rest == s)
      return n << shift;
  return std::nullopt;
}

std::optional<host_port> parse_host_port(std::string_view text,
                                         const host_port_rules& rules,
                                         std::string& error) {
  auto original = std::string(text);
  for (auto& scheme : rules.schemes)
    if (text.substr(0, scheme.size()) == scheme) {
      text.remove_prefix(scheme.size());
      break;
    }
  if (text.find("://") != std::string_view::npos) {
    error = "'" + original + "': unsupported scheme";
    if (!rules.schemes.empty()) {
      error += " (known:";
      for (auto& s : rules.schemes)
        error += " " + s;
      error += ")";
    }
    return std::nullopt;
  }
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    error = "'" + original + "' has no port (write host:port)";
    return std::nullopt;
  }
  host_port out;
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string_view::npos) {
    error = "'" + original + "': write an IPv6 address in brackets ([::1]:port)";
    return std::nullopt;
  }
  if (host.empty() && rules.host_required) {
    error = "'" + original + "' has no host";
    return std::nullopt;
  }
  auto digits = text.substr(colon + 1);
  if (digits.empty() || digits.size() > 5
      || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    error = "'" + original + "' has an invalid port";
    return std::nullopt;
  }
  auto port = std::stoul(std::string(digits));
  if (port > 65535 || (port == 0 && !rules.port_zero_ok)) {
    error = "'" + original + "': port " + std::to_string(port)
            + " is out of range (1-65535)";
    return std::nullopt;
  }
  out.host = std::string(host);
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

std::string to_string(const host_port& at) {
  auto port = ":" + std::to_string(at.port);
  if (at.host.find(':') != std::string::npos)
    return "[" + at.host + "]" + port;
  return at.host + port;
}

std::optional<std::vector<host_port>>
parse_host_port_list(std::string_view text, const host_port_rules& rules,
                     std::string& error) {
  std::vector<host_port> out;
  std::size_t start = 0;
  for (;;) {
    auto comma = text.find(',', start);
    auto entry = text.substr(start, comma == std::string_view::npos
                                      ? std::string_view::npos
                                      : comma - start);
    auto one = parse_host_port(entry, rules, error);
    if (!one)
      return std::nullopt;
    out.push_back(std::move(*one));
    if (comma == std::string_view::npos)
      return out;
    start = comma + 1;
  }
}

std::string index_path(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

std::string config_relative(const std::string& path,
                            const std::string& config_file) {
  namespace fs = std::filesystem;
  if (path.empty() || fs::path(path).is_absolute() || config_file.empty()
      || config_file.front() == '<')
    return path;
  return (fs::path(config_file).parent_path() / path)
    .lexically_normal()
    .string();
}

bool read_secret(const YAML::Node& node, std::string& value,
                 std::string& error, secret_source* source,
                 const std::string& config_file) {
  if (node.IsScalar()) {
    value = node.Scalar();
    if (source)
      *source = secret_source::plain;
    if (value.empty()) {
      error = "the secret is empty";
      return false;
    }
    return true;
  }
  bool one_key = node.IsMap() && node.size() == 1;
  auto file = one_key ? node["file"] : YAML::Node{};
  auto env = one_key ? node["env"] : YAML::Node{};
  if ((!file && !env) || !(file ? file : env).IsScalar()
      || (file ? file : env).Scalar().empty()) {
    error = "give the secret as {file: PATH} or {env: NAME} (or, warned "
            "about, as plain text)";
    return false;
  }
  if (file) {
    auto path = config_relative(file.Scalar(), config_file);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      error = "cannot read secret file '" + path + "'";
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    value = ss.str();
    // Files written with `echo` end in a newline that is not the secret.
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r'))
      value.pop_back();
    if (source)
      *source = secret_source::file;
    if (value.empty()) {
      error = "secret file '" + path + "' is empty";
      return false;
    }
    return true;
  }
  auto* text = std::getenv(env.Scalar().c_str());
  if (text == nullptr || *text == '\0') {
    error = "environment variable '" + env.Scalar() + "' is not set or empty";
    return false;
  }
  value = text;
  if (source)
    *source = secret_source::env;
  return true;
}

} // namespace hubflow
