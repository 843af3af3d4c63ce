// `buffer: disk` (docs/persistence.md): a store-and-forward actor in front
// of an endpoint of any type. It takes what rules send the endpoint into
// a queue on disk (store/disk_buffer.hpp), answers the rule OK once the
// record is committed (sync batch/always; at once with sync off), and
// forwards the records in order to the endpoint actor it spawned and
// linked, with a bounded window in flight, deleting each one only after
// the endpoint's OK. Everything else sent to it (subscriptions, state
// store requests) goes to the endpoint unchanged, so rules, the keeper
// and the HTTP API hold one handle per endpoint as without a buffer.
#pragma once

#include <functional>

#include <caf/fwd.hpp>

#include "core/config.hpp"

namespace hubflow {

/// Spawns the buffer of `cfg` (cfg.buffer.disk), which spawns the endpoint
/// itself with `spawn_endpoint` and stops with it.
caf::actor spawn_disk_buffer(
  caf::actor_system& sys, const endpoint_config& cfg,
  std::function<caf::actor(caf::actor_system&, const endpoint_config&)>
    spawn_endpoint);

} // namespace hubflow
