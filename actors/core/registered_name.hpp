// Names in the actor system's registry for actors that are replaced while
// hubflow runs (the keeper's restarts): the hub's control actor, the HTTP
// API, the stats actor.
#pragma once

#include <caf/actor_cast.hpp>
#include <caf/actor_registry.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>

namespace hubflow {

/// Registers `actor` under `name`, in place of whoever was registered.
/// CAF 0.17's registry put() keeps an existing entry, even one of an actor
/// that stopped: a replacement that only put itself there stayed unknown,
/// and whoever looked the name up (SIGHUP, a reload) reached the dead one.
template <class Handle>
void register_as(caf::actor_system& sys, caf::atom_value name,
                 const Handle& actor) {
  sys.registry().erase(name);
  sys.registry().put(name, caf::actor_cast<caf::strong_actor_ptr>(actor));
}

} // namespace hubflow
