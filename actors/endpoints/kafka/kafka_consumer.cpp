#include "endpoints/kafka/kafka_consumer.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "core/fwd.hpp"
#include "core/probe.hpp"
#include "core/sink_error.hpp"
#include "core/topic.hpp"
#include "core/type_ids.hpp"
#include "endpoints/kafka/kafka_client.hpp"
#include "endpoints/kafka/kafka_mapping.hpp"

namespace hubflow::kafka {

namespace {

using steady = std::chrono::steady_clock;

// Polls and retries run on this timer; the probe reports on stats.interval
// (at most this often).
constexpr auto tick_interval = std::chrono::milliseconds(500);
/// Acknowledged offsets are committed together after this pause, so a fast
/// stream costs one commit request per pause, not one per record.
constexpr auto commit_delay = std::chrono::milliseconds(20);
/// A delivery the subscriber refused is offered again after this pause.
constexpr auto redeliver_delay = std::chrono::seconds(1);
/// Records handed to the subscriber and not yet acknowledged, at most.
/// (CAF 0.17 looks a response's handler up linearly among the requester's
/// outstanding requests: a few hundred keep that cheap.)
constexpr std::size_t max_in_flight = 256;

/// A record the subscriber has been sent and may not have acknowledged.
struct inflight_record {
  message msg;
  bool acked = false;
};

/// One assigned partition. Offsets are committed only up to the first
/// record not yet acknowledged, so a crash redelivers, never skips.
struct partition_track {
  std::uint64_t epoch = 0; // tells answers for an earlier assignment apart
  std::map<std::int64_t, inflight_record> inflight; // by offset
  std::int64_t commit_next = -1;    // offset to commit (all before acked)
  std::int64_t commit_sent = -1;    // last offset handed to a commit
  std::int64_t committed = -1;      // last offset the broker confirmed
};

struct consumer_counters {
  std::int64_t consumed = 0;
  std::int64_t acked = 0;
  std::int64_t committed = 0; // records whose offsets the broker confirmed
  std::int64_t headers_dropped = 0;
  std::int64_t redelivered = 0;
  std::int64_t reported = 0; // refused for good by the rule, which reported it
  std::int64_t errors = 0;
};

struct kafka_consumer_state;
using consumer_actor = caf::stateful_actor<kafka_consumer_state>;

struct kafka_consumer_state {
  static inline const char* name = "hubflow.kafka.consumer";

  std::shared_ptr<const kafka_settings> settings;
  std::string topic;
  std::uint8_t qos = 0;
  subscriber_actor subscriber;
  rd_kafka_t* rk = nullptr;
  std::string setup_error;
  std::string last_error;
  std::unique_ptr<queue_waker> waker;
  std::map<std::int32_t, partition_track> partitions;
  std::uint64_t next_epoch = 1;
  std::size_t in_flight = 0;
  bool commit_scheduled = false;
  consumer_counters counters;
  /// Reports the counters (copied in by update_probe) and the latency
  /// from delivery request to acknowledgement.
  probe stats{"endpoint", ""};

  ~kafka_consumer_state();

  void setup(consumer_actor* self);
  void poll_records(consumer_actor* self);
  message to_message(const rd_kafka_message_t* m);
  void deliver(consumer_actor* self, std::int32_t partition,
               std::uint64_t epoch, std::int64_t offset);
  void on_ack(consumer_actor* self, std::int32_t partition,
              std::uint64_t epoch, std::int64_t offset,
              steady::time_point started);
  /// Commits, asynchronously, every partition's acknowledged progress.
  void commit();
  void on_rebalance(rd_kafka_resp_err_t err,
                    rd_kafka_topic_partition_list_t* parts);
  void on_committed(rd_kafka_resp_err_t err,
                    rd_kafka_topic_partition_list_t* offsets);
  void update_probe();
  component_stats snapshot();
};

void destroy_error(rd_kafka_error_t* error) {
  if (error != nullptr)
    rd_kafka_error_destroy(error);
}

void rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                  rd_kafka_topic_partition_list_t* parts, void* opaque) {
  static_cast<kafka_consumer_state*>(opaque)->on_rebalance(err, parts);
}

void commit_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
               rd_kafka_topic_partition_list_t* offsets, void* opaque) {
  static_cast<kafka_consumer_state*>(opaque)->on_committed(err, offsets);
}

void consumer_error_cb(rd_kafka_t*, int, const char* reason, void* opaque) {
  auto st = static_cast<kafka_consumer_state*>(opaque);
  st->last_error = reason;
  spdlog::warn("kafka endpoint {} (consuming {}): {}", st->settings->name,
               st->topic, reason);
}

kafka_consumer_state::~kafka_consumer_state() {
  if (rk == nullptr)
    return;
  waker.reset();
  // Whatever was acknowledged is committed before leaving the group; the
  // rest is consumed again by whoever gets the partitions.
  commit();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

void kafka_consumer_state::setup(consumer_actor* self) {
  rd_kafka_conf_t* conf = nullptr;
  try {
    conf = make_conf(consumer_properties(*settings));
  } catch (const std::exception& e) {
    setup_error = e.what();
    return;
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
  rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
  route_logs(conf);
  char why[512];
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    setup_error = std::string("cannot create the Kafka consumer: ") + why;
    return;
  }
  // Callbacks and records all arrive on the consumer queue, which the
  // actor polls with timeout 0 when woken.
  rd_kafka_poll_set_consumer(rk);
  waker = std::make_unique<queue_waker>(rk, rd_kafka_queue_get_consumer(rk),
                                        caf::actor_cast<caf::actor>(self));
  auto list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), RD_KAFKA_PARTITION_UA);
  auto err = rd_kafka_subscribe(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    setup_error = "cannot subscribe to Kafka topic " + topic + ": "
                  + rd_kafka_err2str(err);
}

message kafka_consumer_state::to_message(const rd_kafka_message_t* m) {
  message msg;
  msg.topic = rd_kafka_topic_name(m->rkt);
  msg.body = payload(std::string(static_cast<const char*>(m->payload), m->len));
  msg.qos = qos;
  msg.origin = settings->name;
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    header_list list;
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(headers, i, &name, &value, &size)
         == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i)
      list.emplace_back(name, value ? std::string(static_cast<const char*>(value), size)
                                    : std::string());
    counters.headers_dropped += add_header_properties(list, msg.properties);
  }
  if (m->key != nullptr) {
    std::string key(static_cast<const char*>(m->key), m->key_len);
    if (key.size() <= max_property_size && valid_mqtt_utf8(key))
      msg.properties.user_properties.emplace_back(key_property, std::move(key));
    else
      ++counters.headers_dropped;
  }
  rd_kafka_timestamp_type_t type;
  auto timestamp = rd_kafka_message_timestamp(m, &type);
  if (timestamp >= 0)
    msg.properties.user_properties.emplace_back(timestamp_property,
                                                std::to_string(timestamp));
  return msg;
}

void kafka_consumer_state::poll_records(consumer_actor* self) {
  while (rk != nullptr && in_flight < max_in_flight) {
    auto m = rd_kafka_consumer_poll(rk, 0);
    if (m == nullptr)
      return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++counters.errors;
      last_error = rd_kafka_message_errstr(m);
      spdlog::warn("kafka endpoint {} (consuming {}): {}", settings->name,
                   topic, last_error);
      rd_kafka_message_destroy(m);
      continue;
    }
    auto& track = partitions[m->partition];
    if (track.epoch == 0)
      track.epoch = next_epoch++;
    if (track.commit_next < 0) // first record of this assignment
      track.commit_next = track.commit_sent = track.committed = m->offset;
    track.inflight[m->offset].msg = to_message(m);
    ++counters.consumed;
    ++in_flight;
    deliver(self, m->partition, track.epoch, m->offset);
    rd_kafka_message_destroy(m);
  }
}

void kafka_consumer_state::deliver(consumer_actor* self,
                                   std::int32_t partition, std::uint64_t epoch,
                                   std::int64_t offset) {
  auto& msg = partitions[partition].inflight[offset].msg;
  auto started = steady::now();
  self->request(subscriber, caf::infinite, deliver_atom::value, msg)
    .then(
      [=](ok_atom) {
        auto st = &self->state;
        st->on_ack(self, partition, epoch, offset, started);
      },
      [=](caf::error& err) {
        auto st = &self->state;
        if (err == caf::sec::request_receiver_down) {
          spdlog::info("kafka endpoint {}: subscriber of {} is gone, stopping",
                       st->settings->name, st->topic);
          self->quit();
          return;
        }
        if (is_permanent(err)) {
          // The rule reported it (its error_topic): handled, so committed
          // like an ack; offering it again could never succeed.
          ++st->counters.reported;
          st->on_ack(self, partition, epoch, offset, started);
          return;
        }
        ++st->counters.redelivered;
        spdlog::warn("kafka endpoint {}: subscriber refused a record of {} "
                     "[{}] at offset {} ({}); offering it again",
                     st->settings->name, st->topic, partition, offset,
                     self->system().render(err));
        self->delayed_send(self, redeliver_delay, redeliver_atom::value,
                           partition, epoch, offset);
      });
}

void kafka_consumer_state::on_ack(consumer_actor* self,
                                  std::int32_t partition, std::uint64_t epoch,
                                  std::int64_t offset,
                                  steady::time_point started) {
  --in_flight;
  ++counters.acked;
  stats.record_latency(std::chrono::duration_cast<std::chrono::microseconds>(
    steady::now() - started));
  auto it = partitions.find(partition);
  if (it != partitions.end() && it->second.epoch == epoch) {
    auto& track = it->second;
    if (auto rec = track.inflight.find(offset); rec != track.inflight.end())
      rec->second.acked = true;
    auto before = track.commit_next;
    while (!track.inflight.empty() && track.inflight.begin()->second.acked) {
      track.commit_next = track.inflight.begin()->first + 1;
      track.inflight.erase(track.inflight.begin());
    }
    if (track.commit_next != before && !commit_scheduled) {
      commit_scheduled = true;
      self->delayed_send(self, commit_delay, commit_atom::value);
    }
  }
  poll_records(self); // room for more
}

void kafka_consumer_state::commit() {
  auto list = rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  for (auto& [partition, track] : partitions)
    if (track.commit_next > track.commit_sent) {
      rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset
        = track.commit_next;
      track.commit_sent = track.commit_next;
    }
  if (list->cnt > 0) {
    auto err = rd_kafka_commit(rk, list, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      on_committed(err, list);
  }
  rd_kafka_topic_partition_list_destroy(list);
}

void kafka_consumer_state::on_committed(rd_kafka_resp_err_t err,
                                        rd_kafka_topic_partition_list_t* offsets) {
  for (int i = 0; i < offsets->cnt; ++i) {
    auto& p = offsets->elems[i];
    auto it = partitions.find(p.partition);
    if (it == partitions.end())
      continue;
    auto& track = it->second;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR || p.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Committed again with the next acknowledgement or the next tick.
      ++counters.errors;
      track.commit_sent = std::min(track.commit_sent, track.committed);
      last_error = std::string("offset commit failed: ")
                   + rd_kafka_err2str(err ? err : p.err);
      continue;
    }
    if (p.offset > track.committed) {
      counters.committed += p.offset - track.committed;
      track.committed = p.offset;
    }
  }
}

void kafka_consumer_state::on_rebalance(rd_kafka_resp_err_t err,
                                        rd_kafka_topic_partition_list_t* parts) {
  bool cooperative = std::string(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    for (int i = 0; i < parts->cnt; ++i)
    {
      partition_track track;
      track.epoch = next_epoch++;
      partitions[parts->elems[i].partition] = std::move(track);
    }
    if (cooperative)
      destroy_error(rd_kafka_incremental_assign(rk, parts));
    else
      rd_kafka_assign(rk, parts);
    return;
  }
  // Revoked: commit what was acknowledged; records in flight there will be
  // consumed again by the partitions' next owner (at least once).
  commit();
  for (int i = 0; i < parts->cnt; ++i)
    partitions.erase(parts->elems[i].partition);
  if (cooperative)
    destroy_error(rd_kafka_incremental_unassign(rk, parts));
  else
    rd_kafka_assign(rk, nullptr);
}

void kafka_consumer_state::update_probe() {
  auto& c = counters;
  std::pair<const char*, std::int64_t> values[] = {
    {"consumed", c.consumed},
    {"acked", c.acked},
    {"committed", c.committed},
    {"headers_dropped", c.headers_dropped},
    {"redelivered", c.redelivered},
    {"reported", c.reported},
    {"errors", c.errors},
    {"in_flight", static_cast<std::int64_t>(in_flight)},
    {"partitions", static_cast<std::int64_t>(partitions.size())},
  };
  for (auto& [name, value] : values)
    stats.set(name, value);
  stats.label("type", "kafka");
  stats.label("role", "consumer");
  stats.label("topic", topic);
  stats.label("group", settings->consumer_group_id);
  if (!last_error.empty())
    stats.label("last_error", last_error);
}

component_stats kafka_consumer_state::snapshot() {
  update_probe();
  return stats.snapshot();
}

caf::behavior kafka_consumer(caf::stateful_actor<kafka_consumer_state>* self,
                             std::shared_ptr<const kafka_settings> settings,
                             std::string topic, std::uint8_t qos,
                             subscriber_actor subscriber) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.topic = std::move(topic);
  st.stats = probe{"endpoint", st.settings->name + "/" + st.topic};
  st.qos = qos;
  st.subscriber = std::move(subscriber);
  st.setup(self);
  self->delayed_send(self, tick_interval, tick_atom::value);
  return {
    [=](connect_atom) {
      auto rp = self->make_response_promise();
      auto& st = self->state;
      if (st.setup_error.empty()) {
        rp.deliver(ok_atom::value);
      } else {
        auto err = caf::make_error(caf::sec::runtime_error,
                                   "kafka endpoint " + st.settings->name + ": "
                                     + st.setup_error);
        rp.deliver(err);
        self->quit(err);
      }
      return rp;
    },
    [=](poll_atom) {
      self->state.waker->rearm();
      self->state.poll_records(self);
    },
    [=](commit_atom) {
      self->state.commit_scheduled = false;
      self->state.commit();
    },
    [=](redeliver_atom, std::int32_t partition, std::uint64_t epoch,
        std::int64_t offset) {
      auto& st = self->state;
      auto it = st.partitions.find(partition);
      if (it == st.partitions.end() || it->second.epoch != epoch
          || it->second.inflight.count(offset) == 0) {
        --st.in_flight; // revoked meanwhile: its next owner consumes it
        st.poll_records(self);
        return;
      }
      st.deliver(self, partition, epoch, offset);
    },
    [=](tick_atom) {
      auto& st = self->state;
      st.poll_records(self);
      if (st.rk != nullptr)
        st.commit(); // also retries commits that failed
      st.update_probe();
      st.stats.report(self);
      self->delayed_send(self, tick_interval, tick_atom::value);
    },
    [=](get_atom) { return self->state.snapshot(); },
  };
}

} // namespace

caf::actor spawn_kafka_consumer(caf::event_based_actor* parent,
                                std::shared_ptr<const kafka_settings> settings,
                                std::string topic, std::uint8_t qos,
                                subscriber_actor subscriber) {
  return parent->spawn<caf::linked>(kafka_consumer, std::move(settings),
                                    std::move(topic), qos,
                                    std::move(subscriber));
}

} // namespace hubflow::kafka
