// Mosquitto's password_file and acl_file, checked client by client against
// a real Mosquitto 2.0 started with the same two files: the same clients
// (MQTT 3.1.1 and 5) connect, publish and subscribe on both brokers, and
// what each one receives must be the same. The one intended difference:
// Mosquitto grants every SUBSCRIBE and filters deliveries, hubflow refuses
// a subscription through which nothing could arrive; for those the test
// checks that Mosquitto delivered nothing on them either. Also: the
// files' errors through `hubflow --check`, and hub.anonymous_permissions.
#include <algorithm>
#include <map>
#include <set>

#include <pwd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"

using namespace hubflow::test;

namespace {

// alice and bob have sections, carol only the patterns, spy reads all.
const char* acl_text = R"(# the anonymous section: before the first user line
topic read public/#
topic write anon/in
pattern readwrite dev/%c/#
pattern deny dev/%c/locked
pattern write users/%u/out
pattern read users/%u/in/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic read shared/#
topic write shared/alice

user bob
topic read alice/#
topic write bob/#
topic deny bob/quiet/#

user spy
topic read #
)";

// Who connects: name, client id, MQTT version, password ("": anonymous).
struct who {
  std::string user;
  std::string client_id;
  int protocol;
  std::string password;
};

const std::vector<who> clients = {
  {"", "anon1", 5, ""},
  {"alice", "a1", 4, "alice pw"},
  {"bob", "b1", 5, "bob pw"},
  {"carol", "c1", 4, "carol pw"},
  {"spy", "s1", 4, "spy pw"},
};

// Every client publishes every one of these (`@` is its own client id).
const std::vector<std::string> topics = {
  "public/news",   "anon/in",          "alice/x",         "alice/secret",
  "shared/alice",  "shared/bob",       "bob/x",           "bob/quiet/x",
  "users/alice/out", "users/bob/out",  "users/carol/out", "users/alice/in/x",
  "users/carol/in/y", "dev/@/t",       "dev/@/locked",    "dev/a1/t",
};

// Subscriptions made on a connection of their own, so that what arrives
// through each can be told apart.
struct probe {
  std::size_t client; // index into clients
  std::string filter;
};

const std::vector<probe> probes = {
  {1, "alice/secret"}, {1, "alice/#"},       {1, "bob/#"},
  {2, "bob/quiet/#"},  {2, "alice/+"},       {0, "anon/in"},
  {0, "public/+"},     {3, "users/carol/#"}, {3, "dev/+/locked"},
};

std::string replace_at(std::string topic, const std::string& client_id) {
  if (auto at = topic.find('@'); at != std::string::npos)
    topic.replace(at, 1, client_id);
  return topic;
}

// What one broker did: the connect results, every subscription's result
// and the sorted `topic=payload` lines each connection received.
struct observations {
  std::map<std::string, int> connack;
  std::map<std::string, int> suback;
  std::map<std::string, std::vector<std::string>> received;
};

class run_on {
public:
  explicit run_on(std::uint16_t port) : port_(port) {
  }

  observations run() {
    observations seen;
    wrong_password(seen);
    for (auto& c : clients)
      subscriber(c, c.client_id, "#", seen);
    for (std::size_t i = 0; i < probes.size(); ++i) {
      auto& c = clients[probes[i].client];
      subscriber(c, "p" + std::to_string(i), probes[i].filter, seen);
    }
    publish_everything();
    collect(seen);
    return seen;
  }

private:
  std::unique_ptr<mqtt_client> connect(const who& c, const std::string& id,
                                       observations& seen) {
    auto client = std::make_unique<mqtt_client>(id, c.protocol);
    if (!c.password.empty())
      client->set_credentials(c.user, c.password);
    seen.connack[id] = client->connect(port_);
    return client;
  }

  void wrong_password(observations& seen) {
    who bad{"alice", "bad1", 4, "bob pw"};
    connect(bad, bad.client_id, seen);
  }

  // A connection subscribed to `filter` and to its own done marker.
  void subscriber(const who& c, const std::string& id,
                  const std::string& filter, observations& seen) {
    auto client = connect(c, id, seen);
    seen.suback[id + " " + filter] = client->subscribe(filter, 1);
    client->subscribe(done_topic(id), 1);
    subscribers_.emplace(id, std::move(client));
  }

  static std::string done_topic(const std::string& id) {
    return "dev/" + id + "/done";
  }

  void publish_everything() {
    for (auto& c : clients) {
      auto& client = *subscribers_.at(c.client_id);
      for (auto& t : topics) {
        auto topic = replace_at(t, c.client_id);
        ASSERT_TRUE(client.publish(topic, c.client_id + ":" + topic, 1));
      }
    }
  }

  // Each connection publishes its own marker (the dev/%c pattern lets
  // it): once that is back, everything published before it has arrived.
  void collect(observations& seen) {
    for (auto& [id, client] : subscribers_) {
      ASSERT_TRUE(client->publish(done_topic(id), "done", 1)) << id;
      ASSERT_TRUE(wait_until(
        [&] { return !client->messages_on(done_topic(id)).empty(); }))
        << id;
      auto& lines = seen.received[id];
      for (auto& m : client->messages())
        if (m.topic != done_topic(id))
          lines.push_back(m.topic + "=" + m.payload);
      std::sort(lines.begin(), lines.end());
    }
  }

  std::uint16_t port_;
  std::map<std::string, std::unique_ptr<mqtt_client>> subscribers_;
};

class hub_mosquitto_files : public ::testing::Test {
protected:
  void SetUp() override {
    auto pw = dir.path() + "/passwd";
    bool first = true;
    for (auto& c : clients) {
      if (c.password.empty())
        continue;
      auto r = run_command("mosquitto_passwd " + std::string{first ? "-c " : ""}
                           + "-b " + pw + " " + c.user + " '" + c.password
                           + "'");
      ASSERT_EQ(r.exit_code, 0) << r.output;
      first = false;
    }
    auto acl = dir.write("acl", acl_text);
    // `user`: run as root, mosquitto would drop to the `mosquitto` user,
    // which cannot read our temp dir.
    auto* me = getpwuid(getuid());
    mosquitto = std::make_unique<mosquitto_server>(
      0, "password_file " + pw + "\nacl_file " + acl + "\nuser "
           + (me ? me->pw_name : "root") + "\n");
    hub_port = free_port();
    hub = std::make_unique<hubflow_server>(
      "hub:\n"
      "  listen: [tcp://127.0.0.1:" + std::to_string(hub_port) + "]\n"
      "  anonymous: loopback\n"
      "  password_file: " + pw + "\n"
      "  acl_file: " + acl + "\n");
    ASSERT_TRUE(hub->wait_ready()) << hub->proc().output();
    ASSERT_TRUE(wait_for_port(hub_port));
  }

  temp_dir dir;
  std::unique_ptr<mosquitto_server> mosquitto;
  std::unique_ptr<hubflow_server> hub;
  std::uint16_t hub_port = 0;
};

bool refused(int code) {
  return code < 0 || code >= 0x80;
}

} // namespace

TEST_F(hub_mosquitto_files, every_client_gets_what_mosquitto_gives_it) {
  auto reference = run_on(mosquitto->port()).run();
  auto ours = run_on(hub_port).run();

  // Connecting: admitted or refused alike (the refusal codes differ:
  // Mosquitto answers a bad password with 5, hubflow with 4).
  for (auto& [id, code] : reference.connack)
    EXPECT_EQ(code == 0, ours.connack.at(id) == 0) << id;
  EXPECT_NE(ours.connack.at("bad1"), 0);

  std::set<std::string> refused_by_us;
  for (auto& [what, code] : ours.suback) {
    EXPECT_FALSE(refused(reference.suback.at(what))) << what;
    if (refused(code))
      refused_by_us.insert(what.substr(0, what.find(' ')));
  }
  // What we refuse Mosquitto grants, but delivers nothing through.
  EXPECT_EQ(refused_by_us, (std::set<std::string>{"p0", "p2", "p3", "p5"}));
  for (auto& id : refused_by_us)
    EXPECT_TRUE(reference.received.at(id).empty()) << id;

  for (auto& [id, lines] : reference.received) {
    if (refused_by_us.count(id))
      continue;
    EXPECT_EQ(ours.received.at(id), lines) << id;
  }
  // Not vacuous: every client's `#` received something (its own dev/%c
  // topics at least), the spy saw what the files allow, and only that.
  std::size_t total = 0;
  for (auto& c : clients) {
    EXPECT_FALSE(ours.received.at(c.client_id).empty()) << c.client_id;
    total += ours.received.at(c.client_id).size();
  }
  RecordProperty("messages_received_through_hash", static_cast<int>(total));
  auto& spy = reference.received.at("s1");
  EXPECT_NE(std::find(spy.begin(), spy.end(), "alice/x=a1:alice/x"),
            spy.end());
  EXPECT_EQ(std::find(spy.begin(), spy.end(), "alice/secret=a1:alice/secret"),
            spy.end());
}

// What a subscription finds retained is read-checked like any delivery.
TEST_F(hub_mosquitto_files, retained_messages_are_read_checked_too) {
  for (auto port : {mosquitto->port(), hub_port}) {
    SCOPED_TRACE(port == hub_port ? "hubflow" : "mosquitto");
    mqtt_client alice{"a1", 4};
    alice.set_credentials("alice", "alice pw");
    ASSERT_EQ(alice.connect(port), 0);
    ASSERT_TRUE(alice.publish("alice/kept", "a", 1, true));
    mqtt_client anon{"anon1", 5};
    ASSERT_EQ(anon.connect(port), 0);
    ASSERT_TRUE(anon.publish("dev/anon1/kept", "b", 1, true));
    ASSERT_EQ(anon.subscribe("#", 1), 1);
    ASSERT_TRUE(anon.publish("dev/anon1/done", "done", 1));
    ASSERT_TRUE(wait_until([&] { return anon.messages().size() >= 2; }));
    auto got = anon.messages();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].topic, "dev/anon1/kept");
    EXPECT_EQ(got[1].topic, "dev/anon1/done");
    mqtt_client bob{"b1", 5};
    bob.set_credentials("bob", "bob pw");
    ASSERT_EQ(bob.connect(port), 0);
    ASSERT_EQ(bob.subscribe("alice/#", 1), 1);
    ASSERT_TRUE(bob.wait_messages(1));
    EXPECT_EQ(bob.messages()[0].topic, "alice/kept");
  }
}

// `hubflow --check` reads the files as a start would: every bad line is
// named, with file, line and column, and the exit code is the config's.
TEST(hub_mosquitto_files_check, bad_lines_stop_check_with_file_and_line) {
  temp_dir dir;
  dir.write("acl", "topic read ok\ntopic raed a\nuser\n");
  dir.write("passwd", "alice:not-a-hash\n");
  auto config = dir.write("hubflow.yaml", "hub:\n"
                                          "  listen: [tcp://127.0.0.1:1]\n"
                                          "  password_file: passwd\n"
                                          "  acl_file: acl\n");
  auto r = run_command(hubflow_binary() + " --check --config " + config);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto acl = dir.path() + "/acl";
  EXPECT_NE(r.output.find(acl + ":2:7: access 'raed' is not read, write, "
                                "readwrite or deny"),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find(acl + ":3:5: 'user' needs a username"),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find(dir.path() + "/passwd:1:7: the hash of 'alice'"),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find("(3 errors)"), std::string::npos) << r.output;

  auto missing = dir.write("missing.yaml", "hub:\n"
                                           "  listen: [tcp://127.0.0.1:1]\n"
                                           "  acl_file: nowhere.acl\n");
  r = run_command(hubflow_binary() + " --check --config " + missing);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(missing + ":3:13: hub.acl_file: '" + dir.path()
                          + "/nowhere.acl': No such file or directory"),
            std::string::npos)
    << r.output;
}

// hub.anonymous_permissions through real clients: what the lists allow
// flows, the rest is refused or dropped.
TEST(hub_anonymous_permissions, permit_lists_bind_anonymous_clients) {
  auto port = free_port();
  hubflow_server hub("hub:\n"
                     "  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
                     "  anonymous: loopback\n"
                     "  anonymous_permissions:\n"
                     "    - {action: pub, permit: ['in/+']}\n"
                     "    - {action: sub, permit: ['in/#']}\n");
  ASSERT_TRUE(hub.wait_ready()) << hub.proc().output();
  ASSERT_TRUE(wait_for_port(port));
  mqtt_client reader{"reader", 5};
  ASSERT_EQ(reader.connect(port), 0);
  EXPECT_EQ(reader.subscribe("#", 1), 0x87); // wider than in/#
  EXPECT_EQ(reader.subscribe("in/#", 1), 1);
  mqtt_client writer{"writer", 4};
  ASSERT_EQ(writer.connect(port), 0);
  // In order on one connection: the refused one would arrive first.
  ASSERT_TRUE(writer.publish("in/a/b", "refused", 1));
  ASSERT_TRUE(writer.publish("in/a", "allowed", 1));
  ASSERT_TRUE(reader.wait_messages(1));
  auto got = reader.messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "in/a");
}

// A name both in hub.principals and in the files: the config's entry
// logs in and decides, the file's password does not, and the start says
// so for each file.
TEST(hub_mosquitto_files_with_principals, the_config_wins_a_name_in_both) {
  temp_dir dir;
  auto pw = dir.path() + "/passwd";
  for (auto [user, password] : {std::pair{"alice", "file pw"},
                                std::pair{"bob", "bob pw"}}) {
    auto r = run_command("mosquitto_passwd " + std::string{user[0] == 'a'
                                                             ? "-c " : ""}
                         + "-b " + pw + " " + user + " '" + password + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  dir.write("acl", "user alice\ntopic readwrite file/#\n"
                   "user bob\ntopic readwrite bob/#\n");
  auto port = free_port();
  hubflow_server hub("hub:\n"
                     "  listen: [tcp://127.0.0.1:" + std::to_string(port) + "]\n"
                     "  password_file: " + pw + "\n"
                     "  acl_file: " + dir.path() + "/acl\n"
                     "  principals:\n"
                     "    - username: alice\n"
                     "      password: yaml-pw\n"
                     "      permissions:\n"
                     "        - {action: pub, permit: ['yaml/#']}\n"
                     "        - {action: sub, permit: ['yaml/#', 'bob/#']}\n");
  ASSERT_TRUE(hub.wait_ready()) << hub.proc().output();
  ASSERT_TRUE(wait_for_port(port));
  mqtt_client by_file{"alice-file", 4};
  by_file.set_credentials("alice", "file pw");
  EXPECT_EQ(by_file.connect(port), 4); // bad username or password
  mqtt_client alice{"alice-yaml", 5};
  alice.set_credentials("alice", "yaml-pw");
  ASSERT_EQ(alice.connect(port), 0);
  EXPECT_EQ(alice.subscribe("file/#", 1), 0x87);
  EXPECT_EQ(alice.subscribe("bob/#", 1), 1);
  mqtt_client bob{"bob", 4};
  bob.set_credentials("bob", "bob pw");
  ASSERT_EQ(bob.connect(port), 0);
  ASSERT_TRUE(bob.publish("bob/x", "from bob", 1));
  ASSERT_TRUE(alice.wait_messages(1));
  EXPECT_EQ(alice.messages()[0].topic, "bob/x");
  auto log = hub.proc().output();
  EXPECT_NE(log.find("'alice' in " + pw + " (line 1) is also in "
                     "hub.principals; the config's entry applies"),
            std::string::npos)
    << log;
  EXPECT_NE(log.find("the acl file's section for 'alice' (line 2) does not "
                     "apply"),
            std::string::npos)
    << log;
}
