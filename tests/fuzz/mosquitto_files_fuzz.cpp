// Mosquitto's password and acl files (hub/mosquitto_files): the input is
// the file's text, read as both. Each either loads or throws config_error
// with messages; nothing else may escape. A password file that loads
// holds only named users with hashes that parse. An acl file that loads
// is then applied: for the first rules of the anonymous section and the
// patterns, the rule's filter is subscribed to, and a topic made from it
// published and delivered, by two anonymous clients (one with a wildcard
// in its client id, which the patterns must refuse outright).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz_input.hpp"
#include "hub/auth.hpp"
#include "hub/mosquitto_files.hpp"

using namespace hubflow;
using hubflow::fuzz::check;

namespace {

// A topic name the filter matches: wildcards filled with "x".
std::string topic_from(const std::string& filter) {
  std::string topic;
  for (char c : filter)
    topic += (c == '+' || c == '#') ? 'x' : c;
  return topic;
}

void check_password_file(const std::string& text) {
  try {
    for (auto& user : parse_password_file(text, "fuzz.pw"))
      check(!user.username.empty() && valid_password_hash(user.hash),
            "a loaded password entry without a name or a valid hash");
  } catch (const config_error& e) {
    check(!e.messages().empty(), "a config_error without messages");
  }
}

// `own_lines`: whether the anonymous section has any; without them a
// client id with a wildcard can neither publish nor receive anything.
void apply(const authenticator& auth, const std::vector<acl_rule>& rules,
           bool own_lines) {
  std::size_t checked = 0;
  for (const auto& rule : rules) {
    if (++checked > 64)
      return;
    auto topic = topic_from(rule.topic);
    client_identity plain{nullptr, "fuzz"};
    auth.may_subscribe(plain, rule.topic);
    auth.may_publish(plain, topic);
    auth.may_receive(plain, topic);
    client_identity wild{nullptr, "fu+zz"};
    auth.may_subscribe(wild, rule.topic);
    bool published = auth.may_publish(wild, topic);
    bool received = auth.may_receive(wild, topic);
    check(own_lines || (!published && !received),
          "a pattern served a client id with a wildcard");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  check_password_file(text);
  auto files = std::make_shared<mosquitto_files>();
  try {
    files->acl = parse_acl_file(text, "fuzz.acl");
  } catch (const config_error& e) {
    check(!e.messages().empty(), "a config_error without messages");
    return 0;
  }
  files->acl_path = "fuzz.acl";
  hub_config cfg;
  cfg.files = files;
  authenticator auth(cfg);
  bool own_lines = !files->acl.anonymous.empty();
  apply(auth, files->acl.anonymous, own_lines);
  apply(auth, files->acl.patterns, own_lines);
  return 0;
}
