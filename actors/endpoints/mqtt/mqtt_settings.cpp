#include "endpoints/mqtt/mqtt_settings.hpp"

#include "core/tls_context.hpp"

namespace hubflow {

namespace {

/// An ssl:// or mqtts:// address's TLS, checked now (the same checks as
/// `hub.address`'s) so --check reports what the link would hit when it
/// connects; keys written for a plain address are refused.
std::optional<tls_client_settings> read_tls(option_values& in,
                                            const endpoint_config& cfg,
                                            const std::string& address) {
  if (!is_tls_address(address)) {
    for (auto key : tls_address_keys)
      if (in.written(key))
        in.fail(key, "'" + address + "' is not a TLS address: write ssl://");
    return std::nullopt;
  }
  auto file = [&](const char* key) {
    auto& path = in.text(key);
    return path.empty() ? path : config_relative(path, cfg.where.file);
  };
  tls_client_settings tls;
  tls.ca = file("ca");
  tls.cert = file("cert");
  tls.key = file("key");
  tls.insecure_skip_verify = in.boolean("insecureSkipVerify");
  tls.key_path = in.context().key_path;
  tls_problem problem;
  if (!check_client_tls(tls, problem))
    in.fail(problem.key, problem.message);
  return tls;
}

/// The topic a message is published to on the remote broker: the rule's
/// `to.topic` rendered, or the message's own topic for a publish without a
/// target.
bool remote_topic(const endpoint_usage& usage, const std::string& target,
                  const message& msg, std::string& topic, std::string& error) {
  if (target.empty()) {
    topic = msg.topic;
    return true;
  }
  if (!usage.render(target, msg, topic, error))
    return false;
  if (auto problem = check_mqtt_topic_name(topic)) {
    error = "'" + topic + "': " + *problem;
    return false;
  }
  return true;
}

} // namespace

const option_table& mqtt_options() {
  static const option_table table = [] {
    option_table t;
    auto add = [&](const option_spec& spec) { t.push_back(spec); };
    option_spec s;
    s = option("address", option_type::string, "", "The remote broker: tcp://host:port, or ssl:// (mqtts://) for TLS.");
    s.required = true;
    s.min_length = 1;
    add(s);
    s = option("clientid", option_type::string, "", "Client id on the remote broker (default hubflow-<endpoint name>).");
    s.min_length = 1;
    add(s);
    s = option("username", option_type::string, "", "User name on the remote broker.");
    s.min_length = 1;
    add(s);
    add(option("password", option_type::secret, "", "Its password: {file: PATH}, {env: NAME} (plain text is warned about)."));
    s = option("protocol", option_type::choice, "mqttv311", "MQTT version spoken to the remote broker (mqttv5 carries properties).");
    s.choices = {"mqttv311", "mqttv5"};
    add(s);
    s = option("ca", option_type::string, "", "ssl:// only: PEM CA bundle of the broker's certificate (default: the system's trust store).");
    s.min_length = 1;
    add(s);
    s = option("cert", option_type::string, "", "ssl:// only: client certificate (PEM, with key) for mutual TLS.");
    s.min_length = 1;
    add(s);
    s = option("key", option_type::string, "", "ssl:// only: the client certificate's private key.");
    s.min_length = 1;
    add(s);
    add(option("insecureSkipVerify", option_type::boolean, "false", "ssl:// only: accept a certificate that does not name the host (the chain is still verified)."));
    s = option("keepalive", option_type::duration, "60s", "MQTT keep alive towards the remote broker.");
    s.min = 5000;
    add(s);
    s = option("max_inflight", option_type::integer, "20", "QoS 1/2 publishes awaiting the remote broker's acknowledgement at once.");
    s.min = 1;
    s.max = 65535;
    add(s);
    return t;
  }();
  return table;
}

mqtt_settings parse_mqtt_settings(option_values& in,
                                  const endpoint_config& cfg) {
  mqtt_settings s;
  auto& link = s.link;
  link.address = in.text("address");
  std::string bad;
  if (auto at = parse_host_port(link.address, hub_address_rules, bad))
    link.at = *at;
  else if (in.has("address"))
    in.fail("address", bad);
  link.tls = read_tls(in, cfg, link.address);
  link.client_id = in.written("clientid") ? in.text("clientid")
                                          : "hubflow-" + cfg.name;
  link.username = in.text("username");
  link.password = in.text("password");
  if (!link.password.empty() && link.username.empty())
    in.fail("password", "needs a username");
  link.protocol = in.choice("protocol") == 1 ? 5 : 4;
  link.keepalive = static_cast<int>(
    std::chrono::duration_cast<std::chrono::seconds>(in.duration("keepalive"))
      .count());
  link.max_inflight = static_cast<int>(in.integer("max_inflight"));
  link.stats_kind = "endpoint";
  link.stats_name = cfg.name;
  link.origin = cfg.name;
  s.usage = cfg.usage;
  link.topic_of = [usage = s.usage](const std::string& target,
                                    const message& msg, std::string& topic,
                                    std::string& error) {
    return remote_topic(usage, target, msg, topic, error);
  };
  return s;
}

std::optional<std::string> check_mqtt_target(const topic_template& target) {
  auto literal = target.literal_text();
  if (literal.find_first_of("+#") != std::string::npos)
    return "'" + target.text() + "' holds a wildcard (+ or #): a topic to "
           "publish to cannot";
  if (target.is_literal())
    return check_mqtt_topic_name(literal);
  return std::nullopt;
}

} // namespace hubflow
