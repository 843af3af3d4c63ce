// `buffer: disk` through the real hubflow binary: MQTT -> rule -> a Kafka
// endpoint behind its disk buffer, with librdkafka's mock cluster (in this
// test process) as Kafka. During an outage of all brokers the publisher
// keeps getting PUBACKs at the rate it gets them with Kafka up; a kill -9
// during the outage loses nothing; once Kafka is back every record arrives,
// in order per key. A full buffer holds the publisher's acks until there
// is room. Config errors name the key.
#include <mosquitto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fixtures/fixtures.hpp"
#include "fixtures/kafka_fixture.hpp"
#include "fixtures/redis_fixture.hpp"

using namespace hubflow;
using namespace hubflow::test;
using steady = std::chrono::steady_clock;

namespace {

constexpr int key_count = 4; // MQTT topics, so Kafka keys (partitionStrategy Topic)

std::string topic_of(int i) {
  return "factory/line" + std::to_string(i % key_count) + "/telemetry";
}

/// A QoS 1 publisher that sends without waiting and counts PUBACKs.
class counting_publisher {
public:
  counting_publisher(const std::string& id, std::uint16_t port, int inflight) {
    mosquitto_lib_init();
    mosq_ = mosquitto_new(id.c_str(), true, this);
    mosquitto_max_inflight_messages_set(mosq_, inflight);
    mosquitto_publish_callback_set(mosq_, [](mosquitto*, void* self, int) {
      ++static_cast<counting_publisher*>(self)->acked_;
    });
    connected_ = mosquitto_connect(mosq_, "127.0.0.1", port, 60)
                   == MOSQ_ERR_SUCCESS
                 && mosquitto_loop_start(mosq_) == MOSQ_ERR_SUCCESS;
  }
  ~counting_publisher() {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, true);
    mosquitto_destroy(mosq_);
  }
  bool connected() const {
    return connected_;
  }
  /// Queues message `i` (body: its number, padded to `size` bytes).
  bool publish(int i, std::size_t size = 64) {
    auto body = std::to_string(i);
    body.resize(std::max(size, body.size()), ' ');
    return mosquitto_publish(mosq_, nullptr, topic_of(i).c_str(),
                             static_cast<int>(body.size()), body.data(), 1,
                             false)
           == MOSQ_ERR_SUCCESS;
  }
  int acked() const {
    return acked_.load();
  }

private:
  mosquitto* mosq_ = nullptr;
  bool connected_ = false;
  std::atomic<int> acked_{0};
};

/// Publishes messages [from, from + count) and waits for their PUBACKs:
/// the PUBACKs per second, or -1 when not all came within `timeout`.
double acked_rate(counting_publisher& p, int from, int count,
                  std::chrono::milliseconds timeout = 60s) {
  auto target = p.acked() + count;
  auto start = steady::now();
  for (int i = from; i < from + count; ++i)
    if (!p.publish(i))
      return -1;
  if (!wait_until([&] { return p.acked() >= target; }, timeout))
    return -1;
  std::chrono::duration<double> took = steady::now() - start;
  return count / took.count();
}

/// The median of three acked_rate() bursts of `count` from `next` (which
/// moves past them); -1 when one of them was not acknowledged.
double median_rate(counting_publisher& p, int& next, int count) {
  std::vector<double> rates;
  for (int i = 0; i < 3; ++i, next += count) {
    auto rate = acked_rate(p, next, count);
    if (rate < 0)
      return -1;
    rates.push_back(rate);
  }
  std::sort(rates.begin(), rates.end());
  return rates[1];
}

std::string broker_config(std::uint16_t port, const std::string& bootstraps,
                          const std::string& store, const std::string& buffer,
                          const std::string& kafka_topic) {
  return "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
         + "]\n  anonymous: loopback\n"
           "persistence:\n  path: " + store + "\n"
           "endpoints:\n"
           "  - name: kafka1\n    type: kafka\n    host: " + bootstraps + "\n"
           "    partitionStrategy: Topic\n    deliveryTimeoutMs: 10000\n"
           "    buffer: " + buffer + "\n"
           "rules:\n"
           "  - name: telemetry-to-kafka\n"
           "    from: {topic: 'factory/+/telemetry', qos: 1}\n"
           "    to: {endpoint: kafka1, topic: '" + kafka_topic + "'}\n";
}

/// Every number in [0, total) is in `records` (values are the numbers),
/// and per key they come in increasing order. Returns what is wrong, or
/// "" when nothing is.
std::string check_all_in_order(std::vector<kafka_record> records, int total) {
  std::sort(records.begin(), records.end(), [](auto& a, auto& b) {
    return std::tie(a.partition, a.offset) < std::tie(b.partition, b.offset);
  });
  std::vector<int> seen(total, 0);
  std::map<std::string, int> last_by_key;
  for (auto& r : records) {
    int n = std::stoi(r.value);
    if (n < 0 || n >= total)
      return "a record that was never published: " + r.value;
    ++seen[n];
    auto key = r.key.value_or("");
    if (key != topic_of(n))
      return "record " + std::to_string(n) + " has key " + key;
    auto last = last_by_key.find(key);
    if (last != last_by_key.end() && n <= last->second && seen[n] == 1)
      return "key " + key + ": " + std::to_string(n) + " after "
             + std::to_string(last->second);
    last_by_key[key] = std::max(n, last == last_by_key.end() ? n : last->second);
  }
  for (int i = 0; i < total; ++i)
    if (seen[i] == 0)
      return "record " + std::to_string(i) + " never arrived";
  return {};
}

/// The buffer's counters in `hubflowctl stats` (null when absent).
nlohmann::json buffer_counters(hubflow_server& server) {
  return counters_of(server.stats_json(), "buffer", "kafka1");
}

std::int64_t counter(const nlohmann::json& counters, const char* name) {
  return counters.is_object() && counters.contains(name)
           ? counters[name].get<std::int64_t>()
           : -1;
}

class endpoint_buffer : public ::testing::Test {
protected:
  void start_broker(const std::string& buffer = "disk",
                    const std::string& kafka_topic = "telemetry") {
    server = std::make_unique<hubflow_server>(broker_config(
      port, kafka.bootstraps(), data.path() + "/store", buffer, kafka_topic));
    ASSERT_TRUE(server->wait_ready()) << server->proc().output();
    ASSERT_TRUE(wait_for_port(port)) << server->proc().output();
  }

  kafka_mock_cluster kafka{3};
  temp_dir data;
  std::uint16_t port = free_port();
  std::unique_ptr<hubflow_server> server;
};

} // namespace

TEST_F(endpoint_buffer, a_minute_of_kafka_outage_with_a_kill_9_loses_and_reorders_nothing) {
  kafka.create_topic("telemetry", 3);
  ASSERT_NO_FATAL_FAILURE(start_broker());
  constexpr int burst = 2000; // three of them per phase
  int next = 0;
  double up_rate = 0, down_rate = 0, restarted_rate = 0;
  {
    counting_publisher publisher{"buffer-pub", port, 100};
    ASSERT_TRUE(publisher.connected());
    ASSERT_GT(acked_rate(publisher, next, 200), 0) << server->proc().output();
    next += 200;
    up_rate = median_rate(publisher, next, burst);
    ASSERT_GT(up_rate, 0) << server->proc().output();
    // Forwarded while Kafka is up.
    ASSERT_TRUE(wait_until(
      [&] { return kafka.record_count("telemetry") == next; }, 30s))
      << kafka.record_count("telemetry") << " of " << next;

    kafka.set_all_down();
    auto outage_start = steady::now();
    down_rate = median_rate(publisher, next, burst);
    ASSERT_GT(down_rate, 0) << "PUBACKs stopped during the outage\n"
                            << server->proc().output();
    std::printf("PUBACKs/s: Kafka up %.0f, all brokers down %.0f\n", up_rate,
                down_rate);
    // Without the buffer no PUBACK comes at all during an outage
    // (kafka_e2e_test). The bound is a third of the rate with Kafka up:
    // on this shared 2-core machine the medians of one run differed by up
    // to 2.7x between phases that do the same work.
    EXPECT_GT(down_rate, up_rate / 3);
    EXPECT_TRUE(wait_until([&] {
      return counter(buffer_counters(*server), "buffered_records") > 0;
    })) << server->stats_json();

    // kill -9 during the outage: everything acknowledged is in the buffer.
    server->proc().stop(9);
    auto store = run_command(hubflowctl_binary() + " store " + data.path()
                             + "/store --json");
    ASSERT_EQ(store.exit_code, 0) << store.output;
    auto held = nlohmann::json::parse(store.output)["buffers"]["kafka1"];
    // What came during the outage: all that came before is in Kafka.
    EXPECT_EQ(held["records"].get<std::int64_t>(), 3 * burst) << store.output;

    ASSERT_NO_FATAL_FAILURE(start_broker());
    counting_publisher again{"buffer-pub-2", port, 100};
    ASSERT_TRUE(again.connected());
    ASSERT_GT(acked_rate(again, next, 200), 0) << server->proc().output();
    next += 200; // the same warm-up as before the first measurement
    restarted_rate = median_rate(again, next, burst);
    ASSERT_GT(restarted_rate, 0) << server->proc().output();
    std::printf("PUBACKs/s after the restart, brokers still down: %.0f\n",
                restarted_rate);
    EXPECT_GT(restarted_rate, up_rate / 3);
    EXPECT_LT(kafka.record_count("telemetry"), next);
    // The outage lasts a minute.
    std::this_thread::sleep_until(outage_start + 60s);
    kafka.set_all_up();
  }
  ASSERT_TRUE(wait_until(
    [&] { return kafka.record_count("telemetry") >= next; }, 120s))
    << kafka.record_count("telemetry") << " of " << next << "\n"
    << server->proc().output();
  auto records = kafka.consume("telemetry", next, 60s);
  EXPECT_EQ(check_all_in_order(records, next), "");
  EXPECT_TRUE(wait_until([&] {
    auto c = buffer_counters(*server);
    return counter(c, "buffered_records") == 0
           && counter(c, "forwarded") > 0;
  })) << buffer_counters(*server).dump();
  EXPECT_EQ(counter(buffer_counters(*server), "dead_lettered"), 0);
}

TEST_F(endpoint_buffer, a_full_buffer_holds_the_acks_until_there_is_room) {
  kafka.create_topic("telemetry", 3);
  // About 200 bytes a record: room for some 300.
  ASSERT_NO_FATAL_FAILURE(start_broker("{type: disk, max_bytes: 64k}"));
  kafka.set_all_down();
  constexpr int total = 1000;
  counting_publisher publisher{"buffer-full", port, total};
  ASSERT_TRUE(publisher.connected());
  for (int i = 0; i < total; ++i)
    ASSERT_TRUE(publisher.publish(i, 120));
  // The acks stop at the buffer's bound...
  int acked = 0;
  ASSERT_TRUE(wait_until([&] {
    auto before = publisher.acked();
    std::this_thread::sleep_for(1s);
    acked = publisher.acked();
    return acked > 0 && acked == before;
  }, 20s)) << publisher.acked();
  std::printf("acknowledged while the buffer was full: %d of %d\n", acked,
              total);
  EXPECT_LT(acked, total);
  EXPECT_GT(acked, 100);
  EXPECT_TRUE(wait_until([&] {
    return counter(buffer_counters(*server), "held") > 0;
  })) << server->stats_json();
  EXPECT_LE(counter(buffer_counters(*server), "buffered_bytes"), 64 * 1024);
  // ... and the rest come once Kafka takes records and makes room: none
  // was dropped.
  kafka.set_all_up();
  ASSERT_TRUE(wait_until([&] { return publisher.acked() == total; }, 60s))
    << publisher.acked() << " of " << total << "\n"
    << server->proc().output();
  ASSERT_TRUE(wait_until(
    [&] { return kafka.record_count("telemetry") >= total; }, 60s))
    << kafka.record_count("telemetry");
  EXPECT_EQ(check_all_in_order(kafka.consume("telemetry", total, 30s), total),
            "");
}

TEST_F(endpoint_buffer, a_record_kafka_refuses_for_good_is_kept_as_a_dead_letter) {
  kafka.create_topic("telemetry-line1", 1);
  ASSERT_NO_FATAL_FAILURE(start_broker("disk", "telemetry-${topic.2}"));
  mqtt_client publisher{"buffer-dead", 4};
  ASSERT_EQ(publisher.connect(port), 0);
  // A space is no character of a Kafka topic: the endpoint answers ERROR.
  // The buffer had acknowledged the record already, so it keeps it.
  ASSERT_TRUE(publisher.publish("factory/bad line/telemetry", "refused", 1));
  ASSERT_TRUE(publisher.publish("factory/line1/telemetry", "taken", 1));
  ASSERT_TRUE(wait_until(
    [&] { return kafka.record_count("telemetry-line1") == 1; }, 30s));
  ASSERT_TRUE(wait_until([&] {
    return counter(buffer_counters(*server), "dead_lettered") == 1;
  })) << server->stats_json();
  EXPECT_TRUE(wait_until([&] {
    return counter(buffer_counters(*server), "buffered_records") == 0;
  })) << server->stats_json();
  EXPECT_NE(server->proc().output().find("kept as a dead letter"),
            std::string::npos)
    << server->proc().output();
  server->proc().stop();
  auto store = run_command(hubflowctl_binary() + " store " + data.path()
                           + "/store --json");
  ASSERT_EQ(store.exit_code, 0) << store.output;
  auto held = nlohmann::json::parse(store.output)["buffers"]["kafka1"];
  EXPECT_EQ(held["dead_letters"], 1) << store.output;
  EXPECT_EQ(held["records"], 0) << store.output;
}

TEST(endpoint_buffer_config, errors_name_the_key) {
  temp_dir dir;
  auto check = [&](const std::string& yaml) {
    auto path = dir.write("hubflow.yaml", yaml);
    return run_command(hubflow_binary() + " --check --config " + path);
  };
  auto endpoint = [](const std::string& buffer) {
    return "endpoints:\n  - name: kafka1\n    type: kafka\n"
           "    host: 127.0.0.1:9092\n    buffer: " + buffer + "\n";
  };
  // Refused at load, naming the key and what is wrong.
  auto refused = [&](const std::string& yaml, const std::string& text) {
    auto r = check(yaml);
    EXPECT_NE(r.exit_code, 0) << yaml;
    EXPECT_NE(r.output.find(text), std::string::npos) << r.output;
  };
  refused(endpoint("disk"), "endpoints[0].buffer: buffer: disk keeps its "
                            "records under persistence.path");
  auto persistence = "persistence:\n  path: " + dir.path() + "/store\n";
  refused(persistence + endpoint("{type: disk, max_bytes: lots}"),
          "endpoints[0].buffer");
  refused(persistence + endpoint("{type: disk, max_bytes: 0}"),
          "endpoints[0].buffer.max_bytes: a buffer needs room");
  refused(persistence + endpoint("memory"), "endpoints[0].buffer");
  auto fine = check(persistence + endpoint("{type: disk, max_bytes: 512m}"));
  EXPECT_EQ(fine.exit_code, 0) << fine.output;
}

// Restarting the endpoint cannot mend its file, so the broker does not
// start (exit 3, the file named) and nothing listens; the records stay.
TEST(endpoint_buffer_config, a_damaged_buffer_file_stops_the_start) {
  temp_dir data;
  std::filesystem::create_directories(data.path() + "/store");
  auto file = data.write("store/buffer-redis1.db", "not a database at all");
  auto port = free_port();
  process broker({hubflow_binary(), "--config",
                  data.write("hubflow.yaml",
                             "hub:\n  listen: [tcp://127.0.0.1:"
                               + std::to_string(port)
                               + "]\npersistence:\n  path: " + data.path()
                               + "/store\nendpoints:\n  - name: redis1\n"
                                 "    type: redis\n    buffer: disk\n"),
                  "--stats-port", std::to_string(free_port())});
  auto code = broker.wait_exit(20s);
  ASSERT_TRUE(code.has_value()) << broker.output();
  EXPECT_EQ(*code, 3) << broker.output();
  EXPECT_NE(broker.output().find("cannot start: endpoint redis1: " + file
                                 + ": file is not a database; move it aside"),
            std::string::npos)
    << broker.output();
  EXPECT_FALSE(wait_for_port(port, 100ms)) << "the hub listened";
  std::ifstream kept{file};
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>{kept}, {}),
            "not a database at all");
}

TEST(endpoint_buffer_redis, a_redis_restart_loses_and_reorders_nothing) {
  redis_server redis;
  temp_dir data;
  auto port = free_port();
  hubflow_server server{
    "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
    + "]\n  anonymous: loopback\n"
      "persistence:\n  path: " + data.path() + "/store\n"
      "endpoints:\n"
      "  - name: redis1\n    type: redis\n    port: "
    + std::to_string(redis.port())
    + "\n    mode: rpush\n    buffer: disk\n"
      "rules:\n"
      "  - name: to-redis\n"
      "    from: {topic: 'factory/+/telemetry', qos: 1}\n"
      "    to: {endpoint: redis1, topic: telemetry}\n"};
  ASSERT_TRUE(server.wait_ready()) << server.proc().output();
  ASSERT_TRUE(wait_for_port(port));
  counting_publisher publisher{"buffer-redis", port, 100};
  ASSERT_TRUE(publisher.connected());
  constexpr int half = 500;
  ASSERT_GT(acked_rate(publisher, 0, half), 0) << server.proc().output();
  ASSERT_TRUE(wait_until([&] { return redis.cli({"LLEN", "telemetry"}) == "500"; }))
    << redis.cli({"LLEN", "telemetry"});
  redis.stop(9);
  // Acknowledged while Redis is down: they wait in the buffer.
  ASSERT_GT(acked_rate(publisher, half, half, 20s), 0) << server.proc().output();
  EXPECT_TRUE(wait_until([&] {
    return counter(counters_of(server.stats_json(), "buffer", "redis1"),
                   "buffered_records")
           > 0;
  })) << server.stats_json();
  redis.start();
  ASSERT_TRUE(wait_until([&] { return redis.cli({"LLEN", "telemetry"}) == "1000"; },
                         60s))
    << redis.cli({"LLEN", "telemetry"}) << "\n" << server.proc().output();
  auto list = redis.cli({"LRANGE", "telemetry", "0", "-1"});
  std::istringstream lines{list};
  std::string line;
  int expected = 0;
  while (std::getline(lines, line)) {
    ASSERT_EQ(std::stoi(line), expected) << "out of order";
    ++expected;
  }
  EXPECT_EQ(expected, 2 * half);
}

TEST(endpoint_buffer_redis, a_reload_hands_the_buffer_over_without_a_stall) {
  redis_server first;
  redis_server second;
  temp_dir data;
  auto port = free_port();
  auto config_for = [&](std::uint16_t redis_port) {
    return "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
           + "]\n  anonymous: loopback\n"
             "persistence:\n  path: " + data.path() + "/store\n"
             "endpoints:\n"
             "  - name: redis1\n    type: redis\n    port: "
           + std::to_string(redis_port)
           + "\n    mode: rpush\n    buffer: disk\n"
             "rules:\n"
             "  - name: to-redis\n"
             "    from: {topic: 'factory/+/telemetry', qos: 1}\n"
             "    to: {endpoint: redis1, topic: telemetry}\n";
  };
  auto config = data.write("hubflow.yaml", config_for(first.port()));
  hubflow_server server{"", {"--config", config}};
  ASSERT_TRUE(server.wait_ready()) << server.proc().output();
  ASSERT_TRUE(wait_for_port(port));
  counting_publisher publisher{"buffer-reload", port, 100};
  ASSERT_TRUE(publisher.connected());
  ASSERT_GT(acked_rate(publisher, 0, 100), 0) << server.proc().output();
  ASSERT_TRUE(wait_until([&] { return first.cli({"LLEN", "telemetry"}) == "100"; }));
  // The first Redis goes away with records still to come; the reload
  // points the endpoint at the second one.
  first.stop(9);
  ASSERT_GT(acked_rate(publisher, 100, 100, 20s), 0) << server.proc().output();
  data.write("hubflow.yaml", config_for(second.port()));
  auto r = run_command(hubflowctl_binary() + " reload --stats-port "
                       + std::to_string(server.stats_port()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The new buffer takes the file over at once (not when the old one is
  // stopped, 30 s later): publishes are acknowledged within seconds, and
  // what the old one held goes to the second Redis first.
  ASSERT_GT(acked_rate(publisher, 200, 100, 10s), 0) << server.proc().output();
  ASSERT_TRUE(wait_until([&] { return second.cli({"LLEN", "telemetry"}) == "200"; },
                         20s))
    << second.cli({"LLEN", "telemetry"}) << "\n" << server.proc().output();
  std::istringstream lines{second.cli({"LRANGE", "telemetry", "0", "-1"})};
  std::string line;
  for (int expected = 100; std::getline(lines, line); ++expected)
    ASSERT_EQ(std::stoi(line), expected) << "out of order";
  EXPECT_NE(server.proc().output().find("handing the file over"),
            std::string::npos)
    << server.proc().output();
}
