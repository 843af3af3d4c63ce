// A subscriber that falls behind, seen from both ends with raw MQTT 5
// clients: with `message.queue_full: backpressure` (the default) the hub
// holds the publisher's PUBACKs once the subscriber's queue is full and
// loses nothing; with `drop_new` it acknowledges everything and drops
// what does not fit, counted.
#include "hub_test_env.hpp"
#include "hub/connection.hpp"

#include <thread>

using namespace hubflow;
using namespace hubflow::test;
using namespace hubflow::mqtt;

namespace {

constexpr std::size_t queued = 50;   // message.queued
constexpr std::size_t inflight = 20; // message.inflight
constexpr int burst = 500;

hub_config small_queue_config(queue_full_policy policy) {
  auto cfg = test_hub_config();
  cfg.max_queued_messages = queued;
  cfg.max_inflight = inflight;
  cfg.queue_full = policy;
  return cfg;
}

/// A connected MQTT 5 client.
std::unique_ptr<raw_client> connect(std::uint16_t port, const std::string& id) {
  auto c = std::make_unique<raw_client>(port);
  auto ack = c->mqtt_connect(id, v5);
  EXPECT_TRUE(ack && ack->reason == 0);
  return c;
}

void subscribe_qos1(raw_client& c, const std::string& filter) {
  subscribe_packet s;
  s.packet_id = 1;
  subscription_options opts;
  opts.qos = 1;
  s.filters = {{filter, opts}};
  ASSERT_TRUE(c.send(s, v5));
  auto p = c.read(v5);
  ASSERT_TRUE(p && std::holds_alternative<suback_packet>(*p));
}

/// Sends `count` QoS 1 publishes numbered 0.. without waiting for acks.
void publish_burst(raw_client& c, const std::string& topic,
                   int count = burst, std::uint8_t version = v5) {
  std::string bytes;
  for (int i = 0; i < count; ++i) {
    publish_packet p;
    p.msg.topic = topic;
    p.msg.body = payload{std::to_string(i)};
    p.msg.qos = 1;
    p.packet_id = static_cast<std::uint16_t>(i + 1);
    byte_buffer buf;
    encode(p, version, buf);
    bytes.append(buf.data(), buf.size());
  }
  ASSERT_TRUE(c.send(bytes));
}

/// The PUBACKs that arrive within `window` (it stops at `all`).
int pubacks_within(raw_client& c, std::chrono::milliseconds window,
                   int all = burst) {
  int n = 0;
  auto deadline = std::chrono::steady_clock::now() + window;
  while (n < all) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return n;
    auto p = c.read(v5, left);
    if (!p)
      return n;
    if (auto a = std::get_if<ack_packet>(&*p);
        a && a->type == packet_type::puback)
      ++n;
  }
  return n;
}

/// Reads publishes, acknowledging each, until `count` arrived or nothing
/// came for 5 s; returns their payloads in arrival order.
std::vector<std::string> receive_acking(raw_client& c, std::size_t count) {
  std::vector<std::string> got;
  while (got.size() < count) {
    auto p = c.read_publish(v5);
    if (!p)
      break;
    got.emplace_back(p->msg.body.view());
    EXPECT_TRUE(c.send(ack_packet{packet_type::puback, p->packet_id, 0, {}},
                       v5));
  }
  return got;
}

/// A hub with a small queue, a subscriber that reads nothing until the
/// test says so, and (unless `publisher` is empty) an MQTT 5 publisher
/// that sent a burst to it without waiting.
class hub_backpressure : public ::testing::Test {
protected:
  void start(queue_full_policy policy, const std::string& publisher = "writer") {
    env = std::make_unique<hub_env>(small_queue_config(policy));
    ASSERT_TRUE(env->hub) << env->error;
    sub = connect(env->port, "slow-reader");
    ASSERT_NO_FATAL_FAILURE(subscribe_qos1(*sub, "bp/t"));
    if (publisher.empty())
      return;
    pub = connect(env->port, publisher);
    ASSERT_NO_FATAL_FAILURE(publish_burst(*pub, "bp/t"));
  }

  std::unique_ptr<hub_env> env;
  std::unique_ptr<raw_client> sub;
  std::unique_ptr<raw_client> pub;
};

} // namespace

TEST_F(hub_backpressure, a_full_queue_holds_the_publishers_acks_and_loses_nothing) {
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::backpressure));

  // The subscriber acknowledges nothing yet: what fits in its window and
  // its queue is acknowledged, the rest waits.
  auto early = pubacks_within(*pub, 1500ms);
  EXPECT_EQ(early, static_cast<int>(inflight + queued));
  EXPECT_GT(env->counter("held_for_room"), 0);

  // Once it reads and acknowledges, everything arrives, in order, and the
  // publisher gets every ack.
  auto got = receive_acking(*sub, burst);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(burst));
  for (int i = 0; i < burst; ++i)
    ASSERT_EQ(got[i], std::to_string(i)) << "out of order at " << i;
  EXPECT_EQ(early + pubacks_within(*pub, 3s, burst - early), burst);
  EXPECT_EQ(env->counter("dropped_queue_full"), 0);
}

TEST_F(hub_backpressure, a_subscriber_going_offline_releases_the_publisher) {
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::backpressure));
  auto early = pubacks_within(*pub, 1500ms);
  EXPECT_LT(early, burst);
  // Its session ends with the connection: nothing waits for it any more.
  sub.reset();
  EXPECT_EQ(early + pubacks_within(*pub, 3s, burst - early), burst);
}

TEST_F(hub_backpressure, a_311_client_that_never_waits_is_no_longer_read) {
  // MQTT 3.1.1 has no Receive Maximum: a client may send QoS 1 publishes
  // without waiting for acks. Past 1024 unanswered ones the hub stops
  // reading it (TCP holds the rest back) and reads on as acks go out.
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::backpressure, ""));
  raw_client old{env->port};
  ASSERT_TRUE(old.mqtt_connect("old-writer", v311));
  constexpr int flood = 4000;
  ASSERT_NO_FATAL_FAILURE(publish_burst(old, "bp/t", flood, v311));
  std::this_thread::sleep_for(1s);
  auto read_in = env->counter("messages_in");
  EXPECT_GT(read_in, 1024);
  // 1024 unanswered plus what its last read (4 KiB) carried.
  EXPECT_LT(read_in, 1024 + static_cast<int>(inflight + queued) + 700);
  auto got = receive_acking(*sub, flood);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(flood));
  EXPECT_EQ(got.back(), std::to_string(flood - 1));
  EXPECT_EQ(env->counter("dropped_queue_full"), 0);
}

TEST_F(hub_backpressure, an_mqtt5_client_beyond_receive_maximum_reads_why) {
  // Its acks held, a client that ignores the Receive Maximum (1024) sends
  // more: DISCONNECT 0x93, then a half-close that drains what it still
  // sends, so the DISCONNECT is read instead of lost in a reset.
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::backpressure, ""));
  raw_client greedy{env->port};
  ASSERT_TRUE(greedy.mqtt_connect("greedy", v5));
  ASSERT_NO_FATAL_FAILURE(publish_burst(greedy, "bp/t", 3000));
  std::optional<disconnect_packet> bye;
  for (;;) {
    auto p = greedy.read(v5, 5s);
    if (!p)
      break;
    if (auto d = std::get_if<disconnect_packet>(&*p)) {
      bye = *d;
      break;
    }
  }
  ASSERT_TRUE(bye) << "no DISCONNECT before the connection ended";
  EXPECT_EQ(bye->reason, rc::receive_maximum_exceeded);
  // What it sends on is read and dropped (a closed socket would answer
  // with a reset: EPIPE here) until it closes, or the drain ends.
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(greedy.send(std::string(64 * 1024, '\0')));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(greedy.send(std::string(64 * 1024, '\0')));
  EXPECT_TRUE(greedy.wait_closed(hub::drain_timeout + 2s));
}

TEST_F(hub_backpressure, drop_new_acknowledges_everything_and_counts_the_loss) {
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::drop_new));
  EXPECT_EQ(pubacks_within(*pub, 3s), burst);
  auto got = receive_acking(*sub, inflight + queued);
  EXPECT_EQ(got.size(), inflight + queued);
  EXPECT_EQ(env->counter("dropped_queue_full"),
            static_cast<std::int64_t>(burst - inflight - queued));
  EXPECT_EQ(env->counter("held_for_room"), 0);
}

TEST_F(hub_backpressure, drop_oldest_keeps_the_newest) {
  ASSERT_NO_FATAL_FAILURE(start(queue_full_policy::drop_oldest));
  EXPECT_EQ(pubacks_within(*pub, 3s), burst);
  auto got = receive_acking(*sub, inflight + queued);
  ASSERT_EQ(got.size(), inflight + queued);
  // The window's first messages were sent already; the queue kept the last.
  EXPECT_EQ(got[inflight - 1], std::to_string(inflight - 1));
  EXPECT_EQ(got[inflight], std::to_string(burst - queued));
  EXPECT_EQ(got.back(), std::to_string(burst - 1));
}
