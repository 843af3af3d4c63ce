// hubflow: the broker binary. Reads the command line and the config, builds
// every actor (stats, hub, endpoints, function supervisors, rules), then runs
// until SIGINT or SIGTERM.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include <unistd.h>

#include <boost/program_options.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "core/config.hpp"
#include "core/keeper.hpp"
#include "core/type_ids.hpp"
#include "endpoints/endpoint.hpp"
#include "functions/runtime.hpp"
#include "functions/supervisor.hpp"
#include "http/http_api.hpp"
#include "hub/embedded_hub.hpp"
#include "hub/external_hub.hpp"
#include "rules/rule.hpp"
#include "stats/stats.hpp"
#include "stats/stats_port.hpp"
#include "stats/stats_token.hpp"

namespace po = boost::program_options;
using namespace hubflow;

namespace {

/// Exit codes, as documented in --help and docs/hubflow.md.
enum exit_code : int {
  exit_ok = 0,
  exit_config = 1,  // the config (or a plugin it names) is invalid
  exit_usage = 2,   // bad command line
  exit_startup = 3, // valid config, but a port or resource is unavailable
  exit_lost = 4,    // the hub or an endpoint stopped and cannot be restarted
                    // in place: a service manager restarts the process
};

/// What main exits with once stopped; a keeper's on_lost sets exit_lost.
std::atomic<int> final_exit_code{exit_ok};

const char* usage_text = R"(hubflow — an edge MQTT broker that routes messages through functions
to MQTT topics, Kafka and Redis.

Usage:
  hubflow [--config FILE] [options]

With no --config, hubflow runs its embedded default: an MQTT 3.1.1/5.0
broker on 127.0.0.1:1883 that lets anonymous clients in from loopback only,
and stats for `hubflowctl stats` on 127.0.0.1:9883 (for the user hubflow runs
as: the port's token is in a file only that user can read).

Examples:
  hubflow                                   # the embedded default broker
  hubflow --config config/examples/sayhi.yaml --plugin-dir build/plugins
  hubflow --config my.yaml --check          # validate, print errors, exit
  hubflow --listen 0.0.0.0:1883             # accept clients from the network
  hubflow --print-default-config > my.yaml  # start a config of your own

Options)";

const char* exit_codes_text = R"(
Exit codes:
  0  stopped normally (SIGINT/SIGTERM), or --check found the config valid
  1  the config is invalid: each error names file:line:column and the key
  2  the command line is wrong
  3  the config is valid but the broker cannot start (a port is taken, the
     stats token directory is unsafe, ...)
  4  the embedded hub or an endpoint stopped while running; hubflow stopped
     itself so that a service manager (Restart=on-failure) starts it afresh

Docs: docs/getting-started.md, docs/configuration.md, docs/hubflowctl.md
)";

struct options {
  std::string config_file;
  bool check = false;
  std::string log_level;
  std::vector<std::string> plugin_dirs;
  std::vector<std::string> listen;
  int stats_port = -1;
  std::string python;
  std::string node;
};

std::optional<options> parse_options(int argc, char** argv, int& exit) {
  options opts;
  po::options_description desc(usage_text);
  desc.add_options()
    ("help,h", "print this help and exit")
    ("version", "print the version and exit")
    ("config,c", po::value(&opts.config_file)->value_name("FILE"),
     "the YAML config (default: the embedded default above)")
    ("check", po::bool_switch(&opts.check),
     "validate the config (schema, references, plugins, SQL) and exit 0 or 1")
    ("log-level,l", po::value(&opts.log_level)->value_name("LEVEL"),
     "trace, debug, info, warn, error or off (overrides logger.level)")
    ("plugin-dir,p", po::value(&opts.plugin_dirs)->value_name("DIR"),
     "where native plugins are looked up by name; repeatable, searched in "
     "order, before the build's own plugin dir")
    ("listen", po::value(&opts.listen)->value_name("HOST:PORT"),
     "replaces the embedded hub's listeners; repeatable")
    ("stats-port", po::value(&opts.stats_port)->value_name("PORT"),
     "overrides stats.port (0 picks a free port and logs it)")
    ("python", po::value(&opts.python)->value_name("PATH"),
     "interpreter for Python functions (default /usr/bin/python3; a "
     "function's `interpreter:` wins)")
    ("node", po::value(&opts.node)->value_name("PATH"),
     "interpreter for Node functions (default: node on the PATH)")
    ("print-default-config", "print the embedded default config and exit");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "hubflow: " << e.what() << "\nTry 'hubflow --help'.\n";
    exit = exit_usage;
    return std::nullopt;
  }
  if (vm.count("help")) {
    std::cout << desc << exit_codes_text;
    exit = exit_ok;
    return std::nullopt;
  }
  if (vm.count("version")) {
    std::cout << "hubflow " << HUBFLOW_VERSION << "\n";
    exit = exit_ok;
    return std::nullopt;
  }
  if (vm.count("print-default-config")) {
    std::cout << default_config_text();
    exit = exit_ok;
    return std::nullopt;
  }
  // spdlog reads an unknown level as "off": a typo would silence the log.
  const std::vector<std::string> levels{"trace", "debug", "info", "warn",
                                        "warning", "error", "off"};
  if (!opts.log_level.empty()
      && std::find(levels.begin(), levels.end(), opts.log_level)
           == levels.end()) {
    std::cerr << "hubflow: --log-level '" << opts.log_level
              << "' is not one of trace, debug, info, warn, error, off\n"
                 "Try 'hubflow --help'.\n";
    exit = exit_usage;
    return std::nullopt;
  }
  return opts;
}

void setup_logging(const log_config& cfg, const std::string& override_level) {
  std::shared_ptr<spdlog::logger> logger;
  if (cfg.path.empty())
    logger = spdlog::stderr_color_mt("hubflow");
  else
    logger = spdlog::basic_logger_mt("hubflow", cfg.path);
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  spdlog::set_default_logger(logger);
  auto level = override_level.empty() ? cfg.level : override_level;
  if (level == "warning")
    level = "warn";
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

/// Builds every function's runtime: this is where unknown plugins, wrong
/// ABI versions and SQL that does not parse are refused, with the position
/// of the function in the config.
std::map<std::string, std::shared_ptr<function_runtime>>
build_runtimes(const config& cfg, const runtime_options& opts) {
  std::map<std::string, std::shared_ptr<function_runtime>> result;
  std::vector<std::string> errors;
  for (std::size_t i = 0; i < cfg.functions.size(); ++i) {
    auto& fn = cfg.functions[i];
    std::string error;
    auto runtime = make_runtime(fn, opts, error);
    if (!runtime) {
      auto key = fn.runtime == "native" ? ".plugin" : ".handler";
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

runtime_options make_runtime_options(const options& opts) {
  runtime_options result;
  result.plugin_dirs = opts.plugin_dirs;
  result.plugin_dirs.push_back(HUBFLOW_DEFAULT_PLUGIN_DIR);
  if (!opts.python.empty())
    result.python = opts.python;
  if (!opts.node.empty())
    result.node = opts.node;
  result.workers_dir = std::string{HUBFLOW_SOURCE_DIR} + "/tools/workers";
  if (auto* dir = std::getenv("HUBFLOW_WORKERS_DIR"))
    result.workers_dir = dir;
  return result;
}

void apply_overrides(config& cfg, const options& opts) {
  if (!opts.listen.empty()) {
    cfg.hub.embedded = true;
    cfg.hub.listen.clear();
    for (auto& l : opts.listen)
      cfg.hub.listen.push_back(l.rfind("tcp://", 0) == 0 ? l : "tcp://" + l);
  }
  if (opts.stats_port >= 0)
    cfg.stats.port = static_cast<std::uint16_t>(opts.stats_port);
}

/// Everything the broker spawned, so shutdown can stop it in order.
struct broker {
  caf::actor stats;
  caf::actor stats_port;
  caf::actor hub; // the embedded hub, or invalid with an external hub
  caf::actor http;
  std::map<std::string, caf::actor> endpoints;
  std::map<std::string, caf::actor> functions;
  std::vector<caf::actor> rules;
  std::vector<caf::actor> hub_links;
  /// Supervises stats, the stats port, the hub, endpoints and the HTTP API
  /// once all started; it stops them at shutdown (their handles above may
  /// be stale by then: restarted actors are new ones).
  caf::actor keeper;
  std::string token_path; // removed at shutdown
};

/// Stops hubflow as SIGTERM does, then exits with exit_lost: an actor that
/// everything depends on is gone and only a fresh process brings it back.
void stop_for_restart(const std::string& name, const caf::error&) {
  spdlog::critical("{} is gone: hubflow stops (exit code {}) so that its "
                   "service manager starts it afresh",
                   name, static_cast<int>(exit_lost));
  final_exit_code = exit_lost;
  ::kill(::getpid(), SIGTERM);
}

/// The stats actor, the stats port and the token file, and how the keeper
/// restarts the first two.
std::string start_stats(caf::actor_system& sys, const config& cfg, broker& b,
                        std::vector<keeper_child>& kept) {
  std::string error;
  auto store = make_stats_store();
  b.stats = spawn_stats(sys, cfg.stats, store);
  kept.push_back({"stats", b.stats,
                  [&sys, stats_cfg = cfg.stats, store](std::string&) {
                    return spawn_stats(sys, stats_cfg, store);
                  },
                  {}});
  auto port_ctx = std::make_shared<stats_port_context>();
  port_ctx->token = make_stats_token(error);
  if (port_ctx->token.empty())
    return error;
  std::uint16_t port = 0;
  b.stats_port = spawn_stats_port(sys, cfg.stats.host, cfg.stats.port,
                                  port_ctx, error, &port);
  if (!b.stats_port)
    return error;
  // A restart binds the port clients already know, also after port 0.
  kept.push_back({"stats_port", b.stats_port,
                  [&sys, host = cfg.stats.host, port,
                   port_ctx](std::string& err) {
                    return spawn_stats_port(sys, host, port, port_ctx, err);
                  },
                  {}});
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

std::map<std::string, endpoint_usage> endpoint_usages(const config& cfg) {
  std::map<std::string, endpoint_usage> usage;
  for (auto& rule : cfg.rules) {
    if (!rule.from.endpoint.empty())
      usage[rule.from.endpoint].as_source = true;
    if (!rule.to.endpoint.empty())
      usage[rule.to.endpoint].as_destination = true;
  }
  return usage;
}

/// Starts the actors; returns an error text when something cannot start.
std::string start(caf::actor_system& sys, const config& cfg,
                  std::map<std::string, std::shared_ptr<function_runtime>>& rts,
                  broker& b) {
  std::vector<keeper_child> kept;
  auto error = start_stats(sys, cfg, b, kept);
  if (!error.empty())
    return error;
  // Rules hold the hub's and the endpoints' handles and subscribed with
  // them, so a replacement would be unknown to them: when one of these
  // stops, hubflow stops as a whole (stop_for_restart).
  if (cfg.hub.embedded) {
    b.hub = spawn_embedded_hub(sys, cfg.hub, error);
    if (!b.hub)
      return error;
    caf::anon_send(b.stats, publish_atom::value, b.hub);
    kept.push_back({"hub", b.hub, {}, stop_for_restart});
  } else {
    spdlog::info("using the external hub at {}", cfg.hub.address);
  }
  auto usage = endpoint_usages(cfg);
  for (auto& ep : cfg.endpoints) {
    auto& type = endpoint_registry().at(ep.type);
    auto endpoint = type.spawn(sys, ep, usage[ep.name]);
    b.endpoints.emplace(ep.name, endpoint);
    kept.push_back({"endpoint:" + ep.name, endpoint, {}, stop_for_restart});
  }
  for (auto& fn : cfg.functions)
    b.functions.emplace(fn.name,
                        spawn_function_supervisor(sys, fn, rts.at(fn.name)));
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
    rule_wiring wiring;
    wiring.source = rule.from.endpoint.empty() ? hub
                                               : b.endpoints.at(rule.from.endpoint);
    wiring.destination = rule.to.endpoint.empty()
                           ? hub
                           : b.endpoints.at(rule.to.endpoint);
    wiring.destination_is_endpoint = !rule.to.endpoint.empty();
    if (!rule.function.empty())
      wiring.function = b.functions.at(rule.function);
    b.rules.push_back(spawn_rule(sys, rule, wiring));
  }
  if (cfg.http.enabled) {
    http_context ctx;
    ctx.hub = b.hub;
    ctx.functions = b.functions;
    for (auto& ep : cfg.endpoints)
      if (ep.type == "redis")
        ctx.state_stores.emplace(
          ep.name, http_state_store{ep.type, b.endpoints.at(ep.name)});
    // The stats actor may be restarted; the reader always asks the current one.
    ctx.stats = spawn_stats_reader(sys);
    std::uint16_t port = 0;
    b.http = spawn_http_api(sys, cfg.http, ctx, error, &port);
    if (!b.http)
      return error;
    spdlog::info("HTTP API on {} (port {})", cfg.http.listen, port);
    // Restarted on the port bound now, also when http.listen said port 0.
    auto http_cfg = cfg.http;
    http_cfg.listen = cfg.http.listen.substr(0, cfg.http.listen.rfind(':') + 1)
                      + std::to_string(port);
    kept.push_back({"http_api", b.http,
                    [&sys, http_cfg, ctx](std::string& err) {
                      return spawn_http_api(sys, http_cfg, ctx, err);
                    },
                    {}});
  }
  b.keeper = spawn_keeper(sys, std::move(kept));
  spdlog::info("hubflow {} running: {} rules, {} functions, {} endpoints",
               HUBFLOW_VERSION, cfg.rules.size(), cfg.functions.size(),
               cfg.endpoints.size());
  return {};
}

void stop(broker& b) {
  auto exit = [](const caf::actor& a) {
    if (a)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  };
  for (auto& r : b.rules)
    exit(r);
  for (auto& l : b.hub_links)
    exit(l);
  for (auto& [name, f] : b.functions)
    exit(f);
  if (b.keeper) {
    exit(b.keeper); // it stops what it keeps
  } else {
    for (auto& [name, e] : b.endpoints)
      exit(e);
    exit(b.http);
    exit(b.hub);
    exit(b.stats_port);
    exit(b.stats);
  }
  if (!b.token_path.empty())
    ::unlink(b.token_path.c_str());
}

int wait_for_signal() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int received = 0;
  sigwait(&signals, &received);
  return received;
}

} // namespace

int main(int argc, char** argv) {
  int exit = exit_ok;
  auto opts = parse_options(argc, argv, exit);
  if (!opts)
    return exit;
  // Block the stop signals in every thread; main waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  config cfg;
  std::map<std::string, std::shared_ptr<function_runtime>> runtimes;
  auto rt_opts = make_runtime_options(*opts);
  try {
    cfg = opts->config_file.empty() ? default_config()
                                    : load_config_file(opts->config_file);
    apply_overrides(cfg, *opts);
    setup_logging(cfg.logger, opts->log_level);
    runtimes = build_runtimes(cfg, rt_opts);
  } catch (const config_error& e) {
    for (auto& line : e.messages())
      std::cerr << line << "\n";
    std::cerr << "hubflow: the config is invalid ("
              << e.messages().size() << " error"
              << (e.messages().size() == 1 ? "" : "s") << ")\n";
    return exit_config;
  }
  if (opts->check) {
    std::cout << (opts->config_file.empty() ? "<embedded default>"
                                            : opts->config_file)
              << ": valid (" << cfg.rules.size() << " rules, "
              << cfg.functions.size() << " functions, "
              << cfg.endpoints.size() << " endpoints)\n";
    return exit_ok;
  }
  for (auto& warning : cfg.warnings)
    spdlog::warn("{}", warning);

  caf::actor_system_config sys_cfg;
  sys_cfg.load<caf::io::middleman>();
  sys_cfg.add_message_types<caf::id_block::hubflow>();
  // CAF's idle workers poll for 25 ms with 50 us sleeps before they wait on
  // a condition variable. Messages from other threads (the hub's I/O
  // thread, function instances, librdkafka) then wait up to 50 us per hop,
  // where a waiting worker is woken at once. Skipping that phase cut the
  // rule path's median latency from ~300 to ~210 us (hubflow-bench, paced
  // 5000 msg/s through t -> sayhi -> t/hi) and spends no CPU while idle.
  sys_cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
  caf::actor_system sys{sys_cfg};
  broker b;
  auto error = start(sys, cfg, runtimes, b);
  if (!error.empty()) {
    spdlog::critical("cannot start: {}", error);
    stop(b);
    std::fflush(nullptr);
    std::_Exit(exit_startup);
  }
  auto signal = wait_for_signal();
  spdlog::info("received {}, shutting down", strsignal(signal));
  stop(b);
  // Instances blocked in a handler cannot be interrupted; give the actors a
  // moment, then leave without waiting for them.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    spdlog::warn("some actors did not stop within 3 s; exiting anyway");
    spdlog::shutdown();
    std::_Exit(final_exit_code);
  }).detach();
  sys.await_all_actors_done();
  spdlog::info("stopped");
  spdlog::shutdown();
  std::_Exit(final_exit_code);
}
