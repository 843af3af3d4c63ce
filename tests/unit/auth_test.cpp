// The hub's authenticator: password hashes checked against what the real
// mosquitto_passwd writes and what a real mosquitto broker accepts, and the
// pub/sub permit lists of principals.
#include "hub/auth.hpp"

#include <fstream>
#include <sstream>
#include <unistd.h>
#include <pwd.h>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The hash mosquitto_passwd stored for `user` (the line is `user:hash`).
std::string hash_from_password_file(const std::string& path,
                                    const std::string& user) {
  std::istringstream lines(read_file(path));
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(user + ":", 0) == 0)
      return line.substr(user.size() + 1);
  return {};
}

std::string current_user_name() {
  auto* entry = getpwuid(getuid());
  return entry ? entry->pw_name : "root";
}

principal_config make_principal(std::string name, std::string password,
                                std::vector<std::string> pub,
                                std::vector<std::string> sub) {
  return principal_config{std::move(name), std::move(password), std::move(pub),
                          std::move(sub)};
}

} // namespace

// ---- password hashes

TEST(password_hash, has_mosquitto_passwd_pbkdf2_shape) {
  auto hash = make_password_hash("secret");
  // $7$101$<16 chars: 12 salt bytes>$<88 chars: 64 digest bytes>
  ASSERT_EQ(hash.rfind("$7$101$", 0), 0u) << hash;
  auto salt_end = hash.find('$', 7);
  ASSERT_NE(salt_end, std::string::npos);
  EXPECT_EQ(salt_end - 7, 16u) << hash;
  EXPECT_EQ(hash.size() - salt_end - 1, 88u) << hash;
  EXPECT_TRUE(is_password_hash(hash));
}

TEST(password_hash, random_salt_makes_each_hash_differ) {
  auto first = make_password_hash("secret");
  auto second = make_password_hash("secret");
  EXPECT_NE(first, second);
  EXPECT_TRUE(password_matches(first, "secret"));
  EXPECT_TRUE(password_matches(second, "secret"));
}

TEST(password_hash, own_hash_rejects_wrong_passwords) {
  auto hash = make_password_hash("secret");
  EXPECT_FALSE(password_matches(hash, "Secret"));
  EXPECT_FALSE(password_matches(hash, "secret "));
  EXPECT_FALSE(password_matches(hash, ""));
  EXPECT_FALSE(password_matches(hash, hash)); // the hash is not the password
}

TEST(password_hash, plain_passwords_compare_exactly) {
  EXPECT_TRUE(password_matches("hunter2", "hunter2"));
  EXPECT_FALSE(password_matches("hunter2", "hunter"));
  EXPECT_FALSE(password_matches("hunter2", "hunter22"));
  EXPECT_FALSE(password_matches("hunter2", ""));
  EXPECT_TRUE(password_matches("", ""));
  EXPECT_FALSE(is_password_hash("hunter2"));
}

TEST(password_hash, malformed_hashes_match_nothing) {
  auto good = make_password_hash("secret");
  for (std::string bad :
       {std::string("$7$"), std::string("$7$101$$"),
        std::string("$7$x01$") + good.substr(7),     // bad iteration count
        std::string("$7$0$") + good.substr(7),       // zero iterations
        good.substr(0, good.size() - 4),             // truncated digest
        good.substr(0, 10) + "!" + good.substr(11),  // not base64
        std::string("$6$onlysalt")}) {
    EXPECT_FALSE(password_matches(bad, "secret")) << bad;
    EXPECT_FALSE(password_matches(bad, bad)) << bad;
  }
}

TEST(password_hash, accepts_what_mosquitto_passwd_writes) {
  temp_dir dir;
  auto file = dir.path() + "/passwords";
  for (const char* algorithm : {"sha512-pbkdf2", "sha512"}) {
    auto result = run_command(std::string("mosquitto_passwd -H ") + algorithm
                              + " -c -b " + file + " alice 's3cr3t pass'");
    ASSERT_EQ(result.exit_code, 0) << result.output;
    auto hash = hash_from_password_file(file, "alice");
    ASSERT_FALSE(hash.empty()) << read_file(file);
    EXPECT_EQ(hash.substr(0, 3),
              std::string(algorithm) == "sha512" ? "$6$" : "$7$");
    EXPECT_TRUE(password_matches(hash, "s3cr3t pass")) << algorithm << " " << hash;
    EXPECT_FALSE(password_matches(hash, "s3cr3t")) << algorithm;
    EXPECT_FALSE(password_matches(hash, "s3cr3t pass ")) << algorithm;
  }
}

TEST(password_hash, real_mosquitto_accepts_our_hash) {
  temp_dir dir;
  auto passwords = dir.write("passwords",
                             "bob:" + make_password_hash("right horse") + "\n");
  auto port = free_port();
  // `user`: when run as root, mosquitto would otherwise drop to the
  // `mosquitto` user, which cannot read our temp dir.
  auto conf = dir.write("mosquitto.conf",
                        "listener " + std::to_string(port) + " 127.0.0.1\n"
                          "allow_anonymous false\n"
                          "password_file " + passwords + "\n"
                          "user " + current_user_name() + "\n");
  process broker({"mosquitto", "-c", conf});
  ASSERT_TRUE(wait_for_port(port)) << broker.output();

  auto publish_as = [&](const std::string& password) {
    return run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port)
                       + " -u bob -P '" + password + "' -t probe -m x");
  };
  auto accepted = publish_as("right horse");
  EXPECT_EQ(accepted.exit_code, 0) << accepted.output << broker.output();
  auto refused = publish_as("wrong horse");
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("not authorised"), std::string::npos)
    << refused.output;
}

// ---- topic filter coverage (subscribe permissions)

TEST(filter_covers, wildcards_cover_what_they_match) {
  EXPECT_TRUE(filter_covers("#", "a/b/c"));
  EXPECT_TRUE(filter_covers("#", "#"));
  EXPECT_TRUE(filter_covers("#", "+/+"));
  EXPECT_TRUE(filter_covers("a/#", "a"));
  EXPECT_TRUE(filter_covers("a/#", "a/b"));
  EXPECT_TRUE(filter_covers("a/#", "a/+/c"));
  EXPECT_TRUE(filter_covers("a/#", "a/#"));
  EXPECT_TRUE(filter_covers("a/+/c", "a/b/c"));
  EXPECT_TRUE(filter_covers("a/+/c", "a/+/c"));
  EXPECT_TRUE(filter_covers("a/+", "a/b"));
  EXPECT_TRUE(filter_covers("a/+/#", "a/+"));
  EXPECT_TRUE(filter_covers("a/+/#", "a/b/c/d"));
  EXPECT_TRUE(filter_covers("a/b", "a/b"));
}

TEST(filter_covers, narrower_permits_do_not_cover_wider_filters) {
  EXPECT_FALSE(filter_covers("a/#", "#"));
  EXPECT_FALSE(filter_covers("a/#", "+/b"));
  EXPECT_FALSE(filter_covers("a/#", "b"));
  EXPECT_FALSE(filter_covers("a/+/c", "a/#"));
  EXPECT_FALSE(filter_covers("a/+/c", "a/b/d"));
  EXPECT_FALSE(filter_covers("a/+/c", "a/b/c/d"));
  EXPECT_FALSE(filter_covers("a/+/c", "a/b"));
  EXPECT_FALSE(filter_covers("a/b", "a/+"));
  EXPECT_FALSE(filter_covers("a/b", "a/b/c"));
  EXPECT_FALSE(filter_covers("a/b", "a"));
  EXPECT_FALSE(filter_covers("a/+/#", "a/#")); // `a/#` also matches `a`
  EXPECT_FALSE(filter_covers("+", "a/b"));
}

TEST(filter_covers, dollar_topics_need_a_literal_first_level) {
  EXPECT_FALSE(filter_covers("#", "$SYS/#"));
  EXPECT_FALSE(filter_covers("+/#", "$SYS/broker"));
  EXPECT_TRUE(filter_covers("$SYS/#", "$SYS/broker/load"));
  // `#` as a subscription matches no `$` topic, so `#` covers it.
  EXPECT_TRUE(filter_covers("#", "+/x"));
}

// ---- principals

class authenticator_test : public ::testing::Test {
protected:
  authenticator_test() {
    cfg.allow_anonymous = false;
    cfg.principals = {
      make_principal("sensor", make_password_hash("sensor-pw"),
                     {"sensors/+/temp", "sensors/+/status"}, {"cmd/sensor/#"}),
      make_principal("app", "plain-pw", {"#"}, {"sensors/#", "cmd/+/ack"}),
    };
  }
  hub_config cfg;
};

TEST_F(authenticator_test, authenticates_hashed_and_plain_principals) {
  authenticator auth(cfg);
  auto* sensor = auth.authenticate("sensor", "sensor-pw", true, false);
  ASSERT_NE(sensor, nullptr);
  EXPECT_EQ(sensor->username, "sensor");
  auto* app = auth.authenticate("app", "plain-pw", true, true);
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->username, "app");
}

TEST_F(authenticator_test, refuses_wrong_or_missing_credentials) {
  authenticator auth(cfg);
  EXPECT_EQ(auth.authenticate("sensor", "plain-pw", true, false), nullptr);
  EXPECT_EQ(auth.authenticate("app", "sensor-pw", true, false), nullptr);
  EXPECT_EQ(auth.authenticate("nobody", "plain-pw", true, false), nullptr);
  EXPECT_EQ(auth.authenticate("app", "", false, true), nullptr);
  EXPECT_EQ(auth.authenticate("", "", false, true), nullptr);
}

TEST_F(authenticator_test, anonymous_follows_the_config) {
  cfg.allow_anonymous = false;
  EXPECT_FALSE(authenticator(cfg).anonymous_allowed(true));
  EXPECT_FALSE(authenticator(cfg).anonymous_allowed(false));
  EXPECT_FALSE(authenticator(cfg).may_publish(nullptr, "a"));
  EXPECT_FALSE(authenticator(cfg).may_subscribe(nullptr, "#"));

  cfg.allow_anonymous = true;
  cfg.anonymous_loopback_only = true;
  EXPECT_TRUE(authenticator(cfg).anonymous_allowed(true));
  EXPECT_FALSE(authenticator(cfg).anonymous_allowed(false));
  EXPECT_TRUE(authenticator(cfg).may_publish(nullptr, "anything/at/all"));
  EXPECT_TRUE(authenticator(cfg).may_subscribe(nullptr, "#"));

  cfg.anonymous_loopback_only = false;
  EXPECT_TRUE(authenticator(cfg).anonymous_allowed(false));
}

TEST_F(authenticator_test, publish_needs_a_matching_pub_filter) {
  authenticator auth(cfg);
  auto* sensor = auth.authenticate("sensor", "sensor-pw", true, false);
  ASSERT_NE(sensor, nullptr);
  EXPECT_TRUE(auth.may_publish(sensor, "sensors/s1/temp"));
  EXPECT_TRUE(auth.may_publish(sensor, "sensors/s2/status"));
  EXPECT_FALSE(auth.may_publish(sensor, "sensors/s1/humidity"));
  EXPECT_FALSE(auth.may_publish(sensor, "sensors/s1/temp/raw"));
  EXPECT_FALSE(auth.may_publish(sensor, "sensors/s1"));
  EXPECT_FALSE(auth.may_publish(sensor, "cmd/sensor/reboot"));
  EXPECT_FALSE(auth.may_publish(sensor, "sensors/+/temp")); // not a topic name

  auto* app = auth.authenticate("app", "plain-pw", true, false);
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(auth.may_publish(app, "cmd/sensor/reboot"));
  EXPECT_TRUE(auth.may_publish(app, "a"));
  EXPECT_FALSE(auth.may_publish(app, "$SYS/fake")); // `#` skips `$` topics
}

TEST_F(authenticator_test, subscribe_needs_a_covering_sub_filter) {
  authenticator auth(cfg);
  auto* app = auth.authenticate("app", "plain-pw", true, false);
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(auth.may_subscribe(app, "sensors/#"));
  EXPECT_TRUE(auth.may_subscribe(app, "sensors/+/temp"));
  EXPECT_TRUE(auth.may_subscribe(app, "sensors"));
  EXPECT_TRUE(auth.may_subscribe(app, "cmd/sensor/ack"));
  EXPECT_TRUE(auth.may_subscribe(app, "cmd/+/ack"));
  EXPECT_FALSE(auth.may_subscribe(app, "#"));
  EXPECT_FALSE(auth.may_subscribe(app, "cmd/#"));
  EXPECT_FALSE(auth.may_subscribe(app, "cmd/sensor/reboot"));
  EXPECT_FALSE(auth.may_subscribe(app, "+/+/ack"));

  auto* sensor = auth.authenticate("sensor", "sensor-pw", true, false);
  ASSERT_NE(sensor, nullptr);
  EXPECT_TRUE(auth.may_subscribe(sensor, "cmd/sensor/reboot"));
  EXPECT_FALSE(auth.may_subscribe(sensor, "sensors/#"));
}

TEST_F(authenticator_test, shared_subscriptions_are_judged_by_their_filter) {
  authenticator auth(cfg);
  auto* app = auth.authenticate("app", "plain-pw", true, false);
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(auth.may_subscribe(app, "$share/workers/sensors/+/temp"));
  EXPECT_FALSE(auth.may_subscribe(app, "$share/workers/cmd/#"));
  EXPECT_FALSE(auth.may_subscribe(app, "$share/workers"));
  EXPECT_FALSE(auth.may_subscribe(app, "$share//sensors/#")); // no group
}

TEST_F(authenticator_test, delivery_needs_a_matching_sub_filter) {
  authenticator auth(cfg);
  auto* app = auth.authenticate("app", "plain-pw", true, false);
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(auth.may_receive(app, "sensors/s1/temp"));
  EXPECT_TRUE(auth.may_receive(app, "cmd/sensor/ack"));
  EXPECT_FALSE(auth.may_receive(app, "cmd/sensor/reboot"));
  EXPECT_FALSE(auth.may_receive(app, "other"));
  EXPECT_FALSE(auth.may_receive(nullptr, "anything")); // no anonymous here
  cfg.allow_anonymous = true;
  EXPECT_TRUE(authenticator(cfg).may_receive(nullptr, "anything"));
}

// ---- Mosquitto's files: the acl rules as Mosquitto 2.0 applies them

namespace {

// A hub config whose password file holds alice, bob and "ev+il" (password
// "pw") and whose acl file is `acl_text`.
class acl_test : public ::testing::Test {
protected:
  void load(const std::string& acl_text) {
    auto files = std::make_shared<mosquitto_files>();
    auto hash = make_password_hash("pw");
    files->password_path = "test.pw";
    files->users = {{"alice", hash, 1}, {"bob", hash, 2}, {"ev+il", hash, 3}};
    files->acl_path = "test.acl";
    files->acl = parse_acl_file(acl_text, "test.acl");
    cfg.files = files;
    auth = std::make_unique<authenticator>(cfg);
  }
  client_identity user(const std::string& name, std::string_view client_id) {
    auto* p = auth->authenticate(name, "pw", true, true);
    EXPECT_NE(p, nullptr) << name;
    return {p, client_id};
  }
  hub_config cfg;
  std::unique_ptr<authenticator> auth;
};

} // namespace

TEST_F(acl_test, deny_wins_within_a_section_whatever_its_place) {
  load("user alice\n"
       "topic readwrite a/#\n"
       "topic deny a/secret\n"
       "topic read r/#\n");
  auto alice = user("alice", "c1");
  EXPECT_TRUE(auth->may_publish(alice, "a/b"));
  EXPECT_FALSE(auth->may_publish(alice, "a/secret"));
  EXPECT_FALSE(auth->may_receive(alice, "a/secret"));
  EXPECT_TRUE(auth->may_receive(alice, "r/x"));
  EXPECT_FALSE(auth->may_publish(alice, "r/x")); // read only
  // bob has no section and there are no patterns: nothing at all.
  auto bob = user("bob", "c2");
  EXPECT_FALSE(auth->may_publish(bob, "a/b"));
  EXPECT_FALSE(auth->may_subscribe(bob, "#"));
}

TEST_F(acl_test, patterns_fill_in_username_and_client_id) {
  load("pattern write in/%u/%c\n"
       "pattern read out/%c/#\n");
  auto alice = user("alice", "dev1");
  EXPECT_TRUE(auth->may_publish(alice, "in/alice/dev1"));
  EXPECT_FALSE(auth->may_publish(alice, "in/alice/dev2"));
  EXPECT_FALSE(auth->may_publish(alice, "in/bob/dev1"));
  EXPECT_TRUE(auth->may_receive(alice, "out/dev1/x"));
  EXPECT_FALSE(auth->may_receive(alice, "out/dev2/x"));
  // Anonymous clients: %c patterns apply, %u patterns do not.
  client_identity anonymous{nullptr, "dev9"};
  EXPECT_TRUE(auth->may_receive(anonymous, "out/dev9/x"));
  EXPECT_FALSE(auth->may_publish(anonymous, "in/%u/dev9"));
  EXPECT_FALSE(auth->may_publish(anonymous, "in//dev9"));
  // A wildcard in a name would widen a pattern: Mosquitto denies outright.
  EXPECT_FALSE(auth->may_receive({nullptr, "dev#"}, "out/dev#/x"));
  EXPECT_FALSE(auth->may_receive(user("ev+il", "d"), "out/d/x"));
}

TEST_F(acl_test, own_section_is_decided_before_the_patterns) {
  load("user alice\n"
       "topic read shared/#\n"
       "pattern deny shared/%u\n"
       "pattern read shared/#\n");
  // Mosquitto: a line of the client's own section that grants decides; a
  // pattern's deny is never reached.
  EXPECT_TRUE(auth->may_receive(user("alice", "c"), "shared/alice"));
  EXPECT_FALSE(auth->may_receive(user("bob", "c"), "shared/bob"));
  EXPECT_TRUE(auth->may_receive(user("bob", "c"), "shared/alice"));
}

TEST_F(acl_test, anonymous_section_is_before_the_first_user_line) {
  load("topic read public/#\n"
       "user alice\n"
       "topic readwrite #\n");
  client_identity anonymous{nullptr, "anon"};
  EXPECT_TRUE(auth->may_receive(anonymous, "public/x"));
  EXPECT_FALSE(auth->may_publish(anonymous, "public/x"));
  EXPECT_FALSE(auth->may_receive(anonymous, "private"));
  EXPECT_TRUE(auth->may_publish(user("alice", "c"), "private"));
}

TEST_F(acl_test, subscriptions_are_refused_only_when_nothing_could_arrive) {
  load("topic readwrite #\n"
       "topic deny test/nosubscribe\n"
       "topic deny hidden/#\n"
       "topic read $SYS/#\n");
  client_identity anonymous{nullptr, "anon"};
  EXPECT_FALSE(auth->may_subscribe(anonymous, "test/nosubscribe"));
  EXPECT_FALSE(auth->may_subscribe(anonymous, "hidden/+/x"));
  EXPECT_FALSE(auth->may_subscribe(anonymous, "$share/g/hidden/#"));
  // Partly denied: granted, and each delivery is checked.
  EXPECT_TRUE(auth->may_subscribe(anonymous, "test/#"));
  EXPECT_FALSE(auth->may_receive(anonymous, "test/nosubscribe"));
  EXPECT_TRUE(auth->may_receive(anonymous, "test/other"));
  EXPECT_TRUE(auth->may_subscribe(anonymous, "#"));
  EXPECT_TRUE(auth->may_subscribe(anonymous, "$SYS/broker/#"));
  // Nothing grants read on a `$` topic but the `$SYS/#` line.
  EXPECT_FALSE(auth->may_subscribe(anonymous, "$other/#"));
}

TEST_F(acl_test, nobody_publishes_on_sys_or_share) {
  load("topic readwrite $SYS/#\n"
       "topic readwrite $share/#\n");
  client_identity anonymous{nullptr, "anon"};
  EXPECT_FALSE(auth->may_publish(anonymous, "$SYS/broker/uptime"));
  EXPECT_FALSE(auth->may_publish(anonymous, "$share/g/t"));
  EXPECT_TRUE(auth->may_publish(anonymous,
                                "$SYS/broker/connection/bridge1/state"));
  EXPECT_TRUE(auth->may_receive(anonymous, "$SYS/broker/uptime"));
}

TEST_F(acl_test, empty_acl_file_denies_everything) {
  load("# nothing\n");
  EXPECT_FALSE(auth->may_publish(user("alice", "c"), "a"));
  EXPECT_FALSE(auth->may_receive({nullptr, "c"}, "a"));
}

TEST_F(acl_test, config_principal_wins_a_name_in_both) {
  cfg.principals = {make_principal("alice", "yaml-pw", {"yaml/#"}, {})};
  load("user alice\ntopic readwrite file/#\n");
  EXPECT_EQ(auth->authenticate("alice", "pw", true, true), nullptr);
  auto* alice = auth->authenticate("alice", "yaml-pw", true, true);
  ASSERT_NE(alice, nullptr);
  EXPECT_TRUE(auth->may_publish({alice, "c"}, "yaml/x"));
  EXPECT_FALSE(auth->may_publish({alice, "c"}, "file/x"));
  // bob still comes from the file and is judged by it.
  EXPECT_FALSE(auth->may_publish(user("bob", "c"), "file/x"));
}

TEST_F(acl_test, password_file_alone_allows_its_users_everything) {
  auto files = std::make_shared<mosquitto_files>();
  files->password_path = "test.pw";
  files->users = {{"alice", make_password_hash("pw"), 1}};
  cfg.files = files;
  cfg.allow_anonymous = false;
  authenticator plain(cfg);
  auto* alice = plain.authenticate("alice", "pw", true, false);
  ASSERT_NE(alice, nullptr);
  EXPECT_TRUE(plain.may_publish(alice, "any/topic"));
  EXPECT_TRUE(plain.may_subscribe(alice, "#"));
  EXPECT_EQ(plain.authenticate("alice", "wrong", true, false), nullptr);
}

TEST_F(acl_test, anonymous_permissions_from_the_config_win_over_the_file) {
  cfg.anonymous_permissions = permit_lists{{"anon/in"}, {"anon/out/#"}};
  load("topic readwrite #\n");
  client_identity anonymous{nullptr, "anon"};
  EXPECT_TRUE(auth->may_publish(anonymous, "anon/in"));
  EXPECT_FALSE(auth->may_publish(anonymous, "other"));
  EXPECT_TRUE(auth->may_subscribe(anonymous, "anon/out/+"));
  EXPECT_FALSE(auth->may_subscribe(anonymous, "#"));
  EXPECT_TRUE(auth->may_receive(anonymous, "anon/out/x"));
  EXPECT_FALSE(auth->may_receive(anonymous, "other"));
}

TEST(filters_intersect, some_topic_matches_both) {
  struct pair_case {
    const char* a;
    const char* b;
    bool intersect;
  };
  const pair_case cases[] = {
    {"a/#", "a", true},        {"a/+/c", "a/b/+", true},
    {"+/b", "a/#", true},      {"#", "x/y/z", true},
    {"a/b", "a/c", false},     {"a", "a/b", false},
    {"a/+", "a/b/c", false},   {"#", "$SYS/#", false},
    {"+/x", "$SYS/x", false},  {"$SYS/#", "$SYS/broker/+", true},
  };
  for (auto& c : cases) {
    EXPECT_EQ(filters_intersect(c.a, c.b), c.intersect) << c.a << " " << c.b;
    EXPECT_EQ(filters_intersect(c.b, c.a), c.intersect) << c.b << " " << c.a;
  }
}
