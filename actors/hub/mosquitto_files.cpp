#include "hub/mosquitto_files.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/topic.hpp"
#include "hub/auth.hpp"

namespace hubflow {

namespace {

// Mosquitto counts a filter's `/` separators against its limit of 200, so
// a filter may have 201 levels; the length bound is MQTT's.
const topic_limits acl_topic_limits{201, 65535};

bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front()))
    s.remove_prefix(1);
  while (!s.empty() && is_space(s.back()))
    s.remove_suffix(1);
  return s;
}

// strtok_r's step, which is how Mosquitto splits both files: skip leading
// `separator`s, take the token up to the next one, consume that one.
// `rest` keeps what follows; an empty token means there was none.
std::string_view next_token(std::string_view& rest, char separator) {
  auto start = rest.find_first_not_of(separator);
  if (start == std::string_view::npos) {
    rest = rest.substr(rest.size());
    return rest;
  }
  auto end = rest.find(separator, start);
  auto token = rest.substr(start, end == std::string_view::npos
                                    ? std::string_view::npos
                                    : end - start);
  rest = end == std::string_view::npos ? rest.substr(rest.size())
                                       : rest.substr(end + 1);
  return token;
}

// Collects `file:line:column: message` lines; throws them all at the end.
class problems {
public:
  explicit problems(const std::string& file) : file_(file) {
  }

  void add(int line, std::size_t column, const std::string& message) {
    source_position where{file_, line, static_cast<int>(column)};
    messages_.push_back(format_config_error(where, "", message));
  }

  void throw_if_any() const {
    if (!messages_.empty())
      throw config_error(messages_);
  }

private:
  const std::string& file_;
  std::vector<std::string> messages_;
};

// Calls `each(line_text, line_number)` for every line (without its end of
// line); reports over-long lines instead.
template <class F>
void for_each_line(std::string_view text, problems& found, F each) {
  int number = 0;
  while (!text.empty()) {
    auto end = text.find('\n');
    auto line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{}
                                         : text.substr(end + 1);
    ++number;
    if (line.size() > max_mosquitto_line_bytes)
      found.add(number, 1,
                "line longer than "
                  + std::to_string(max_mosquitto_line_bytes) + " bytes");
    else
      each(line, number);
  }
}

std::size_t column_of(std::string_view line, std::string_view part) {
  return static_cast<std::size_t>(part.data() - line.data()) + 1;
}

// ---- acl file

// An acl line names topics, not a subscription: a first level `$share`
// is a plain level there (Mosquitto accepts `topic read $share/#`), not
// the shared form valid_topic_filter would take apart.
bool valid_acl_topic(std::string_view topic) {
  if (!topic.starts_with("$share"))
    return valid_topic_filter(topic, acl_topic_limits);
  return valid_topic_filter("$" + std::string{topic.substr(6)},
                            acl_topic_limits);
}

std::optional<std::uint8_t> access_named(std::string_view word) {
  if (word == "read")
    return acl_read;
  if (word == "write")
    return acl_write;
  if (word == "readwrite")
    return acl_readwrite;
  if (word == "deny")
    return acl_deny;
  return std::nullopt;
}

// `topic|pattern [access] <topic>` after its keyword, in Mosquitto's
// reading: the word after the keyword is the access, unless nothing
// follows it, in which case it is the topic and the access readwrite (so
// `topic read` grants readwrite on the topic "read", as in Mosquitto).
std::optional<acl_rule> parse_rule(std::string_view line, std::string_view rest,
                                   int number, problems& found) {
  auto word = next_token(rest, ' ');
  if (word.empty()) {
    found.add(number, line.size() + 1, "a topic is missing");
    return std::nullopt;
  }
  acl_rule rule;
  rule.line = number;
  auto topic = trim(rest);
  if (topic.empty()) {
    topic = word;
  } else if (auto access = access_named(word)) {
    rule.access = *access;
  } else {
    found.add(number, column_of(line, word),
              "access '" + std::string{word}
                + "' is not read, write, readwrite or deny");
    return std::nullopt;
  }
  if (!valid_acl_topic(topic)) {
    found.add(number, column_of(line, topic),
              "'" + std::string{topic}
                + "' is not a topic filter (a + or # fills a whole level, # "
                  "only the last; at most 201 levels and 65535 bytes of "
                  "UTF-8)");
    return std::nullopt;
  }
  rule.topic = std::string{topic};
  return rule;
}

} // namespace

acl_rules parse_acl_file(std::string_view text, const std::string& file) {
  problems found{file};
  acl_rules result;
  std::vector<acl_rule>* section = &result.anonymous;
  for_each_line(text, found, [&](std::string_view line, int number) {
    while (!line.empty() && is_space(line.back()))
      line.remove_suffix(1);
    if (trim(line).starts_with('#'))
      return; // Mosquitto: only at the start of a line; indented ones too
    auto rest = line;
    auto keyword = next_token(rest, ' ');
    if (keyword.empty())
      return; // a blank line
    if (keyword == "topic" || keyword == "pattern") {
      auto rule = parse_rule(line, rest, number, found);
      if (rule)
        (keyword == "topic" ? *section : result.patterns)
          .push_back(std::move(*rule));
    } else if (keyword == "user") {
      auto name = trim(rest);
      if (name.empty())
        found.add(number, line.size() + 1, "'user' needs a username");
      else
        section = &result.users[std::string{name}];
    } else {
      found.add(number, column_of(line, keyword),
                "'" + std::string{keyword}
                  + "' is not user, topic or pattern (nor a # comment)");
    }
  });
  found.throw_if_any();
  return result;
}

std::vector<password_entry> parse_password_file(std::string_view text,
                                                const std::string& file) {
  problems found{file};
  std::vector<password_entry> result;
  std::map<std::string, int, std::less<>> seen; // username -> line
  for_each_line(text, found, [&](std::string_view line, int number) {
    // Mosquitto skips comments and every line without a ':' (blank ones).
    if (line.starts_with('#') || line.find(':') == std::string_view::npos)
      return;
    auto rest = line;
    auto name_token = next_token(rest, ':');
    auto name = trim(name_token);
    auto hash = trim(next_token(rest, ':'));
    if (name.empty()) {
      found.add(number, 1, "the username is empty");
    } else if (hash.empty()) {
      found.add(number, line.size() + 1,
                "'" + std::string{name} + "' has no password hash");
    } else if (!valid_password_hash(hash)) {
      found.add(number, column_of(line, hash),
                "the hash of '" + std::string{name}
                  + "' is not one mosquitto_passwd writes ($6$ or $7$; a "
                    "plain password is not read: run mosquitto_passwd -U)");
    } else if (auto [at, added] = seen.emplace(std::string{name}, number);
               !added) {
      found.add(number, column_of(line, name_token),
                "'" + std::string{name} + "' is already on line "
                  + std::to_string(at->second));
    } else {
      result.push_back({std::string{name}, std::string{hash}, number});
    }
  });
  found.throw_if_any();
  return result;
}

namespace {

// The file's bytes, or an error at the config key that names it.
std::optional<std::string> read_named(const named_file& f, const char* key,
                                      std::vector<std::string>& errors) {
  auto fail = [&](const std::string& why) {
    errors.push_back(format_config_error(f.where, std::string{"hub."} + key,
                                         "'" + f.path + "': " + why));
    return std::nullopt;
  };
  std::error_code ec;
  if (std::filesystem::is_directory(f.path, ec))
    return fail("a directory, not a file");
  std::ifstream in(f.path, std::ios::binary);
  if (!in)
    return fail(std::strerror(errno));
  std::string text;
  char chunk[64 * 1024];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_mosquitto_file_bytes)
      return fail("larger than "
                  + std::to_string(max_mosquitto_file_bytes / (1024 * 1024))
                  + " MiB");
  }
  if (in.bad())
    return fail("read error");
  return text;
}

// Runs `parse` on the file, moving its errors into `errors`.
template <class Parse>
void parse_named(const named_file& f, const char* key,
                 std::vector<std::string>& errors, Parse parse) {
  if (f.path.empty())
    return;
  auto text = read_named(f, key, errors);
  if (!text)
    return;
  try {
    parse(*text);
  } catch (const config_error& e) {
    errors.insert(errors.end(), e.messages().begin(), e.messages().end());
  }
}

} // namespace

std::shared_ptr<const mosquitto_files>
read_mosquitto_files(const hub_config& hub) {
  auto files = std::make_shared<mosquitto_files>();
  std::vector<std::string> errors;
  parse_named(hub.password_file, "password_file", errors, [&](auto& text) {
    files->users = parse_password_file(text, hub.password_file.path);
    files->password_path = hub.password_file.path;
  });
  parse_named(hub.acl_file, "acl_file", errors, [&](auto& text) {
    files->acl = parse_acl_file(text, hub.acl_file.path);
    files->acl_path = hub.acl_file.path;
  });
  if (!errors.empty())
    throw config_error(errors);
  return files;
}

} // namespace hubflow
