// The value forms every part of the config shares: durations, sizes,
// host:port addresses and secrets. One parser each, so that `30s`, `64k`,
// `[::1]:1883` and `{env: NAME}` mean the same wherever they are written
// (hub, rules, functions, endpoints, http, stats).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace hubflow {

/// Parses a whole decimal integer (`-1`, `42`); nullopt for anything else,
/// trailing text included (`12abc`), or beyond 64 bits.
std::optional<std::int64_t> parse_integer(std::string_view text);

/// Parses durations such as `30s`, `10m`, `500ms`, `1h`, `2d`, `1w`; a bare
/// number is seconds. nullopt if invalid or beyond what milliseconds hold.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

/// Parses sizes such as `512`, `64k`, `4m`, `1g` (also `64KiB`, `4MB`: the
/// units are powers of 1024). nullopt if invalid or beyond 64 bits.
std::optional<std::size_t> parse_size(const std::string& text);

/// A host and a port, as written in `host:port`, `[v6addr]:port` or
/// `scheme://host:port`.
struct host_port {
  std::string host; // without the brackets of an IPv6 address
  std::uint16_t port = 0;
};

/// What an address may look like where it is read.
struct host_port_rules {
  /// Accepted scheme prefixes (`tcp://`); empty: none is accepted.
  std::vector<std::string> schemes;
  bool host_required = true; // false: an empty host means every interface
  bool port_zero_ok = false; // true: port 0 lets the system choose (listen)
};

/// Parses one address; on failure returns nullopt and sets `error` to what
/// is wrong (never a half-filled address).
std::optional<host_port> parse_host_port(std::string_view text,
                                         const host_port_rules& rules,
                                         std::string& error);

/// `host:port`, with an IPv6 host in brackets: what parse_host_port reads.
std::string to_string(const host_port& at);

/// Parses `host:port[,host:port...]` (Kafka's bootstrap list).
std::optional<std::vector<host_port>>
parse_host_port_list(std::string_view text, const host_port_rules& rules,
                     std::string& error);

/// How a secret was written.
enum class secret_source { plain, file, env };

/// Reads a secret written as a plain string, `{file: PATH}` (the file's
/// content, trailing newlines removed; a relative PATH is relative to the
/// directory of `config_file`) or `{env: NAME}`. Returns false and sets
/// `error` when the form is wrong, the file or variable is missing or the
/// secret is empty. `source` tells callers whether it sat in the config
/// text itself, which the config loader warns about once.
bool read_secret(const YAML::Node& node, std::string& value,
                 std::string& error, secret_source* source = nullptr,
                 const std::string& config_file = {});

/// The warning for a secret written in the config text.
inline constexpr const char* plain_secret_warning =
  "the secret is written in the config file; prefer {file: PATH} or "
  "{env: NAME}";

/// The key path of item `i` of a list: `rules[2]`, for error messages.
std::string index_path(const std::string& parent, std::size_t i);

/// `path` resolved against the directory of `config_file` when relative
/// (unchanged for the embedded config, whose name starts with '<').
std::string config_relative(const std::string& path,
                            const std::string& config_file);

} // namespace hubflow
