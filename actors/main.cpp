// hubflow: the broker binary. Reads the command line and the config, starts
// the broker (broker/broker.hpp), then runs until SIGINT or SIGTERM.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <unistd.h>

#include <boost/program_options.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include "broker/broker.hpp"
#include "core/baetyl_import.hpp"
#include "core/config.hpp"
#include "core/probe.hpp"
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


/// What the broker runs, as the command line names it.
struct loaded_config {
  config cfg;
  std::optional<baetyl_import> baetyl; // --baetyl
  /// The YAML it was read from, to tell on SIGHUP what changed.
  std::string text;
};

/// Reads the config the command line names (--config, --baetyl or the
/// embedded default), applies the command line's overrides and reads
/// Mosquitto's password and acl files (their errors stop --check and the
/// start alike). Throws config_error.
loaded_config load_config(const options& opts) {
  loaded_config out;
  if (!opts.baetyl_dir.empty()) {
    out.baetyl = import_baetyl(opts.baetyl_dir);
    out.text = out.baetyl->yaml;
    // Named in '<>' like the embedded default: its paths are absolute.
    out.cfg = load_config_text(out.text,
                               "<" + out.baetyl->application
                                 + " as hubflow config>",
                               endpoint_registry());
    out.cfg.warnings.insert(out.cfg.warnings.begin(),
                            out.baetyl->warnings.begin(),
                            out.baetyl->warnings.end());
  } else if (opts.config_file.empty()) {
    out.text = default_config_text();
    out.cfg = default_config();
  } else {
    out.text = read_config_file(opts.config_file);
    out.cfg = load_config_text(out.text, opts.config_file, endpoint_registry());
  }
  apply_overrides(out.cfg, opts);
  out.cfg.hub.files = read_mosquitto_files(out.cfg.hub);
  return out;
}

/// The `hub` keys a reload applies while clients stay connected.
constexpr const char* reloadable_hub_keys[] = {
  "principals", "password_file", "acl_file", "anonymous",
  "anonymous_permissions"};

/// The config keys whose YAML differs between two configs: top-level
/// keys, and `hub.<key>` inside the hub block.
std::vector<std::string> changed_keys(const YAML::Node& a,
                                      const YAML::Node& b) {
  auto differ = [](const YAML::Node& x, const YAML::Node& y) {
    return YAML::Dump(x) != YAML::Dump(y);
  };
  auto keys_of = [](const YAML::Node& x, const YAML::Node& y) {
    std::set<std::string> keys;
    for (auto& n : {x, y})
      if (n.IsMap())
        for (auto kv : n)
          keys.insert(kv.first.as<std::string>());
    return keys;
  };
  std::vector<std::string> changed;
  for (auto& key : keys_of(a, b)) {
    if (key != "hub") {
      if (differ(a[key], b[key]))
        changed.push_back(key);
      continue;
    }
    for (auto& sub : keys_of(a["hub"], b["hub"]))
      if (differ(a["hub"][sub], b["hub"][sub]))
        changed.push_back("hub." + sub);
  }
  return changed;
}

/// The `rules`, `functions` and `endpoints` entries that differ between
/// two configs, by name: the loader's name of entry i (a rule's defaults
/// to its clientid) for the YAML of entry i.
flow_changes changed_flows(const YAML::Node& before, const config& was,
                           const YAML::Node& after, const config& is) {
  auto by_name = [](const YAML::Node& list, const auto& entries) {
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i < entries.size(); ++i)
      out[entries[i].name] = YAML::Dump(list[i]);
    return out;
  };
  auto diff = [&](const char* key, const auto& was_entries,
                  const auto& is_entries) {
    auto a = by_name(before[key], was_entries);
    auto b = by_name(after[key], is_entries);
    std::set<std::string> names;
    for (auto& [name, text] : a)
      if (!b.count(name) || b[name] != text)
        names.insert(name);
    for (auto& [name, text] : b)
      if (!a.count(name))
        names.insert(name);
    return names;
  };
  return {diff("rules", was.rules, is.rules),
          diff("functions", was.functions, is.functions),
          diff("endpoints", was.endpoints, is.endpoints)};
}

/// SIGHUP: reads the config again and checks it whole. A config that does
/// not load is refused, its errors logged, and the running one stays. Of a
/// good one, the hub's principals, password and acl files (always re-read)
/// and anonymous settings apply at once, the certificate files are
/// re-read, and added, removed and changed rules, functions and endpoints
/// take over from the old ones (broker.hpp's reload_flows); any other
/// change is logged as needing a restart and not applied. Counted as
/// component kind "config" (reloads, reload_failures; label last_reload).
void reload(caf::actor_system& sys, const options& opts,
            loaded_config& running, broker& b, runtime_map& runtimes,
            probe& stats) {
  loaded_config next;
  runtime_map next_runtimes;
  try {
    next = load_config(opts);
    next_runtimes = build_runtimes(next.cfg, make_runtime_options(opts));
  } catch (const config_error& e) {
    for (auto& line : e.messages())
      spdlog::error("reload: {}", line);
    spdlog::error("reload refused ({} error{}): the running config stays",
                  e.messages().size(), e.messages().size() == 1 ? "" : "s");
    stats.add("reload_failures");
    stats.label("last_reload", e.messages().front());
    return;
  }
  auto text = YAML::Load(running.text);
  auto fresh = YAML::Load(next.text);
  // Rules, functions and endpoints first: a failure leaves them to the
  // next start, and says so.
  auto flows = changed_flows(text, running.cfg, fresh, next.cfg);
  for (auto& name : flows.functions)
    if (next_runtimes.count(name))
      runtimes[name] = next_runtimes.at(name);
  auto flow_error = reload_flows(sys, b, next.cfg, runtimes, flows);
  if (!flow_error.empty())
    spdlog::error("reload: {}", flow_error);
  std::vector<std::string> not_applied;
  for (auto& key : changed_keys(text, fresh)) {
    bool auth = false;
    for (auto k : reloadable_hub_keys)
      auth = auth || key == std::string{"hub."} + k;
    bool flow = key == "functions" || key == "endpoints"
                || (key == "rules" && flow_error.empty());
    if (!auth && !flow)
      not_applied.push_back(key);
  }
  for (auto& key : not_applied)
    spdlog::warn("reload: {} changed: it takes effect at the next start",
                 key);
  if (auto hub = sys.registry().get(hub_registry_name)) {
    // The hub's new principals, with the files as they are now.
    auto auth = std::make_shared<hub_config>(running.cfg.hub);
    auth->principals = next.cfg.hub.principals;
    auth->password_file = next.cfg.hub.password_file;
    auth->acl_file = next.cfg.hub.acl_file;
    auth->files = next.cfg.hub.files;
    auth->allow_anonymous = next.cfg.hub.allow_anonymous;
    auth->anonymous_loopback_only = next.cfg.hub.anonymous_loopback_only;
    auth->anonymous_permissions = next.cfg.hub.anonymous_permissions;
    running.cfg.hub = *auth;
    caf::anon_send(caf::actor_cast<caf::actor>(hub), reload_atom::value,
                   std::shared_ptr<const hub_config>{std::move(auth)});
  }
  if (auto http = sys.registry().get(http_registry_name))
    caf::anon_send(caf::actor_cast<caf::actor>(http), reload_atom::value);
  // What was not applied stays as it runs, so the next reload names it
  // again (the running text and config describe the same entries).
  for (auto k : {"rules", "functions", "endpoints"}) {
    if (k == std::string{"rules"} && !flow_error.empty())
      continue;
    if (fresh[k])
      text[k] = fresh[k];
    else
      text.remove(k);
  }
  if (flow_error.empty())
    running.cfg.rules = next.cfg.rules;
  running.cfg.functions = next.cfg.functions;
  running.cfg.endpoints = next.cfg.endpoints;
  for (auto k : reloadable_hub_keys) {
    if (fresh["hub"] && fresh["hub"][k])
      text["hub"][k] = fresh["hub"][k];
    else if (text["hub"] && text["hub"][k])
      text["hub"].remove(k);
  }
  running.text = YAML::Dump(text);
  std::string summary = "applied: hub principals, password and acl files "
                        "and anonymous settings (files re-read), "
                        "certificates re-read";
  auto count = [&](const std::set<std::string>& names, const char* what) {
    if (!names.empty())
      summary += ", " + std::to_string(names.size()) + " " + what;
  };
  count(flows.endpoints, "endpoints");
  count(flows.functions, "functions");
  if (flow_error.empty())
    count(flows.rules, "rules");
  if (!not_applied.empty()) {
    summary += "; at the next start: ";
    for (std::size_t i = 0; i < not_applied.size(); ++i)
      summary += (i ? ", " : "") + not_applied[i];
  }
  spdlog::info("reload: {}", summary);
  stats.add("reloads");
  stats.label("last_reload", summary);
}

/// Waits for SIGINT or SIGTERM and returns it; SIGHUP on the way reloads
/// (see reload()).
int wait_for_signal(caf::actor_system& sys, const options& opts,
                    loaded_config& running, broker& b,
                    runtime_map& runtimes) {
  probe stats{"config", "hubflow"};
  // hubflowctl reload signals this pid.
  stats.label("pid", std::to_string(::getpid()));
  caf::scoped_actor self{sys};
  stats.report_now(self.ptr());
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
    spdlog::info("received SIGHUP: reloading the config");
    reload(sys, opts, running, b, runtimes, stats);
    stats.report_now(self.ptr());
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

  loaded_config running;
  auto& cfg = running.cfg;
  auto& baetyl = running.baetyl;
  runtime_map runtimes;
  auto rt_opts = make_runtime_options(*opts);
  try {
    running = load_config(*opts);
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
  auto signal = wait_for_signal(sys, *opts, running, b, runtimes);
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
