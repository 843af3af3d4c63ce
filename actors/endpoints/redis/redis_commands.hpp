// The Redis commands of the endpoint: writing a rule's message in the
// endpoint's mode, and the state store's atomic save, get and delete (Lua
// scripts of redis_scripts.hpp). Pure: no I/O, unit-tested without a server.
#pragma once

#include <string>
#include <vector>

#include <caf/error.hpp>

#include "core/message.hpp"
#include "endpoints/redis/redis_settings.hpp"
#include "core/state_store.hpp"

namespace hubflow {

/// The one command that writes `msg` (mode of `s`) to `name`.
std::vector<std::string> make_write_command(const redis_settings& s,
                                            const std::string& name,
                                            const message& msg);

/// EVAL of the atomic bulk save; `error` set (and empty result) when an item
/// is unusable (empty key, etag that is not a version).
std::vector<std::string> make_save_command(const std::vector<state_item>& items,
                                           const std::string& key_prefix,
                                           caf::error& error);

/// EVAL reading every key's data and version in one step.
std::vector<std::string> make_get_command(const std::vector<std::string>& keys,
                                          const std::string& key_prefix);

std::vector<std::string> make_delete_command(const state_item& item,
                                             const std::string& key_prefix,
                                             caf::error& error);

} // namespace hubflow
