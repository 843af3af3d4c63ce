// hubflow's configuration: the YAML file, validated against
// schemas/hubflow.schema.json, turned into immutable structs that the actors
// are built from. Every error names file:line:column and the key path.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/endpoint_type.hpp"
#include "core/topic_template.hpp"
#include "core/values.hpp"

namespace hubflow {

using std::chrono::milliseconds;

/// Where a value sits in the config file, for error messages.
struct source_position {
  std::string file;
  int line = 0;   // 1-based, 0 when unknown
  int column = 0; // 1-based, 0 when unknown
};

/// A config problem: `what()` is `file:line:col: key.path: message`.
class config_error : public std::runtime_error {
public:
  config_error(const source_position& where, const std::string& key_path,
               const std::string& message);
  /// All problems found in one load, one per line.
  explicit config_error(const std::vector<std::string>& messages);
  const std::vector<std::string>& messages() const noexcept {
    return messages_;
  }

private:
  std::vector<std::string> messages_;
};

/// A username with its password (plain or mosquitto_passwd hash) and the
/// topic filters it may publish to and subscribe to.
struct principal_config {
  std::string username;
  std::string password;
  std::vector<std::string> pub;
  std::vector<std::string> sub;
};

/// What anonymous clients may publish and subscribe to
/// (hub.anonymous_permissions, the layout of a principal's `permissions`).
struct permit_lists {
  std::vector<std::string> pub;
  std::vector<std::string> sub;
};

/// A file the config names: its path (a relative one resolved against the
/// config file's folder) and where the config names it, for errors.
struct named_file {
  std::string path; // empty: not named
  source_position where;
};

/// Mosquitto's password and acl files as read (hub/mosquitto_files.hpp).
struct mosquitto_files;

/// Baetyl's hub `subscriptions`: what arrives on `source` is also published
/// on `target`.
struct remap_config {
  std::string source_topic;
  std::uint8_t source_qos = 0;
  std::string target_topic;
  std::uint8_t target_qos = 0;
};

/// What one client may make the embedded hub hold; every size and depth a
/// client controls has a bound here or in the MQTT codec. 0 never means
/// "unlimited" except where noted. Documented in docs/security.md.
struct hub_limits {
  std::size_t max_connections = 10000; // open MQTT connections
  std::size_t max_topic_levels = 200;  // Mosquitto's hard limit
  std::size_t max_topic_length = 65535; // bytes, MQTT's own maximum
  std::size_t max_subscriptions = 1000; // per session
  std::size_t max_user_properties = 64; // per packet (MQTT 5)
  std::size_t max_queued_bytes = 64 * 1024 * 1024; // per session, payloads
  /// The same for all sessions together: the queues' shared memory budget.
  std::size_t max_queued_bytes_total = 512 * 1024 * 1024;
  /// Mosquitto's max_keepalive, in seconds: MQTT 5 clients asking for more
  /// (or 0) are told this as Server Keep Alive; MQTT 3.1.1 clients asking
  /// for more (or 0) are refused. 0: clients choose (hubflow's default).
  std::size_t max_keepalive = 0;
  /// Offline sessions that asked to live forever (MQTT 3.1.1 clean session
  /// off, MQTT 5 expiry 0xFFFFFFFF) end after this long; 0 keeps them.
  milliseconds persistent_client_expiration = std::chrono::hours(24);
};

/// What the embedded hub does when a QoS 1/2 message finds its session's
/// queue at `message.queued` / `max_queued_bytes` (`message.queue_full`).
enum class queue_full_policy {
  /// Online sessions: queue it and hold the publisher's acknowledgement
  /// until the queue drains (offline sessions drop the new message).
  backpressure,
  drop_new,    // drop the new message (Mosquitto)
  drop_oldest, // drop the oldest queued message (EMQX)
};

/// How `hub.listen` entries are written (port 0: the system picks one).
inline const host_port_rules hub_listen_rules{{"tcp://", "mqtt://"}, false,
                                              true};
/// How `hub.address` (an external hub) is written.
inline const host_port_rules hub_address_rules{
  {"tcp://", "mqtt://", "ssl://", "mqtts://"}, true, false};
/// How `http.listen` is written.
inline const host_port_rules http_listen_rules{{}, false, true};

/// What a `hub.listen` entry speaks (its scheme).
enum class listener_kind {
  tcp, // tcp://, mqtt:// or no scheme
  tls, // ssl://, mqtts://
  ws,  // ws://host:port/path
  wss, // wss://host:port/path: WebSocket over TLS
};

/// One `hub.listen` URL, parsed.
struct listener_address {
  listener_kind kind = listener_kind::tcp;
  host_port at;
  /// ws/wss: the HTTP path a client upgrades on (`/mqtt` when not given).
  std::string path;

  bool secure() const noexcept {
    return kind == listener_kind::tls || kind == listener_kind::wss;
  }
  bool websocket() const noexcept {
    return kind == listener_kind::ws || kind == listener_kind::wss;
  }
};

/// Parses `tcp://host:port`, `mqtt://`, `ssl://`, `mqtts://`,
/// `ws://host:port[/path]` and `wss://host:port[/path]` (host:port as
/// hub_listen_rules: an empty host binds every interface, port 0 picks a
/// free one). nullopt with `error` saying what is wrong.
std::optional<listener_address> parse_listener(std::string_view url,
                                               std::string& error);

/// `hub.certificate` or a listener's own `certificate`: Baetyl's `ca`,
/// `cert`, `key` and Mosquitto's TLS options. Paths are resolved against
/// the config file's directory at load.
struct tls_settings {
  std::string ca;   // CA bundle that signs client certificates (PEM)
  std::string cert; // the server's certificate chain (PEM)
  std::string key;  // its private key (PEM, unencrypted)
  /// Mutual TLS: a client without a certificate `ca` verifies is refused.
  bool require_certificate = false;
  /// The client certificate's CN is the principal's username; no password.
  bool use_identity_as_username = false;
  std::string tls_version = "tlsv1.2"; // the oldest accepted: tlsv1.2|tlsv1.3
  std::string ciphers; // OpenSSL's list for TLS 1.2; empty: its default
  /// `ciphers_tls1.3`: OpenSSL's TLS 1.3 suites; empty: its default.
  std::string ciphersuites;
  std::string key_path; // where it was written: `hub.certificate`, ...
};

/// The external hub's TLS (`hub.address: ssl://...`), written inline in the
/// hub block as Baetyl's function manager does: `ca`, `cert`, `key`,
/// `insecureSkipVerify`. Paths are resolved against the config file.
struct tls_client_settings {
  /// CA bundle that signs the hub's certificate; empty: the system's
  /// trust store (/etc/ssl/certs).
  std::string ca;
  std::string cert; // a client certificate for mutual TLS (with `key`)
  std::string key;
  /// Accept a certificate whose name is not the address's host (the chain
  /// is still verified): for hubs reached by an address the certificate
  /// does not name.
  bool insecure_skip_verify = false;
  std::string key_path = "hub"; // where it was written
};

/// The hub rules talk to: embedded (`listen`) or external (`address`).
struct hub_config {
  bool embedded = true;
  // Embedded hub (Baetyl's hub service form).
  std::vector<std::string> listen{"tcp://127.0.0.1:1883"};
  bool allow_anonymous = true;     // the embedded default allows loopback only
  bool anonymous_loopback_only = true;
  std::vector<principal_config> principals;
  /// Unset: an admitted anonymous client may do anything, unless an acl
  /// file says otherwise (docs/hub-auth.md).
  std::optional<permit_lists> anonymous_permissions;
  named_file password_file; // Mosquitto's password_file
  named_file acl_file;      // Mosquitto's acl_file
  /// What the two files say: read once, by read_mosquitto_files, before
  /// the hub starts (so --check reports their errors); null until then.
  std::shared_ptr<const mosquitto_files> files;
  std::vector<remap_config> subscriptions;
  /// TLS listeners (ssl://, wss://) without their own certificate use this.
  std::optional<tls_settings> certificate;
  /// Listeners' own `certificate`, by their URL in `listen` (so a
  /// --listen override that drops the listener drops its certificate too).
  std::vector<std::pair<std::string, tls_settings>> listen_certificates;
  // External hub (Baetyl's function-manager form).
  std::string address;
  host_port address_parsed; // `address` without its scheme
  /// ssl:// or mqtts:// addresses only.
  std::optional<tls_client_settings> address_tls;
  std::string username;
  std::string password;
  int protocol = 4; // 4 = MQTT 3.1.1, 5 = MQTT 5
  // Both.
  std::size_t max_message_size = 4 * 1024 * 1024; // Baetyl's default 4 MiB
  std::size_t max_inflight = 20;
  std::size_t max_queued_messages = 1000; // per session, beyond the window
  queue_full_policy queue_full = queue_full_policy::backpressure;
  hub_limits limits; // embedded hub only
  source_position where;

  /// The TLS settings listener `url` uses: its own, else `certificate`
  /// (nullptr when neither is given).
  const tls_settings* certificate_for(std::string_view url) const;
};

/// One end of a rule: a hub topic (filter for `from`) or an endpoint topic.
struct rule_end {
  std::string endpoint; // empty: the hub
  std::string topic;
  std::uint8_t qos = 0;
  bool retain = false;
  /// `to` only: `topic` compiled (core/topic_template.hpp) for a hub
  /// destination; endpoints hold theirs in endpoint_usage::targets.
  topic_template_ptr topic_template;
};

struct rule_config {
  std::string name; // defaults to the clientid, else "rule-<index>"
  std::string clientid;
  rule_end from;
  std::string function; // empty: forward unchanged
  rule_end to;
  std::string error_topic; // empty: errors go to `to.topic`
  int retry_max = 3;
  source_position where;
};

struct instance_config {
  std::size_t min = 0;
  std::size_t max = 1;
  milliseconds idletime = std::chrono::minutes(10);
  milliseconds timeout = std::chrono::seconds(30);
  std::size_t queue = 1000; // invocations waiting when all `max` are busy
  std::size_t message_size = 4 * 1024 * 1024;
  /// wasm: the most linear memory one instance may grow to.
  std::size_t memory = 64 * 1024 * 1024;
};

struct function_config {
  std::string name;
  std::string runtime = "native"; // native | sql | python | node | wasm
  std::string plugin;             // native: plugin name or .so path
  std::string handler;            // sql: the statement; python/node: mod.fn
  std::string codedir;            // python/node
  std::string interpreter;        // python/node: overrides the default
  std::vector<std::pair<std::string, std::string>> env;
  std::string module;             // wasm: the WASI command module (.wasm)
  std::vector<std::string> args;  // wasm: argv[1..] of the module
  /// wasm: directories the module may open, guest path -> host path.
  std::vector<std::pair<std::string, std::string>> preopens;
  instance_config instance;
  source_position where;
};

/// When a stored record counts as safe (`persistence.sync`).
enum class persistence_sync {
  batch,  // acknowledged after its commit; commits share one fsync
  always, // acknowledged after its commit; one fsync per record
  off,    // acknowledged at once; written behind, no fsync (as Mosquitto)
};

/// An endpoint's `buffer:` key, common to every type (docs/persistence.md):
/// `disk` or `{type: disk, max_bytes: 1g}` puts a store-and-forward queue
/// on disk (under persistence.path) in front of the endpoint.
struct endpoint_buffer_config {
  bool disk = false;
  /// The records waiting in the buffer may take this many bytes (their
  /// packed sizes); beyond, what rules send is held, then refused (RETRY).
  std::size_t max_bytes = std::size_t{1} << 30;
};

/// An endpoint's entry: its type parses the YAML node against its option
/// table once, at load, into `parsed`, which its actor receives.
struct endpoint_config {
  std::string name;
  std::string type; // kafka | redis | mqtt
  YAML::Node settings;
  source_position where;
  endpoint_usage usage;
  endpoint_settings_ptr parsed;
  endpoint_buffer_config buffer;
  /// persistence.path and .sync when `buffer.disk` (copied at load, so the
  /// buffer actor needs nothing else of the config).
  std::string buffer_path;
  persistence_sync buffer_sync = persistence_sync::batch;
};

struct stats_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 9883;
  milliseconds report_interval = std::chrono::milliseconds(500);
  /// Where the stats port's token is written; empty: the default path of
  /// stats/stats_token.hpp (default_stats_token_path).
  std::string token_file;
};

struct http_config {
  bool enabled = false;
  std::string listen = "127.0.0.1:3500";
  std::size_t max_body = 4 * 1024 * 1024;
  /// A request's head and body must arrive within this, counted from its
  /// first byte (slowloris); then 408 and the connection is closed.
  milliseconds request_timeout = std::chrono::seconds(10);
  /// A connection with no request in progress and nothing received or sent
  /// for this long is closed (also one whose client stopped reading).
  milliseconds idle_timeout = std::chrono::seconds(60);
  /// Connections beyond this many get 503 and are closed at once.
  std::size_t max_connections = 1024;
  /// `http.certificate`: the API serves HTTPS only (docs/http-api.md).
  std::optional<tls_settings> certificate;
};

/// `persistence:` (docs/persistence.md). Absent: the hub keeps everything
/// in memory.
struct persistence_config {
  bool enabled = false;
  std::string path; // a directory; the store is <path>/hubflow.db
  persistence_sync sync = persistence_sync::batch;
  /// The store may grow to this many bytes; beyond it QoS 1/2 publishes
  /// that would be stored are refused. 0: no limit but the disk's.
  std::size_t max_size = 0;
};

struct log_config {
  std::string level = "info";
  std::string path; // empty: stderr
};

/// Where to find things at run time (command line, not the YAML file).
struct runtime_options {
  std::vector<std::string> plugin_dirs;
  std::string python = "/usr/bin/python3";
  std::string node = "node";
  std::string workers_dir; // where hubflow's own worker scripts live
};

struct config {
  std::string file; // "<embedded default>" for the built-in config
  hub_config hub;
  std::vector<rule_config> rules;
  std::vector<function_config> functions;
  std::vector<endpoint_config> endpoints;
  stats_config stats;
  http_config http;
  persistence_config persistence;
  log_config logger;
  /// Things that load but deserve a word in the log (plain-text secrets).
  std::vector<std::string> warnings;

  const function_config* find_function(const std::string& name) const;
  const endpoint_config* find_endpoint(const std::string& name) const;
};

/// No endpoint types: a config that has endpoints does not load.
const endpoint_types& no_endpoint_types();

/// Parses and validates YAML text; `file` names it in errors. Endpoints are
/// parsed by their type in `types` (endpoints/endpoint.hpp's
/// endpoint_registry() in the broker). Throws config_error with every
/// problem found.
config load_config_text(const std::string& text, const std::string& file,
                        const endpoint_types& types = no_endpoint_types());

/// The text of a config file. Throws config_error when it cannot be read.
std::string read_config_file(const std::string& path);

/// Reads and validates a file. Throws config_error.
config load_config_file(const std::string& path,
                        const endpoint_types& types = no_endpoint_types());

/// Parses one endpoint entry (`cfg.settings`, `cfg.usage`) with its type
/// into `cfg.parsed`; problems and warnings are appended (as the loader
/// does for each endpoint), `key_path` names the entry in them.
void parse_endpoint(const endpoint_type& type, endpoint_config& cfg,
                    const std::string& key_path,
                    std::vector<std::string>& errors,
                    std::vector<std::string>& warnings);

/// The embedded default config (config/hubflow.yaml, compiled in).
config default_config();
const char* default_config_text();

/// Position of a YAML node (1-based line and column).
source_position position_of(const YAML::Node& node, const std::string& file);

/// Formats one config problem as `file:line:col: key.path: message`.
std::string format_config_error(const source_position& where,
                                const std::string& key_path,
                                const std::string& message);

} // namespace hubflow
