// hubflowctl: the control tool. `stats` asks a running broker for its
// counters on the stats port (one line with the token, the JSON back; see
// stats/stats_port.hpp); `reload` asks it to reload its config (SIGHUP to
// the pid it reports); `passwd` makes password hashes for hub.principals
// (validating a config is `hubflow --check`); `store` reads a persistence
// store read-only, the broker stopped or running; `import-baetyl` and
// `import-mosquitto` print a Baetyl deployment or a mosquitto.conf as a
// hubflow config.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "core/baetyl_import.hpp"
#include "core/config.hpp"
#include "core/mosquitto_import.hpp"
#include "core/values.hpp"
#include "hub/auth.hpp"
#include "stats/stats_render.hpp"
#include "stats/stats_token.hpp"
#include "store/disk_buffer.hpp"
#include "store/hub_store.hpp"

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
                   [--token-file FILE]
      Print every component's counters: hub connections, rules, functions
      (instances, queue depth, latency percentiles), endpoints.
      --json prints one JSON object for scripts (see docs/hubflowctl.md).
      The stats port wants the token the broker wrote at startup to a file
      only its user can read: run hubflowctl as that user, or name the file
      (the broker's stats.token_file) with --token-file.
  hubflowctl reload [--stats-host HOST] [--stats-port PORT]
                    [--token-file FILE]
      Make the broker read its config again (what SIGHUP does; run as the
      broker's user or root) and print the outcome: what was applied (the
      hub's principals, password and acl files, anonymous settings, the
      certificates, rules, functions and endpoints) and what takes effect
      at the next start. A config that does not load is refused, and the
      running one stays (exit 1).
  hubflowctl passwd [--password-file FILE]
      Print a password hash for hub.principals (the format mosquitto_passwd
      writes). Reads the password from FILE, or from standard input.
  hubflowctl store DIR [--json]
      Print what the store in DIR (persistence.path, or its hubflow.db)
      holds: sessions, each session's queued and in-flight messages,
      retained messages and the bytes on disk, and each endpoint buffer
      (buffer: disk): records to forward, their bytes, dead letters.
      Reads the files only: the
      broker may be stopped (or running: the store is opened read-only).

  hubflowctl import-baetyl DIR
      Print the hubflow config a Baetyl v1 deployment becomes (what
      `hubflow --baetyl DIR` runs): DIR is Baetyl's working directory, with
      var/db/baetyl/application.yml. What each service becomes and what
      has no meaning here go to standard error; errors name the Baetyl
      file, line and key.
  hubflowctl import-mosquitto FILE
      Print the hubflow config a mosquitto.conf becomes: listeners with
      their TLS and WebSocket options, allow_anonymous, password_file and
      acl_file (hubflow reads them as they are), session, queue and message
      limits, persistence. Every option it cannot map gets a `# not mapped`
      line saying why (also on standard error).

Examples:
  hubflowctl stats
  hubflowctl stats --json | jq '.components[] | select(.kind=="function")'
  hubflowctl reload
  echo -n 's3cret' | hubflowctl passwd
  hubflowctl store /var/lib/hubflow
  hubflowctl import-baetyl /usr/local > hubflow.yaml
  hubflowctl import-mosquitto /etc/mosquitto/mosquitto.conf > hubflow.yaml

Exit codes: 0 success, 1 the broker did not answer (or bad input), 2 bad
command line.

Options)";

/// Largest answer accepted: a snapshot of thousands of components is far
/// smaller.
constexpr std::size_t max_answer = 64 * 1024 * 1024;

/// A TCP connection to host:port with send and receive timeouts; -1 and
/// `error` set when nothing answers.
int connect_to(const std::string& host, std::uint16_t port,
               std::string& error) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    error = ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  error = "no address";
  for (auto* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0)
      continue;
    timeval timeout{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  return fd;
}

/// Where the stats port is and how to prove who we are.
struct stats_endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string token_file;
};

/// Asks the broker for its snapshot: the JSON as sent (`answer`) and
/// parsed; false after saying on stderr why there is none.
bool query_stats(const stats_endpoint& at, std::string& answer,
                 stats_snapshot& snapshot) {
  auto& [host, port, token_file] = at;
  std::string error;
  int fd = connect_to(host, port, error);
  if (fd < 0) {
    std::cerr << "hubflowctl: no hubflow answers on " << host << ":" << port
              << " (" << error << "); is it running, and is stats.port "
              << port << "?\n";
    return false;
  }
  auto path = token_file.empty() ? default_stats_token_path(port) : token_file;
  std::string token;
  if (!read_stats_token(path, token, error)) {
    ::close(fd);
    std::cerr << "hubflowctl: " << error << "\n"
              << "hubflowctl: the stats port wants the token hubflow wrote "
                 "at startup; run hubflowctl as the broker's user, or pass "
                 "--token-file with the broker's stats.token_file\n";
    return false;
  }
  auto request = "HUBFLOW-STATS 1 " + token + "\n";
  answer.clear();
  bool sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL)
              == static_cast<ssize_t>(request.size());
  char buf[65536];
  ssize_t n = 0;
  while (sent && answer.size() <= max_answer
         && (n = ::recv(fd, buf, sizeof(buf), 0)) > 0)
    answer.append(buf, static_cast<std::size_t>(n));
  auto recv_error = n < 0 ? std::string{std::strerror(errno)} : std::string{};
  ::close(fd);
  if (!sent || !recv_error.empty() || answer.empty() || answer.back() != '\n'
      || answer.size() > max_answer) {
    std::cerr << "hubflowctl: stats request to " << host << ":" << port
              << " failed: "
              << (!sent               ? "cannot send the request"
                  : !recv_error.empty() ? recv_error
                  : answer.size() > max_answer ? "the answer is too large"
                                              : "incomplete answer")
              << "\n";
    return false;
  }
  answer.pop_back();
  if (answer.rfind("ERR ", 0) == 0) {
    std::cerr << "hubflowctl: the broker refused the stats request: "
              << answer.substr(4);
    if (answer == "ERR unauthorized")
      std::cerr << " (" << path << " is not the token of the broker on port "
                << port << ")";
    std::cerr << "\n";
    return false;
  }
  if (!stats_from_json(answer, snapshot, error)) {
    std::cerr << "hubflowctl: the answer of " << host << ":" << port
              << " is " << error << "\n";
    return false;
  }
  return true;
}

int stats(const stats_endpoint& at, bool as_json) {
  std::string answer;
  stats_snapshot snapshot;
  if (!query_stats(at, answer, snapshot))
    return exit_failed;
  // The JSON goes out as the broker sent it: fields a newer broker adds
  // reach scripts even when this hubflowctl does not know them.
  std::cout << (as_json ? answer + "\n" : render_stats_table(snapshot));
  return exit_ok;
}

/// The broker's own component (kind "config"): its pid and reload counts.
const component_stats* config_component(const stats_snapshot& s) {
  for (auto& c : s.components)
    if (c.kind == "config")
      return &c;
  return nullptr;
}

/// Sends the broker SIGHUP (so only its user or root may) and waits for
/// the outcome the broker reports: 0 when the config was applied, 1 when
/// it was refused or nothing answered.
int reload(const stats_endpoint& at) {
  std::string answer;
  stats_snapshot before;
  if (!query_stats(at, answer, before))
    return exit_failed;
  auto config = config_component(before);
  auto pid = config ? std::atoi(label_of(*config, "pid").value_or("").c_str())
                    : 0;
  if (pid <= 0) {
    std::cerr << "hubflowctl: the broker on port " << at.port
              << " does not report its pid (an older hubflow?)\n";
    return exit_failed;
  }
  auto failures_of = [](const component_stats& c) {
    return counter_of(c, "reload_failures").value_or(0);
  };
  auto count = [&](const component_stats& c) {
    return counter_of(c, "reloads").value_or(0) + failures_of(c);
  };
  auto seen = count(*config);
  auto failures = failures_of(*config);
  if (::kill(pid, SIGHUP) != 0) {
    std::cerr << "hubflowctl: cannot signal hubflow (pid " << pid
              << "): " << std::strerror(errno) << "\n";
    return exit_failed;
  }
  for (int i = 0; i < 100; ++i) {
    ::usleep(100 * 1000);
    stats_snapshot now;
    if (!query_stats(at, answer, now))
      return exit_failed;
    auto c = config_component(now);
    if (!c || count(*c) == seen)
      continue;
    bool refused = failures_of(*c) > failures;
    std::cout << "reload " << (refused ? "refused" : "done") << ": "
              << label_of(*c, "last_reload").value_or("") << "\n";
    return refused ? exit_failed : exit_ok;
  }
  std::cerr << "hubflowctl: hubflow (pid " << pid
            << ") got SIGHUP but reported no reload within 10 s; see its "
               "log\n";
  return exit_failed;
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

int store_summary(const std::string& dir, bool as_json) {
  persistence_config cfg;
  cfg.path = dir;
  auto file = dir.ends_with(".db") ? dir : store::hub_store::file_of(cfg);
  store::store_summary summary;
  std::string error;
  if (!store::hub_store::summarize(file, summary, error)) {
    std::cerr << "hubflowctl: " << error << "\n";
    return exit_failed;
  }
  // The endpoints' disk buffers beside it (buffer-<endpoint>.db).
  std::vector<store::buffer_summary> buffers;
  auto folder = std::filesystem::path{file}.parent_path().string();
  if (!store::disk_buffer::summarize(folder.empty() ? "." : folder, buffers,
                                     error)) {
    std::cerr << "hubflowctl: " << error << "\n";
    return exit_failed;
  }
  if (as_json) {
    nlohmann::json queues = nlohmann::json::object();
    for (auto& [client, depth] : summary.queue_depths)
      queues[client] = depth;
    nlohmann::json by_endpoint = nlohmann::json::object();
    for (auto& b : buffers)
      by_endpoint[b.endpoint] = {{"file", b.file},
                                 {"records", b.records},
                                 {"bytes", b.bytes},
                                 {"dead_letters", b.dead_letters},
                                 {"file_bytes", b.file_bytes}};
    std::cout << nlohmann::json{{"file", file},
                                {"sessions", summary.sessions},
                                {"messages", summary.messages},
                                {"retained", summary.retained},
                                {"bytes", summary.file_bytes},
                                {"queues", queues},
                                {"buffers", by_endpoint}}
                   .dump()
              << "\n";
    return exit_ok;
  }
  std::cout << file << "\n"
            << "  sessions  " << summary.sessions << "\n"
            << "  messages  " << summary.messages
            << " (queued or in flight)\n"
            << "  retained  " << summary.retained << "\n"
            << "  on disk   " << summary.file_bytes << " bytes\n";
  if (!summary.queue_depths.empty())
    std::cout << "  messages per session:\n";
  for (auto& [client, depth] : summary.queue_depths)
    std::cout << "    " << client << "  " << depth << "\n";
  if (!buffers.empty())
    std::cout << "  endpoint buffers (records to forward, bytes, dead "
                 "letters):\n";
  for (auto& b : buffers)
    std::cout << "    " << b.endpoint << "  " << b.records << "  " << b.bytes
              << "  " << b.dead_letters << "  (" << b.file << ", "
              << b.file_bytes << " bytes on disk)\n";
  return exit_ok;
}

int import_baetyl_dir(const std::string& dir) {
  try {
    auto imported = import_baetyl(dir);
    for (auto& line : imported.mapping)
      std::cerr << "# " << line << "\n";
    for (auto& warning : imported.warnings)
      std::cerr << "warning: " << warning << "\n";
    std::cout << "# hubflow config for the Baetyl deployment "
              << imported.application << "\n"
              << imported.yaml;
    return exit_ok;
  } catch (const config_error& e) {
    for (auto& line : e.messages())
      std::cerr << line << "\n";
    return exit_failed;
  }
}

int import_mosquitto(const std::string& file) {
  try {
    auto imported = import_mosquitto_conf(file);
    for (auto& line : imported.unmapped)
      std::cerr << line << "\n";
    std::cout << imported.yaml;
    return exit_ok;
  } catch (const config_error& e) {
    for (auto& line : e.messages())
      std::cerr << line << "\n";
    return exit_failed;
  }
}

} // namespace

int main(int argc, char** argv) {
  std::string command;
  bool as_json = false;
  std::string host = stats_config{}.host;
  std::uint16_t port = stats_config{}.port;
  std::string password_file;
  std::string token_file;
  std::string path; // store: its directory; import-baetyl: Baetyl's workdir
  po::options_description desc(usage_text);
  desc.add_options()
    ("help,h", "print this help and exit")
    ("json", po::bool_switch(&as_json), "stats, store: print JSON")
    ("stats-host", po::value(&host)->value_name("HOST"),
     "stats, reload: the broker's stats.host (default 127.0.0.1)")
    ("stats-port", po::value(&port)->value_name("PORT"),
     "stats, reload: the broker's stats.port (default 9883)")
    ("token-file", po::value(&token_file)->value_name("FILE"),
     "stats, reload: the stats port's token (default: the path the broker "
     "uses for --stats-port, see docs/hubflowctl.md)")
    ("password-file", po::value(&password_file)->value_name("FILE"),
     "passwd: read the password from FILE");
  po::options_description hidden;
  hidden.add_options()("command", po::value(&command))(
    "path", po::value(&path));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description positional;
  positional.add("command", 1).add("path", 1);
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
    return stats({host, port, token_file}, as_json);
  if (command == "reload")
    return reload({host, port, token_file});
  if (command == "passwd")
    return passwd(password_file);
  if (command == "store") {
    if (path.empty()) {
      std::cerr << "hubflowctl: store needs the store's directory "
                   "(persistence.path)\nTry 'hubflowctl --help'.\n";
      return exit_usage;
    }
    return store_summary(path, as_json);
  }
  if (command == "import-mosquitto") {
    if (path.empty()) {
      std::cerr << "hubflowctl: import-mosquitto needs the mosquitto.conf\n"
                   "Try 'hubflowctl --help'.\n";
      return exit_usage;
    }
    return import_mosquitto(path);
  }
  if (command == "import-baetyl") {
    if (path.empty()) {
      std::cerr << "hubflowctl: import-baetyl needs Baetyl's working "
                   "directory\nTry 'hubflowctl --help'.\n";
      return exit_usage;
    }
    return import_baetyl_dir(path);
  }
  std::cerr << "hubflowctl: "
            << (command.empty() ? "no command given"
                                : "unknown command '" + command + "'")
            << "\nTry 'hubflowctl --help'.\n";
  return exit_usage;
}
