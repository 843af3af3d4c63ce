#include "endpoints/redis/redis_commands.hpp"

#include <algorithm>
#include <cctype>

#include "endpoints/redis/redis_scripts.hpp"

namespace hubflow {

using namespace redis_scripts;

namespace {

bool all_digits(const std::string& s) {
  return !s.empty()
         && std::all_of(s.begin(), s.end(),
                        [](unsigned char c) { return std::isdigit(c); });
}

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

} // namespace

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
    cmd.emplace_back(item.remove ? "del" : "set");
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

} // namespace hubflow
