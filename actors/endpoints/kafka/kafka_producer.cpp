#include "endpoints/kafka/kafka_producer.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/json_text.hpp"
#include "core/probe.hpp"
#include "core/reply.hpp"
#include "core/sink_error.hpp"
#include "core/type_ids.hpp"
#include "endpoints/kafka/kafka_client.hpp"
#include "endpoints/kafka/kafka_endpoint.hpp"
#include "endpoints/kafka/kafka_mapping.hpp"

namespace hubflow::kafka {

namespace {

using steady = std::chrono::steady_clock;

/// How often stats are reported and librdkafka is polled without a wake-up.
// Polls and retries run on this timer; the probe reports on stats.interval
// (at most this often).
constexpr auto tick_interval = std::chrono::milliseconds(500);
/// Records waiting for room in librdkafka's queue before publishes fail.
constexpr std::size_t max_backlog = 100000;
/// How long closing the producer may wait for outstanding deliveries.
constexpr int close_flush_ms = 3000;

/// A record librdkafka has accepted and not yet reported on.
struct pending_delivery {
  reply answer; // already answered for acks None
  bool answered = false;
  steady::time_point started;
  std::string topic;
  payload body; // librdkafka reads the bytes in place until the report
};

/// A publish waiting for room in librdkafka's queue (or its turn).
struct waiting_record {
  message msg;
  std::string topic;
  reply answer;
  steady::time_point started;
};

/// Partition choice for the strategies librdkafka has no partitioner for.
/// librdkafka may call it from any of its threads.
struct partitioner_context {
  partition_strategy strategy;
  std::uint32_t instance_hash; // Static
  std::atomic<std::uint32_t> next{0}; // Default (round robin)
};

struct producer_counters {
  std::int64_t sent = 0;
  std::int64_t acked = 0;
  std::int64_t failed = 0;
  std::int64_t expired = 0;
  std::int64_t queue_full_waits = 0;
  std::int64_t batches = 0;
  std::int64_t batch_msgs_max = 0;
  std::int64_t batch_bytes_max = 0;
  std::int64_t tx_bytes = 0;
  std::int64_t txmsg_bytes = 0;
};

struct kafka_producer_state {
  static inline const char* name = "hubflow.kafka.producer";

  std::shared_ptr<const kafka_settings> settings;
  rd_kafka_t* rk = nullptr;
  std::string setup_error; // why there is no rk: every publish fails with it
  std::unique_ptr<queue_waker> waker;
  std::unique_ptr<partitioner_context> partitioner;
  /// By the ticket passed to librdkafka as the record's opaque.
  awaiting<pending_delivery> pending;
  ok_answers delivered; // collected during a poll, sent after it
  std::deque<waiting_record> backlog;
  producer_counters counters;
  /// Reports the counters (copied in by update_probe) and the latencies.
  probe stats{"endpoint", ""};
  std::string last_error; // librdkafka's last client error (broker, TLS, SASL)
  bool closing = false;
  /// The clocks read once per handler (see read_clocks), not per record:
  /// clock reads were ~2.5% of the broker's CPU on the MQTT -> Kafka path.
  steady::time_point steady_now;
  message::clock::time_point wall_now;

  void read_clocks() {
    steady_now = steady::now();
    wall_now = message::clock::now();
  }

  ~kafka_producer_state();

  bool client_tried = false;

  /// Creates the librdkafka producer unless that was done (or failed).
  void ensure_client(caf::event_based_actor* self) {
    if (client_tried)
      return;
    client_tried = true;
    setup(self);
    if (!setup_error.empty())
      spdlog::error("kafka endpoint {}: {}", settings->name, setup_error);
  }
  void setup(caf::event_based_actor* self);
  /// Serves librdkafka's callbacks (delivery reports, stats, errors), then
  /// answers the publishes Kafka acknowledged and hands librdkafka what
  /// waited for room.
  void poll();
  void publish(message&& msg, std::string&& topic, reply rp);
  /// Hands waiting records to librdkafka while it has room.
  void drain_backlog();
  /// False when librdkafka's queue is full (the record stays waiting).
  bool produce(waiting_record& record);
  void on_delivery(const rd_kafka_message_t* m);
  void on_stats(const char* json, std::size_t len);
  void on_error(rd_kafka_resp_err_t err, const char* reason);
  caf::error failure(sink_errc kind, const std::string& what) const;
  void update_probe();
  component_stats snapshot();
};

std::uint32_t fnv1a(const std::string& text) {
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : text)
    hash = (hash ^ c) * 16777619u;
  return hash;
}

int32_t choose_partition(const rd_kafka_topic_t*, const void*, size_t,
                         int32_t partition_cnt, void* rkt_opaque, void*) {
  auto ctx = static_cast<partitioner_context*>(rkt_opaque);
  if (ctx->strategy == partition_strategy::fixed_instance)
    return static_cast<int32_t>(ctx->instance_hash
                                % static_cast<std::uint32_t>(partition_cnt));
  return static_cast<int32_t>(ctx->next.fetch_add(1, std::memory_order_relaxed)
                              % static_cast<std::uint32_t>(partition_cnt));
}

void delivery_cb(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  static_cast<kafka_producer_state*>(opaque)->on_delivery(m);
}

int stats_cb(rd_kafka_t*, char* json, size_t len, void* opaque) {
  static_cast<kafka_producer_state*>(opaque)->on_stats(json, len);
  return 0; // librdkafka frees the JSON
}

void error_cb(rd_kafka_t*, int err, const char* reason, void* opaque) {
  static_cast<kafka_producer_state*>(opaque)->on_error(
    static_cast<rd_kafka_resp_err_t>(err), reason);
}

kafka_producer_state::~kafka_producer_state() {
  if (rk == nullptr)
    return;
  // Promises are not answered from a terminated actor: their requesters
  // see the actor gone. Records still in librdkafka get a bounded chance.
  closing = true;
  waker.reset();
  if (rd_kafka_flush(rk, close_flush_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
    spdlog::warn("kafka endpoint {}: closing with {} records undelivered",
                 settings->name, rd_kafka_outq_len(rk));
  rd_kafka_destroy(rk);
  rk = nullptr;
}

void kafka_producer_state::setup(caf::event_based_actor* self) {
  rd_kafka_conf_t* conf = nullptr;
  try {
    conf = make_conf(producer_properties(*settings));
  } catch (const std::exception& e) {
    setup_error = e.what();
    return;
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  route_logs(conf);
  if (settings->partitioning == partition_strategy::round_robin
      || settings->partitioning == partition_strategy::fixed_instance) {
    partitioner = std::make_unique<partitioner_context>();
    partitioner->strategy = settings->partitioning;
    partitioner->instance_hash = fnv1a(settings->instance_id);
    // Topic-level properties (acks, message.timeout.ms) already live in the
    // default topic configuration: add the partitioner to it.
    auto tconf = rd_kafka_conf_get_default_topic_conf(conf);
    if (tconf == nullptr) {
      tconf = rd_kafka_topic_conf_new();
      rd_kafka_conf_set_default_topic_conf(conf, tconf);
      tconf = rd_kafka_conf_get_default_topic_conf(conf);
    }
    rd_kafka_topic_conf_set_partitioner_cb(tconf, choose_partition);
    rd_kafka_topic_conf_set_opaque(tconf, partitioner.get());
  }
  char why[512];
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    setup_error = std::string("cannot create the Kafka producer: ") + why;
    return;
  }
  waker = std::make_unique<queue_waker>(rk, rd_kafka_queue_get_main(rk),
                                        caf::actor_cast<caf::actor>(self));
}

/// What a librdkafka error means for the record (core/sink_error.hpp):
/// ERROR when Kafka refused this record and would refuse it again, RETRY
/// for everything that depends on the cluster's state (down, no leader,
/// unknown topic that may be created, timeouts).
sink_errc failure_kind(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      return sink_errc::quota_exceeded;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
      return sink_errc::not_authorized;
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
      return sink_errc::topic_name_invalid;
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
      return sink_errc::payload_format_invalid;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return sink_errc::unspecified;
    default:
      return sink_errc::retry;
  }
}

caf::error kafka_producer_state::failure(sink_errc kind,
                                         const std::string& what) const {
  auto text = "kafka endpoint " + settings->name + ": " + what;
  if (!last_error.empty())
    text += " (last client error: " + last_error + ")";
  return make_sink_error(kind, std::move(text));
}

void kafka_producer_state::publish(message&& msg, std::string&& topic,
                                   reply rp) {
  if (rk == nullptr) {
    ++counters.failed;
    // RETRY: the keeper may replace the endpoint, and nothing about the
    // message itself is wrong.
    rp.deliver(failure(sink_errc::retry, setup_error));
    return;
  }
  waiting_record record{std::move(msg), std::move(topic), std::move(rp),
                        steady_now};
  // Order is kept: nothing overtakes records already waiting.
  if (backlog.empty() && produce(record))
    return;
  if (backlog.size() >= max_backlog) {
    ++counters.failed;
    record.answer.deliver(failure(sink_errc::retry, "producer queue full ("
                                   + std::to_string(max_backlog)
                                   + " records waiting for Kafka)"));
    return;
  }
  ++counters.queue_full_waits;
  backlog.push_back(std::move(record));
}

void kafka_producer_state::drain_backlog() {
  while (!backlog.empty() && produce(backlog.front()))
    backlog.pop_front();
}

bool kafka_producer_state::produce(waiting_record& record) {
  if (!is_valid_topic_name(record.topic)) {
    ++counters.failed;
    // Made invalid by its template: no retry can change that.
    record.answer.deliver(failure(sink_errc::topic_name_invalid,
                                  "invalid Kafka topic '" + record.topic
                                   + "' (topics are 1-249 of [a-zA-Z0-9._-])"));
    return true;
  }
  auto out = prepare_record(*settings, record.msg, record.topic,
                            wall_now);
  if (out.expired) {
    // The publisher's message was handled as MQTT asks (dropped once its
    // expiry interval ran out): acknowledged, not retried.
    ++counters.expired;
    record.answer.deliver(ok_atom::value);
    return true;
  }
  auto headers = out.headers.empty() ? nullptr
                                     : rd_kafka_headers_new(out.headers.size());
  for (auto& [name, value] : out.headers)
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()),
                        value.data(), static_cast<ssize_t>(value.size()));
  auto id = pending.add(pending_delivery{});
  const auto& body = record.msg.body;
  const void* key_data = out.key ? out.key->data() : nullptr;
  std::size_t key_size = out.key ? out.key->size() : 0;
  auto err = rd_kafka_producev(
    rk, RD_KAFKA_V_TOPIC(record.topic.c_str()),
    // No copy: `body` stays alive in `pending` until the delivery report.
    RD_KAFKA_V_MSGFLAGS(0),
    RD_KAFKA_V_VALUE(const_cast<char*>(body.view().data()), body.size()),
    RD_KAFKA_V_KEY(key_data, key_size),
    RD_KAFKA_V_HEADERS(headers),
    RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(id))),
    RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (headers != nullptr)
      rd_kafka_headers_destroy(headers); // ownership passes only on success
    pending.erase(id);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      return false;
    ++counters.failed;
    record.answer.deliver(failure(failure_kind(err),
                                  "cannot produce to topic " + record.topic
                                    + ": " + rd_kafka_err2str(err)));
    return true;
  }
  ++counters.sent;
  auto& entry = *pending.find(id);
  entry.started = record.started;
  entry.topic = record.topic;
  entry.body = body;
  if (settings->acks == acknowledgement::none) {
    // Fire and forget: the caller does not wait for Kafka.
    record.answer.deliver(ok_atom::value);
    entry.answered = true;
  } else {
    entry.answer = std::move(record.answer);
  }
  return true;
}

void kafka_producer_state::on_delivery(const rd_kafka_message_t* m) {
  auto id = static_cast<std::uint64_t>(reinterpret_cast<uintptr_t>(m->_private));
  auto found = pending.take(id);
  if (!found)
    return;
  auto& entry = *found;
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++counters.acked;
    stats.record_latency(std::chrono::duration_cast<std::chrono::microseconds>(
      steady_now - entry.started));
    if (!entry.answered && !closing)
      delivered.add(entry.answer);
  } else {
    ++counters.failed;
    spdlog::warn("kafka endpoint {}: delivery to {} failed: {}",
                 settings->name, entry.topic, rd_kafka_err2str(m->err));
    if (!entry.answered && !closing)
      entry.answer.deliver(
        failure(failure_kind(m->err),
                "delivery to topic " + entry.topic + " failed after retrying for up to "
                + std::to_string(settings->delivery_timeout_ms)
                + " ms: " + rd_kafka_err2str(m->err)));
  }
}

void kafka_producer_state::poll() {
  read_clocks();
  rd_kafka_poll(rk, 0);
  delivered.flush();
  drain_backlog();
}

void kafka_producer_state::on_stats(const char* json, std::size_t len) {
  auto doc = parse_json_bounded<nlohmann::json>({json, len});
  if (doc.is_discarded())
    return;
  counters.tx_bytes = doc.value("tx_bytes", counters.tx_bytes);
  counters.txmsg_bytes = doc.value("txmsg_bytes", counters.txmsg_bytes);
  if (!doc.contains("topics"))
    return;
  // batchcnt / batchsize are windows that librdkafka restarts with every
  // statistics emission: their counts add up to all batches sent.
  for (auto& [topic, t] : doc["topics"].items()) {
    if (auto cnt = t.find("batchcnt"); cnt != t.end()) {
      counters.batches += cnt->value("cnt", std::int64_t{0});
      counters.batch_msgs_max = std::max(counters.batch_msgs_max,
                                         cnt->value("max", std::int64_t{0}));
    }
    if (auto size = t.find("batchsize"); size != t.end())
      counters.batch_bytes_max = std::max(counters.batch_bytes_max,
                                          size->value("max", std::int64_t{0}));
  }
}

void kafka_producer_state::on_error(rd_kafka_resp_err_t err,
                                    const char* reason) {
  last_error = reason;
  spdlog::warn("kafka endpoint {}: {}", settings->name, reason);
  if (err != RD_KAFKA_RESP_ERR__FATAL)
    return;
  char why[512];
  rd_kafka_fatal_error(rk, why, sizeof(why));
  last_error = std::string("fatal: ") + why;
}

void kafka_producer_state::update_probe() {
  auto& c = counters;
  std::pair<const char*, std::int64_t> values[] = {
    {"sent", c.sent},
    {"acked", c.acked},
    {"failed", c.failed},
    {"expired", c.expired},
    {"in_flight", static_cast<std::int64_t>(pending.size() + backlog.size())},
    {"queue_full_waits", c.queue_full_waits},
    {"batches", c.batches},
    {"batch_msgs_max", c.batch_msgs_max},
    {"batch_bytes_max", c.batch_bytes_max},
    {"tx_bytes", c.tx_bytes},
    {"txmsg_bytes", c.txmsg_bytes},
  };
  for (auto& [name, value] : values)
    stats.set(name, value);
  stats.label("type", "kafka");
  stats.label("role", "producer");
  stats.label("host", settings->host);
  if (!setup_error.empty())
    stats.label("error", setup_error);
  else if (!last_error.empty())
    stats.label("last_error", last_error);
}

component_stats kafka_producer_state::snapshot() {
  update_probe();
  return stats.snapshot();
}

/// The sink protocol's forms end here, after the handler read the clocks.
/// An empty target means the message's own topic; a rule may hand over its
/// topic template unexpanded.
void publish(caf::stateful_actor<kafka_producer_state>* self,
             message msg, std::string topic,
             reply answer) {
  self->state.ensure_client(self);
  if (topic.empty())
    topic = msg.topic;
  else if (std::string why; topic.find("${") != std::string::npos
           && !expand_kafka_topic(*self->state.settings, topic, msg, why)) {
    answer.deliver(self->state.failure(sink_errc::topic_name_invalid, why));
    return;
  }
  self->state.publish(std::move(msg), std::move(topic), std::move(answer));
}

caf::behavior kafka_producer(caf::stateful_actor<kafka_producer_state>* self,
                             std::shared_ptr<const kafka_settings> settings,
                             bool connect_now, extra_handlers extra) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.stats = probe{"endpoint", st.settings->name};
  if (connect_now)
    st.ensure_client(self);
  self->delayed_send(self, tick_interval, tick_atom::value);
  auto write = [self](message& msg, const std::string& topic, reply answer) {
    publish(self, std::move(msg), topic, std::move(answer));
  };
  auto producer = sink_handlers(self, write, [self] {
    self->state.read_clocks();
  }).or_else(
    [=](poll_atom) {
      auto& st = self->state;
      st.waker->rearm();
      st.poll();
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.rk != nullptr)
        st.poll();
      st.update_probe();
      st.stats.report(self);
      self->delayed_send(self, tick_interval, tick_atom::value);
    },
    [=](get_atom) { return self->state.snapshot(); });
  if (!extra)
    return producer;
  return producer.or_else(extra(self));
}

} // namespace

caf::actor spawn_kafka_producer(caf::actor_system& sys,
                                std::shared_ptr<const kafka_settings> settings,
                                bool connect_now, extra_handlers extra) {
  return sys.spawn(kafka_producer, std::move(settings), connect_now,
                   std::move(extra));
}

} // namespace hubflow::kafka
