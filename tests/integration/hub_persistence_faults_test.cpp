// persistence under faults, through the real binary: kill -9 the moment a
// QoS 2 exchange moved on, a store whose disk fills up or that is read-only
// (a small tmpfs), and a burst of
// 5000 QoS 1 messages from one publisher to an online subscriber, with and
// without persistence, for MQTT 3.1.1 and 5.
#include "hub_test_env.hpp"

#include <mosquitto.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

using namespace hubflow;
using namespace hubflow::test;

namespace {

/// The config of a hub on `port` with its store in `store_dir`.
std::string durable_config(std::uint16_t port, const std::string& store_dir) {
  return "hub:\n  listen: [tcp://127.0.0.1:" + std::to_string(port)
         + "]\npersistence:\n  path: " + store_dir + "\n";
}

/// A tmpfs of `size` mounted on `dir` for the test's life (needs root or
/// CAP_SYS_ADMIN: `reason()` says why not when it could not be mounted).
class tmpfs_mount {
public:
  tmpfs_mount(std::string dir, const std::string& size) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    auto r = run_command("mount -t tmpfs -o size=" + size + " tmpfs " + dir_);
    if (r.exit_code == 0)
      mounted_ = true;
    else
      reason_ = "cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): "
                + r.output;
  }
  ~tmpfs_mount() {
    if (mounted_)
      run_command("umount -l " + dir_);
  }
  bool mounted() const {
    return mounted_;
  }
  const std::string& reason() const {
    return reason_;
  }
  /// Remounts it read-only (true) or writable again (false).
  bool set_read_only(bool read_only) {
    return run_command("mount -o remount," + std::string{read_only ? "ro" : "rw"}
                       + " " + dir_)
             .exit_code
           == 0;
  }
  /// Fills it up to all but `leave` bytes with one file.
  void fill_leaving(std::uintmax_t leave) {
    struct statvfs fs {};
    ASSERT_EQ(statvfs(dir_.c_str(), &fs), 0);
    auto free = static_cast<std::uintmax_t>(fs.f_bavail) * fs.f_frsize;
    std::ofstream filler{filler_path(), std::ios::binary};
    std::string block(64 * 1024, 'f');
    for (std::uintmax_t n = 0; n + leave < free; n += block.size())
      filler.write(block.data(), static_cast<std::streamsize>(block.size()));
  }
  void remove_filler() {
    std::filesystem::remove(filler_path());
  }

private:
  std::string filler_path() const {
    return dir_ + "/filler";
  }
  std::string dir_;
  bool mounted_ = false;
  std::string reason_;
};

/// MQTT 5's Quota exceeded: the store could not take the message.
constexpr int quota_exceeded = 0x97;

} // namespace

TEST(hub_persistence_faults, a_full_disk_refuses_what_it_cannot_store) {
  temp_dir data;
  tmpfs_mount disk{data.path() + "/store", "8m"};
  if (!disk.mounted())
    GTEST_SKIP() << disk.reason();
  auto port = free_port();
  hubflow_server hub{durable_config(port, data.path() + "/store")};
  ASSERT_TRUE(hub.wait_ready() && wait_for_port(port)) << hub.proc().output();
  {
    mqtt_client offline{"offline", 4, false}; // its queue is what is stored
    ASSERT_EQ(offline.connect(port), 0);
    ASSERT_EQ(offline.subscribe("fill/#", 1), 1);
    offline.disconnect();
  }
  mqtt_client live{"live", 5}; // clean: nothing of it is stored
  ASSERT_EQ(live.connect(port), 0);
  ASSERT_EQ(live.subscribe("fill/#", 0), 0);
  disk.fill_leaving(256 * 1024);

  mqtt_client pub5{"pub5", 5};
  ASSERT_EQ(pub5.connect(port), 0);
  const std::string payload(4096, 'p');
  int accepted = 0;
  int reason = 0;
  for (int i = 0; i < 500 && reason == 0; ++i) {
    reason = pub5.publish_reason("fill/q1", payload, 1);
    accepted += reason == 0;
  }
  ASSERT_EQ(reason, quota_exceeded)
    << accepted << " accepted\n" << hub.proc().output();
  EXPECT_GT(accepted, 0);
  // Refused while the disk stays full, for MQTT 5 with the reason, for
  // 3.1.1 by not acknowledging (the client sends again later).
  EXPECT_EQ(pub5.publish_reason("fill/q1", payload, 1), quota_exceeded);
  mqtt_client pub4{"pub4", 4};
  ASSERT_EQ(pub4.connect(port), 0);
  EXPECT_FALSE(pub4.publish("fill/q1", payload, 1, false, 1s));
  // QoS 0 is never stored, so it keeps flowing.
  live.clear();
  ASSERT_TRUE(pub5.publish("fill/q0", "still here", 0));
  ASSERT_TRUE(live.wait_messages(1));
  EXPECT_EQ(live.messages().back().payload, "still here");
  EXPECT_GE(hub_counter(hub, "refused_unstored"), 3);

  // Room again: the refusal lifts with the next commit that succeeds.
  disk.remove_filler();
  EXPECT_TRUE(wait_until(
    [&] { return pub5.publish_reason("fill/q1", "again", 1) == 0; }, 10s))
    << hub.proc().output();
  // Whatever was acknowledged is in the queue, after a kill too.
  hub.proc().stop(9);
  hubflow_server again{durable_config(port, data.path() + "/store")};
  ASSERT_TRUE(again.wait_ready() && wait_for_port(port))
    << again.proc().output();
  mqtt_client offline{"offline", 4, false};
  ASSERT_EQ(offline.connect(port), 0);
  EXPECT_TRUE(offline.wait_messages(static_cast<std::size_t>(accepted) + 1,
                                    10s))
    << offline.messages().size() << " of " << accepted + 1;
}

TEST(hub_persistence_faults, a_read_only_store_is_refused_by_name) {
  // A mount cannot become read-only while the broker holds its store open
  // for writing (the kernel refuses the remount), so a store going bad at
  // run time is the full disk above; this is the store that is read-only
  // when the broker starts.
  temp_dir data;
  tmpfs_mount disk{data.path() + "/store", "16m"};
  if (!disk.mounted())
    GTEST_SKIP() << disk.reason();
  auto port = free_port();
  auto config = durable_config(port, data.path() + "/store");
  {
    hubflow_server hub{config};
    ASSERT_TRUE(hub.wait_ready() && wait_for_port(port))
      << hub.proc().output();
    mqtt_client offline{"offline", 4, false};
    ASSERT_EQ(offline.connect(port), 0);
    ASSERT_EQ(offline.subscribe("ro/#", 1), 1);
    offline.disconnect();
    mqtt_client pub{"pub", 5};
    ASSERT_EQ(pub.connect(port), 0);
    ASSERT_EQ(pub.publish_reason("ro/a", "stored", 1), 0);
    hub.proc().stop(15);
  }
  ASSERT_TRUE(disk.set_read_only(true));
  {
    hubflow_server refused{config};
    auto status = refused.proc().wait_exit(10s);
    ASSERT_TRUE(status.has_value()) << refused.proc().output();
    EXPECT_EQ(*status, 3) << refused.proc().output();
    EXPECT_NE(refused.proc().output().find(data.path() + "/store/hubflow.db"),
              std::string::npos)
      << refused.proc().output();
  }
  // Writable again, nothing was lost.
  ASSERT_TRUE(disk.set_read_only(false));
  hubflow_server hub{config};
  ASSERT_TRUE(hub.wait_ready() && wait_for_port(port)) << hub.proc().output();
  mqtt_client offline{"offline", 4, false};
  ASSERT_EQ(offline.connect(port), 0);
  ASSERT_TRUE(offline.wait_messages(1));
  EXPECT_EQ(offline.messages()[0].payload, "stored");
}

namespace {

/// A raw MQTT 3.1.1 client (the test decides every packet) of a persistent
/// session.
std::unique_ptr<raw_client> raw_session(std::uint16_t port,
                                        const std::string& client_id,
                                        bool& session_present) {
  auto c = std::make_unique<raw_client>(port);
  auto ack = c->mqtt_connect(client_id, mqtt::v311, {}, false);
  if (!ack || ack->reason != 0)
    return nullptr;
  session_present = ack->session_present;
  return c;
}

/// The next packet is an ack of `type`: its packet id, or -1.
int read_ack(raw_client& c, mqtt::packet_type type) {
  auto p = c.read(mqtt::v311);
  if (!p || mqtt::type_of(*p) != type)
    return -1;
  return std::get<mqtt::ack_packet>(*p).packet_id;
}

void send_ack(raw_client& c, mqtt::packet_type type, std::uint16_t id) {
  mqtt::ack_packet a;
  a.type = type;
  a.packet_id = id;
  ASSERT_TRUE(c.send(a, mqtt::v311));
}

} // namespace

TEST(hub_persistence_faults, a_pubrel_leaves_only_once_the_release_is_stored) {
  // The subscriber's side of QoS 2: the hub sends PUBREL once the store
  // holds that the message was released. Killed the moment PUBREL
  // arrives, a restarted hub must go on with PUBREL, not send the message
  // again: the client has delivered it and forgotten the packet id, so a
  // resent PUBLISH would be a second delivery.
  temp_dir data;
  auto port = free_port();
  auto config = durable_config(port, data.path() + "/store");
  auto hub = std::make_unique<hubflow_server>(config);
  ASSERT_TRUE(hub->wait_ready() && wait_for_port(port)) << hub->proc().output();
  bool present = false;
  {
    auto sub = raw_session(port, "q2-sub", present);
    ASSERT_TRUE(sub);
    mqtt::subscribe_packet s;
    s.packet_id = 1;
    s.filters = {{"q2/#", {2}}};
    ASSERT_TRUE(sub->send(s, mqtt::v311));
    ASSERT_TRUE(sub->read(mqtt::v311));
  }
  for (int round = 0; round < 5; ++round) {
    mqtt_client pub{"", 4};
    ASSERT_EQ(pub.connect(port), 0);
    ASSERT_TRUE(pub.publish("q2/x", "round " + std::to_string(round), 2));
    auto sub = raw_session(port, "q2-sub", present);
    ASSERT_TRUE(sub);
    auto msg = sub->read_publish(mqtt::v311);
    ASSERT_TRUE(msg) << hub->proc().output();
    send_ack(*sub, mqtt::packet_type::pubrec, msg->packet_id);
    ASSERT_EQ(read_ack(*sub, mqtt::packet_type::pubrel), msg->packet_id);
    hub->proc().stop(9);
    hub = std::make_unique<hubflow_server>(config);
    ASSERT_TRUE(hub->wait_ready() && wait_for_port(port))
      << hub->proc().output();
    auto again = raw_session(port, "q2-sub", present);
    ASSERT_TRUE(again && present);
    EXPECT_EQ(read_ack(*again, mqtt::packet_type::pubrel), msg->packet_id)
      << "round " << round << ": the released message came back";
    send_ack(*again, mqtt::packet_type::pubcomp, msg->packet_id);
    EXPECT_FALSE(again->read_publish(mqtt::v311, 300ms));
  }
}

TEST(hub_persistence_faults, a_pubcomp_leaves_only_once_the_packet_id_is_forgotten) {
  // The publisher's side of QoS 2: PUBCOMP tells the client it may use the
  // packet id again, so it leaves once the store forgot the id. Killed
  // the moment PUBCOMP arrives, a restarted hub must take the client's
  // next message under that id as new, not as a resend of the old one.
  temp_dir data;
  auto port = free_port();
  auto config = durable_config(port, data.path() + "/store");
  auto hub = std::make_unique<hubflow_server>(config);
  ASSERT_TRUE(hub->wait_ready() && wait_for_port(port)) << hub->proc().output();
  mqtt_client watch{"watch", 4, false};
  ASSERT_EQ(watch.connect(port), 0);
  ASSERT_EQ(watch.subscribe("ids/#", 2), 2);
  bool present = false;
  for (int round = 0; round < 5; ++round) {
    auto pub = raw_session(port, "q2-pub", present);
    ASSERT_TRUE(pub);
    mqtt::publish_packet p;
    p.msg.topic = "ids/x";
    p.msg.qos = 2;
    p.packet_id = 7; // the same id every round
    p.msg.body = payload{"round " + std::to_string(round)};
    ASSERT_TRUE(pub->send(p, mqtt::v311));
    ASSERT_EQ(read_ack(*pub, mqtt::packet_type::pubrec), 7)
      << hub->proc().output();
    send_ack(*pub, mqtt::packet_type::pubrel, 7);
    ASSERT_EQ(read_ack(*pub, mqtt::packet_type::pubcomp), 7);
    hub->proc().stop(9);
    hub = std::make_unique<hubflow_server>(config);
    ASSERT_TRUE(hub->wait_ready() && wait_for_port(port))
      << hub->proc().output();
    ASSERT_TRUE(wait_until([&] { return watch.connected(); }, 5s));
    ASSERT_TRUE(watch.wait_messages(static_cast<std::size_t>(round) + 1, 10s))
      << "round " << round << ": the message under a reused id was lost";
  }
  auto got = watch.messages();
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i].payload, "round " + std::to_string(i));
}

namespace {

/// (MQTT version, with persistence)
using burst_case = std::tuple<int, bool>;
class hub_burst : public testing::TestWithParam<burst_case> {};

} // namespace

TEST_P(hub_burst, five_thousand_qos1_reach_an_online_subscriber) {
  // The issue's burst: one publisher sends 5000 QoS 1 messages as fast as
  // the hub lets it (no in-flight limit of its own; MQTT 5 keeps to the
  // hub's Receive Maximum) to an online subscriber. Back-pressure holds
  // acknowledgements instead of dropping, so every message arrives.
  auto [version, durable] = GetParam();
  temp_dir data;
  auto port = free_port();
  std::string config = durable ? durable_config(port, data.path() + "/store")
                               : "hub:\n  listen: [tcp://127.0.0.1:"
                                   + std::to_string(port) + "]\n";
  hubflow_server hub{config};
  ASSERT_TRUE(hub.wait_ready() && wait_for_port(port)) << hub.proc().output();
  mqtt_client sub{"burst-sub", version, false};
  if (version == 5)
    sub.set_session_expiry(3600);
  ASSERT_EQ(sub.connect(port), 0);
  ASSERT_EQ(sub.subscribe("burst/#", 1), 1);
  mqtt_client pub{"burst-pub", version};
  ASSERT_EQ(pub.connect(port), 0);
  mosquitto_max_inflight_messages_set(pub.handle(), 0);
  auto rss_before = rss_kib(hub.proc().pid());

  constexpr int burst = 5000;
  const std::string padding(200, '.');
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < burst; ++i)
    ASSERT_TRUE(pub.publish_async("burst/n", std::to_string(i) + padding));
  long rss_peak = rss_before;
  auto all_in = wait_until(
    [&] {
      rss_peak = std::max(rss_peak, rss_kib(hub.proc().pid()));
      return sub.messages().size() >= burst && pub.acknowledged() >= burst;
    },
    60s + sanitizer_slack());
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - start);
  std::set<int> distinct;
  for (auto& m : sub.messages())
    distinct.insert(std::stoi(m.payload));
  ASSERT_TRUE(all_in) << distinct.size() << " distinct received, "
                      << pub.acknowledged() << " acknowledged\n"
                      << hub.proc().output();
  EXPECT_EQ(distinct.size(), static_cast<std::size_t>(burst));
  // The hub reports on stats.interval: its first report may still come.
  EXPECT_TRUE(wait_until(
    [&] { return hub_counter(hub, "dropped_queue_full") >= 0; }, 5s));
  EXPECT_EQ(hub_counter(hub, "dropped_queue_full"), 0);
  std::cout << "burst: MQTT " << version
            << (durable ? " with persistence" : " in memory") << ": " << burst
            << " in " << took.count() << " ms, RSS " << rss_before << " -> "
            << rss_peak << " KiB at most\n";
  if (rss_unreliable_reason().empty()) {
    // 5000 messages of ~200 bytes are 1 MB; what the hub holds for them
    // (queues, windows, the store's batch) stays within a few times that.
    EXPECT_LT(rss_peak - rss_before, 32 * 1024);
  }
}

INSTANTIATE_TEST_SUITE_P(
  versions, hub_burst,
  testing::Combine(testing::Values(4, 5), testing::Bool()),
  [](const auto& info) {
    return std::string{std::get<0>(info.param) == 5 ? "mqtt5" : "mqtt311"}
           + (std::get<1>(info.param) ? "_persistent" : "_in_memory");
  });
