// The embedded hub inside the real hubflow binary: --listen on the command
// line, mosquitto clients against it, its counters in `hubflowctl stats`.
#include "hub_test_env.hpp"

using namespace hubflow;
using namespace hubflow::test;

TEST(hub_binary, listen_option_serves_mqtt_and_reports_counters) {
  auto port = free_port();
  hubflow_server server{"hub:\n  listen: [tcp://127.0.0.1:1]\n"
                        "  anonymous: loopback\n",
                        {"--listen", "127.0.0.1:" + std::to_string(port)}};
  ASSERT_TRUE(server.wait_ready()) << server.proc().output();
  ASSERT_TRUE(wait_for_port(port)) << server.proc().output();
  mosquitto_sub sub{port, "-V mqttv5 -q 1 -t 'bin/#' -C 1"};
  // mosquitto_sub subscribes in its own time: publish until it has one.
  EXPECT_TRUE(wait_until([&] {
    mosquitto_pub(port, "-V mqttv311 -q 1 -t bin/x -m hello");
    return sub.wait_for("bin/x hello", 500ms);
  })) << sub.output();
  EXPECT_TRUE(wait_until([&] {
    auto json = server.stats_json();
    return json.find("\"name\":\"embedded\"") != std::string::npos
           && json.find("\"connections_total\":0") == std::string::npos;
  })) << server.stats_json();
}
