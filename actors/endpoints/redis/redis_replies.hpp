// Redis replies to the state store's scripts (redis_scripts.hpp), turned
// into the state store protocol's results and errors (state_store.hpp).
#pragma once

#include <string>
#include <vector>

#include <caf/error.hpp>

#include "endpoints/redis/redis_client.hpp"
#include "core/state_store.hpp"

namespace hubflow {

caf::error decode_save_reply(const redis_reply& reply,
                             const std::vector<state_item>& items);
caf::error decode_delete_reply(const redis_reply& reply,
                               const std::string& key);
std::vector<state_entry> decode_get_reply(const std::vector<std::string>& keys,
                                          const redis_reply& reply,
                                          caf::error& error);

/// A caf::error (category "state") for a failed reply.
caf::error state_error_from(const redis_reply& reply);

} // namespace hubflow
