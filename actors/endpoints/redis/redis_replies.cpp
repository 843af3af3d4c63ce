#include "endpoints/redis/redis_replies.hpp"

namespace hubflow {

namespace {

/// The status word and (1-based) item index the scripts answer with.
std::string script_status(const redis_reply& reply, std::int64_t& index) {
  index = 0;
  if (reply.type != redis_reply::kind::array || reply.elements.empty())
    return {};
  if (reply.elements.size() > 1)
    index = reply.elements[1].integer;
  return reply.elements[0].str;
}

/// What a save or delete script answered, for the key it names: none for
/// ok, the etag conflict (mismatch; exists: first-write, save only), or an
/// unexpected reply. `script` is "save" or "delete".
caf::error script_outcome(const std::string& status, const std::string& key,
                          const std::string& script) {
  auto undone = "; nothing was " + script + "d";
  if (status == "ok")
    return caf::none;
  if (status == "mismatch")
    return make_state_error(state_errc::etag_mismatch,
                            "possible etag mismatch: the etag for key '" + key
                              + "' does not match its current version"
                              + undone);
  if (status == "exists")
    return make_state_error(state_errc::etag_mismatch,
                            "first-write: key '" + key
                              + "' already exists and no etag was given"
                              + undone);
  return make_state_error(state_errc::failed, "redis: unexpected reply to the "
                                                + script + " script");
}

} // namespace

caf::error state_error_from(const redis_reply& reply) {
  if (reply.transient())
    return make_state_error(state_errc::unavailable, reply.str);
  return make_state_error(state_errc::failed, "redis: " + reply.str);
}

caf::error decode_save_reply(const redis_reply& reply,
                             const std::vector<state_item>& items) {
  if (reply.failed())
    return state_error_from(reply);
  std::int64_t index = 0;
  auto status = script_status(reply, index);
  auto key = index >= 1 && index <= static_cast<std::int64_t>(items.size())
               ? items[index - 1].key
               : std::string{"?"};
  return script_outcome(status, key, "save");
}

caf::error decode_delete_reply(const redis_reply& reply,
                               const std::string& key) {
  if (reply.failed())
    return state_error_from(reply);
  std::int64_t index = 0;
  auto status = script_status(reply, index);
  return script_outcome(status, key, "delete");
}

std::vector<state_entry> decode_get_reply(const std::vector<std::string>& keys,
                                          const redis_reply& reply,
                                          caf::error& error) {
  if (reply.failed()) {
    error = state_error_from(reply);
    return {};
  }
  if (reply.type != redis_reply::kind::array
      || reply.elements.size() != keys.size()) {
    error = make_state_error(state_errc::failed,
                             "redis: unexpected reply to the get script");
    return {};
  }
  std::vector<state_entry> out;
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    state_entry entry;
    entry.key = keys[i];
    auto& pair = reply.elements[i];
    if (pair.elements.size() == 2
        && pair.elements[0].type == redis_reply::kind::string) {
      entry.found = true;
      entry.value = pair.elements[0].str;
      entry.etag = pair.elements[1].str;
    }
    out.push_back(std::move(entry));
  }
  return out;
}

} // namespace hubflow
