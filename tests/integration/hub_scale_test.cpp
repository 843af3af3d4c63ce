// Several thousand concurrent MQTT connections on one embedded hub: all get
// their CONNACK and SUBACK, and a publish fans out to every one of them.
#include "hub_test_env.hpp"

#include <sys/resource.h>

using namespace hubflow;
using namespace hubflow::test;
using namespace hubflow::mqtt;

namespace {

/// Client and server side of every connection live in this process.
constexpr std::size_t connection_count = 3000;

bool raise_fd_limit(rlim_t wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0)
    return false;
  if (lim.rlim_cur >= wanted)
    return true;
  lim.rlim_cur = std::min(wanted, lim.rlim_max);
  return ::setrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur >= wanted;
}

} // namespace

TEST(hub_scale, thousands_of_concurrent_connections) {
  if (!raise_fd_limit(2 * connection_count + 256))
    GTEST_SKIP() << "cannot raise RLIMIT_NOFILE to "
                 << 2 * connection_count + 256;
  hub_env env;
  ASSERT_TRUE(env.hub) << env.error;
  std::vector<std::unique_ptr<raw_client>> clients;
  clients.reserve(connection_count);
  // Send every CONNECT + SUBSCRIBE first, read the answers afterwards: the
  // hub has to juggle all connections at once.
  for (std::size_t i = 0; i < connection_count; ++i) {
    auto c = std::make_unique<raw_client>(env.port);
    ASSERT_TRUE(c->ok()) << "connection " << i;
    auto version = i % 2 == 0 ? v311 : v5;
    connect_packet cp;
    cp.version = version;
    cp.client_id = "scale-" + std::to_string(i);
    ASSERT_TRUE(c->send(cp, version));
    subscribe_packet s;
    s.packet_id = 1;
    s.filters = {{"fan/out", {0}}};
    ASSERT_TRUE(c->send(s, version));
    clients.push_back(std::move(c));
  }
  for (std::size_t i = 0; i < connection_count; ++i) {
    auto version = i % 2 == 0 ? v311 : v5;
    auto ack = clients[i]->read(version, 20s);
    ASSERT_TRUE(ack && std::holds_alternative<connack_packet>(*ack)) << i;
    auto sub = clients[i]->read(version, 20s);
    ASSERT_TRUE(sub && std::holds_alternative<suback_packet>(*sub)) << i;
  }
  EXPECT_EQ(env.counter("connections"),
            static_cast<std::int64_t>(connection_count));
  // A raw client: libmosquitto's select() loop cannot take descriptors
  // above FD_SETSIZE, and this process holds thousands.
  raw_client pub{env.port};
  ASSERT_TRUE(pub.mqtt_connect("scale-pub", v311));
  publish_packet p;
  p.msg.topic = "fan/out";
  p.msg.body = payload{"to-all"};
  p.msg.qos = 1;
  p.packet_id = 1;
  ASSERT_TRUE(pub.send(p, v311));
  auto puback = pub.read(v311, 20s);
  ASSERT_TRUE(puback && std::holds_alternative<ack_packet>(*puback));
  for (std::size_t i = 0; i < connection_count; ++i) {
    auto version = i % 2 == 0 ? v311 : v5;
    auto got = clients[i]->read_publish(version, 20s);
    ASSERT_TRUE(got) << "connection " << i;
    EXPECT_EQ(got->msg.body.view(), "to-all");
  }
  clients.clear();
  EXPECT_TRUE(wait_until([&] { return env.counter("connections") == 1; }, 20s));
}
