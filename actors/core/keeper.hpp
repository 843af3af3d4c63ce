// The keeper: supervises hubflow's long-lived actors (stats, the stats port,
// the HTTP API, the embedded hub's control actor, endpoints). It monitors
// each one; when one stops while hubflow is not shutting down, the keeper
// logs why, counts it and starts a replacement through the child's
// `restart` function, after a backoff that starts at 100 ms and doubles up
// to 10 s (back to 100 ms once a child ran 30 s).
//
// Others hold the children's handles (rules hold the hub's and endpoints',
// the HTTP API the hub's and the state stores'). After a replacement the
// keeper tells them: `options.on_replaced(old, replacement)` runs first
// (for what restart functions captured), then every actor in
// `options.dependents` and every child with `follows_replacements` gets
// (rewire_atom, caf::actor old, caf::actor replacement).
//
// Counted per child as component kind "keeper", name <child>: restarts
// (replacements started), restart_failures (attempts that could not start
// one), exits (stops outside shutdown); label last_exit (why it stopped).
//
// A reload changes what is kept (main.cpp, broker/broker.hpp):
//   (keeper_adopt_atom, keeper_child) supervises one more child;
//   (keeper_replace_atom, keeper_child) -> caf::actor: the child of that
//       name is now `child.actor` (restarted with `child.restart`), and
//       everyone is told as after a restart; answers the actor it replaced,
//       which the keeper no longer watches (the caller stops it);
//   (keeper_retire_atom, std::string name) -> caf::actor: the child is no
//       longer supervised; answers it (the caller stops it);
//   (keeper_dependents_atom, std::vector<caf::actor> added,
//       std::vector<caf::actor> removed) changes who gets rewire messages;
//   (keeper_run_atom, keeper_task) runs the task in the keeper's thread,
//       where restart functions and on_replaced run (a reload updates what
//       they captured).
//
// Shutdown: an exit message to the keeper (main's user_shutdown) stops the
// children, last adopted first, and nothing is restarted after that; a
// child that stops with exit_reason::user_shutdown is never restarted.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

namespace hubflow {

struct keeper_child {
  /// In logs and as the component name of the child's counters.
  std::string name;
  /// The running actor.
  caf::actor actor;
  /// Starts a replacement; an invalid handle (with `error` set) means "not
  /// now", and the keeper tries again after the next backoff. Runs in the
  /// keeper's thread: it must not block for long.
  std::function<caf::actor(std::string& error)> restart;
  /// Whether the child is told when another child is replaced.
  bool follows_replacements = false;
};

using keeper_adopt_atom = caf::atom_constant<caf::atom("kp_adopt")>;
using keeper_replace_atom = caf::atom_constant<caf::atom("kp_replace")>;
using keeper_retire_atom = caf::atom_constant<caf::atom("kp_retire")>;
using keeper_dependents_atom = caf::atom_constant<caf::atom("kp_deps")>;
using keeper_run_atom = caf::atom_constant<caf::atom("kp_run")>;

/// Work for the keeper's thread (keeper_run_atom).
struct keeper_task {
  std::function<void()> run;
};

struct keeper_options {
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{std::chrono::seconds(10)};
  /// A child that ran this long restarts after backoff_initial again.
  std::chrono::milliseconds stable_after{std::chrono::seconds(30)};
  /// Told (rewire_atom, old, replacement) after each replacement.
  std::vector<caf::actor> dependents;
  /// Runs in the keeper's thread after each replacement, before the
  /// rewire messages go out.
  std::function<void(const caf::actor& old, const caf::actor& replacement)>
    on_replaced;
};

/// Spawns the keeper, which monitors `children` from then on. It answers
/// (get_atom, std::string name) -> caf::actor: the child running as `name`
/// now (an error for an unknown name). Whoever calls
/// this keeps the handle (an actor nobody holds dies unreachable).
caf::actor spawn_keeper(caf::actor_system& sys,
                        std::vector<keeper_child> children,
                        keeper_options options = {});

} // namespace hubflow

// A child goes to the keeper within the process only (it holds a function).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hubflow::keeper_child)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(hubflow::keeper_task)
