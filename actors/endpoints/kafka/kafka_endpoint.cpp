#include "endpoints/kafka/kafka_endpoint.hpp"

#include <map>
#include <memory>
#include <utility>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/type_ids.hpp"
#include "endpoints/kafka/kafka_consumer.hpp"
#include "endpoints/kafka/kafka_producer.hpp"
#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow {

namespace {

/// The endpoint actor rules talk to: publishes go to its producer (created
/// with the endpoint when a rule writes to it, else on the first publish),
/// each subscription gets its own consumer in the endpoint's group.
struct kafka_endpoint_state {
  static inline const char* name = "hubflow.kafka.endpoint";

  std::shared_ptr<const kafka::kafka_settings> settings;
  caf::actor producer;
  std::map<std::pair<std::string, caf::actor_addr>, caf::actor> consumers;
};

using endpoint_actor = caf::stateful_actor<kafka_endpoint_state>;

const caf::actor& producer_of(endpoint_actor* self) {
  auto& st = self->state;
  if (!st.producer)
    st.producer = kafka::spawn_kafka_producer(self, st.settings);
  return st.producer;
}

caf::behavior kafka_endpoint(endpoint_actor* self,
                             std::shared_ptr<const kafka::kafka_settings> settings,
                             bool as_destination) {
  self->state.settings = std::move(settings);
  if (as_destination)
    producer_of(self);
  // A consumer or producer that stops (its subscriber went away, it could
  // not start) must not take the endpoint down with it.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.producer && msg.source == st.producer.address()) {
      spdlog::warn("kafka endpoint {}: producer stopped: {}", st.settings->name,
                   self->system().render(msg.reason));
      st.producer = nullptr;
      return;
    }
    for (auto it = st.consumers.begin(); it != st.consumers.end(); ++it)
      if (it->second.address() == msg.source) {
        st.consumers.erase(it);
        return;
      }
    self->quit(msg.reason); // our parent (or whoever linked to us) stopped
  });
  return {
    [=](publish_atom pub, message& msg, std::string& kafka_topic) {
      return self->delegate(producer_of(self), pub, std::move(msg),
                            std::move(kafka_topic));
    },
    [=](publish_atom pub, message& msg) {
      return self->delegate(producer_of(self), pub, std::move(msg));
    },
    [=](subscribe_atom, std::string& topic, std::uint8_t qos,
        caf::actor& subscriber) {
      auto rp = self->make_response_promise();
      auto& st = self->state;
      if (st.settings->consumer_group_id.empty()) {
        rp.deliver(caf::make_error(caf::sec::runtime_error,
                                   "kafka endpoint " + st.settings->name + ": "
                                     + kafka::missing_consumer_group_error));
        return rp;
      }
      auto key = std::make_pair(topic, subscriber.address());
      if (st.consumers.count(key) > 0) {
        rp.deliver(ok_atom::value);
        return rp;
      }
      auto consumer = kafka::spawn_kafka_consumer(self, st.settings, topic, qos,
                                                  subscriber);
      st.consumers.emplace(std::move(key), consumer);
      // The consumer answers once it is subscribed, or with why it cannot.
      self->request(consumer, caf::infinite, connect_atom::value)
        .then([rp](ok_atom) mutable { rp.deliver(ok_atom::value); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](unsubscribe_atom, std::string& topic, caf::actor& subscriber) {
      auto& st = self->state;
      auto it = st.consumers.find(std::make_pair(topic, subscriber.address()));
      if (it != st.consumers.end()) {
        self->unlink_from(it->second);
        self->send_exit(it->second, caf::exit_reason::user_shutdown);
        st.consumers.erase(it);
      }
      return ok_atom::value;
    },
    [=](get_atom get) { return self->delegate(producer_of(self), get); },
  };
}

} // namespace

endpoint_type kafka_endpoint_type() {
  endpoint_type type;
  type.validate = [](const endpoint_config& config, const endpoint_usage& usage,
                     const std::string& key_path,
                     std::vector<std::string>& errors) {
    kafka::parse_kafka_settings(config, usage, key_path, errors);
  };
  type.spawn = [](caf::actor_system& sys, const endpoint_config& config,
                  const endpoint_usage& usage) {
    std::vector<std::string> errors;
    auto settings = std::make_shared<const kafka::kafka_settings>(
      kafka::parse_kafka_settings(config, usage, "endpoints." + config.name,
                                  errors));
    if (!errors.empty())
      throw config_error(errors);
    return sys.spawn(kafka_endpoint, settings, usage.as_destination);
  };
  return type;
}

} // namespace hubflow
