// Reloading the config without a restart (SIGHUP and `hubflowctl reload`),
// through the real binary: new principals in the password file get in,
// a principal taken away is disconnected, permissions taken away stop
// deliveries on existing subscriptions, connected clients stay connected;
// a config that does not load is refused with the running one kept; and
// what a reload cannot apply is named.
#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <thread>

#include "fixtures/fixtures.hpp"
#include "fixtures/redis_fixture.hpp"

using namespace hubflow::test;

namespace {

class hub_reload : public ::testing::Test {
protected:
  void SetUp() override {
    add_user("alice", "a-pass", true);
    add_user("pub", "p-pass");
    add_user("carol", "c-pass");
    write_acl("user alice\ntopic readwrite a/#\ntopic read b/#\n"
              "user pub\ntopic write b/#\n"
              "user carol\ntopic readwrite c/#\n");
    write_config("");
    broker = std::make_unique<hubflow_server>(
      "", std::vector<std::string>{"--config", config});
    ASSERT_TRUE(broker->wait_ready()) << broker->proc().output();
  }

  void add_user(const std::string& user, const std::string& password,
                bool first = false) {
    auto r = run_command("mosquitto_passwd -b " + std::string{first ? "-c " : ""}
                         + dir.path() + "/passwd " + user + " " + password);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void remove_user(const std::string& user) {
    auto r = run_command("mosquitto_passwd -D " + dir.path() + "/passwd "
                         + user);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void write_acl(const std::string& text) {
    dir.write("acl", text);
  }
  void write_config(const std::string& extra) {
    config = dir.write("hubflow.yaml",
                       "hub:\n"
                       "  listen: [tcp://127.0.0.1:" + std::to_string(port)
                         + "]\n"
                       "  password_file: passwd\n"
                       "  acl_file: acl\n" + extra);
  }

  std::unique_ptr<mqtt_client> login(const std::string& user,
                                     const std::string& password, int& rc) {
    auto c = std::make_unique<mqtt_client>(user + "-client");
    c->set_credentials(user, password);
    rc = c->connect(port);
    return c;
  }

  /// `hubflowctl reload` against the broker: its output and exit code.
  command_result reload() {
    return run_command(hubflowctl_binary() + " reload --stats-port "
                       + std::to_string(broker->stats_port()));
  }

  temp_dir dir;
  std::uint16_t port = free_port();
  std::string config;
  std::unique_ptr<hubflow_server> broker;
};

TEST_F(hub_reload, principals_and_permissions_change_while_clients_stay) {
  int rc = 0;
  auto alice = login("alice", "a-pass", rc);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(alice->subscribe("a/#", 1), 1);
  ASSERT_EQ(alice->subscribe("b/#", 1), 1);
  auto pub = login("pub", "p-pass", rc);
  ASSERT_EQ(rc, 0);
  auto carol = login("carol", "c-pass", rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(pub->publish("b/1", "before", 1));
  ASSERT_TRUE(alice->wait_messages(1));
  EXPECT_NE(login("bob", "b-pass", rc)->connected(), true);

  // bob joins, carol leaves, alice may no longer read b/#.
  add_user("bob", "b-pass");
  remove_user("carol");
  write_acl("user alice\ntopic readwrite a/#\n"
            "user pub\ntopic write b/#\n"
            "user bob\ntopic readwrite a/#\n");
  auto r = reload();
  EXPECT_EQ(r.exit_code, 0) << r.output << broker->proc().output();
  EXPECT_NE(r.output.find("reload done: applied"), std::string::npos)
    << r.output;

  auto bob = login("bob", "b-pass", rc);
  EXPECT_EQ(rc, 0) << broker->proc().output();
  EXPECT_TRUE(wait_until([&] { return !carol->connected(); }))
    << broker->proc().output();
  EXPECT_NE(broker->proc().output().find(
              "closing the connection of 'carol-client' from 127.0.0.1"),
            std::string::npos)
    << broker->proc().output();
  // alice never left: her subscriptions carry on under the new permits.
  EXPECT_TRUE(alice->connected());
  alice->clear();
  ASSERT_TRUE(bob->publish("a/2", "from bob", 1));
  EXPECT_TRUE(wait_until([&] { return !alice->messages_on("a/2").empty(); }));
  ASSERT_TRUE(pub->publish("b/2", "after", 1));
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(alice->messages_on("b/2").empty());
}

TEST_F(hub_reload, a_config_that_does_not_load_is_refused_and_the_old_one_stays) {
  int rc = 0;
  auto alice = login("alice", "a-pass", rc);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(alice->subscribe("a/#", 1), 1);
  write_acl("user alice\ntopic sometimes a/#\n");
  ::kill(broker->proc().pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    return broker->proc().output().find("reload refused (1 error): the "
                                        "running config stays")
           != std::string::npos;
  })) << broker->proc().output();
  EXPECT_NE(broker->proc().output().find("reload: " + dir.path() + "/acl:2:"),
            std::string::npos)
    << broker->proc().output();
  auto r = reload();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("reload refused: " + dir.path() + "/acl:2:"),
            std::string::npos)
    << r.output;
  // Still served as before.
  EXPECT_TRUE(alice->connected());
  ASSERT_TRUE(alice->publish("a/1", "still", 1));
  EXPECT_TRUE(wait_until([&] { return !alice->messages_on("a/1").empty(); }));
  EXPECT_EQ(login("carol", "c-pass", rc)->connected(), true);
}

TEST_F(hub_reload, rules_and_functions_change_while_messages_flow) {
  auto flows = [](const std::string& rule_to, const std::string& value) {
    bool first = value == "1";
    return "rules:\n"
           "  - name: tag\n"
           "    subscribe: {topic: a/in, qos: 1}\n"
           "    function: {name: tagger}\n"
           "    publish: {topic: " + rule_to + ", qos: 1}\n"
           + std::string{first ? "  - name: gone-soon\n"
                                 "    subscribe: {topic: a/old}\n"
                                 "    publish: {topic: a/old/out}\n"
                               : ""}
           + "functions:\n"
           "  - name: tagger\n"
           "    runtime: sql\n"
           "    handler: \"select *, " + value + " as v\"\n";
  };
  write_config(flows("a/out", "1"));
  ASSERT_EQ(reload().exit_code, 0);
  int rc = 0;
  auto alice = login("alice", "a-pass", rc);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(alice->subscribe("a/#", 1), 1);
  ASSERT_TRUE(wait_until([&] {
    alice->publish("a/in", R"({"n":-1})", 1);
    return !alice->messages_on("a/out").empty();
  })) << broker->proc().output();
  EXPECT_NE(alice->messages_on("a/out").front().payload.find("\"v\":1"),
            std::string::npos);

  // A publisher keeps going while the rule's destination and the
  // function's statement change and the other rule goes away.
  alice->clear();
  std::thread counted{[&] {
    for (int n = 0; n < 300; ++n)
      alice->publish("a/in", R"({"k":)" + std::to_string(n) + "}", 1);
  }};
  std::this_thread::sleep_for(50ms);
  write_config(flows("a/out2", "2"));
  auto r = reload();
  counted.join();
  EXPECT_EQ(r.exit_code, 0) << r.output << broker->proc().output();
  EXPECT_NE(r.output.find("1 functions, 2 rules"), std::string::npos)
    << r.output;
  // Every acknowledged message came out of one rule or the other: before
  // the reload on a/out with v 1, after it on a/out2 with v 2.
  auto key_of = [](const std::string& payload) {
    auto at = payload.find("\"k\":");
    return at == std::string::npos ? -1 : std::atoi(payload.c_str() + at + 4);
  };
  std::set<int> seen;
  EXPECT_TRUE(wait_until([&] {
    seen.clear();
    for (auto topic : {"a/out", "a/out2"})
      for (auto& m : alice->messages_on(topic))
        if (auto k = key_of(m.payload); k >= 0)
          seen.insert(k);
    return seen.size() == 300;
  })) << seen.size() << " of 300\n" << broker->proc().output();
  ASSERT_FALSE(alice->messages_on("a/out2").empty());
  for (auto& m : alice->messages_on("a/out2"))
    EXPECT_NE(m.payload.find("\"v\":2"), std::string::npos) << m.payload;
  EXPECT_TRUE(alice->connected());
  // The removed rule no longer forwards.
  alice->clear();
  ASSERT_TRUE(alice->publish("a/old", "x", 1));
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(alice->messages_on("a/old/out").empty());
}

TEST_F(hub_reload, a_changed_endpoint_takes_over_from_the_old_one) {
  redis_server first;
  redis_server second;
  auto with_redis = [](std::uint16_t port) {
    return "endpoints:\n"
           "  - name: store\n"
           "    type: redis\n"
           "    port: " + std::to_string(port) + "\n"
           "    mode: rpush\n"
           "rules:\n"
           "  - name: keep\n"
           "    subscribe: {topic: a/keep, qos: 1}\n"
           "    to: {endpoint: store, topic: kept}\n";
  };
  write_config(with_redis(first.port()));
  ASSERT_EQ(reload().exit_code, 0);
  int rc = 0;
  auto alice = login("alice", "a-pass", rc);
  ASSERT_EQ(rc, 0);
  ASSERT_TRUE(wait_until([&] {
    alice->publish("a/keep", "one", 1);
    return first.cli({"LLEN", "kept"}) != "0";
  })) << broker->proc().output();
  write_config(with_redis(second.port()));
  auto r = reload();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("1 endpoints"), std::string::npos) << r.output;
  ASSERT_TRUE(alice->publish("a/keep", "two", 1));
  EXPECT_TRUE(wait_until([&] { return second.cli({"LLEN", "kept"}) == "1"; }))
    << broker->proc().output();
  EXPECT_EQ(second.cli({"LINDEX", "kept", "0"}), "two");
  EXPECT_EQ(first.cli({"LRANGE", "kept", "-1", "-1"}), "one");
  // The old endpoint is stopped rule_drain_timeout (30 s) later; that
  // takes nothing else with it.
  std::this_thread::sleep_for(31s);
  EXPECT_NE(broker->proc().output().find("endpoint:store replaced (reload)"),
            std::string::npos);
  ASSERT_TRUE(alice->connected()) << broker->proc().output();
  ASSERT_TRUE(alice->publish("a/keep", "three", 1)) << broker->proc().output();
  EXPECT_TRUE(wait_until([&] { return second.cli({"LLEN", "kept"}) == "2"; }))
    << broker->proc().output();
  EXPECT_FALSE(broker->stats_json().empty());
}

TEST_F(hub_reload, the_http_api_invokes_a_function_a_reload_added) {
  auto http_port = free_port();
  auto http = "http:\n  listen: 127.0.0.1:" + std::to_string(http_port) + "\n";
  write_config(http);
  // The API is part of the config, so this one starts afresh.
  broker.reset();
  broker = std::make_unique<hubflow_server>(
    "", std::vector<std::string>{"--config", config});
  ASSERT_TRUE(broker->wait_ready()) << broker->proc().output();
  auto invoke = [&] {
    return run_command("curl -s -w ' %{http_code}' -d '{\"t\":3}' "
                       "http://127.0.0.1:" + std::to_string(http_port)
                       + "/v1.0/invoke/double/method/run")
      .output;
  };
  EXPECT_NE(invoke().find(" 404"), std::string::npos);
  write_config(http + "functions:\n"
                      "  - name: double\n"
                      "    runtime: sql\n"
                      "    handler: \"select t * 2 as t2\"\n");
  auto r = reload();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(wait_until([&] {
    return invoke() == R"({"t2":6} 200)";
  })) << invoke() << "\n" << broker->proc().output();
}

TEST_F(hub_reload, what_a_reload_cannot_apply_is_named) {
  write_config("  max_keepalive: 30\n"
               "stats: {interval: 1s}\n");
  auto r = reload();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("at the next start: hub.max_keepalive, stats"),
            std::string::npos)
    << r.output;
  EXPECT_NE(broker->proc().output().find(
              "reload: stats changed: it takes effect at the next start"),
            std::string::npos)
    << broker->proc().output();
}

} // namespace
