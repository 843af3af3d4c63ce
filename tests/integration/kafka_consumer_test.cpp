// The Kafka endpoint as a source, against librdkafka's mock cluster: records
// become messages for the subscriber, offsets are committed only after the
// subscriber acknowledged, records refused for now are offered again,
// records refused for good (and reported by the rule) are committed.
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "core/sink_error.hpp"
#include "core/type_ids.hpp"
#include "fixtures/fixtures.hpp"
#include "fixtures/kafka_fixture.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

/// What a test subscriber saw, shared with the test thread.
struct delivery_log {
  std::mutex mtx;
  std::vector<message> received;
  std::size_t size() {
    std::lock_guard<std::mutex> guard{mtx};
    return received.size();
  }
  message at(std::size_t i) {
    std::lock_guard<std::mutex> guard{mtx};
    return received.at(i);
  }
};

using release_atom = caf::atom_constant<caf::atom("release")>;

struct subscriber_state {
  static inline const char* name = "test.kafka.subscriber";
  std::shared_ptr<delivery_log> log;
  bool hold = false;       // answer only on release_atom
  int refuse_first = 0;    // answer the first N deliveries with an error
  bool for_good = false;   // ... a permanent one (the rule reported it)
  std::vector<caf::response_promise> held;
};

caf::behavior subscriber(caf::stateful_actor<subscriber_state>* self,
                         std::shared_ptr<delivery_log> log, bool hold,
                         int refuse_first, bool for_good) {
  self->state.log = std::move(log);
  self->state.hold = hold;
  self->state.refuse_first = refuse_first;
  self->state.for_good = for_good;
  return {
    [=](deliver_atom, message& msg) {
      auto& st = self->state;
      {
        std::lock_guard<std::mutex> guard{st.log->mtx};
        st.log->received.push_back(msg);
      }
      auto rp = self->make_response_promise();
      if (st.refuse_first > 0) {
        --st.refuse_first;
        rp.deliver(st.for_good ? make_sink_error(sink_errc::topic_name_invalid,
                                                 "reported")
                               : caf::make_error(caf::sec::runtime_error,
                                                 "not now"));
      } else if (st.hold) {
        st.held.push_back(rp);
      } else {
        rp.deliver(ok_atom::value);
      }
      return rp;
    },
    [=](release_atom) {
      auto& st = self->state;
      st.hold = false;
      for (auto& rp : st.held)
        rp.deliver(ok_atom::value);
      st.held.clear();
    },
  };
}

/// Stands in for the stats actor: keeps each component's last report.
struct collector_log {
  std::mutex mtx;
  std::map<std::string, component_stats> last;
  std::int64_t counter(const std::string& component, const std::string& name) {
    std::lock_guard<std::mutex> guard{mtx};
    auto it = last.find(component);
    return it == last.end() ? -1
                            : kafka_endpoint_harness::counter(it->second, name);
  }
};

caf::behavior stats_collector(caf::event_based_actor*,
                              std::shared_ptr<collector_log> log) {
  return {
    [=](report_atom, component_stats& stats) {
      std::lock_guard<std::mutex> guard{log->mtx};
      log->last[stats.name] = std::move(stats);
    },
  };
}

class kafka_consumer : public ::testing::Test {
protected:
  kafka_mock_cluster kafka{3};
  kafka_endpoint_harness harness;
  std::shared_ptr<collector_log> stats = std::make_shared<collector_log>();
  caf::actor collector;

  void SetUp() override {
    collector = harness.system().spawn(stats_collector, stats);
    harness.system().registry().put(stats_registry_name, collector);
  }
  void TearDown() override {
    harness.system().registry().erase(stats_registry_name);
    caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
  }

  caf::actor source(const std::string& extra = "consumerGroupId: hubflow-in\n") {
    return harness.spawn_endpoint("name: kafka-in\ntype: kafka\nhost: "
                                    + kafka.bootstraps() + "\n" + extra,
                                  true, false);
  }

  /// Subscribes `sub` to `topic`; nullopt on ok_atom, else the error text.
  std::optional<std::string> subscribe(const caf::actor& ep,
                                       const std::string& topic,
                                       const caf::actor& sub) {
    caf::scoped_actor self{harness.system()};
    std::optional<std::string> out;
    self->request(ep, 10s, subscribe_atom::value, topic, std::uint8_t{1}, sub)
      .receive([&](ok_atom) {},
               [&](caf::error& err) { out = harness.system().render(err); });
    return out;
  }

  static std::optional<std::string> property(const message& m,
                                             const std::string& name) {
    for (auto& [k, v] : m.properties.user_properties)
      if (k == name)
        return v;
    return std::nullopt;
  }
};

} // namespace

TEST_F(kafka_consumer, source_without_consumer_group_is_refused) {
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, false, 0, false);
  // An endpoint configured only as a destination, subscribed to anyway.
  auto ep = harness.spawn_endpoint("name: kafka-in\ntype: kafka\nhost: "
                                     + kafka.bootstraps() + "\n",
                                   false, true);
  auto err = subscribe(ep, "commands", sub);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("Kafka-type source endpoints must have a consumerGroupId "
                      "defined"),
            std::string::npos)
    << *err;
  // The config check says the same before anything starts.
  try {
    source("");
    FAIL() << "a source without consumerGroupId passed validation";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("must have a consumerGroupId defined"),
              std::string::npos)
      << e.what();
  }
}

TEST_F(kafka_consumer, records_become_messages_with_key_timestamp_and_utf8_headers) {
  kafka.create_topic("commands", 3);
  kafka.produce("commands", "open valve", std::string("valve-7"),
                {{"site", "north"},
                 {"binary", std::string("\xa1\x03" "bar", 5)},
                 {"huge", std::string(70000, 'x')}});
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, false, 0, false);
  auto ep = source();
  ASSERT_EQ(subscribe(ep, "commands", sub), std::nullopt);
  ASSERT_TRUE(wait_until([&] { return log->size() == 1; }, 20s));
  auto m = log->at(0);
  EXPECT_EQ(m.topic, "commands");
  EXPECT_EQ(m.body.str(), "open valve");
  EXPECT_EQ(m.qos, 1);
  EXPECT_EQ(m.origin, "kafka-in");
  EXPECT_EQ(property(m, "site"), "north");
  EXPECT_EQ(property(m, "Key"), "valve-7");
  auto ts = std::stoll(property(m, "Timestamp").value_or("0"));
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  EXPECT_TRUE(ts > now_ms - 60000 && ts <= now_ms) << ts;
  EXPECT_FALSE(property(m, "binary"));
  EXPECT_FALSE(property(m, "huge"));
  ASSERT_TRUE(wait_until(
    [&] { return stats->counter("kafka-in/commands", "headers_dropped") == 2; }));
}

TEST_F(kafka_consumer, offsets_are_committed_only_after_the_subscriber_acknowledged) {
  kafka.create_topic("orders", 1);
  for (int i = 0; i < 5; ++i)
    kafka.produce("orders", "order-" + std::to_string(i));
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, true, 0, false);
  auto ep = source();
  ASSERT_EQ(subscribe(ep, "orders", sub), std::nullopt);
  ASSERT_TRUE(wait_until([&] { return log->size() == 5; }, 20s));
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(log->at(i).body.str(), "order-" + std::to_string(i)); // in order
  // Delivered, not acknowledged: the consumer reports them in flight and
  // nothing is committed.
  ASSERT_TRUE(wait_until(
    [&] { return stats->counter("kafka-in/orders", "in_flight") == 5; }));
  EXPECT_TRUE(kafka.committed("hubflow-in", "orders").empty());
  caf::anon_send(sub, release_atom::value);
  ASSERT_TRUE(wait_until([&] {
    return kafka.committed("hubflow-in", "orders")
           == std::map<std::int32_t, std::int64_t>{{0, 5}};
  }));
  ASSERT_TRUE(wait_until(
    [&] { return stats->counter("kafka-in/orders", "committed") == 5; }));

  // (Where a restarted consumer of the group resumes is Kafka's business:
  // the committed offsets above are what it resumes from. The mock
  // cluster keeps a departed member for its whole session timeout, so a
  // restart is not part of this test.)
}

TEST_F(kafka_consumer, refused_records_are_offered_again_before_commit) {
  kafka.create_topic("retry", 1);
  kafka.produce("retry", "first");
  kafka.produce("retry", "second");
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, false, 1, false);
  auto ep = source();
  ASSERT_EQ(subscribe(ep, "retry", sub), std::nullopt);
  ASSERT_TRUE(wait_until([&] { return log->size() == 3; }, 20s));
  // "first" was refused, then offered again; "second" went through at once
  // but its offset waits for "first".
  EXPECT_EQ(log->at(0).body.str(), "first");
  EXPECT_EQ(log->at(1).body.str(), "second");
  EXPECT_EQ(log->at(2).body.str(), "first");
  ASSERT_TRUE(wait_until([&] {
    return kafka.committed("hubflow-in", "retry")
           == std::map<std::int32_t, std::int64_t>{{0, 2}};
  }));
  EXPECT_EQ(stats->counter("kafka-in/retry", "redelivered"), 1);
}

TEST_F(kafka_consumer, records_refused_for_good_are_committed_not_offered_again) {
  kafka.create_topic("bad", 1);
  kafka.produce("bad", "unroutable");
  kafka.produce("bad", "fine");
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, false, 1, true);
  auto ep = source();
  ASSERT_EQ(subscribe(ep, "bad", sub), std::nullopt);
  ASSERT_TRUE(wait_until([&] {
    return kafka.committed("hubflow-in", "bad")
           == std::map<std::int32_t, std::int64_t>{{0, 2}};
  }));
  ASSERT_TRUE(wait_until(
    [&] { return stats->counter("kafka-in/bad", "reported") == 1; }));
  // Long enough for a redelivery (1 s): none came.
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(log->size(), 2u);
  EXPECT_EQ(stats->counter("kafka-in/bad", "redelivered"), 0);
}

TEST_F(kafka_consumer, every_partition_is_consumed) {
  kafka.create_topic("wide", 4);
  for (int i = 0; i < 40; ++i)
    kafka.produce("wide", std::to_string(i), std::nullopt, {}, i % 4);
  auto log = std::make_shared<delivery_log>();
  auto sub = harness.system().spawn(subscriber, log, false, 0, false);
  auto ep = source();
  ASSERT_EQ(subscribe(ep, "wide", sub), std::nullopt);
  ASSERT_TRUE(wait_until([&] { return log->size() == 40; }, 20s));
  ASSERT_TRUE(wait_until([&] {
    return kafka.committed("hubflow-in", "wide")
           == std::map<std::int32_t, std::int64_t>{{0, 10}, {1, 10}, {2, 10}, {3, 10}};
  }));
}
