#include "core/mosquitto_import.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include <yaml-cpp/yaml.h>

#include "core/config.hpp"

namespace hubflow {

namespace {

namespace fs = std::filesystem;

/// Options hubflow has no counterpart of, with the reason a reader needs.
const std::map<std::string, std::string>& reasons() {
  static const std::map<std::string, std::string> table{
    {"autosave_interval", "hubflow stores each message as it arrives"},
    {"autosave_on_changes", "hubflow stores each message as it arrives"},
    {"persistence_file", "hubflow's store is <persistence.path>/hubflow.db"},
    {"sys_interval", "changed $SYS/broker values go out at most once a second"},
    {"log_dest", "hubflow logs to standard error, or logger.path"},
    {"log_type", "use logger.level"},
    {"log_timestamp", "hubflow's log lines always carry the time"},
    {"log_timestamp_format", "hubflow's log lines always carry the time"},
    {"connection_messages", "hubflow logs connections at level debug"},
    {"user", "hubflow runs as the user that starts it"},
    {"pid_file", "hubflow writes no pid file (systemd knows the pid)"},
    {"include_dir", "write the included options into this file first"},
    {"per_listener_settings", "hubflow's auth settings are for all listeners"},
    {"capath", "give the CA bundle as cafile"},
    {"crlfile", "hubflow checks no revocation lists"},
    {"dhparamfile", "hubflow uses ECDHE key exchange only"},
    {"psk_hint", "hubflow has no TLS-PSK"},
    {"psk_file", "hubflow has no TLS-PSK"},
    {"use_subject_as_username", "use use_identity_as_username (the CN)"},
    {"http_dir", "hubflow serves no files over WebSocket listeners"},
    {"websockets_log_level", "hubflow logs WebSocket errors itself"},
    {"websockets_headers_size", "hubflow bounds upgrade headers itself"},
    {"socket_domain", "write an IPv4 or [IPv6] address in the listener"},
    {"bind_interface", "write the interface's address in the listener"},
    {"mount_point", "hubflow has no per-listener topic prefix"},
    {"plugin", "hubflow loads no Mosquitto plugins"},
    {"auth_plugin", "hubflow loads no Mosquitto plugins"},
    {"clientid_prefixes", "use acl_file patterns with %c"},
    {"max_packet_size", "use message_size_limit (hub.message.length.max)"},
    {"memory_limit", "hubflow bounds memory per session (max_queued_bytes)"},
    {"retain_available", "hubflow always keeps retained messages"},
    {"max_qos", "hubflow accepts QoS 0, 1 and 2"},
    {"allow_zero_length_clientid", "hubflow always assigns an id to a client that sends none"},
    {"auto_id_prefix", "hubflow's assigned ids are its own"},
    {"check_retain_source", "hubflow checks the publisher's permission when the message arrives"},
    {"set_tcp_nodelay", "hubflow always sets TCP_NODELAY"},
    {"upgrade_outgoing_qos", "hubflow delivers at the lower of the two QoS, as MQTT says"},
    {"queue_qos0_messages", "hubflow queues QoS 1 and 2 messages for offline sessions only"},
    {"allow_duplicate_messages", "hubflow delivers one copy per matching subscription set"},
    {"max_inflight_bytes", "use max_inflight_messages (hub.message.inflight)"},
    {"listener_allow_anonymous", "hubflow's anonymous setting is for all listeners"},
    {"password", "hubflow has no per-option password"},
  };
  return table;
}

/// Bridge options: hubflow has no bridges.
const std::set<std::string>& bridge_options() {
  static const std::set<std::string> names{
    "connection", "address", "addresses", "topic", "remote_clientid",
    "remote_username", "remote_password", "local_clientid", "bridge_cafile",
    "bridge_certfile", "bridge_keyfile", "bridge_protocol_version",
    "bridge_insecure", "cleansession", "keepalive_interval", "start_type",
    "notifications", "try_private", "restart_timeout", "round_robin"};
  return names;
}

struct listener {
  int line = 0;
  std::string port;
  std::string address; // empty: every interface
  bool websockets = false;
  std::map<std::string, std::string> tls; // cafile, certfile, ... as written
  int tls_line = 0;
};

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

/// Mosquitto's durations (`1h`, `5d`, `2w`, `1m` months, `1y`) in
/// hubflow's units.
std::string duration(const std::string& value) {
  if (value.empty())
    return {};
  auto unit = value.back();
  auto digits = value.substr(0, value.size() - 1);
  if (!is_number(digits) || digits.size() > 9) // in range for any unit
    return {};
  auto n = std::stoll(digits);
  switch (unit) {
    case 'h':
    case 'd':
    case 'w':
      return value;
    case 'm':
      return std::to_string(n * 30) + "d";
    case 'y':
      return std::to_string(n * 365) + "d";
    default:
      return {};
  }
}

class importer {
public:
  explicit importer(const std::string& path) : file_(path) {
    dir_ = fs::absolute(path).parent_path();
  }

  mosquitto_import run() {
    read();
    if (!errors_.empty())
      throw config_error(errors_);
    translate();
    if (!errors_.empty())
      throw config_error(errors_);
    return std::move(out_);
  }

private:
  void fail(int line, const std::string& option, const std::string& msg) {
    errors_.push_back(format_config_error({file_, line, 0}, option, msg));
  }
  void unmapped(int line, const std::string& option, const std::string& value,
                const std::string& why) {
    auto text = file_ + ":" + std::to_string(line) + ": " + option
                + (value.empty() ? "" : " " + value) + ": not mapped: " + why;
    out_.unmapped.push_back(text);
    comments_.emplace(line, std::move(text));
  }
  /// What changes meaning on the way (a comment in the YAML only).
  void note(int line, const std::string& text) {
    comments_.emplace(line, file_ + ":" + std::to_string(line) + ": " + text);
  }

  std::string file_path(const std::string& value) const {
    fs::path p{value};
    return (p.is_absolute() ? p : dir_ / p).lexically_normal().string();
  }

  void read() {
    std::ifstream in{file_};
    if (!in) {
      errors_.push_back(file_ + ": cannot read the file");
      return;
    }
    std::string text;
    int line = 0;
    while (std::getline(in, text)) {
      ++line;
      auto start = text.find_first_not_of(" \t\r");
      if (start == std::string::npos || text[start] == '#')
        continue;
      auto end = text.find_last_not_of(" \t\r");
      text = text.substr(start, end - start + 1);
      auto space = text.find_first_of(" \t");
      auto option = text.substr(0, space);
      std::string value;
      if (space != std::string::npos)
        value = text.substr(text.find_first_not_of(" \t", space));
      option_at(line, option, value);
    }
  }

  /// The listener per-listener options apply to: the last `listener`, or
  /// before any the default one (`port`, `bind_address`).
  listener& current() {
    return listeners_.empty() ? default_ : listeners_.back();
  }

  /// An integer option (Mosquitto's -1 included); nullopt and an error
  /// naming the line otherwise.
  std::optional<long long> number(int line, const std::string& option,
                                  const std::string& value) {
    auto digits = value.rfind('-', 0) == 0 ? value.substr(1) : value;
    if (!is_number(digits) || digits.size() > 18) {
      fail(line, option, "'" + value + "' is not a number");
      return std::nullopt;
    }
    return std::stoll(value);
  }

  void option_at(int line, const std::string& option,
                 const std::string& value) {
    static const std::set<std::string> tls_options{
      "cafile", "certfile", "keyfile", "require_certificate",
      "use_identity_as_username", "tls_version", "ciphers",
      "ciphers_tls1.3"};
    if (option == "listener") {
      auto space = value.find_first_of(" \t");
      listener l;
      l.line = line;
      l.port = value.substr(0, space);
      if (space != std::string::npos)
        l.address = value.substr(value.find_first_not_of(" \t", space));
      if (!is_number(l.port) || l.port.size() > 5 || std::stoul(l.port) > 65535)
        return fail(line, option, "'" + l.port + "' is not a port");
      if (l.port == "0")
        return unmapped(line, option, value,
                        "port 0 is a Unix socket listener in Mosquitto; "
                        "hubflow has none");
      listeners_.push_back(std::move(l));
    } else if (option == "port") {
      if (!is_number(value) || value.size() > 5 || std::stoul(value) > 65535)
        return fail(line, option, "'" + value + "' is not a port");
      default_.port = value;
      default_.line = line;
    } else if (option == "bind_address") {
      default_.address = value;
    } else if (option == "protocol") {
      if (value != "mqtt" && value != "websockets")
        return fail(line, option, "'" + value + "': write mqtt or websockets");
      current().websockets = value == "websockets";
    } else if (tls_options.count(option)) {
      auto& l = current();
      l.tls[option] = value;
      l.tls_line = line;
    } else if (option == "allow_anonymous") {
      if (value != "true" && value != "false")
        return fail(line, option, "'" + value + "': write true or false");
      allow_anonymous_ = value == "true";
    } else if (option == "password_file" || option == "acl_file") {
      hub_[option] = file_path(value);
    } else if (option == "max_keepalive") {
      if (auto n = number(line, option, value))
        hub_["max_keepalive"] = *n;
    } else if (option == "persistent_client_expiration") {
      auto d = duration(value);
      if (d.empty())
        return fail(line, option,
                    "'" + value + "': write a number and h, d, w, m or y");
      hub_["persistent_client_expiration"] = d;
    } else if (option == "max_connections") {
      auto n = number(line, option, value);
      if (n && *n >= 0) {
        hub_["max_connections"] = *n;
        note(line, "max_connections: Mosquitto counts per listener, hubflow "
                   "for all listeners together");
      }
    } else if (option == "max_queued_messages") {
      if (auto n = number(line, option, value); n && *n > 0)
        hub_["message"]["queued"] = *n;
    } else if (option == "max_queued_bytes") {
      if (auto n = number(line, option, value); n && *n > 0)
        hub_["max_queued_bytes"] = *n;
    } else if (option == "max_inflight_messages") {
      auto n = number(line, option, value);
      if (n && *n == 0)
        unmapped(line, option, value,
                 "hubflow's window is bounded (hub.message.inflight, at most "
                 "65535)");
      else if (n)
        hub_["message"]["inflight"] = *n;
    } else if (option == "message_size_limit") {
      auto n = number(line, option, value);
      if (n && *n == 0)
        unmapped(line, option, value,
                 "hubflow keeps its bound (hub.message.length.max, 4 MiB by "
                 "default)");
      else if (n)
        hub_["message"]["length"]["max"] = *n;
    } else if (option == "persistence") {
      persistence_ = value == "true";
      persistence_line_ = line;
    } else if (option == "persistence_location") {
      persistence_location_ = file_path(value);
    } else if (option == "per_listener_settings" && value == "false") {
      // Mosquitto's default, and what hubflow does.
    } else if (bridge_options().count(option)) {
      unmapped(line, option, value,
               "hubflow has no bridges (a hub with `address` links rules to "
               "one other broker)");
    } else if (auto r = reasons().find(option); r != reasons().end()) {
      unmapped(line, option, value, r->second);
    } else {
      unmapped(line, option, value, "unknown to this importer");
    }
  }

  void translate() {
    YAML::Node listen{YAML::NodeType::Sequence};
    if (!default_.port.empty())
      listeners_.insert(listeners_.begin(), default_);
    else if (!default_.tls.empty() || default_.websockets)
      unmapped(default_.tls_line, "port", "",
               "options for the default listener, but no `port` to open it "
               "on");
    if (listeners_.empty()) {
      // Mosquitto 2.0 without listeners: loopback only, anonymous allowed.
      listen.push_back("tcp://127.0.0.1:1883");
      if (!allow_anonymous_)
        hub_["anonymous"] = "loopback";
    }
    for (auto& l : listeners_)
      listen.push_back(listener_entry(l));
    hub_["listen"] = listen;
    if (!listeners_.empty())
      hub_["anonymous"] = allow_anonymous_.value_or(false) ? "all" : "none";
    YAML::Node root;
    root["hub"] = hub_;
    if (persistence_) {
      if (persistence_location_.empty()) {
        persistence_location_ = (dir_ / "hubflow-store").string();
        note(persistence_line_,
             "persistence_location not given (Mosquitto writes mosquitto.db "
             "in its working directory): the store goes to "
               + persistence_location_);
      }
      root["persistence"]["path"] = persistence_location_;
      note(persistence_line_,
           "persistence true: hubflow acknowledges QoS 1/2 messages once "
           "stored (sync: batch); `sync: off` writes behind as Mosquitto "
           "does");
    }
    YAML::Emitter e;
    e << root;
    std::string head = "# hubflow config from " + file_ + "\n";
    for (auto& [line, text] : comments_)
      head += "# " + text + "\n";
    out_.yaml = head + e.c_str() + "\n";
  }

  YAML::Node listener_entry(const listener& l) {
    bool tls = l.tls.count("certfile") || l.tls.count("keyfile");
    auto scheme = l.websockets ? (tls ? "wss://" : "ws://")
                               : (tls ? "ssl://" : "tcp://");
    auto host = l.address.empty() ? std::string{"0.0.0.0"} : l.address;
    if (host.find(':') != std::string::npos && host.front() != '[')
      host = "[" + host + "]";
    auto port = l.port.empty() ? std::string{"1883"} : l.port;
    std::string url = scheme + host + ":" + port;
    if (l.websockets) {
      url += "/mqtt";
      note(l.line, "a WebSocket listener: hubflow upgrades on /mqtt only, "
                   "Mosquitto on any path");
    }
    if (!tls) {
      for (auto& [option, value] : l.tls)
        unmapped(l.tls_line, option, value,
                 "a TLS option on a listener without certfile and keyfile");
      return YAML::Node{url};
    }
    YAML::Node certificate;
    static const std::map<std::string, std::string> keys{
      {"cafile", "ca"}, {"certfile", "cert"}, {"keyfile", "key"}};
    for (auto& [option, value] : l.tls) {
      if (auto k = keys.find(option); k != keys.end())
        certificate[k->second] = file_path(value);
      else if (option == "require_certificate"
               || option == "use_identity_as_username")
        certificate[option] = value == "true";
      else if (option == "tls_version" && value == "tlsv1.1") {
        certificate[option] = "tlsv1.2";
        note(l.tls_line, "tls_version tlsv1.1: hubflow's oldest is tlsv1.2");
      } else
        certificate[option] = value;
    }
    YAML::Node entry;
    entry["url"] = url;
    entry["certificate"] = certificate;
    return entry;
  }

  std::string file_;
  fs::path dir_;
  std::vector<std::string> errors_;
  /// Notes and unmapped options by line, for the YAML's head.
  std::multimap<int, std::string> comments_;
  mosquitto_import out_;
  listener default_; // `port`, and the options before the first listener
  std::vector<listener> listeners_;
  std::optional<bool> allow_anonymous_;
  YAML::Node hub_;
  bool persistence_ = false;
  int persistence_line_ = 0;
  std::string persistence_location_;
};

} // namespace

mosquitto_import import_mosquitto_conf(const std::string& path) {
  return importer{path}.run();
}

} // namespace hubflow
