// Mosquitto's `password_file` and `acl_file`, read as Mosquitto 2.0 reads
// them (src/security_default.c), so a Mosquitto deployment's files carry
// over unchanged (hub.password_file, hub.acl_file; docs/hub-auth.md). This
// file only parses; hub/auth.cpp applies the rules.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"

namespace hubflow {

/// What an acl line grants: bits of read and write, or nothing (`deny`).
enum acl_access : std::uint8_t {
  acl_deny = 0,
  acl_read = 1,
  acl_write = 2,
  acl_readwrite = acl_read | acl_write,
};

/// One `topic` or `pattern` line.
struct acl_rule {
  std::string topic;  // a topic filter; a pattern's %u / %c not yet replaced
  std::uint8_t access = acl_readwrite; // acl_access bits
  int line = 0;       // 1-based, for messages
};

/// An acl file: the anonymous section (the `topic` lines before the first
/// `user` line), each user's `topic` lines (a user named twice has one
/// section, as in Mosquitto) and the `pattern` lines, which apply to every
/// client wherever they stand in the file.
struct acl_rules {
  std::vector<acl_rule> anonymous;
  std::map<std::string, std::vector<acl_rule>, std::less<>> users;
  std::vector<acl_rule> patterns;
};

/// One `user:hash` line of a password file.
struct password_entry {
  std::string username;
  std::string hash; // $6$ or $7$, checked to parse
  int line = 0;
};

/// Both files as the config names them; either may be absent.
struct mosquitto_files {
  std::string password_path; // empty: no password_file
  std::vector<password_entry> users;
  std::string acl_path; // empty: no acl_file
  acl_rules acl;
};

/// Bounds on what a file can make hubflow hold (the files come from the
/// operator, but a wrong path, say a log file, should fail, not swallow
/// memory). A line holds at most a 65535-byte topic (MQTT's maximum) and
/// its keywords.
inline constexpr std::size_t max_mosquitto_file_bytes = 16 * 1024 * 1024;
inline constexpr std::size_t max_mosquitto_line_bytes = 65535 + 64;

/// Parses an acl file's text; `file` names it in errors. Throws
/// config_error listing every bad line as `file:line:column: message`.
/// Accepts what Mosquitto 2.0 accepts and means the same by it, except
/// that a `#` comment may also be indented.
acl_rules parse_acl_file(std::string_view text, const std::string& file);

/// Parses a password file's text as mosquitto_passwd writes it. Unlike
/// Mosquitto, which drops such an entry with a log line, a hash that does
/// not parse, a line without a hash and a name given twice are errors.
/// Throws config_error.
std::vector<password_entry> parse_password_file(std::string_view text,
                                                const std::string& file);

/// Reads and parses the files `hub` names (hub.password_file,
/// hub.acl_file). Throws config_error (an unreadable or oversized file is
/// reported at its config key). Returns an empty set when neither is named.
std::shared_ptr<const mosquitto_files>
read_mosquitto_files(const hub_config& hub);

} // namespace hubflow
