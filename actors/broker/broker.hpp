// The broker as a whole: every actor hubflow runs for a loaded config
// (stats, the stats port, the embedded hub, endpoints, function
// supervisors, rules, the HTTP API), wired together and supervised by a
// keeper (core/keeper.hpp), which restarts what stops and points whoever
// held it at the replacement. main.cpp adds the command line and signals;
// tests start the same broker in-process.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "core/config.hpp"
#include "http/http_api.hpp"
#include "functions/runtime.hpp"
#include "store/hub_store.hpp"

namespace hubflow {

/// Everything the broker spawned, so shutdown can stop it in order. The
/// handles are those started first: after the keeper replaced one, the
/// replacement is a new actor.
struct broker {
  caf::actor stats;
  caf::actor stats_port;
  std::uint16_t stats_port_number = 0;
  caf::actor hub; // the embedded hub, or invalid with an external hub
  /// The hub's store (persistence), closed last at shutdown.
  std::shared_ptr<store::hub_store> store;
  caf::actor http;
  std::uint16_t http_port = 0;
  /// What the HTTP API reaches (and its restarts are given); touched in the
  /// keeper's thread only once the keeper runs.
  std::shared_ptr<http_context> http_reach;
  std::map<std::string, caf::actor> endpoints;
  std::map<std::string, caf::actor> functions;
  /// The running rules, by name (a reload replaces some).
  std::map<std::string, caf::actor> rules;
  std::vector<caf::actor> hub_links;
  /// Supervises stats, the stats port, the hub, endpoints, function
  /// supervisors and the HTTP API once all started; it stops them at
  /// shutdown.
  caf::actor keeper;
  std::string token_path; // removed at shutdown
};

/// Function runtimes by function name.
using runtime_map = std::map<std::string, std::shared_ptr<function_runtime>>;

/// Builds every function's runtime: this is where unknown plugins, wrong
/// ABI versions and SQL that does not parse are refused, with the position
/// of the function in the config. Throws config_error.
runtime_map build_runtimes(const config& cfg, const runtime_options& opts);

/// Starts the actors into `b`; returns an error text when something cannot
/// start (then stop_broker(b) stops what did). The actor system must have
/// loaded caf::io::middleman and hubflow's message types.
std::string start_broker(caf::actor_system& sys, const config& cfg,
                         runtime_map& runtimes, broker& b);

/// What a reload changes in the flows, by name: entries of `rules`,
/// `functions` and `endpoints` added, removed or written differently.
struct flow_changes {
  std::set<std::string> rules;
  std::set<std::string> functions;
  std::set<std::string> endpoints;
};

/// Applies `changed` from `next` while everything runs (a reload; called
/// from main's thread). A changed endpoint or function starts from its new
/// entry and takes over under the keeper: rules and the HTTP API are
/// pointed at it, the old one answers what it was given and is stopped
/// rule_drain_timeout later. An added one starts, a removed one stops the
/// same way. A changed or added rule starts (and subscribes) before the
/// rule it replaces drains (rules/rule.hpp), so no message finds no rule.
/// With an external hub, rules do not change (an error says so). Returns
/// what could not be applied, empty when all was.
std::string reload_flows(caf::actor_system& sys, broker& b, const config& next,
                         runtime_map& runtimes, const flow_changes& changed);

/// Stops everything start_broker started (rules first, stats last) and
/// removes the stats token file; returns at once.
void stop_broker(broker& b);

} // namespace hubflow
