// persistence: the real hubflow binary killed with SIGKILL while a client
// publishes, restarted on the same store: every acknowledged message is
// delivered afterwards, QoS 2 never twice, in the order it was published;
// subscriptions and retained messages survive, expired sessions do not; a
// damaged store is refused by name and --store-recover moves it aside.
#include "hub_test_env.hpp"

#include <atomic>
#include <fstream>
#include <random>
#include <set>
#include <thread>

using namespace hubflow;
using namespace hubflow::test;

namespace {

/// A hubflow with `persistence` on `data`, listening on `port`, that can
/// be killed and started again on the same store.
class durable_hub {
public:
  durable_hub(const temp_dir& data, std::uint16_t port,
              const std::string& extra = "")
    : yaml_("hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
            + "]\npersistence:\n  path: " + data.path() + "/store\n" + extra),
      port_(port) {
  }

  bool start(std::vector<std::string> args = {}) {
    server_ = std::make_unique<hubflow_server>(yaml_, std::move(args));
    return server_->wait_ready() && wait_for_port(port_);
  }
  void kill9() {
    server_->proc().stop(9);
  }
  hubflow_server& server() {
    return *server_;
  }

private:
  std::string yaml_;
  std::uint16_t port_;
  std::unique_ptr<hubflow_server> server_;
};

/// The numbers in `messages` ("0", "1", ...) in arrival order.
std::vector<int> numbers(const std::vector<received_message>& messages) {
  std::vector<int> out;
  for (auto& m : messages)
    out.push_back(std::stoi(m.payload));
  return out;
}

/// (QoS, whether the subscriber stays connected)
class hub_persistence : public testing::TestWithParam<std::tuple<int, bool>> {
};

} // namespace

TEST_P(hub_persistence, kill_9_while_publishing_loses_nothing_acknowledged) {
  // Twenty SIGKILLs at random points of a QoS 1 or 2 stream from a
  // persistent publisher to a persistent subscriber: into its offline
  // queue, or, while it stays connected, with messages in flight both
  // towards the hub and from it. libmosquitto reconnects and resends its
  // side after each restart, the hub resends its side from the store, so
  // QoS 2 also tests that a resend of a message the store already holds is
  // not routed again.
  const auto [qos, online] = GetParam();
  temp_dir data;
  auto port = free_port();
  durable_hub hub{data, port};
  ASSERT_TRUE(hub.start()) << hub.server().proc().output();
  // 3.1.1: the session never expires.
  auto sub = std::make_unique<mqtt_client>("durable-sub", 4, false);
  ASSERT_EQ(sub->connect(port), 0);
  ASSERT_EQ(sub->subscribe("stream/#", qos), qos);
  if (!online) {
    sub->disconnect();
    sub.reset();
  }
  mqtt_client pub{"durable-pub", 4, false};
  ASSERT_EQ(pub.connect(port), 0);
  std::set<int> acknowledged;
  int next = 0;
  std::mt19937 random{std::random_device{}()};
  constexpr int cycles = 20;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    std::atomic<bool> stop{false};
    // At most 40 a cycle: all of them fit the subscriber's offline queue
    // (hub.message.queued, 1000), beyond which an offline session drops.
    std::thread publisher{[&] {
      for (int i = 0; i < 40 && !stop; ++i) {
        int n = next++;
        if (pub.publish("stream/n", std::to_string(n), qos, false, 3s))
          acknowledged.insert(n);
        else
          break; // the broker is gone: libmosquitto resends it later
      }
    }};
    // Let it publish for a while once connected, then crash the broker.
    wait_until([&] { return pub.connected() && (!online || sub->connected()); },
               5s);
    std::this_thread::sleep_for(
      std::chrono::milliseconds(50 + random() % 250));
    hub.kill9();
    stop = true;
    publisher.join();
    ASSERT_TRUE(hub.start()) << hub.server().proc().output();
  }
  ASSERT_TRUE(wait_until([&] { return pub.connected(); }, 5s));
  // The last messages, with the broker up, so that the end is known.
  for (int i = 0; i < 10; ++i, ++next)
    if (pub.publish("stream/n", std::to_string(next), qos, false, 5s))
      acknowledged.insert(next);
  ASSERT_GT(acknowledged.size(), 20u);

  if (!online) {
    sub = std::make_unique<mqtt_client>("durable-sub", 4, false);
    ASSERT_EQ(sub->connect(port), 0);
  }
  auto last = *acknowledged.rbegin();
  ASSERT_TRUE(wait_until(
    [&] {
      auto got = numbers(sub->messages());
      return std::find(got.begin(), got.end(), last) != got.end();
    },
    20s))
    << sub->messages().size() << " messages, last acknowledged " << last
    << "\n"
    << hub.server().proc().output();
  std::this_thread::sleep_for(500ms); // anything else still coming
  auto got = numbers(sub->messages());
  std::set<int> received{got.begin(), got.end()};
  for (auto n : acknowledged)
    EXPECT_TRUE(received.count(n)) << "acknowledged " << n << " never arrived";
  // In publishing order: each message's first arrival comes after the
  // first arrival of every message published before it.
  std::vector<int> firsts;
  std::set<int> seen;
  for (auto n : got)
    if (seen.insert(n).second)
      firsts.push_back(n);
  EXPECT_TRUE(std::is_sorted(firsts.begin(), firsts.end()));
  if (qos == 2) {
    EXPECT_EQ(got.size(), received.size()) << "a QoS 2 message came twice";
  }
}

INSTANTIATE_TEST_SUITE_P(
  streams, hub_persistence,
  testing::Combine(testing::Values(1, 2), testing::Bool()),
  [](const auto& info) {
    return "qos" + std::to_string(std::get<0>(info.param))
           + (std::get<1>(info.param) ? "_subscriber_online"
                                      : "_subscriber_offline");
  });

TEST(hub_persistence_state, subscriptions_retained_and_expiry_survive_a_kill) {
  temp_dir data;
  auto port = free_port();
  durable_hub hub{data, port};
  ASSERT_TRUE(hub.start()) << hub.server().proc().output();
  {
    mqtt_client keeps{"keeps", 4, false}; // 3.1.1: never expires
    ASSERT_EQ(keeps.connect(port), 0);
    ASSERT_EQ(keeps.subscribe("keep/#", 1), 1);
    keeps.disconnect();
  }
  // An MQTT 5 session that expires 1 s after it went offline.
  {
    mqtt_client brief{"brief", 5, false};
    brief.set_session_expiry(1);
    ASSERT_EQ(brief.connect(port), 0);
    ASSERT_EQ(brief.subscribe("brief/#", 1), 1);
    brief.disconnect();
  }
  mqtt_client pub{"", 5};
  ASSERT_EQ(pub.connect(port), 0);
  ASSERT_TRUE(pub.publish("keep/retained", "kept", 1, true));
  ASSERT_TRUE(pub.publish("keep/queued", "waiting", 1));
  ASSERT_TRUE(pub.publish("brief/queued", "gone", 1));
  pub.disconnect();
  hub.kill9();
  // What the store holds, read without a broker.
  auto held = run_command(hubflowctl_binary() + " store " + data.path()
                          + "/store --json");
  EXPECT_EQ(held.exit_code, 0) << held.output;
  EXPECT_NE(held.output.find(R"("queues":{"brief":1,"keeps":2})"),
            std::string::npos)
    << held.output;
  EXPECT_NE(held.output.find(R"("retained":1,"sessions":2)"),
            std::string::npos)
    << held.output;
  std::this_thread::sleep_for(1500ms); // brief's expiry passes while down
  ASSERT_TRUE(hub.start()) << hub.server().proc().output();
  EXPECT_NE(hub.server().proc().output().find("store: restored 1 sessions (1 "
                                              "expired while stopped)"),
            std::string::npos)
    << hub.server().proc().output();

  mqtt_client keeps{"keeps", 4, false};
  ASSERT_EQ(keeps.connect(port), 0); // session present, subscription kept
  ASSERT_TRUE(keeps.wait_messages(2)) << hub.server().proc().output();
  auto got = keeps.messages();
  EXPECT_EQ(got[0].payload, "kept"); // the queue holds both, in order
  EXPECT_EQ(got[1].payload, "waiting");
  mqtt_client late{"late", 5};
  ASSERT_EQ(late.connect(port), 0);
  ASSERT_EQ(late.subscribe("keep/#", 1), 1);
  ASSERT_TRUE(late.wait_messages(1));
  EXPECT_EQ(late.messages()[0].payload, "kept");
  EXPECT_TRUE(late.messages()[0].retain);
  mqtt_client brief{"brief", 5, false};
  ASSERT_EQ(brief.connect(port), 0);
  EXPECT_FALSE(brief.wait_messages(1, 500ms)); // its session was gone
}

TEST(hub_persistence_state, a_damaged_store_is_refused_by_name) {
  temp_dir data;
  auto port = free_port();
  durable_hub hub{data, port};
  ASSERT_TRUE(hub.start()) << hub.server().proc().output();
  hub.server().proc().stop(15);
  auto file = data.path() + "/store/hubflow.db";
  {
    // Garbage over the database header and its first pages.
    std::fstream f{file, std::ios::in | std::ios::out | std::ios::binary};
    std::string junk(8192, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  hubflow_server refused{"hub:\n  listen: [tcp://127.0.0.1:"
                           + std::to_string(port) + "]\npersistence:\n  path: "
                           + data.path() + "/store\n"};
  auto status = refused.proc().wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << refused.proc().output();
  EXPECT_EQ(*status, 3) << refused.proc().output();
  EXPECT_NE(refused.proc().output().find(file), std::string::npos)
    << refused.proc().output();
  EXPECT_NE(refused.proc().output().find("--store-recover"), std::string::npos);

  ASSERT_TRUE(hub.start({"--store-recover"})) << hub.server().proc().output();
  auto out = hub.server().proc().output();
  EXPECT_NE(out.find("aside to " + file + ".corrupt-"), std::string::npos)
    << out;
  mqtt_client c{"", 5};
  EXPECT_EQ(c.connect(port), 0);
}
