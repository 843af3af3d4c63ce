// Kafka producer throughput and latency, side by side in one run:
//   raw      librdkafka alone (the bar: what the library does by itself)
//   endpoint the same records through hubflow's Kafka endpoint actor
//            (publish requests answered after the delivery report)
//   mqtt     (with --hubflow BIN) MQTT QoS 1 publishes (one raw-socket
//            client) into a hubflow broker whose rule ends at the same
//            Kafka endpoint: PUBACK only after Kafka's acknowledgement
// against librdkafka's mock cluster (3 brokers, acks all, 64 B values).
// Every mode keeps the same number of records in flight. Prints msgs/s,
// latency percentiles and the ratio to raw.
//
//   kafka-bench [--messages N] [--inflight W] [--size B] [--partitions P]
//               [--hubflow build/bin/hubflow]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <arpa/inet.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/type_ids.hpp"
#include "endpoints/endpoint.hpp"
#include "hub/mqtt_codec.hpp"

using namespace hubflow;
using steady = std::chrono::steady_clock;

namespace {

struct options {
  long messages = 200000;
  long inflight = 10000;
  std::size_t size = 64;
  int partitions = 3;
  std::string hubflow; // path of the hubflow binary for the MQTT mode
};

struct result {
  std::string mode;
  long messages = 0;
  double seconds = 0;
  std::vector<std::int64_t> latencies_us;

  double rate() const {
    return seconds > 0 ? messages / seconds : 0;
  }
  std::int64_t quantile(double q) {
    if (latencies_us.empty())
      return 0;
    auto i = static_cast<std::size_t>(q * (latencies_us.size() - 1));
    std::nth_element(latencies_us.begin(), latencies_us.begin() + i,
                     latencies_us.end());
    return latencies_us[i];
  }
};

message warm_up_message() {
  message m;
  m.topic = "plant/line1/telemetry";
  m.body = payload{"warm-up"};
  m.qos = 1;
  return m;
}

std::int64_t micros_since(steady::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - t)
    .count();
}

// -- raw librdkafka ------------------------------------------------------------

struct raw_state {
  std::vector<steady::time_point> sent;
  std::vector<std::int64_t> latencies;
  long delivered = 0;
  long failed = 0;
};

void raw_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto st = static_cast<raw_state*>(opaque);
  auto i = reinterpret_cast<std::uintptr_t>(m->_private);
  if (m->err)
    ++st->failed;
  ++st->delivered;
  st->latencies.push_back(micros_since(st->sent[i]));
}

result run_raw(const options& opt, const std::string& bootstraps) {
  raw_state st;
  st.sent.resize(opt.messages);
  st.latencies.reserve(opt.messages);
  auto conf = rd_kafka_conf_new();
  char why[512];
  // The same settings the endpoint derives from its defaults, including
  // its Default partitioning: records spread round robin, which librdkafka
  // only does through a partitioner callback once sticky partitioning is off.
  for (auto [k, v] : {std::pair{"bootstrap.servers", bootstraps.c_str()},
                      {"acks", "all"},
                      {"enable.idempotence", "true"},
                      {"linger.ms", "5"},
                      {"batch.num.messages", "100000"},
                      {"batch.size", "1000000"},
                      {"socket.nagle.disable", "true"},
                      {"sticky.partitioning.linger.ms", "0"}})
    rd_kafka_conf_set(conf, k, v, why, sizeof(why));
  auto tconf = rd_kafka_topic_conf_new();
  rd_kafka_topic_conf_set_partitioner_cb(
    tconf, [](const rd_kafka_topic_t*, const void*, size_t, int32_t count,
              void*, void*) -> int32_t {
      static std::uint32_t next = 0; // only librdkafka's producev caller
      return static_cast<int32_t>(next++ % static_cast<std::uint32_t>(count));
    });
  rd_kafka_conf_set_default_topic_conf(conf, tconf);
  rd_kafka_conf_set_opaque(conf, &st);
  rd_kafka_conf_set_dr_msg_cb(conf, raw_delivery);
  auto rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
  std::string value(opt.size, 'x');
  // Warm-up: metadata and the idempotent producer id.
  rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"),
                    RD_KAFKA_V_VALUE(value.data(), value.size()),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  rd_kafka_flush(rk, 10000);
  st.delivered = 0;
  st.latencies.clear();
  auto start = steady::now();
  for (long i = 0; i < opt.messages; ++i) {
    while (i - st.delivered >= opt.inflight)
      rd_kafka_poll(rk, 1);
    st.sent[i] = steady::now();
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench"),
                             RD_KAFKA_V_VALUE(value.data(), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(i)),
                             RD_KAFKA_V_END)
           == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 1);
    rd_kafka_poll(rk, 0);
  }
  while (st.delivered < opt.messages)
    rd_kafka_poll(rk, 10);
  result r{"raw librdkafka", opt.messages,
           std::chrono::duration<double>(steady::now() - start).count(),
           std::move(st.latencies)};
  if (st.failed > 0)
    std::fprintf(stderr, "raw: %ld deliveries failed\n", st.failed);
  rd_kafka_destroy(rk);
  return r;
}

// -- through the endpoint actor ------------------------------------------------

/// Keeps `window` publish requests outstanding until `count` are answered.
/// Many drivers share the in-flight total, as many MQTT sessions would: CAF
/// 0.17 finds the handler of a response by a linear search over the
/// requester's outstanding requests, so one actor with 10000 of them
/// measures CAF's bookkeeping, not the endpoint.
struct driver_state {
  static inline const char* name = "kafka-bench.driver";
  long next = 0;
  long done = 0;
  long failed = 0;
  std::vector<std::int64_t> latencies;
  caf::response_promise finished;
};

caf::behavior driver(caf::stateful_actor<driver_state>* self, caf::actor ep,
                     long count, long window, std::size_t size) {
  auto value = std::make_shared<message>();
  value->topic = "plant/line1/telemetry";
  value->body = payload{std::string(size, 'x')};
  value->qos = 1;
  auto send_one = std::make_shared<std::function<void()>>();
  auto answered = [=](bool ok) {
    auto& st = self->state;
    if (!ok)
      ++st.failed;
    if (++st.done == count)
      st.finished.deliver(st.latencies, st.failed);
    else if (st.next < count)
      (*send_one)();
  };
  *send_one = [=] {
    auto started = steady::now();
    ++self->state.next;
    self->request(ep, caf::infinite, publish_atom::value, *value,
                  std::string("bench"))
      .then(
        [=](ok_atom) {
          self->state.latencies.push_back(micros_since(started));
          answered(true);
        },
        [=](caf::error&) { answered(false); });
  };
  return {
    [=](caf::get_atom) {
      auto& st = self->state;
      st.latencies.reserve(count);
      st.finished = self->make_response_promise();
      for (long i = 0; i < std::min(window, count); ++i)
        (*send_one)();
      return st.finished;
    },
  };
}

result run_endpoint(const options& opt, caf::actor_system& sys,
                    const std::string& bootstraps) {
  endpoint_config cfg;
  cfg.name = "bench";
  cfg.type = "kafka";
  cfg.settings = YAML::Load("name: bench\ntype: kafka\nhost: " + bootstraps
                            + "\nkafkaAcknowledgement: All\n");
  cfg.where = {"kafka-bench", 1, 1};
  cfg.usage = {false, true, {}};
  std::vector<std::string> errors, warnings;
  auto& type = endpoint_registry().at("kafka");
  parse_endpoint(type, cfg, "endpoints[0]", errors, warnings);
  if (!errors.empty())
    throw config_error(errors);
  auto ep = type.spawn(sys, cfg);
  caf::scoped_actor self{sys};
  // Warm-up, as for raw.
  auto warm = warm_up_message();
  self->request(ep, std::chrono::seconds(30), publish_atom::value, warm,
                std::string("bench"))
    .receive([](ok_atom) {}, [&](caf::error& e) {
      std::fprintf(stderr, "warm-up failed: %s\n", sys.render(e).c_str());
    });
  constexpr long per_driver = 100;
  long drivers = std::max(1L, (opt.inflight + per_driver - 1) / per_driver);
  std::vector<caf::actor> ds;
  for (long i = 0; i < drivers; ++i)
    ds.push_back(sys.spawn(driver, ep,
                           opt.messages / drivers + (i < opt.messages % drivers),
                           std::min(per_driver, opt.inflight), opt.size));
  result r{"hubflow endpoint", opt.messages, 0, {}};
  auto start = steady::now();
  std::vector<decltype(self->request(ds[0], caf::infinite, caf::get_atom::value))>
    handles;
  for (auto& d : ds)
    handles.push_back(self->request(d, caf::infinite, caf::get_atom::value));
  long failed = 0;
  for (auto& h : handles)
    h.receive(
      [&](std::vector<std::int64_t>& lat, long f) {
        r.latencies_us.insert(r.latencies_us.end(), lat.begin(), lat.end());
        failed += f;
      },
      [](caf::error&) {});
  r.seconds = std::chrono::duration<double>(steady::now() - start).count();
  if (failed > 0)
    std::fprintf(stderr, "endpoint: %ld publishes failed\n", failed);
  for (auto& d : ds)
    self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(ep, caf::exit_reason::user_shutdown);
  return r;
}

// -- MQTT -> rule -> Kafka through a hubflow broker ---------------------------

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

/// One MQTT 3.1.1 QoS 1 publishing connection on a plain socket, built on
/// hubflow's codec and driven by publish_all() from one thread.
/// libmosquitto is not used here: it keeps in-flight messages in a linked
/// list searched on every PUBACK and wakes its network thread per publish,
/// so with thousands in flight the client, not the broker, set the pace
/// (perf: 60% of the client's CPU in that list walk; the broker idled
/// between bursts).
struct mqtt_connection {
  int fd = -1;
  mqtt::byte_buffer out;
  mqtt::packet_reader reader;
  std::vector<steady::time_point> sent = std::vector<steady::time_point>(65536);
  long count = 0; // messages this connection publishes
  long next = 0;
  long acked = 0;

  ~mqtt_connection() {
    if (fd >= 0)
      ::close(fd);
  }

  /// Connects (retrying while the broker starts) and waits for CONNACK.
  bool connect(std::uint16_t port, const std::string& client_id,
               steady::time_point deadline) {
    while (fd < 0 && steady::now() < deadline) {
      fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(port);
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(fd);
        fd = -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    if (fd < 0)
      return false;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    mqtt::connect_packet c;
    c.client_id = client_id;
    mqtt::encode(c, mqtt::v311, out);
    bool connacked = false;
    if (!flush())
      return false;
    while (!connacked && steady::now() < deadline) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 1000) < 0
          || (pfd.revents && !read([&](mqtt::packet& p) {
                connacked = mqtt::type_of(p) == mqtt::packet_type::connack;
              })))
        return false;
    }
    return connacked;
  }

  /// Queues publishes until `window` are unacknowledged.
  void fill(long window, const message& msg) {
    for (; next < count && next - acked < window; ++next) {
      mqtt::publish_header h;
      h.qos = 1;
      h.packet_id = static_cast<std::uint16_t>(next % 65535 + 1);
      sent[h.packet_id] = steady::now();
      mqtt::encode_publish(msg, h, mqtt::v311, out);
    }
  }

  bool flush() {
    std::size_t done = 0;
    while (done < out.size()) {
      auto n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      done += static_cast<std::size_t>(n);
    }
    out.clear();
    return true;
  }

  /// Reads what arrived and hands every complete packet to `on_packet`.
  template <class OnPacket>
  bool read(OnPacket on_packet) {
    char buf[65536];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      return false;
    mqtt::decode_options opts;
    opts.version = mqtt::v311;
    opts.server = false;
    auto res = reader.feed(std::string_view{buf, static_cast<std::size_t>(n)},
                           opts, [&](mqtt::packet& p) {
                             on_packet(p);
                             return true;
                           });
    return res.status != mqtt::decode_status::error;
  }
};

/// Publishes each connection's `count` messages, at most `window` of them
/// unacknowledged per connection, and returns every PUBLISH-to-PUBACK
/// latency (fewer than the total when the broker stopped answering).
std::vector<std::int64_t>
publish_all(std::vector<std::unique_ptr<mqtt_connection>>& conns, long window,
            const std::string& value) {
  message msg;
  msg.topic = "plant/line1/telemetry";
  msg.body = payload{value};
  long total = 0;
  for (auto& c : conns)
    total += c->count - c->acked;
  std::vector<std::int64_t> latencies;
  latencies.reserve(total);
  std::vector<pollfd> pfds(conns.size());
  while (static_cast<long>(latencies.size()) < total) {
    for (std::size_t i = 0; i < conns.size(); ++i) {
      conns[i]->fill(window, msg);
      if (!conns[i]->flush())
        return latencies;
      pfds[i] = pollfd{conns[i]->fd, POLLIN, 0};
    }
    if (::poll(pfds.data(), pfds.size(), 30000) <= 0)
      return latencies;
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (!pfds[i].revents)
        continue;
      auto& c = *conns[i];
      bool ok = c.read([&](mqtt::packet& p) {
        if (auto a = std::get_if<mqtt::ack_packet>(&p)) {
          latencies.push_back(micros_since(c.sent[a->packet_id]));
          ++c.acked;
        }
      });
      if (!ok)
        return latencies;
    }
  }
  return latencies;
}

result run_mqtt(const options& opt, const std::string& bootstraps) {
  auto port = free_port();
  char dir[] = "/tmp/kafka-bench-XXXXXX";
  ::mkdtemp(dir);
  auto config = std::string(dir) + "/hubflow.yaml";
  auto yaml = "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
              + "]\n  anonymous: loopback\n  message: {inflight: 65535}\n"
                "endpoints:\n  - name: kafka1\n    type: kafka\n    host: "
              + bootstraps
              + "\n    kafkaAcknowledgement: All\n"
                "rules:\n  - name: to-kafka\n    from: {topic: 'plant/#', qos: 1}\n"
                "    to: {endpoint: kafka1, topic: bench}\n";
  if (FILE* f = std::fopen(config.c_str(), "w")) {
    std::fputs(yaml.c_str(), f);
    std::fclose(f);
  }
  auto stats_port = std::to_string(free_port());
  pid_t pid = ::fork();
  if (pid == 0) {
    auto log = std::string(dir) + "/hubflow.log";
    auto fd = std::fopen(log.c_str(), "w");
    ::dup2(fileno(fd), 1);
    ::dup2(fileno(fd), 2);
    ::execl(opt.hubflow.c_str(), opt.hubflow.c_str(), "--config", config.c_str(),
            "--stats-port", stats_port.c_str(), nullptr);
    ::_exit(127);
  }
  result r{"mqtt -> rule -> kafka", opt.messages, 0, {}};
  // Like the endpoint mode's drivers: the window is spread over
  // connections of 100 in flight each (MQTT acknowledges in order per
  // connection, so one connection's window waits on its slowest message).
  constexpr long per_connection = 100;
  long n = std::max(1L, (opt.inflight + per_connection - 1) / per_connection);
  auto window = std::min(per_connection, opt.inflight);
  std::vector<std::unique_ptr<mqtt_connection>> conns;
  auto deadline = steady::now() + std::chrono::seconds(10);
  for (long i = 0; i < n; ++i) {
    conns.push_back(std::make_unique<mqtt_connection>());
    if (!conns.back()->connect(port, "kafka-bench-" + std::to_string(i),
                               deadline)) {
      std::fprintf(stderr, "mqtt: hubflow did not start (see %s/hubflow.log)\n",
                   dir);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return r;
    }
  }
  std::string value(opt.size, 'x');
  // Warm-up: the rule, the endpoint and Kafka metadata.
  conns.front()->count = 1;
  publish_all(conns, 1, value);
  for (long i = 0; i < n; ++i)
    conns[i]->count = conns[i]->next + opt.messages / n + (i < opt.messages % n);
  auto start = steady::now();
  r.latencies_us = publish_all(conns, window, value);
  r.seconds = std::chrono::duration<double>(steady::now() - start).count();
  if (static_cast<long>(r.latencies_us.size()) < opt.messages)
    std::fprintf(stderr, "mqtt: only %zu of %ld acknowledged\n",
                 r.latencies_us.size(), opt.messages);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  return r;
}

} // namespace

constexpr const char* usage =
  "Usage: kafka-bench [--messages N] [--inflight W] [--size B] [--partitions P]\n"
  "                   [--hubflow PATH]\n"
  "Produces N records (default 200000) of B bytes (default 64) with acks all\n"
  "to a librdkafka mock cluster (3 brokers, topic 'bench' with P partitions,\n"
  "default 3), keeping W records in flight (default 10000), three ways in one\n"
  "run: raw librdkafka, through hubflow's Kafka endpoint actor, and (with\n"
  "--hubflow, the path of a hubflow binary) as MQTT QoS 1 publishes into a\n"
  "hubflow broker whose rule ends at Kafka. Prints msgs/s, latency\n"
  "percentiles and each mode's ratio to raw librdkafka (docs/performance.md).\n"
  "Exit codes: 0 done, 2 bad arguments.\n";

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; i += 2) {
    std::string key = argv[i];
    if (key == "--help" || key == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (i + 1 == argc) {
      std::fprintf(stderr, "kafka-bench: %s needs a value\n%s", key.c_str(), usage);
      return 2;
    }
    std::string value = argv[i + 1];
    auto number = [&]() -> long {
      char* end = nullptr;
      auto n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n <= 0) {
        std::fprintf(stderr, "kafka-bench: %s wants a positive number, not '%s'\n",
                     key.c_str(), value.c_str());
        std::exit(2);
      }
      return n;
    };
    if (key == "--messages")
      opt.messages = number();
    else if (key == "--inflight")
      opt.inflight = number();
    else if (key == "--size")
      opt.size = static_cast<std::size_t>(number());
    else if (key == "--partitions")
      opt.partitions = static_cast<int>(number());
    else if (key == "--hubflow")
      opt.hubflow = value;
    else {
      std::fprintf(stderr, "kafka-bench: unknown option %s\n%s", key.c_str(), usage);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::err);
  // The mock cluster lives in its own client instance, as a broker would.
  auto conf = rd_kafka_conf_new();
  char why[512];
  rd_kafka_conf_set(conf, "test.mock.num.brokers", "3", why, sizeof(why));
  auto owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
  auto cluster = rd_kafka_handle_mock_cluster(owner);
  rd_kafka_mock_topic_create(cluster, "bench", opt.partitions, 3);
  // Leaders one per broker, round robin: the mock cluster otherwise picks
  // them at random, and runs where two partitions shared a leader were ~25%
  // slower for every mode alike, which made single runs hard to compare.
  for (int p = 0; p < opt.partitions; ++p)
    rd_kafka_mock_partition_set_leader(cluster, "bench", p, p % 3 + 1);
  std::string bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::hubflow>();
  caf::actor_system sys{cfg};

  std::vector<result> results;
  results.push_back(run_raw(opt, bootstraps));
  results.push_back(run_endpoint(opt, sys, bootstraps));
  if (!opt.hubflow.empty())
    results.push_back(run_mqtt(opt, bootstraps));

  std::printf("kafka-bench: %ld x %zu B, acks all, %ld in flight, mock cluster "
              "(3 brokers, %d partitions)\n",
              opt.messages, opt.size, opt.inflight, opt.partitions);
  std::printf("%-24s %12s %10s %10s %10s %8s\n", "mode", "msgs/s", "p50 us",
              "p99 us", "p99.9 us", "ratio");
  auto base = results.front().rate();
  for (auto& r : results)
    std::printf("%-24s %12.0f %10lld %10lld %10lld %7.2f\n", r.mode.c_str(),
                r.rate(), static_cast<long long>(r.quantile(0.5)),
                static_cast<long long>(r.quantile(0.99)),
                static_cast<long long>(r.quantile(0.999)),
                base > 0 ? r.rate() / base : 0.0);
  rd_kafka_destroy(owner);
  return 0;
}
