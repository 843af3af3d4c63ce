// hubflow: the broker binary. Reads the command line and the config, starts
// the broker (broker/broker.hpp), then runs until SIGINT or SIGTERM.
#include <algorithm>
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

#include "broker/broker.hpp"
#include "core/baetyl_import.hpp"
#include "core/config.hpp"
#include "core/type_ids.hpp"
#include "endpoints/endpoint.hpp"
#include "functions/runtime.hpp"
#include "http/http_api.hpp"
#include "hub/embedded_hub.hpp"
#include "hub/mosquitto_files.hpp"

namespace po = boost::program_options;
using namespace hubflow;

namespace {

/// Exit codes, as documented in --help and docs/hubflow.md.
enum exit_code : int {
  exit_ok = 0,
  exit_config = 1,  // the config (or a plugin it names) is invalid
  exit_usage = 2,   // bad command line
  exit_startup = 3, // valid config, but a port or resource is unavailable
};

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
  hubflow --baetyl /usr/local               # a Baetyl v1 deployment as it is

Options)";

const char* exit_codes_text = R"(
Exit codes:
  0  stopped normally (SIGINT/SIGTERM), or --check found the config valid
  1  the config is invalid: each error names file:line:column and the key
  2  the command line is wrong
  3  the config is valid but the broker cannot start (a port is taken, the
     stats token directory is unsafe, ...)

Docs: docs/getting-started.md, docs/configuration.md, docs/hubflowctl.md
)";

struct options {
  std::string config_file;
  std::string baetyl_dir;
  bool check = false;
  std::string log_level;
  std::vector<std::string> plugin_dirs;
  std::vector<std::string> listen;
  int stats_port = -1;
  std::string python;
  std::string node;
  bool store_recover = false;
};

/// --store-recover: a store that does not open is moved aside, so the
/// broker starts with an empty one (and says so) instead of refusing.
void recover_store(const persistence_config& cfg) {
  std::string error;
  if (store::hub_store::open(cfg, error))
    return; // opens fine: nothing to recover (closed again here)
  spdlog::warn("store: {}", error);
  std::string why;
  auto aside = store::hub_store::move_aside(cfg, why);
  if (aside.empty() && !why.empty())
    spdlog::error("store: could not move the store aside: {}", why);
  else if (!aside.empty())
    spdlog::warn("store: moved {} aside to {}; starting with an empty store",
                 store::hub_store::file_of(cfg), aside);
}

std::optional<options> parse_options(int argc, char** argv, int& exit) {
  options opts;
  po::options_description desc(usage_text);
  desc.add_options()
    ("help,h", "print this help and exit")
    ("version", "print the version and exit")
    ("config,c", po::value(&opts.config_file)->value_name("FILE"),
     "the YAML config (default: the embedded default above)")
    ("baetyl", po::value(&opts.baetyl_dir)->value_name("DIR"),
     "run a Baetyl v1 deployment instead of a config: DIR is Baetyl's "
     "working directory (holding var/db/baetyl/application.yml); prints "
     "what each service becomes (`hubflowctl import-baetyl DIR` writes it "
     "as a hubflow config; docs/migrating.md)")
    ("check", po::bool_switch(&opts.check),
     "validate the config (schema, references, plugins, SQL) and exit 0 or 1")
    ("log-level,l", po::value(&opts.log_level)->value_name("LEVEL"),
     "trace, debug, info, warn, error or off (overrides logger.level)")
    ("plugin-dir,p", po::value(&opts.plugin_dirs)->value_name("DIR"),
     "where native plugins are looked up by name; repeatable, searched in "
     "order, before the build's own plugin dir")
    ("listen", po::value(&opts.listen)->value_name("HOST:PORT|URL"),
     "replaces the embedded hub's listeners; repeatable")
    ("stats-port", po::value(&opts.stats_port)->value_name("PORT"),
     "overrides stats.port (0 picks a free port and logs it)")
    ("python", po::value(&opts.python)->value_name("PATH"),
     "interpreter for Python functions (default /usr/bin/python3; a "
     "function's `interpreter:` wins)")
    ("node", po::value(&opts.node)->value_name("PATH"),
     "interpreter for Node functions (default: node on the PATH)")
    ("store-recover", po::bool_switch(&opts.store_recover),
     "persistence: when the store does not open (damaged, truncated, of "
     "another format), move it aside (<file>.corrupt-<time>) and start "
     "with an empty one instead of refusing to start")
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
  if (!opts.config_file.empty() && !opts.baetyl_dir.empty()) {
    std::cerr << "hubflow: --config and --baetyl exclude each other\n"
                 "Try 'hubflow --help'.\n";
    exit = exit_usage;
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
      // Any hub.listen URL (ssl://, ws://...; TLS ones use
      // hub.certificate); a bare HOST:PORT is tcp://.
      cfg.hub.listen.push_back(l.find("://") != std::string::npos
                                 ? l
                                 : "tcp://" + l);
  }
  if (opts.stats_port >= 0)
    cfg.stats.port = static_cast<std::uint16_t>(opts.stats_port);
}


/// Waits for SIGINT or SIGTERM and returns it; SIGHUP on the way makes
/// the embedded hub and the HTTP API re-read their TLS certificates
/// (clients stay connected).
int wait_for_signal(caf::actor_system& sys) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  for (;;) {
    int received = 0;
    sigwait(&signals, &received);
    if (received != SIGHUP)
      return received;
    spdlog::info("received SIGHUP: the hub and the HTTP API re-read their "
                 "certificates");
    for (auto name : {hub_registry_name, http_registry_name})
      if (auto target = sys.registry().get(name))
        caf::anon_send(caf::actor_cast<caf::actor>(target),
                       reload_atom::value);
  }
}

} // namespace

int main(int argc, char** argv) {
  int exit = exit_ok;
  auto opts = parse_options(argc, argv, exit);
  if (!opts)
    return exit;
  // Block the stop signals (and SIGHUP) in every thread; main waits for
  // them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  config cfg;
  runtime_map runtimes;
  std::optional<baetyl_import> baetyl;
  auto rt_opts = make_runtime_options(*opts);
  try {
    if (!opts->baetyl_dir.empty()) {
      baetyl = import_baetyl(opts->baetyl_dir);
      // Named in '<>' like the embedded default: its paths are absolute.
      cfg = load_config_text(baetyl->yaml,
                             "<" + baetyl->application + " as hubflow config>",
                             endpoint_registry());
      cfg.warnings.insert(cfg.warnings.begin(), baetyl->warnings.begin(),
                          baetyl->warnings.end());
    } else {
      cfg = opts->config_file.empty()
              ? default_config()
              : load_config_file(opts->config_file, endpoint_registry());
    }
    apply_overrides(cfg, *opts);
    // Mosquitto's password and acl files are part of the config: their
    // errors stop --check and the start alike.
    cfg.hub.files = read_mosquitto_files(cfg.hub);
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
    if (baetyl) {
      for (auto& line : baetyl->mapping)
        std::cout << line << "\n";
      for (auto& warning : cfg.warnings)
        std::cout << "warning: " << warning << "\n";
    }
    std::cout << (baetyl                       ? baetyl->application
                  : opts->config_file.empty() ? "<embedded default>"
                                              : opts->config_file)
              << ": valid (" << cfg.rules.size() << " rules, "
              << cfg.functions.size() << " functions, "
              << cfg.endpoints.size() << " endpoints)\n";
    return exit_ok;
  }
  if (baetyl)
    for (auto& line : baetyl->mapping)
      spdlog::info("baetyl: {}", line);
  for (auto& warning : cfg.warnings)
    spdlog::warn("{}", warning);

  if (opts->store_recover && cfg.persistence.enabled)
    recover_store(cfg.persistence);

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
  auto error = start_broker(sys, cfg, runtimes, b);
  if (!error.empty()) {
    spdlog::critical("cannot start: {}", error);
    stop_broker(b);
    std::fflush(nullptr);
    std::_Exit(exit_startup);
  }
  auto signal = wait_for_signal(sys);
  spdlog::info("received {}, shutting down", strsignal(signal));
  stop_broker(b);
  // Instances blocked in a handler cannot be interrupted; give the actors a
  // moment, then leave without waiting for them.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    spdlog::warn("some actors did not stop within 3 s; exiting anyway");
    spdlog::shutdown();
    std::_Exit(exit_ok);
  }).detach();
  sys.await_all_actors_done();
  if (b.store)
    b.store->close(); // sync off: what was written behind reaches the file
  spdlog::info("stopped");
  spdlog::shutdown();
  std::_Exit(exit_ok);
}
