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

/// The endpoint's subscriptions: one consumer actor (in the endpoint's
/// consumer group) per subscribed topic and subscriber, linked to the
/// endpoint actor. Only touched from that actor.
using consumer_map = std::map<std::pair<std::string, caf::actor_addr>, caf::actor>;

/// The endpoint actor's handlers besides the producer's.
caf::behavior source_handlers(caf::event_based_actor* self,
                              std::shared_ptr<const kafka::kafka_settings> settings) {
  auto consumers = std::make_shared<consumer_map>();
  // A consumer that stops (its subscriber went away, it could not start)
  // must not take the endpoint down with it.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    for (auto it = consumers->begin(); it != consumers->end(); ++it)
      if (it->second.address() == msg.source) {
        consumers->erase(it);
        return;
      }
    self->quit(msg.reason); // whoever linked to the endpoint stopped
  });
  return {
    [=](subscribe_atom, std::string& topic, std::uint8_t qos,
        caf::actor& subscriber) {
      auto rp = self->make_response_promise();
      if (settings->consumer_group_id.empty()) {
        rp.deliver(caf::make_error(caf::sec::runtime_error,
                                   "kafka endpoint " + settings->name + ": "
                                     + kafka::missing_consumer_group_error));
        return rp;
      }
      auto key = std::make_pair(topic, subscriber.address());
      if (consumers->count(key) > 0) {
        rp.deliver(ok_atom::value);
        return rp;
      }
      auto consumer = kafka::spawn_kafka_consumer(
        self, settings, topic, qos, as_role<subscriber_actor>(subscriber));
      consumers->emplace(std::move(key), consumer);
      // The consumer answers once it is subscribed, or with why it cannot.
      self->request(consumer, caf::infinite, connect_atom::value)
        .then([rp](ok_atom) mutable { rp.deliver(ok_atom::value); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](unsubscribe_atom, std::string& topic, caf::actor& subscriber) {
      auto it = consumers->find(std::make_pair(topic, subscriber.address()));
      if (it != consumers->end()) {
        self->unlink_from(it->second);
        self->send_exit(it->second, caf::exit_reason::user_shutdown);
        consumers->erase(it);
      }
      return ok_atom::value;
    },
  };
}

} // namespace

endpoint_type kafka_endpoint_type() {
  endpoint_type type;
  type.options = &kafka::kafka_options();
  type.check_target = [](const topic_template& tmpl) {
    return check_kafka_topic_template(tmpl);
  };
  type.parse = [](option_values& values, const endpoint_config& config) {
    return std::make_shared<const kafka::kafka_settings>(
      kafka::parse_kafka_settings(values, config));
  };
  type.spawn = [](caf::actor_system& sys, const endpoint_config& config) {
    auto settings = parsed_settings<kafka::kafka_settings>(config);
    // Publishes go straight to the producer's handlers: no extra hop.
    return kafka::spawn_kafka_producer(
      sys, settings, config.usage.as_destination,
      [settings](caf::event_based_actor* self) {
        return source_handlers(self, settings);
      });
  };
  return type;
}

} // namespace hubflow
