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
