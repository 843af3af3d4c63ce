// WebSocket listeners end to end: Eclipse Paho (python3-paho-mqtt) over
// ws:// and wss:// with MQTT 3.1.1 and 5, next to a plain listener; and a
// raw client for RFC 6455 itself: MQTT packets split across frames and
// sharing one, fragments with a ping between them, the close handshake,
// and every refusal (another path, no mqtt subprotocol, unmasked, text
// and oversized frames), counted per listener, other clients unaffected.
#include <gtest/gtest.h>

#include "fixtures/test_pki.hpp"
#include "fixtures/ws_test_client.hpp"
#include "hub_test_env.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

constexpr const char* plain_url = "tcp://127.0.0.1:0";
constexpr const char* ws_url = "ws://127.0.0.1:0";
constexpr const char* wss_url = "wss://127.0.0.1:0/ws";

/// Paho: subscribes to w/#, publishes QoS 1 to w/<name>, waits for its
/// own message; prints "got <topic> <payload>", exits 0 when it came.
constexpr const char* paho_script = R"(
import sys, threading, paho.mqtt.client as mqtt
port, path, version, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
name = "paho-" + version + ("-wss" if ca else "-ws")
c = mqtt.Client(client_id=name, transport="websockets",
                protocol=mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311)
c.ws_set_options(path=path)
if ca:
    c.tls_set(ca_certs=ca)
got, subscribed = threading.Event(), threading.Event()
def on_message(client, userdata, m):
    print("got", m.topic, m.payload.decode(), flush=True)
    got.set()
c.on_message = on_message
c.on_subscribe = lambda *args: subscribed.set()
c.connect("127.0.0.1", port)
c.loop_start()
c.subscribe("w/#", qos=1)
ok = subscribed.wait(5)
ok = ok and c.publish("w/" + name, "hello", qos=1).wait_for_publish(5) is not False
ok = ok and got.wait(5)
c.disconnect()
c.loop_stop()
sys.exit(0 if ok else 1)
)";

class hub_websocket : public ::testing::Test {
protected:
  hub_config config() {
    auto cfg = test_hub_config();
    cfg.listen = {plain_url, ws_url, wss_url};
    cfg.max_message_size = 64 * 1024;
    tls_settings tls;
    tls.cert = pki.server().cert;
    tls.key = pki.server().key;
    cfg.certificate = tls;
    return cfg;
  }

  void SetUp() override {
    ASSERT_TRUE(env.hub) << env.error;
    auto ports = env.ports();
    ASSERT_EQ(ports.size(), 3u);
    plain_port = ports[0];
    ws_port = ports[1];
    wss_port = ports[2];
    script = dir.write("paho_ws.py", paho_script);
  }

  command_result paho(std::uint16_t port, const std::string& path,
                      const std::string& version, const std::string& ca) {
    return run_command("/usr/bin/python3 " + script + " "
                       + std::to_string(port) + " " + path + " " + version
                       + " '" + ca + "'");
  }

  std::int64_t ws_counter(const std::string& name) {
    return env.listener_counter(ws_url, name);
  }

  /// An upgraded raw client, MQTT-connected as `id`.
  std::unique_ptr<ws_test_client> connected_client(const std::string& id) {
    auto c = std::make_unique<ws_test_client>(ws_port);
    auto head = c->upgrade();
    EXPECT_NE(head.find("101 Switching Protocols"), std::string::npos)
      << head;
    mqtt::connect_packet connect;
    connect.version = mqtt::v311;
    connect.client_id = id;
    EXPECT_TRUE(c->send_frame(0x2, encoded(connect)));
    auto ack = c->read_frame();
    EXPECT_TRUE(ack && ack->op == 0x2 && ack->payload[0] == 0x20);
    return c;
  }

  static std::string encoded(const mqtt::packet& p) {
    mqtt::byte_buffer buf;
    mqtt::encode(p, mqtt::v311, buf);
    return std::string{buf.data(), buf.size()};
  }

  test_pki pki;
  temp_dir dir;
  hub_env env{config()};
  std::string script;
  std::uint16_t plain_port = 0;
  std::uint16_t ws_port = 0;
  std::uint16_t wss_port = 0;
};

} // namespace

TEST_F(hub_websocket, paho_over_ws_and_wss_with_mqtt_3_1_1_and_5) {
  mosquitto_sub plain{plain_port, "-t 'w/#' -C 4"};
  ASSERT_TRUE(wait_until([&] { return env.counter("subscriptions") == 1; }));
  for (auto version : {"4", "5"}) {
    auto ws = paho(ws_port, "/mqtt", version, "");
    EXPECT_EQ(ws.exit_code, 0) << ws.output;
    EXPECT_NE(ws.output.find("got w/paho-" + std::string{version} + "-ws hello"),
              std::string::npos)
      << ws.output;
    auto wss = paho(wss_port, "/ws", version, pki.ca());
    EXPECT_EQ(wss.exit_code, 0) << wss.output;
  }
  EXPECT_TRUE(plain.wait_for("w/paho-5-wss hello")) << plain.output();
  EXPECT_TRUE(plain.proc().wait_exit(5s).has_value()) << plain.output();
  EXPECT_EQ(ws_counter("connections_total"), 2);
  EXPECT_EQ(ws_counter("websocket_errors"), 0);
}

TEST_F(hub_websocket, packets_split_across_frames_and_sharing_one) {
  auto c = std::make_unique<ws_test_client>(ws_port);
  auto head = c->upgrade("/mqtt", "mqttv3.1, mqtt");
  EXPECT_NE(head.find("Sec-WebSocket-Protocol: mqtt\r\n"), std::string::npos)
    << head;
  EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            std::string::npos)
    << head;
  mqtt::connect_packet connect;
  connect.version = mqtt::v311;
  connect.client_id = "split";
  auto bytes = encoded(connect);
  // CONNECT in three fragments, a ping between two of them.
  ASSERT_TRUE(c->send_frame(0x2, bytes.substr(0, 3), false));
  ASSERT_TRUE(c->send_frame(0x9, "are you there"));
  ASSERT_TRUE(c->send_frame(0x0, bytes.substr(3, 4), false));
  ASSERT_TRUE(c->send_frame(0x0, bytes.substr(7)));
  auto pong = c->read_frame();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->op, 0xA);
  EXPECT_EQ(pong->payload, "are you there");
  auto ack = c->read_frame();
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->payload, std::string("\x20\x02\x00\x00", 4));
  // SUBSCRIBE and PINGREQ in one frame.
  mqtt::subscribe_packet sub;
  sub.packet_id = 7;
  sub.filters.push_back({"s/#", {}});
  ASSERT_TRUE(c->send_frame(
    0x2, encoded(sub) + encoded(mqtt::ping_packet{mqtt::packet_type::pingreq})));
  std::string answers;
  while (answers.size() < 7) {
    auto f = c->read_frame();
    ASSERT_TRUE(f);
    answers += f->payload;
  }
  EXPECT_EQ(answers, std::string("\x90\x03\x00\x07\x00\xd0\x00", 7));
  mosquitto_pub(plain_port, "-t s/x -m across");
  auto delivered = c->read_frame();
  ASSERT_TRUE(delivered);
  EXPECT_NE(delivered->payload.find("s/xacross"), std::string::npos);
  // The close handshake: answered with the same status, then closed.
  ASSERT_TRUE(c->send_frame(0x8, std::string("\x03\xe8", 2)));
  auto close = c->read_frame();
  ASSERT_TRUE(close);
  EXPECT_EQ(close->op, 0x8);
  EXPECT_EQ(close->payload, std::string("\x03\xe8", 2));
  EXPECT_TRUE(c->wait_closed(deadline_in(5s)));
  EXPECT_EQ(ws_counter("websocket_errors"), 0);
}

TEST_F(hub_websocket, upgrades_it_must_not_accept_are_refused) {
  struct bad {
    std::string path;
    std::string protocols;
    const char* status;
  };
  for (auto& b : {bad{"/other", "mqtt", "404"}, bad{"/mqtt", "", "400"},
                  bad{"/mqtt", "chat, superchat", "400"},
                  bad{"/mqtt/", "mqtt", "404"}}) {
    ws_test_client c{ws_port};
    auto head = c.upgrade(b.path, b.protocols);
    EXPECT_EQ(head.rfind(std::string{"HTTP/1.1 "} + b.status, 0), 0u)
      << b.path << " " << b.protocols << ": " << head;
    EXPECT_TRUE(c.wait_closed(deadline_in(5s)));
  }
  EXPECT_EQ(ws_counter("handshake_failures"), 4);
  // Plain MQTT on the WebSocket port is not an upgrade either.
  raw_client mqtt_on_ws{ws_port};
  mqtt::connect_packet connect;
  connect.version = mqtt::v311;
  connect.client_id = "lost";
  ASSERT_TRUE(mqtt_on_ws.send(connect, mqtt::v311));
  EXPECT_TRUE(mqtt_on_ws.wait_closed());
  EXPECT_EQ(ws_counter("handshake_failures"), 5);
}

TEST_F(hub_websocket, frames_it_must_not_accept_close_the_connection) {
  auto listener = connected_client("listener");
  mqtt::subscribe_packet sub;
  sub.packet_id = 1;
  sub.filters.push_back({"ok", {}});
  ASSERT_TRUE(listener->send_frame(0x2, encoded(sub)));
  ASSERT_TRUE(listener->read_frame()); // SUBACK
  struct bad {
    std::string frame;
    std::string status;
  };
  for (auto& b : {
         bad{ws_client_frame(0x2, "\xc0\x00", true, false), "\x03\xea"},
         bad{ws_client_frame(0x1, "text"), "\x03\xeb"},
         bad{ws_client_frame(0x2, "x", true, true, 0x40), "\x03\xea"},
         bad{ws_client_frame(0x2, std::string(70 * 1024, 'x')), "\x03\xf1"},
       }) {
    auto c = connected_client("bad");
    ASSERT_TRUE(c->send_all(b.frame));
    auto close = c->read_frame();
    ASSERT_TRUE(close);
    EXPECT_EQ(close->op, 0x8);
    EXPECT_EQ(close->payload, b.status);
    EXPECT_TRUE(c->wait_closed(deadline_in(5s)));
  }
  EXPECT_EQ(ws_counter("websocket_errors"), 4);
  // The other client on the same listener is unaffected.
  mosquitto_pub(plain_port, "-t ok -m fine");
  auto delivered = listener->read_frame();
  ASSERT_TRUE(delivered);
  EXPECT_NE(delivered->payload.find("okfine"), std::string::npos);
}
