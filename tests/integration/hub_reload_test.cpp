// Reloading the config without a restart (SIGHUP and `hubflowctl reload`),
// through the real binary: new principals in the password file get in,
// a principal taken away is disconnected, permissions taken away stop
// deliveries on existing subscriptions, connected clients stay connected;
// a config that does not load is refused with the running one kept; and
// what a reload cannot apply is named.
#include <gtest/gtest.h>

#include <csignal>

#include "fixtures/fixtures.hpp"

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

TEST_F(hub_reload, what_a_reload_cannot_apply_is_named) {
  write_config("  max_keepalive: 30\n"
               "rules:\n"
               "  - name: copy\n"
               "    subscribe: {topic: a/in}\n"
               "    publish: {topic: a/out}\n");
  auto r = reload();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("at the next start: hub.max_keepalive, rules"),
            std::string::npos)
    << r.output;
  EXPECT_NE(broker->proc().output().find(
              "reload: rules changed: it takes effect at the next start"),
            std::string::npos)
    << broker->proc().output();
}

} // namespace
