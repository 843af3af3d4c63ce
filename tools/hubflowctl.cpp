// hubflowctl: the control tool. `stats` asks a running broker for its
// counters over CAF's middleman; `passwd` makes password hashes for
// hub.principals (validating a config is `hubflow --check`).
#include <iostream>
#include <string>

#include <boost/program_options.hpp>
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "core/config.hpp"
#include "core/type_ids.hpp"
#include "hub/auth.hpp"
#include "stats/stats.hpp"

namespace po = boost::program_options;
using namespace hubflow;

namespace {

enum exit_code : int {
  exit_ok = 0,
  exit_failed = 1,      // the broker did not answer, or the input is invalid
  exit_usage = 2,
};

const char* usage_text = R"(hubflowctl — control a running hubflow broker.

Usage:
  hubflowctl stats [--json] [--stats-host HOST] [--stats-port PORT]
      Print every component's counters: hub connections, rules, functions
      (instances, queue depth, latency percentiles), endpoints.
      --json prints one JSON object for scripts (see docs/hubflowctl.md).
  hubflowctl passwd [--password-file FILE]
      Print a password hash for hub.principals (the format mosquitto_passwd
      writes). Reads the password from FILE, or from standard input.

Examples:
  hubflowctl stats
  hubflowctl stats --json | jq '.components[] | select(.kind=="function")'
  echo -n 's3cret' | hubflowctl passwd

Exit codes: 0 success, 1 the broker did not answer (or bad input), 2 bad
command line.

Options)";

int stats(const std::string& host, std::uint16_t port, bool as_json) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  cfg.add_message_types<caf::id_block::hubflow>();
  // Keep hubflowctl quiet and quick: no CAF logging, one worker thread.
  cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{cfg};
  auto stats = sys.middleman().remote_actor(host, port);
  if (!stats) {
    std::cerr << "hubflowctl: no hubflow answers on " << host << ":" << port
              << " (" << sys.render(stats.error())
              << "); is it running, and is stats.port " << port << "?\n";
    return exit_failed;
  }
  caf::scoped_actor self{sys};
  int result = exit_ok;
  self->request(*stats, std::chrono::seconds(5), get_atom::value)
    .receive(
      [&](const std::string& snapshot) {
        std::cout << (as_json ? snapshot + "\n" : render_stats_table(snapshot));
      },
      [&](caf::error& err) {
        std::cerr << "hubflowctl: stats request failed: " << sys.render(err)
                  << "\n";
        result = exit_failed;
      });
  return result;
}

int passwd(const std::string& password_file) {
  std::string password;
  if (!password_file.empty()) {
    YAML::Node node;
    node["file"] = password_file;
    std::string error;
    if (!read_secret(node, password, error)) {
      std::cerr << "hubflowctl: " << error << "\n";
      return exit_failed;
    }
  } else {
    std::getline(std::cin, password);
  }
  if (password.empty()) {
    std::cerr << "hubflowctl: empty password\n";
    return exit_failed;
  }
  std::cout << make_password_hash(password) << "\n";
  return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  std::string command;
  bool as_json = false;
  std::string host = stats_config{}.host;
  std::uint16_t port = stats_config{}.port;
  std::string password_file;
  po::options_description desc(usage_text);
  desc.add_options()
    ("help,h", "print this help and exit")
    ("json", po::bool_switch(&as_json), "stats: print JSON")
    ("stats-host", po::value(&host)->value_name("HOST"),
     "stats: the broker's stats.host (default 127.0.0.1)")
    ("stats-port", po::value(&port)->value_name("PORT"),
     "stats: the broker's stats.port (default 9883)")
    ("password-file", po::value(&password_file)->value_name("FILE"),
     "passwd: read the password from FILE");
  po::options_description hidden;
  hidden.add_options()("command", po::value(&command));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv)
                .options(all)
                .positional(positional)
                .run(),
              vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "hubflowctl: " << e.what() << "\nTry 'hubflowctl --help'.\n";
    return exit_usage;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return exit_ok;
  }
  if (command == "stats")
    return stats(host, port, as_json);
  if (command == "passwd")
    return passwd(password_file);
  std::cerr << "hubflowctl: "
            << (command.empty() ? "no command given"
                                : "unknown command '" + command + "'")
            << "\nTry 'hubflowctl --help'.\n";
  return exit_usage;
}
