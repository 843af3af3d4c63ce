#include "core/keeper.hpp"

#include <algorithm>
#include <memory>
#include <utility>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/probe.hpp"
#include "core/type_ids.hpp"

namespace hubflow {

namespace {

using restart_atom = caf::atom_constant<caf::atom("hf_restart")>;
using steady = std::chrono::steady_clock;

struct kept {
  keeper_child child;
  /// A reload took it away: its exit is no longer a reason to restart.
  bool retired = false;
  probe stats;
  std::chrono::milliseconds backoff{0};
  steady::time_point started = steady::now();

  explicit kept(keeper_child c)
    : child(std::move(c)), stats("keeper", child.name) {
    // At 0 from the start, so `hubflowctl stats` shows what is supervised.
    stats.add("restarts", 0);
    stats.add("exits", 0);
  }
};

struct keeper_state {
  static inline const char* name = "hubflow.keeper";
  std::vector<std::unique_ptr<kept>> children;
  keeper_options options;
  bool stopping = false;
};

using keeper_actor = caf::stateful_actor<keeper_state>;

void report(keeper_actor* self, kept& k) {
  // Sent even when unchanged: after the stats actor itself restarted, the
  // new one must hear the current numbers.
  auto stats = self->home_system().registry().get<caf::actor>(
    stats_registry_name);
  if (stats)
    self->send(stats, report_atom::value, k.stats.snapshot());
}

void schedule_restart(keeper_actor* self, std::size_t index) {
  auto& k = *self->state.children[index];
  auto& opts = self->state.options;
  k.backoff = k.backoff.count() == 0
                ? opts.backoff_initial
                : std::min(k.backoff * 2, opts.backoff_max);
  self->delayed_send(self, k.backoff, restart_atom::value,
                     static_cast<std::uint64_t>(index));
}

void child_down(keeper_actor* self, std::size_t index,
                const caf::error& reason) {
  auto& st = self->state;
  auto& k = *st.children[index];
  if (st.stopping || k.retired || reason == caf::exit_reason::user_shutdown)
    return;
  auto why = reason ? self->system().render(reason) : std::string{"normal"};
  k.stats.add("exits");
  k.stats.label("last_exit", why);
  if (steady::now() - k.started >= st.options.stable_after)
    k.backoff = std::chrono::milliseconds{0};
  schedule_restart(self, index);
  spdlog::error("{} stopped ({}); restarting it in {} ms", k.child.name, why,
                k.backoff.count());
  report(self, k);
}

/// Points everyone holding `old` at `replacement`.
void tell_replaced(keeper_actor* self, const caf::actor& old,
                   const caf::actor& replacement) {
  auto& st = self->state;
  if (st.options.on_replaced)
    st.options.on_replaced(old, replacement);
  for (auto& dependent : st.options.dependents)
    self->send(dependent, rewire_atom::value, old, replacement);
  for (auto& other : st.children)
    if (other->child.follows_replacements && other->child.actor != replacement)
      self->send(other->child.actor, rewire_atom::value, old, replacement);
}

void try_restart(keeper_actor* self, std::size_t index) {
  auto& k = *self->state.children[index];
  if (self->state.stopping || k.retired)
    return;
  std::string error;
  caf::actor replacement;
  try {
    replacement = k.child.restart(error);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!replacement) {
    k.stats.add("restart_failures");
    schedule_restart(self, index);
    spdlog::error("cannot restart {}: {}; next try in {} ms", k.child.name,
                  error, k.backoff.count());
    report(self, k);
    return;
  }
  auto old = std::exchange(k.child.actor, replacement);
  k.started = steady::now();
  self->monitor(replacement);
  k.stats.add("restarts");
  spdlog::info("{} restarted", k.child.name);
  tell_replaced(self, old, replacement);
  // Every child's counters: if this was the stats actor, it is new.
  for (auto& other : self->state.children)
    if (!other->retired) // a reload's replacement reports under its name
      report(self, *other);
}

/// The kept child named `name` (not retired), or nullptr.
kept* find_child(keeper_actor* self, const std::string& name) {
  for (auto& k : self->state.children)
    if (!k->retired && k->child.name == name)
      return k.get();
  return nullptr;
}

caf::error no_child(const std::string& name) {
  return caf::make_error(caf::sec::invalid_argument,
                         "the keeper has no child '" + name + "'");
}

/// Supervises `child` from now on (a reload added it).
void adopt(keeper_actor* self, keeper_child child) {
  auto& st = self->state;
  self->monitor(child.actor);
  st.children.push_back(std::make_unique<kept>(std::move(child)));
  report(self, *st.children.back());
}

caf::behavior keeper(keeper_actor* self, std::vector<keeper_child> children,
                     keeper_options options) {
  auto& st = self->state;
  st.options = options;
  for (auto& c : children) {
    st.children.push_back(std::make_unique<kept>(std::move(c)));
    self->monitor(st.children.back()->child.actor);
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& kids = self->state.children;
    for (std::size_t i = 0; i < kids.size(); ++i)
      if (!kids[i]->retired && kids[i]->child.actor.address() == dm.source) {
        child_down(self, i, dm.reason);
        return;
      }
  });
  self->set_exit_handler([=](caf::exit_msg& em) {
    auto& st = self->state;
    st.stopping = true;
    for (auto i = st.children.rbegin(); i != st.children.rend(); ++i)
      if ((*i)->child.actor)
        self->send_exit((*i)->child.actor, caf::exit_reason::user_shutdown);
    self->quit(em.reason);
  });
  for (auto& k : st.children)
    report(self, *k);
  return {
    [=](get_atom, const std::string& name) -> caf::result<caf::actor> {
      if (auto k = find_child(self, name))
        return k->child.actor;
      return no_child(name);
    },
    [=](keeper_adopt_atom, keeper_child& child) { adopt(self, std::move(child)); },
    [=](keeper_replace_atom, keeper_child& child) -> caf::result<caf::actor> {
      auto k = find_child(self, child.name);
      if (!k)
        return no_child(child.name);
      // The old one's down message must not restart anything: a new entry
      // takes over, the old one stays retired (restart messages carry
      // indices).
      k->retired = true;
      auto old = k->child.actor;
      auto name = child.name;
      auto replacement = child.actor;
      adopt(self, std::move(child));
      spdlog::info("{} replaced (reload)", name);
      tell_replaced(self, old, replacement);
      return old;
    },
    [=](keeper_retire_atom, const std::string& name) -> caf::result<caf::actor> {
      auto k = find_child(self, name);
      if (!k)
        return no_child(name);
      k->retired = true;
      return k->child.actor;
    },
    [](keeper_run_atom, const keeper_task& task) {
      try {
        task.run();
      } catch (const std::exception& e) {
        spdlog::error("keeper: a reload's task failed: {}", e.what());
      }
    },
    [=](keeper_dependents_atom, const std::vector<caf::actor>& added,
        const std::vector<caf::actor>& removed) {
      auto& deps = self->state.options.dependents;
      std::erase_if(deps, [&](const caf::actor& a) {
        return std::find(removed.begin(), removed.end(), a) != removed.end();
      });
      deps.insert(deps.end(), added.begin(), added.end());
    },
    [=](restart_atom, std::uint64_t index) {
      if (index < self->state.children.size())
        try_restart(self, static_cast<std::size_t>(index));
    },
  };
}

} // namespace

caf::actor spawn_keeper(caf::actor_system& sys,
                        std::vector<keeper_child> children,
                        keeper_options options) {
  return sys.spawn(keeper, std::move(children), options);
}

} // namespace hubflow
