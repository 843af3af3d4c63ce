// Mosquitto's acl_file and password_file as hub/mosquitto_files reads them:
// what each line means (Mosquitto 2.0's reading, quirks included), and
// that a bad line is an error naming file, line and column.
#include "hub/mosquitto_files.hpp"

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

// The one error message parse() throws for `text`, or "" when it loads.
template <class Parse>
std::string error_of(Parse parse, const std::string& text) {
  try {
    parse(text, "test.acl");
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

std::string acl_error(const std::string& text) {
  return error_of(parse_acl_file, text);
}

std::string password_error(const std::string& text) {
  return error_of(parse_password_file, text);
}

void expect_rule(const acl_rule& rule, const std::string& topic,
                 std::uint8_t access) {
  EXPECT_EQ(rule.topic, topic);
  EXPECT_EQ(rule.access, access) << topic;
}

} // namespace

TEST(acl_file, sections_topics_and_patterns) {
  auto acl = parse_acl_file("# anonymous clients\n"
                            "topic read public/#\n"
                            "\n"
                            "user alice\n"
                            "topic write sensors/alice/#\n"
                            "topic deny sensors/alice/secret\n"
                            "pattern readwrite devices/%u/%c/#\n"
                            "user bob\n"
                            "topic bob/#\n"
                            "user alice\n"
                            "topic read cmd/alice\n",
                            "test.acl");
  ASSERT_EQ(acl.anonymous.size(), 1u);
  expect_rule(acl.anonymous[0], "public/#", acl_read);
  // A user named twice has one section, as in Mosquitto.
  auto& alice = acl.users.at("alice");
  ASSERT_EQ(alice.size(), 3u);
  expect_rule(alice[1], "sensors/alice/secret", acl_deny);
  EXPECT_EQ(alice[1].line, 6);
  expect_rule(alice[2], "cmd/alice", acl_read);
  // Without an access word a line grants read and write.
  ASSERT_EQ(acl.users.at("bob").size(), 1u);
  expect_rule(acl.users.at("bob")[0], "bob/#", acl_readwrite);
  // Patterns belong to no section; %u and %c stay for the check.
  ASSERT_EQ(acl.patterns.size(), 1u);
  expect_rule(acl.patterns[0], "devices/%u/%c/#", acl_readwrite);
  EXPECT_EQ(acl.patterns[0].line, 7);
}

TEST(acl_file, reads_lines_as_mosquitto_does) {
  auto acl = parse_acl_file("topic read\n"          // the topic "read"
                            "topic  read   a b  \r\n" // topic "a b"
                            "user   carol smith \n"
                            "   # an indented comment\n"
                            "   \t \n",
                            "test.acl");
  ASSERT_EQ(acl.anonymous.size(), 2u);
  expect_rule(acl.anonymous[0], "read", acl_readwrite);
  expect_rule(acl.anonymous[1], "a b", acl_read);
  EXPECT_EQ(acl.users.count("carol smith"), 1u);
}

TEST(acl_file, errors_name_file_line_and_column) {
  EXPECT_EQ(acl_error("topic read a\ntopic raed b\n"),
            "test.acl:2:7: access 'raed' is not read, write, readwrite or "
            "deny");
  EXPECT_EQ(acl_error("\n\nuser\n"), "test.acl:3:5: 'user' needs a username");
  EXPECT_EQ(acl_error("topic\n"), "test.acl:1:6: a topic is missing");
  EXPECT_NE(acl_error("topic read a/#/b\n").find("test.acl:1:12: 'a/#/b' is "
                                                 "not a topic filter"),
            std::string::npos);
  EXPECT_NE(acl_error("pattern write %u+\n").find("test.acl:1:15:"),
            std::string::npos);
  EXPECT_EQ(acl_error("topic read a\nusers bob\n"),
            "test.acl:2:1: 'users' is not user, topic or pattern (nor a # "
            "comment)");
  // A tab does not separate words in Mosquitto either.
  EXPECT_NE(acl_error("topic\tread a\n").find("test.acl:1:1:"),
            std::string::npos);
}

TEST(acl_file, every_bad_line_is_reported) {
  try {
    parse_acl_file("topic raed a\nfoo\ntopic read ok\nuser\n", "x.acl");
    FAIL() << "loaded";
  } catch (const config_error& e) {
    ASSERT_EQ(e.messages().size(), 3u);
    EXPECT_EQ(e.messages()[0].rfind("x.acl:1:", 0), 0u);
    EXPECT_EQ(e.messages()[1].rfind("x.acl:2:", 0), 0u);
    EXPECT_EQ(e.messages()[2].rfind("x.acl:4:", 0), 0u);
  }
}

TEST(acl_file, bounds_what_a_line_may_hold) {
  std::string huge = "topic read " + std::string(70000, 'a') + "\n";
  EXPECT_EQ(acl_error(huge),
            "test.acl:1:1: line longer than 65599 bytes");
  // 201 levels are Mosquitto's most; 202 are not a topic filter.
  std::string deep(200, '/');
  EXPECT_EQ(acl_error("topic " + deep + "\n"), "");
  EXPECT_NE(acl_error("topic /" + deep + "\n"), "");
}

TEST(password_file, reads_user_hash_lines) {
  // 12 salt bytes and a 64-byte digest (all zero) in base64.
  auto hash6 = "$6$QypxnH4kGpFJa3Rb$" + std::string(86, 'A') + "==";
  auto users = parse_password_file(std::string{"# a comment\n\n"}
                                     + " alice :" + hash6 + "\n"
                                     + "bob:" + hash6 + ":ignored\n",
                                   "test.pw");
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0].username, "alice");
  EXPECT_EQ(users[0].hash, hash6);
  EXPECT_EQ(users[0].line, 3);
  EXPECT_EQ(users[1].username, "bob");
  EXPECT_EQ(users[1].hash, hash6);
}

TEST(password_file, reads_what_mosquitto_passwd_writes) {
  temp_dir dir;
  auto file = dir.path() + "/pw";
  ASSERT_EQ(run_command("mosquitto_passwd -c -b " + file + " u1 one").exit_code,
            0);
  ASSERT_EQ(run_command("mosquitto_passwd -b " + file + " u2 two").exit_code,
            0);
  ASSERT_EQ(
    run_command("mosquitto_passwd -H sha512 -b " + file + " u3 three").exit_code,
    0);
  auto text = run_command("cat " + file).output;
  auto users = parse_password_file(text, file);
  ASSERT_EQ(users.size(), 3u);
  EXPECT_EQ(users[0].hash.rfind("$7$", 0), 0u);
  EXPECT_EQ(users[2].hash.rfind("$6$", 0), 0u);
}

TEST(password_file, errors_name_file_and_line) {
  EXPECT_EQ(password_error("alice:secret\n"),
            "test.acl:1:7: the hash of 'alice' is not one mosquitto_passwd "
            "writes ($6$ or $7$; a plain password is not read: run "
            "mosquitto_passwd -U)");
  EXPECT_EQ(password_error("\nalice:\n"),
            "test.acl:2:7: 'alice' has no password hash");
  EXPECT_EQ(password_error(" :$7$x\n"), "test.acl:1:1: the username is empty");
  auto hash = std::string{"$7$101$ZvXgTzkQ9bJgDWzb$"}
              + std::string(86, 'A') + "==";
  EXPECT_EQ(password_error("a:" + hash + "\na:" + hash + "\n"),
            "test.acl:2:1: 'a' is already on line 1");
}
