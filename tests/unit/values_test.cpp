// The shared value parsers (core/values.hpp): durations, sizes, host:port
// and secrets, and the config keys that use them.
#include <cstdlib>

#include <gtest/gtest.h>

#include "core/config.hpp"
#include "core/values.hpp"
#include "fixtures/fixtures.hpp"

using namespace hubflow;

namespace {

std::string address_error(const std::string& text, host_port_rules rules = {}) {
  std::string error;
  auto a = parse_host_port(text, rules, error);
  return a ? "" : error;
}

std::string load_error(const std::string& yaml) {
  try {
    load_config_text(yaml, "h.yaml");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

TEST(values, sizes) {
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("64k"), 64u * 1024);
  EXPECT_EQ(parse_size("4MiB"), 4u << 20);
  EXPECT_EQ(parse_size("1g"), 1u << 30);
  EXPECT_FALSE(parse_size("4x"));
  EXPECT_FALSE(parse_size("-1"));
  EXPECT_FALSE(parse_size("4kx"));
  // Beyond 64 bits, before or after the unit: refused, never wrapped.
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("17179869184g"));
  EXPECT_EQ(parse_size("17179869183g"), std::size_t{17179869183} << 30);
}

TEST(values, durations_beyond_what_milliseconds_hold_are_refused) {
  EXPECT_FALSE(parse_duration("300000000000d"));
  EXPECT_FALSE(parse_duration("99999999999999999999ms"));
  EXPECT_EQ(parse_duration("9223372036854775807ms"),
            std::chrono::milliseconds::max());
  EXPECT_FALSE(parse_duration("9223372036854776s"));
}

TEST(values, integers_are_whole) {
  EXPECT_EQ(parse_integer("42"), 42);
  EXPECT_EQ(parse_integer("-1"), -1);
  EXPECT_FALSE(parse_integer("12abc"));
  EXPECT_FALSE(parse_integer(""));
  EXPECT_FALSE(parse_integer(" 1"));
  EXPECT_FALSE(parse_integer("1.5"));
  EXPECT_FALSE(parse_integer("9223372036854775808"));
}

TEST(values, host_port) {
  std::string error;
  auto a = parse_host_port("tcp://[::1]:1883", {{"tcp://"}, true, false}, error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 1883);
  EXPECT_EQ(address_error("localhost"), "'localhost' has no port (write host:port)");
  EXPECT_EQ(address_error(":80"), "':80' has no host");
  EXPECT_EQ(address_error("h:0"), "'h:0': port 0 is out of range (1-65535)");
  EXPECT_EQ(address_error("h:99999999999"), "'h:99999999999' has an invalid port");
  EXPECT_EQ(address_error("h:65536"), "'h:65536': port 65536 is out of range (1-65535)");
  EXPECT_EQ(address_error("::1:80"), "'::1:80': write an IPv6 address in brackets ([::1]:port)");
  EXPECT_EQ(address_error("udp://h:1", {{"tcp://"}}), "'udp://h:1': unsupported scheme (known: tcp://)");
  EXPECT_EQ(address_error(":0", {{}, false, true}), "");
  // Written back in the form it is read in.
  EXPECT_EQ(to_string(*a), "[::1]:1883");
  EXPECT_EQ(to_string(host_port{"127.0.0.1", 3500}), "127.0.0.1:3500");
}

// The external hub's address used to be matched by a regex in the hub link
// that left the host empty (and never said so) on an address it did not
// match, and threw on a port too long for an int: now the loader refuses it.
TEST(values, a_bad_external_hub_address_is_a_config_error) {
  EXPECT_NE(load_error("hub: {address: 'tcp://h:99999'}\n")
              .find("h.yaml:1:16: hub.address: 'tcp://h:99999': port 99999 is out of range"),
            std::string::npos)
    << load_error("hub: {address: 'tcp://h:99999'}\n");
  auto cfg = load_config_text("hub: {address: 'mqtt://broker.local:1884'}\n", "h.yaml");
  EXPECT_EQ(cfg.hub.address_parsed.host, "broker.local");
  EXPECT_EQ(cfg.hub.address_parsed.port, 1884);
  EXPECT_NE(load_error("http: {listen: 'x:70000'}\n").find("http.listen: 'x:70000'"),
            std::string::npos);
}

TEST(values, one_secret_rule) {
  test::temp_dir dir;
  dir.write("pw", "s3cret\n");
  std::string value, error;
  secret_source source{};
  ASSERT_TRUE(read_secret(YAML::Load("{file: pw}"), value, error, &source,
                          dir.path() + "/hubflow.yaml"))
    << error;
  EXPECT_EQ(value, "s3cret");
  EXPECT_EQ(source, secret_source::file);
  ::setenv("HUBFLOW_TEST_SECRET", "e", 1);
  ASSERT_TRUE(read_secret(YAML::Load("{env: HUBFLOW_TEST_SECRET}"), value, error, &source));
  EXPECT_EQ(source, secret_source::env);
  ASSERT_TRUE(read_secret(YAML::Load("plain"), value, error, &source));
  EXPECT_EQ(source, secret_source::plain);
  EXPECT_FALSE(read_secret(YAML::Load("{env: HUBFLOW_TEST_UNSET_VARIABLE}"), value, error));
  EXPECT_EQ(error, "environment variable 'HUBFLOW_TEST_UNSET_VARIABLE' is not set or empty");
  EXPECT_FALSE(read_secret(YAML::Load("{file: a, env: b}"), value, error));
  // The hub's password follows the same rule, warned about once at load.
  auto cfg = load_config_text("hub: {address: 'tcp://h:1', password: pw}\n", "h.yaml");
  ASSERT_EQ(cfg.warnings.size(), 1u);
  EXPECT_EQ(cfg.warnings[0], std::string("h.yaml:1:39: hub.password: ") + plain_secret_warning);
}
