#include "endpoints/kafka/kafka_client.hpp"

#include <algorithm>
#include <stdexcept>

#include <caf/actor_cast.hpp>
#include <caf/actor_registry.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "core/type_ids.hpp"

namespace hubflow::kafka {

rd_kafka_conf_t* make_conf(const property_list& props) {
  auto conf = rd_kafka_conf_new();
  char why[512];
  for (auto& [key, value] : props) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), why, sizeof(why))
        != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      // Secrets are never echoed into error messages.
      bool secret = key == "sasl.password" || key == "sasl.username";
      throw std::runtime_error("librdkafka refused " + key
                               + (secret ? "" : "=" + value) + ": " + why);
    }
  }
  return conf;
}

queue_waker::queue_waker(rd_kafka_t* rk, rd_kafka_queue_t* queue,
                         const caf::actor& target)
  : queue_(queue), target_(caf::actor_cast<caf::weak_actor_ptr>(target)) {
  rd_kafka_queue_cb_event_enable(queue_, &queue_waker::on_event, this);
}

queue_waker::~queue_waker() {
  rd_kafka_queue_cb_event_enable(queue_, nullptr, nullptr);
  rd_kafka_queue_destroy(queue_);
}

void queue_waker::on_event(rd_kafka_t*, void* opaque) {
  auto self = static_cast<queue_waker*>(opaque);
  if (self->pending_.exchange(true, std::memory_order_acq_rel))
    return; // a wake-up is already on its way
  // High priority: delivery reports then overtake the publishes queued in
  // the endpoint's mailbox, so an acknowledgement never waits behind them.
  if (auto target = caf::actor_cast<caf::actor>(self->target_.lock()))
    caf::anon_send<caf::message_priority::high>(target, poll_atom::value);
}

namespace {

void log_line(const rd_kafka_t* rk, int level, const char* facility,
              const char* text) {
  // syslog levels: 0..3 error, 4 warning, 5..6 info, 7 debug.
  auto lvl = level <= 3   ? spdlog::level::err
             : level == 4 ? spdlog::level::warn
             : level <= 6 ? spdlog::level::info
                          : spdlog::level::debug;
  spdlog::log(lvl, "librdkafka {} {}: {}", rd_kafka_name(rk), facility, text);
}

} // namespace

void route_logs(rd_kafka_conf_t* conf) {
  rd_kafka_conf_set_log_cb(conf, log_line);
}

} // namespace hubflow::kafka
