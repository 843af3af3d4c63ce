#include "endpoints/kafka/kafka_settings.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <stdexcept>

#include <unistd.h>

namespace hubflow::kafka {

namespace {

// Reads one endpoint's YAML mapping, reporting problems with their place.
class settings_reader {
public:
  settings_reader(const endpoint_config& config, std::string key_path,
                  std::vector<std::string>& errors)
    : file_(config.where.file), key_path_(std::move(key_path)), errors_(errors) {
  }

  void error(const YAML::Node& at, const std::string& key,
             const std::string& text) {
    auto pos = position_of(at, file_);
    std::ostringstream out;
    out << pos.file << ':' << pos.line << ':' << pos.column << ": "
        << key_path_;
    if (!key.empty())
      out << '.' << key;
    out << ": " << text;
    errors_.push_back(out.str());
  }

  /// A scalar string, or nullopt (with an error when present but not one).
  std::optional<std::string> string_at(const YAML::Node& parent,
                                       const std::string& key,
                                       const std::string& path) {
    auto node = parent[key];
    if (!node)
      return std::nullopt;
    if (!node.IsScalar()) {
      error(node, path, "must be a string");
      return std::nullopt;
    }
    return node.Scalar();
  }

  /// An integer within [min, max], or nullopt (with an error if invalid).
  std::optional<int> int_at(const YAML::Node& parent, const std::string& key,
                            const std::string& path, long min, long max) {
    auto node = parent[key];
    if (!node)
      return std::nullopt;
    long value = 0;
    try {
      if (!node.IsScalar())
        throw YAML::Exception(node.Mark(), "not a scalar");
      value = node.as<long>();
    } catch (const YAML::Exception&) {
      error(node, path, "must be an integer");
      return std::nullopt;
    }
    if (value < min || value > max) {
      error(node, path,
            "must be between " + std::to_string(min) + " and "
              + std::to_string(max) + " (got " + std::to_string(value) + ")");
      return std::nullopt;
    }
    return static_cast<int>(value);
  }

  /// One of the names in `choices`, mapped to its value.
  template <class Enum>
  std::optional<Enum>
  choice_at(const YAML::Node& parent, const std::string& key,
            const std::string& path,
            std::initializer_list<std::pair<const char*, Enum>> choices) {
    auto text = string_at(parent, key, path);
    if (!text)
      return std::nullopt;
    std::string names;
    for (auto& [name, value] : choices) {
      if (*text == name)
        return value;
      names += names.empty() ? "" : ", ";
      names += name;
    }
    error(parent[key], path,
          "must be one of " + names + " (got '" + *text + "')");
    return std::nullopt;
  }

  void reject_unknown_keys(const YAML::Node& map, const std::string& path,
                           std::initializer_list<const char*> known) {
    std::set<std::string> names(known.begin(), known.end());
    for (auto it = map.begin(); it != map.end(); ++it) {
      auto key = it->first.as<std::string>("");
      if (names.count(key) == 0)
        error(it->first, path.empty() ? key : path + "." + key,
              "unknown setting of a kafka endpoint");
    }
  }

  /// Resolves a relative path against the config file's directory.
  std::string config_relative(const std::string& path) const {
    namespace fs = std::filesystem;
    if (path.empty() || fs::path(path).is_absolute() || file_.empty()
        || file_.front() == '<')
      return path;
    return (fs::path(file_).parent_path() / path).lexically_normal().string();
  }

private:
  std::string file_;
  std::string key_path_;
  std::vector<std::string>& errors_;
};

std::optional<secret_ref> parse_secret(settings_reader& in,
                                       const YAML::Node& parent,
                                       const std::string& key,
                                       const std::string& path) {
  auto node = parent[key];
  if (!node) {
    in.error(parent, path,
             "is required for SASL: write {file: <path>} or {env: <VARIABLE>}");
    return std::nullopt;
  }
  if (!node.IsMap() || node.size() != 1 || !(node["file"] || node["env"])) {
    in.error(node, path,
             "must be {file: <path>} or {env: <VARIABLE>}: secrets are never "
             "taken from the config text");
    return std::nullopt;
  }
  secret_ref ref;
  bool from_file = static_cast<bool>(node["file"]);
  ref.from = from_file ? secret_ref::source::file : secret_ref::source::env;
  auto location = in.string_at(node, from_file ? "file" : "env",
                               path + (from_file ? ".file" : ".env"));
  if (!location || location->empty()) {
    in.error(node, path, "names no file or variable");
    return std::nullopt;
  }
  ref.location = from_file ? in.config_relative(*location) : *location;
  std::string why;
  if (!ref.resolve(why)) {
    in.error(node, path, why);
    return std::nullopt;
  }
  return ref;
}

bool valid_host_list(const std::string& hosts) {
  std::istringstream in(hosts);
  std::string entry;
  bool any = false;
  while (std::getline(in, entry, ',')) {
    auto colon = entry.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == entry.size())
      return false;
    auto port = entry.substr(colon + 1);
    if (port.find_first_not_of("0123456789") != std::string::npos
        || std::stol(port) < 1 || std::stol(port) > 65535)
      return false;
    any = true;
  }
  return any;
}

std::string default_instance_id(const std::string& endpoint_name) {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    host[0] = '\0';
  return std::string(host) + "/" + endpoint_name;
}

} // namespace

std::optional<std::string> secret_ref::resolve(std::string& error) const {
  if (from == source::env) {
    const char* value = std::getenv(location.c_str());
    if (value == nullptr) {
      error = "environment variable " + location + " is not set";
      return std::nullopt;
    }
    return std::string(value);
  }
  std::ifstream in(location, std::ios::binary);
  if (!in) {
    error = "cannot read secret file " + location;
    return std::nullopt;
  }
  std::string value((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  // Files written with `echo` end in a newline that is not part of it.
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r'))
    value.pop_back();
  return value;
}

kafka_settings parse_kafka_settings(const endpoint_config& config,
                                    const endpoint_usage& usage,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors) {
  settings_reader in(config, key_path, errors);
  kafka_settings out;
  out.name = config.name;
  const auto& root = config.settings;
  if (!root || !root.IsMap()) {
    in.error(root, "", "a kafka endpoint must be a mapping");
    return out;
  }
  in.reject_unknown_keys(root, "",
                         {"name", "type", "host", "tls", "authentication",
                          "consumerGroupId", "compression", "batching",
                          "partitionStrategy", "partitionKeyProperty",
                          "kafkaAcknowledgement", "copyMqttProperties",
                          "cloudEventAttributes", "deliveryTimeoutMs",
                          "instanceId"});

  if (auto host = in.string_at(root, "host", "host")) {
    if (!valid_host_list(*host))
      in.error(root["host"], "host",
               "must be <host>:<port>[,<host>:<port>...] (got '" + *host + "')");
    out.host = *host;
  } else if (!root["host"]) {
    in.error(root, "host", "is required (the Kafka bootstrap servers)");
  }

  if (auto tls = root["tls"]) {
    if (!tls.IsMap()) {
      in.error(tls, "tls", "must be a mapping {mode, trustedCaCertificate}");
    } else {
      in.reject_unknown_keys(tls, "tls", {"mode", "trustedCaCertificate"});
      if (auto mode = in.choice_at<bool>(tls, "mode", "tls.mode",
                                         {{"Enabled", true}, {"Disabled", false}}))
        out.tls = *mode;
      if (auto ca = in.string_at(tls, "trustedCaCertificate",
                                 "tls.trustedCaCertificate")) {
        out.trusted_ca_file = in.config_relative(*ca);
        std::ifstream pem(out.trusted_ca_file);
        std::string text;
        if (pem)
          text.assign(std::istreambuf_iterator<char>(pem),
                      std::istreambuf_iterator<char>());
        if (!pem.is_open())
          in.error(tls["trustedCaCertificate"], "tls.trustedCaCertificate",
                   "cannot read CA certificate file " + out.trusted_ca_file);
        else if (text.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
          in.error(tls["trustedCaCertificate"], "tls.trustedCaCertificate",
                   out.trusted_ca_file + " holds no PEM certificate");
        else if (!out.tls)
          in.error(tls["trustedCaCertificate"], "tls.trustedCaCertificate",
                   "is set but tls.mode is not Enabled");
      }
    }
  }

  if (auto auth = root["authentication"]) {
    if (!auth.IsMap()) {
      in.error(auth, "authentication",
               "must be a mapping {method: Anonymous|Sasl, ...}");
    } else {
      in.reject_unknown_keys(auth, "authentication",
                             {"method", "saslType", "username", "password"});
      auto method = in.choice_at<bool>(auth, "method", "authentication.method",
                                       {{"Anonymous", false}, {"Sasl", true}});
      if (!auth["method"])
        in.error(auth, "authentication.method", "is required");
      out.sasl = method.value_or(false);
      if (out.sasl) {
        if (auto type = in.choice_at<std::string>(
              auth, "saslType", "authentication.saslType",
              {{"Plain", "PLAIN"},
               {"ScramSha256", "SCRAM-SHA-256"},
               {"ScramSha512", "SCRAM-SHA-512"}}))
          out.sasl_mechanism = *type;
        else if (!auth["saslType"])
          in.error(auth, "authentication.saslType",
                   "is required with method Sasl (Plain, ScramSha256 or "
                   "ScramSha512)");
        if (auto user = parse_secret(in, auth, "username",
                                     "authentication.username"))
          out.username = *user;
        if (auto pass = parse_secret(in, auth, "password",
                                     "authentication.password"))
          out.password = *pass;
      } else if (method) {
        for (auto key : {"saslType", "username", "password"})
          if (auth[key])
            in.error(auth[key], std::string("authentication.") + key,
                     "only applies to method Sasl");
      }
    }
  }

  if (auto group = in.string_at(root, "consumerGroupId", "consumerGroupId"))
    out.consumer_group_id = *group;
  if (usage.as_source && out.consumer_group_id.empty())
    in.error(root["consumerGroupId"] ? root["consumerGroupId"] : root,
             "consumerGroupId", missing_consumer_group_error);

  if (auto codec = in.choice_at<compression>(root, "compression", "compression",
                                             {{"None", compression::none},
                                              {"Gzip", compression::gzip},
                                              {"Snappy", compression::snappy},
                                              {"Lz4", compression::lz4}}))
    out.codec = *codec;

  if (auto batching = root["batching"]) {
    if (!batching.IsMap()) {
      in.error(batching, "batching",
               "must be a mapping {mode, latencyMs, maxMessages, maxBytes}");
    } else {
      in.reject_unknown_keys(batching, "batching",
                             {"mode", "latencyMs", "maxMessages", "maxBytes"});
      if (auto mode = in.choice_at<bool>(batching, "mode", "batching.mode",
                                         {{"Enabled", true},
                                          {"Disabled", false}}))
        out.batching.enabled = *mode;
      // The bounds are librdkafka's for linger.ms, batch.num.messages and
      // batch.size.
      if (auto v = in.int_at(batching, "latencyMs", "batching.latencyMs", 0,
                             900000))
        out.batching.latency_ms = *v;
      if (auto v = in.int_at(batching, "maxMessages", "batching.maxMessages",
                             1, 1000000))
        out.batching.max_messages = *v;
      if (auto v = in.int_at(batching, "maxBytes", "batching.maxBytes", 1,
                             2147483647))
        out.batching.max_bytes = *v;
    }
  }

  if (auto strategy = in.choice_at<partition_strategy>(
        root, "partitionStrategy", "partitionStrategy",
        {{"Default", partition_strategy::round_robin},
         {"Static", partition_strategy::fixed_instance},
         {"Topic", partition_strategy::mqtt_topic},
         {"Property", partition_strategy::property}}))
    out.partitioning = *strategy;
  if (auto property = in.string_at(root, "partitionKeyProperty",
                                   "partitionKeyProperty"))
    out.partition_key_property = *property;
  if (out.partitioning == partition_strategy::property
      && out.partition_key_property.empty())
    in.error(root, "partitionKeyProperty",
             "is required with partitionStrategy Property (the MQTT user "
             "property whose value keys the partition)");
  else if (out.partitioning != partition_strategy::property
           && root["partitionKeyProperty"])
    in.error(root["partitionKeyProperty"], "partitionKeyProperty",
             "only applies to partitionStrategy Property");

  if (auto acks = in.choice_at<acknowledgement>(
        root, "kafkaAcknowledgement", "kafkaAcknowledgement",
        {{"None", acknowledgement::none},
         {"Zero", acknowledgement::zero},
         {"One", acknowledgement::one},
         {"All", acknowledgement::all}}))
    out.acks = *acks;

  if (auto copy = in.choice_at<bool>(root, "copyMqttProperties",
                                     "copyMqttProperties",
                                     {{"Enabled", true}, {"Disabled", false}}))
    out.copy_mqtt_properties = *copy;

  if (auto ce = in.choice_at<cloud_events>(
        root, "cloudEventAttributes", "cloudEventAttributes",
        {{"Propagate", cloud_events::propagate},
         {"CreateOrRemap", cloud_events::create_or_remap}}))
    out.cloud_event_attributes = *ce;

  if (auto timeout = in.int_at(root, "deliveryTimeoutMs", "deliveryTimeoutMs",
                               100, 2147483647))
    out.delivery_timeout_ms = *timeout;

  if (auto id = in.string_at(root, "instanceId", "instanceId"))
    out.instance_id = *id;
  if (out.instance_id.empty())
    out.instance_id = default_instance_id(out.name);
  return out;
}

property_list client_properties(const kafka_settings& s) {
  property_list props{{"bootstrap.servers", s.host},
                      {"client.id", "hubflow-" + s.name},
                      {"socket.nagle.disable", "true"}};
  const char* protocol = s.tls ? (s.sasl ? "sasl_ssl" : "ssl")
                               : (s.sasl ? "sasl_plaintext" : "plaintext");
  props.emplace_back("security.protocol", protocol);
  if (s.tls && !s.trusted_ca_file.empty())
    props.emplace_back("ssl.ca.location", s.trusted_ca_file);
  if (s.sasl) {
    props.emplace_back("sasl.mechanisms", s.sasl_mechanism);
    std::string why;
    auto user = s.username.resolve(why);
    if (!user)
      throw std::runtime_error("kafka endpoint " + s.name + ": username: " + why);
    auto pass = s.password.resolve(why);
    if (!pass)
      throw std::runtime_error("kafka endpoint " + s.name + ": password: " + why);
    props.emplace_back("sasl.username", *user);
    props.emplace_back("sasl.password", *pass);
  }
  return props;
}

property_list producer_properties(const kafka_settings& s) {
  auto props = client_properties(s);
  switch (s.acks) {
    case acknowledgement::none:
      props.emplace_back("acks", "0");
      break;
    case acknowledgement::zero:
      props.emplace_back("acks", "1");
      break;
    case acknowledgement::one:
      props.emplace_back("acks", "all");
      break;
    case acknowledgement::all:
      props.emplace_back("acks", "all");
      // Retries after a broker failure neither duplicate nor reorder.
      props.emplace_back("enable.idempotence", "true");
      break;
  }
  if (s.batching.enabled) {
    props.emplace_back("linger.ms", std::to_string(s.batching.latency_ms));
    props.emplace_back("batch.num.messages",
                       std::to_string(s.batching.max_messages));
    props.emplace_back("batch.size", std::to_string(s.batching.max_bytes));
  } else {
    props.emplace_back("linger.ms", "0");
    props.emplace_back("batch.num.messages", "1");
  }
  static constexpr const char* codecs[] = {"none", "gzip", "snappy", "lz4"};
  props.emplace_back("compression.codec", codecs[static_cast<int>(s.codec)]);
  props.emplace_back("message.timeout.ms",
                     std::to_string(s.delivery_timeout_ms));
  if (s.partitioning == partition_strategy::mqtt_topic
      || s.partitioning == partition_strategy::property)
    // Java-compatible key hashing: the same key lands on the same partition
    // whichever Kafka client produced it; records without a key are spread.
    props.emplace_back("partitioner", "murmur2_random");
  // Without this librdkafka sends records without a key to a "sticky"
  // partition of its choice and never asks the partitioner (Default's round
  // robin and Static are partitioners of the producer actor).
  props.emplace_back("sticky.partitioning.linger.ms", "0");
  // Batch sizes and bytes on the wire come from librdkafka's statistics.
  props.emplace_back("statistics.interval.ms", "500");
  return props;
}

property_list consumer_properties(const kafka_settings& s) {
  auto props = client_properties(s);
  props.emplace_back("group.id", s.consumer_group_id);
  // Offsets are committed by the endpoint once the subscriber acknowledged.
  props.emplace_back("enable.auto.commit", "false");
  props.emplace_back("enable.auto.offset.store", "false");
  props.emplace_back("auto.offset.reset", "earliest");
  return props;
}

} // namespace hubflow::kafka
