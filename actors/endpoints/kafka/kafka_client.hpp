// What the Kafka producer and consumer actors share: building librdkafka
// configurations, waking an actor when a librdkafka queue has events (so
// that actors poll with timeout 0 and never block a scheduler thread),
// routing librdkafka's logs.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>

#include <librdkafka/rdkafka.h>

#include "endpoints/kafka/kafka_settings.hpp"

namespace hubflow::kafka {

/// Sent by a queue_waker: "your librdkafka queue has something, poll it".
using poll_atom = caf::atom_constant<caf::atom("kpoll")>;
/// Self-message of the consumer: commit what has been acknowledged.
using commit_atom = caf::atom_constant<caf::atom("kcommit")>;
/// Self-message of the consumer: deliver one record again after a failure.
using redeliver_atom = caf::atom_constant<caf::atom("kredeliv")>;

/// A new librdkafka configuration holding `props`; throws
/// std::runtime_error naming the property librdkafka refused and why.
rd_kafka_conf_t* make_conf(const property_list& props);

/// Sends `poll_atom` to an actor when a librdkafka queue turns non-empty.
/// librdkafka calls back from its own threads; one wake-up is outstanding
/// at a time (the actor calls rearm() before it polls, so nothing enqueued
/// after that is missed).
class queue_waker {
public:
  queue_waker(rd_kafka_t* rk, rd_kafka_queue_t* queue, const caf::actor& target);
  /// Stops the callbacks; afterwards no wake-up is sent.
  ~queue_waker();
  queue_waker(const queue_waker&) = delete;
  queue_waker& operator=(const queue_waker&) = delete;

  void rearm() {
    pending_.store(false, std::memory_order_release);
  }

private:
  static void on_event(rd_kafka_t* rk, void* opaque);

  rd_kafka_queue_t* queue_;
  caf::weak_actor_ptr target_;
  std::atomic<bool> pending_{false};
};

/// Routes librdkafka's log lines to spdlog (instead of stderr).
void route_logs(rd_kafka_conf_t* conf);

} // namespace hubflow::kafka
