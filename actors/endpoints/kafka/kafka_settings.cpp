#include "endpoints/kafka/kafka_settings.hpp"

#include <fstream>
#include <iterator>

#include <unistd.h>

namespace hubflow::kafka {

namespace {

std::string default_instance_id(const std::string& endpoint_name) {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0)
    host[0] = '\0';
  return std::string(host) + "/" + endpoint_name;
}

option_spec choice(std::string name, std::string def, std::string description,
                   std::vector<std::string> choices, bool required = false) {
  auto s = option(std::move(name), option_type::choice, std::move(def), std::move(description));
  s.choices = std::move(choices);
  s.required = required;
  return s;
}

option_spec integer(std::string name, std::string def, std::string description,
                    std::int64_t min, std::int64_t max) {
  auto s = option(std::move(name), option_type::integer, std::move(def), std::move(description));
  s.min = min;
  s.max = max;
  return s;
}

option_spec text(std::string name, std::string description) {
  auto s = option(std::move(name), option_type::string, "", std::move(description));
  s.min_length = 1;
  return s;
}

const std::vector<std::string> on_off{"Enabled", "Disabled"};

} // namespace

const option_table& kafka_options() {
  static const option_table table = [] {
    option_table t;
    auto host = option("host", option_type::address, "",
                       "Bootstrap servers, host:port[,host:port...].");
    host.required = true;
    t.push_back(host);
    t.push_back(option("tls", option_type::group, "", "TLS to the brokers."));
    t.push_back(choice("tls.mode", "Disabled", "TLS on or off.", on_off));
    t.push_back(text("tls.trustedCaCertificate",
                     "PEM file of the CA that signed the brokers' certificates "
                     "(relative to the config file)."));
    t.push_back(option("authentication", option_type::group, "", "How hubflow authenticates to the brokers."));
    t.push_back(choice("authentication.method", "", "Anonymous or SASL.",
                       {"Anonymous", "Sasl"}, true));
    t.push_back(choice("authentication.saslType", "",
                       "SASL mechanism (required with method Sasl).",
                       {"Plain", "ScramSha256", "ScramSha512"}));
    t.push_back(option("authentication.username", option_type::secret, "", "SASL user: {file: PATH} or {env: NAME}."));
    t.push_back(option("authentication.password", option_type::secret, "", "SASL password: {file: PATH} or {env: NAME}."));
    t.push_back(text("consumerGroupId",
                     "Consumer group of a source endpoint (required for sources)."));
    t.push_back(choice("compression", "None", "Compression of record batches.",
                       {"None", "Gzip", "Snappy", "Lz4"}));
    t.push_back(option("batching", option_type::group, "", "Producer batching."));
    t.push_back(choice("batching.mode", "Enabled", "Batching on or off.", on_off));
    // The bounds are librdkafka's for linger.ms, batch.num.messages and
    // batch.size.
    t.push_back(integer("batching.latencyMs", "5",
                        "How long a batch may wait to fill (linger.ms).", 0,
                        900000));
    t.push_back(integer("batching.maxMessages", "100000",
                        "Records per batch at most (batch.num.messages).", 1,
                        1000000));
    t.push_back(integer("batching.maxBytes", "1000000",
                        "Bytes per batch at most (batch.size).", 1, 2147483647));
    t.push_back(choice("partitionStrategy", "Default",
                       "Default: round robin; Static: one partition per "
                       "instanceId; Topic: keyed by the MQTT topic; Property: "
                       "keyed by a user property.",
                       {"Default", "Static", "Topic", "Property"}));
    t.push_back(text("partitionKeyProperty",
                     "The MQTT user property keying the partition (Property "
                     "only)."));
    t.push_back(choice("kafkaAcknowledgement", "All",
                       "What Kafka acknowledges before the rule's message "
                       "counts as delivered.",
                       {"None", "Zero", "One", "All"}));
    t.push_back(choice("copyMqttProperties", "Enabled",
                       "MQTT 5 properties to Kafka headers and back.", on_off));
    t.push_back(choice("cloudEventAttributes", "Propagate",
                       "CloudEvents headers: passed on, or created and remapped.",
                       {"Propagate", "CreateOrRemap"}));
    t.push_back(integer("deliveryTimeoutMs", "60000",
                        "hubflow: how long a record is retried before its "
                        "delivery fails (librdkafka message.timeout.ms).",
                        100, 2147483647));
    t.push_back(text("instanceId",
                     "hubflow: what partitionStrategy Static derives the "
                     "partition from (default <hostname>/<endpoint name>)."));
    return t;
  }();
  return table;
}

kafka_settings parse_kafka_settings(option_values& in,
                                    const endpoint_config& config) {
  kafka_settings out;
  out.name = config.name;
  out.usage = config.usage;
  out.host = in.text("host");

  out.tls = in.text("tls.mode") == "Enabled";
  if (in.has("tls.trustedCaCertificate")) {
    out.trusted_ca_file = config_relative(in.text("tls.trustedCaCertificate"),
                                          in.context().file);
    std::ifstream pem(out.trusted_ca_file);
    std::string text;
    if (pem)
      text.assign(std::istreambuf_iterator<char>(pem),
                  std::istreambuf_iterator<char>());
    if (!pem.is_open())
      in.fail("tls.trustedCaCertificate",
              "cannot read CA certificate file " + out.trusted_ca_file);
    else if (text.find("-----BEGIN CERTIFICATE-----") == std::string::npos)
      in.fail("tls.trustedCaCertificate",
              out.trusted_ca_file + " holds no PEM certificate");
    else if (!out.tls)
      in.fail("tls.trustedCaCertificate", "is set but tls.mode is not Enabled");
  }

  out.sasl = in.text("authentication.method") == "Sasl";
  if (out.sasl) {
    static const char* mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"};
    if (in.has("authentication.saslType"))
      out.sasl_mechanism = mechanisms[in.choice("authentication.saslType")];
    else if (!in.written("authentication.saslType"))
      in.fail("authentication.saslType",
              "is required with method Sasl (Plain, ScramSha256 or "
              "ScramSha512)");
    for (auto key : {"authentication.username", "authentication.password"})
      if (!in.written(key))
        in.fail(key, "is required for SASL: write {file: <path>} or "
                     "{env: <VARIABLE>}");
    out.username = in.text("authentication.username");
    out.password = in.text("authentication.password");
  } else if (in.has("authentication.method")) {
    for (auto key : {"authentication.saslType", "authentication.username",
                     "authentication.password"})
      if (in.written(key))
        in.fail(key, "only applies to method Sasl");
  }

  out.consumer_group_id = in.text("consumerGroupId");
  if (config.usage.as_source && out.consumer_group_id.empty())
    in.fail("consumerGroupId", missing_consumer_group_error);

  out.codec = static_cast<compression>(in.choice("compression"));
  out.batching.enabled = in.text("batching.mode") == "Enabled";
  out.batching.latency_ms = static_cast<int>(in.integer("batching.latencyMs"));
  out.batching.max_messages = static_cast<int>(in.integer("batching.maxMessages"));
  out.batching.max_bytes = static_cast<int>(in.integer("batching.maxBytes"));

  out.partitioning = static_cast<partition_strategy>(in.choice("partitionStrategy"));
  out.partition_key_property = in.text("partitionKeyProperty");
  if (out.partitioning == partition_strategy::property
      && out.partition_key_property.empty())
    in.fail("partitionKeyProperty",
            "is required with partitionStrategy Property (the MQTT user "
            "property whose value keys the partition)");
  else if (out.partitioning != partition_strategy::property
           && in.written("partitionKeyProperty"))
    in.fail("partitionKeyProperty", "only applies to partitionStrategy Property");

  out.acks = static_cast<acknowledgement>(in.choice("kafkaAcknowledgement"));
  out.copy_mqtt_properties = in.text("copyMqttProperties") == "Enabled";
  out.cloud_event_attributes =
    static_cast<cloud_events>(in.choice("cloudEventAttributes"));
  out.delivery_timeout_ms = static_cast<int>(in.integer("deliveryTimeoutMs"));
  out.instance_id = in.text("instanceId");
  if (out.instance_id.empty())
    out.instance_id = default_instance_id(out.name);
  return out;
}

kafka_settings parse_kafka_settings(const endpoint_config& config,
                                    const endpoint_usage& usage,
                                    const std::string& key_path,
                                    std::vector<std::string>& errors,
                                    std::vector<std::string>* warnings) {
  std::vector<std::string> ignored;
  auto entry = config;
  entry.usage = usage;
  option_values values(kafka_options(), entry.settings,
                       {entry.where.file, key_path, "kafka endpoint", &errors,
                        warnings ? warnings : &ignored});
  return parse_kafka_settings(values, entry);
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
    props.emplace_back("sasl.username", s.username);
    props.emplace_back("sasl.password", s.password);
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
