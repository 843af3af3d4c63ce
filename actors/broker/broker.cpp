#include "broker/broker.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/keeper.hpp"
#include "core/type_ids.hpp"
#include "endpoints/endpoint.hpp"
#include "functions/supervisor.hpp"
#include "http/http_api.hpp"
#include "hub/embedded_hub.hpp"
#include "hub/external_hub.hpp"
#include "rules/rule.hpp"
#include "stats/stats.hpp"
#include "stats/stats_port.hpp"
#include "stats/stats_token.hpp"
#include "store/disk_buffer.hpp"

namespace hubflow {

runtime_map build_runtimes(const config& cfg, const runtime_options& opts) {
  runtime_map result;
  std::vector<std::string> errors;
  for (std::size_t i = 0; i < cfg.functions.size(); ++i) {
    auto& fn = cfg.functions[i];
    std::string error;
    auto runtime = make_runtime(fn, opts, error);
    if (!runtime) {
      auto key = fn.runtime == "native" ? ".plugin"
                 : fn.runtime == "wasm" ? ".module"
                                        : ".handler";
      errors.push_back(format_config_error(
        fn.where, "functions[" + std::to_string(i) + "]" + key, error));
      continue;
    }
    result.emplace(fn.name, std::move(runtime));
  }
  if (!errors.empty())
    throw config_error(errors);
  return result;
}

namespace {

/// The stats actor, the stats port and the token file, and how the keeper
/// restarts the first two.
std::string start_stats(caf::actor_system& sys, const config& cfg, broker& b,
                        std::vector<keeper_child>& kept) {
  std::string error;
  auto store = make_stats_store();
  b.stats = spawn_stats(sys, cfg.stats, store);
  // It follows replacements of the hub, which gets its $SYS messages.
  kept.push_back({"stats", b.stats,
                  [&sys, stats_cfg = cfg.stats, store](std::string&) {
                    return spawn_stats(sys, stats_cfg, store);
                  },
                  true});
  auto port_ctx = std::make_shared<stats_port_context>();
  port_ctx->token = make_stats_token(error);
  if (port_ctx->token.empty())
    return error;
  std::uint16_t port = 0;
  b.stats_port = spawn_stats_port(sys, cfg.stats.host, cfg.stats.port,
                                  port_ctx, error, &port);
  b.stats_port_number = port;
  if (!b.stats_port)
    return error;
  // A restart binds the port clients already know, also after port 0.
  kept.push_back({"stats_port", b.stats_port,
                  [&sys, host = cfg.stats.host, port,
                   port_ctx](std::string& err) {
                    return spawn_stats_port(sys, host, port, port_ctx, err);
                  },
                  false});
  bool configured = !cfg.stats.token_file.empty();
  auto path = configured ? cfg.stats.token_file
                         : default_stats_token_path(port);
  if (!write_stats_token(path, port_ctx->token, !configured, error))
    return (configured ? "stats.token_file: " : "") + error;
  b.token_path = path;
  spdlog::info("stats on {}:{} (hubflowctl stats --stats-port {}{}), token "
               "in {}",
               cfg.stats.host, port, port,
               configured ? " --token-file " + path : std::string{}, path);
  return {};
}

} // namespace

namespace {

/// How many rules have subscribed to the embedded hub, asked until there
/// are `expected` or `timeout` passed (rules subscribe as they start).
std::uint64_t wait_for_rule_subscribers(caf::scoped_actor& self,
                                        const caf::actor& hub,
                                        std::uint64_t expected,
                                        std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::uint64_t subscribed = 0;
  for (;;) {
    self->request(hub, std::chrono::seconds(1), get_atom::value,
                  std::string{"rule_subscribers"})
      .receive([&](std::uint64_t n) { subscribed = n; },
               [&](caf::error&) {});
    if (subscribed >= expected || std::chrono::steady_clock::now() >= deadline)
      return subscribed;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

/// What `rule` is wired to: `hub` where it reads or writes the hub, the
/// endpoints and the function it names as `endpoint` and `function` find
/// them.
using find_actor = std::function<caf::actor(const std::string& name)>;
rule_wiring wiring_of(const rule_config& rule, const caf::actor& hub,
                      const find_actor& endpoint, const find_actor& function) {
  rule_wiring wiring;
  wiring.source = as_role<source_actor>(
    rule.from.endpoint.empty() ? hub : endpoint(rule.from.endpoint));
  wiring.destination = as_role<sink_actor>(
    rule.to.endpoint.empty() ? hub : endpoint(rule.to.endpoint));
  wiring.destination_is_endpoint = !rule.to.endpoint.empty();
  if (!rule.function.empty())
    wiring.function = as_role<function_actor>(function(rule.function));
  return wiring;
}

/// Lets the embedded hub accept connections once every rule reading from
/// it has subscribed (they subscribe as they start, within milliseconds);
/// after 10 s it accepts anyway, and says so.
void accept_once_rules_subscribed(caf::actor_system& sys, const caf::actor& hub,
                                  const config& cfg) {
  std::uint64_t expected = 0;
  for (auto& rule : cfg.rules)
    expected += rule.from.endpoint.empty() ? 1 : 0;
  caf::scoped_actor self{sys};
  auto subscribed = wait_for_rule_subscribers(self, hub, expected,
                                              std::chrono::seconds(10));
  if (subscribed < expected)
    spdlog::warn("hub: {} of {} rules subscribed after 10 s; accepting "
                 "connections anyway",
                 subscribed, expected);
  caf::anon_send(hub, accept_atom::value);
}

} // namespace

std::string start_broker(caf::actor_system& sys, const config& cfg,
                         runtime_map& rts, broker& b) {
  std::vector<keeper_child> kept;
  auto error = start_stats(sys, cfg, b, kept);
  if (!error.empty())
    return error;
  // A buffer file that will not open (damaged, another format, not
  // writable) stops the start before anything listens, as the hub's store
  // does: restarting its endpoint could not mend it.
  for (auto& ep : cfg.endpoints)
    if (ep.buffer.disk
        && !store::disk_buffer::check(cfg.persistence, ep.name, error))
      return "endpoint " + ep.name + ": " + error;
  // Rules and the HTTP API hold the handles of the hub, endpoints and
  // function supervisors: the keeper tells them of each replacement.
  if (cfg.hub.embedded) {
    hub_restarter restart_hub;
    // Accepting waits for the rules (below), so that no client's message
    // arrives before the rule that routes it: acknowledged and lost.
    if (cfg.persistence.enabled) {
      b.store = store::hub_store::open(cfg.persistence, error);
      if (!b.store)
        return "persistence: " + error;
    }
    b.hub = spawn_embedded_hub(sys, cfg.hub, error, &restart_hub, false,
                               b.store);
    if (!b.hub)
      return error;
    caf::anon_send(b.stats, sys_hub_atom::value, b.hub);
    kept.push_back({"hub", b.hub, std::move(restart_hub), false});
  } else {
    spdlog::info("using the external hub at {}", cfg.hub.address);
  }
  // Each endpoint's settings were parsed once, at load (cfg.endpoints[i].parsed);
  // one with `buffer: disk` is its buffer actor, which spawns the endpoint.
  for (auto& ep : cfg.endpoints) {
    auto start_endpoint = [&sys, ep](std::string&) {
      return spawn_endpoint(sys, ep);
    };
    auto endpoint = start_endpoint(error);
    b.endpoints.emplace(ep.name, endpoint);
    kept.push_back({"endpoint:" + ep.name, endpoint, start_endpoint, false});
  }
  for (auto& fn : cfg.functions) {
    auto spawn_function = [&sys, fn, rt = rts.at(fn.name)](std::string&) {
      return spawn_function_supervisor(sys, fn, rt);
    };
    auto function = spawn_function(error);
    b.functions.emplace(fn.name, function);
    kept.push_back({"function:" + fn.name, function, spawn_function, false});
  }
  for (auto& rule : cfg.rules) {
    // With an external hub each rule has a connection (and client id) of
    // its own, as Baetyl's function manager does.
    auto hub_for_rule = [&]() -> caf::actor {
      if (cfg.hub.embedded)
        return b.hub;
      auto link = spawn_external_hub_link(
        sys, cfg.hub, rule.clientid.empty() ? "hubflow-" + rule.name
                                            : rule.clientid);
      b.hub_links.push_back(link);
      return link;
    };
    caf::actor hub;
    if (rule.from.endpoint.empty() || rule.to.endpoint.empty())
      hub = hub_for_rule();
    auto wiring = wiring_of(
      rule, hub, [&](auto& name) { return b.endpoints.at(name); },
      [&](auto& name) { return b.functions.at(name); });
    b.rules.emplace(rule.name, spawn_rule(sys, rule, wiring));
  }
  if (b.hub)
    accept_once_rules_subscribed(sys, b.hub, cfg);
  keeper_options supervision;
  for (auto& [name, rule] : b.rules)
    supervision.dependents.push_back(rule);
  if (cfg.http.enabled) {
    // Shared with the restart function, and kept current by on_replaced
    // (both run in the keeper's thread only).
    auto ctx = b.http_reach = std::make_shared<http_context>();
    ctx->hub = as_role<sink_actor>(b.hub);
    ctx->functions = as_roles<function_actor>(b.functions);
    for (auto& ep : cfg.endpoints)
      if (ep.type == "redis")
        ctx->state_stores.emplace(
          ep.name, http_state_store{ep.type, as_role<state_store_actor>(
                                               b.endpoints.at(ep.name))});
    // The stats actor may be restarted; the reader always asks the current one.
    ctx->stats = as_role<stats_reader_actor>(spawn_stats_reader(sys));
    std::uint16_t port = 0;
    b.http = spawn_http_api(sys, cfg.http, *ctx, error, &port);
    b.http_port = port;
    if (!b.http)
      return error;
    spdlog::info("HTTP API on {} (port {})", cfg.http.listen, port);
    // Restarted on the port bound now, also when http.listen said port 0.
    auto http_cfg = cfg.http;
    std::string bad;
    auto at = parse_host_port(cfg.http.listen, http_listen_rules, bad);
    at->port = port; // http.listen was checked when the config was loaded
    http_cfg.listen = to_string(*at);
    kept.push_back({"http_api", b.http,
                    [&sys, http_cfg, ctx](std::string& err) {
                      return spawn_http_api(sys, http_cfg, *ctx, err);
                    },
                    true});
    supervision.on_replaced = [ctx](const caf::actor& old,
                                    const caf::actor& replacement) {
      ctx->replace(old, replacement);
    };
  }
  b.keeper = spawn_keeper(sys, std::move(kept), std::move(supervision));
  spdlog::info("hubflow {} running: {} rules, {} functions, {} endpoints",
               HUBFLOW_VERSION, cfg.rules.size(), cfg.functions.size(),
               cfg.endpoints.size());
  return {};
}

namespace {

/// The keeper's child `name` as it runs now (a restart may have replaced
/// the one start_broker spawned); invalid when the keeper has none.
caf::actor current(caf::scoped_actor& self, const broker& b,
                   const std::string& name) {
  caf::actor found;
  self->request(b.keeper, std::chrono::seconds(5), get_atom::value, name)
    .receive([&](caf::actor& a) { found = std::move(a); },
             [](caf::error&) {});
  return found;
}

/// Stops `old` once it had rule_drain_timeout to answer what it was given,
/// or when the keeper stops first (shutdown).
void stop_later(caf::actor_system& sys, const caf::actor& keeper,
                caf::actor old) {
  sys.spawn([keeper, old](caf::event_based_actor* self) {
    auto stop = [=] {
      self->send_exit(old, caf::exit_reason::user_shutdown);
      self->quit();
    };
    // Monitored, not linked: a link would take the keeper (and everything
    // it keeps) down with this helper when it is done.
    self->monitor(keeper);
    self->set_down_handler([=](caf::down_msg&) { stop(); });
    self->delayed_send(self, rule_drain_timeout, tick_atom::value);
    return caf::behavior{[=](tick_atom) { stop(); }};
  });
}

using restart_fn = std::function<caf::actor(std::string& error)>;

/// A reload's endpoints or functions (`prefix` "endpoint:" or "function:",
/// as the keeper names them): each of `names` starts from what
/// `spawn_for(name)` returns and the keeper adopts it, or it replaces the
/// one of that name; an empty spawn function means it was removed and the
/// keeper retires it. What it replaced or retired stops later (stop_later).
/// `running` ends up with the actors as they run now.
void reload_children(caf::actor_system& sys, caf::scoped_actor& self,
                     broker& b, const std::string& prefix,
                     const std::set<std::string>& names,
                     std::map<std::string, caf::actor>& running,
                     const std::function<restart_fn(const std::string&)>&
                       spawn_for) {
  for (auto& name : names) {
    auto child = prefix + name;
    auto spawn = spawn_for(name);
    caf::actor old;
    auto take_old = [&](caf::actor& a) { old = std::move(a); };
    if (!spawn) {
      self->request(b.keeper, std::chrono::seconds(5),
                    keeper_retire_atom::value, child)
        .receive(take_old, [](caf::error&) {});
      running.erase(name);
    } else {
      std::string error;
      auto fresh = spawn(error);
      keeper_child kc{child, fresh, spawn, false};
      if (running.count(name))
        self->request(b.keeper, std::chrono::seconds(5),
                      keeper_replace_atom::value, std::move(kc))
          .receive(take_old, [](caf::error&) {});
      else
        self->send(b.keeper, keeper_adopt_atom::value, std::move(kc));
      running[name] = fresh;
    }
    if (old)
      stop_later(sys, b.keeper, std::move(old));
  }
}

/// The HTTP API's functions and state stores as they run after a reload:
/// set in the keeper's thread (where its restarts read them), then sent to
/// the running API.
void tell_http_api(caf::actor_system& sys, caf::scoped_actor& self,
                   broker& b, const config& next) {
  std::map<std::string, function_actor> functions;
  for (auto& fn : next.functions)
    functions[fn.name] = as_role<function_actor>(
      current(self, b, "function:" + fn.name));
  std::map<std::string, http_state_store> stores;
  for (auto& ep : next.endpoints)
    if (ep.type == "redis")
      stores[ep.name] = {ep.type, as_role<state_store_actor>(current(
                                    self, b, "endpoint:" + ep.name))};
  auto ctx = b.http_reach;
  keeper_task task{[&sys, ctx, functions, stores] {
    ctx->functions = functions;
    ctx->state_stores = stores;
    if (auto http = sys.registry().get(http_registry_name))
      caf::anon_send(caf::actor_cast<caf::actor>(http), reload_atom::value,
                     http_context_ptr{std::make_shared<const http_context>(*ctx)});
  }};
  self->send(b.keeper, keeper_run_atom::value, std::move(task));
}

} // namespace

std::string reload_flows(caf::actor_system& sys, broker& b, const config& next,
                         runtime_map& runtimes, const flow_changes& changed) {
  if (!changed.rules.empty() && !next.hub.embedded)
    return "rules: with an external hub (hub.address) they change at the "
           "next start (each rule's link keeps its client id, and a new "
           "link under that id would take the old one's session over "
           "while it still drains)";
  caf::scoped_actor self{sys};
  reload_children(sys, self, b, "endpoint:", changed.endpoints, b.endpoints,
                  [&](const std::string& name) -> restart_fn {
                    auto ep = next.find_endpoint(name);
                    if (!ep)
                      return {};
                    return [&sys, ep = *ep](std::string&) {
                      return spawn_endpoint(sys, ep);
                    };
                  });
  reload_children(sys, self, b, "function:", changed.functions, b.functions,
                  [&](const std::string& name) -> restart_fn {
                    auto fn = next.find_function(name);
                    if (!fn)
                      return {};
                    return [&sys, fn = *fn, rt = runtimes.at(name)](
                             std::string&) {
                      return spawn_function_supervisor(sys, fn, rt);
                    };
                  });
  if (b.http_reach && !(changed.functions.empty() && changed.endpoints.empty()))
    tell_http_api(sys, self, b, next);
  if (changed.rules.empty())
    return {};
  auto hub = current(self, b, "hub");
  find_actor endpoint = [&](auto& name) {
    return current(self, b, "endpoint:" + name);
  };
  find_actor function = [&](auto& name) {
    return current(self, b, "function:" + name);
  };
  // The new rules subscribe before the ones they replace let go.
  auto subscribed = wait_for_rule_subscribers(self, hub, 0, {});
  std::vector<std::pair<std::string, caf::actor>> started;
  for (auto& rule : next.rules)
    if (changed.rules.count(rule.name)) {
      auto wiring = wiring_of(rule, hub, endpoint, function);
      subscribed += rule.from.endpoint.empty() ? 1 : 0;
      started.emplace_back(rule.name, spawn_rule(sys, rule, wiring));
    }
  wait_for_rule_subscribers(self, hub, subscribed, std::chrono::seconds(5));
  std::vector<caf::actor> added, removed;
  for (auto& name : changed.rules)
    if (auto old = b.rules.find(name); old != b.rules.end()) {
      self->send(old->second, rule_drain_atom::value);
      removed.push_back(old->second);
      b.rules.erase(old);
    }
  for (auto& [name, rule] : started) {
    added.push_back(rule);
    b.rules.emplace(name, rule);
  }
  self->send(b.keeper, keeper_dependents_atom::value, added, removed);
  return {};
}

void stop_broker(broker& b) {
  auto exit = [](const caf::actor& a) {
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  };
  for (auto& [name, r] : b.rules)
    exit(r);
  for (auto& l : b.hub_links)
    exit(l);
  // Not kept (it holds nothing and finds the stats actor by name), so the
  // keeper does not stop it; left running it held the exit for 3 s.
  if (b.http_reach && b.http_reach->stats)
    caf::anon_send_exit(b.http_reach->stats, caf::exit_reason::user_shutdown);
  if (b.keeper) {
    exit(b.keeper); // it stops what it keeps
  } else {
    for (auto& [name, e] : b.endpoints)
      exit(e);
    exit(b.http);
    for (auto& [name, f] : b.functions)
      exit(f);
    exit(b.hub);
    exit(b.stats_port);
    exit(b.stats);
  }
  if (!b.token_path.empty())
    ::unlink(b.token_path.c_str());
}
} // namespace hubflow
