// `hubflowctl import-mosquitto` on a mosquitto.conf with a plain and a TLS
// listener, a password file from the real mosquitto_passwd, an acl file
// and limits: the printed config loads, names every option it cannot map,
// and a hubflow started from it lets in and keeps out the same clients as
// a real mosquitto started from the original file.
#include <gtest/gtest.h>

#include <fstream>

#include "fixtures/fixtures.hpp"
#include "fixtures/test_pki.hpp"

using namespace hubflow::test;

namespace {

/// What a set of clients experiences on a broker at `plain` and `tls`.
std::vector<std::string> client_by_client(std::uint16_t plain,
                                          std::uint16_t tls,
                                          const std::string& ca) {
  std::vector<std::string> seen;
  auto result = [&](const std::string& what, bool ok) {
    seen.push_back(what + (ok ? ": yes" : ": no"));
  };
  mqtt_client anonymous;
  result("anonymous connects", anonymous.connect(plain) == 0);
  mqtt_client wrong;
  wrong.set_credentials("alice", "guess");
  result("alice with a wrong password connects", wrong.connect(plain) == 0);
  mqtt_client alice;
  alice.set_credentials("alice", "secret");
  result("alice connects", alice.connect(plain) == 0);
  alice.subscribe("#", 1);
  alice.publish("alice/own", "mine", 1);
  result("alice gets alice/own", alice.wait_messages(1, 2s)
                                   && !alice.messages_on("alice/own").empty());
  alice.publish("bob/other", "not hers", 1);
  std::this_thread::sleep_for(300ms);
  result("alice gets bob/other", !alice.messages_on("bob/other").empty());
  auto pub = run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(tls)
                         + " --cafile " + ca
                         + " -u alice -P secret -q 1 -t alice/tls -m over-tls");
  result("alice publishes over TLS", pub.exit_code == 0);
  result("alice gets alice/tls",
         wait_until([&] { return !alice.messages_on("alice/tls").empty(); },
                    2s));
  return seen;
}

TEST(mosquitto_import, the_imported_config_admits_what_mosquitto_admits) {
  test_pki pki;
  temp_dir dir;
  // Mosquitto started as root reads its files as user mosquitto.
  ASSERT_EQ(run_command("chmod -R a+rX " + pki.dir() + " " + dir.path())
              .exit_code,
            0);
  auto passwd = dir.path() + "/passwd";
  ASSERT_EQ(run_command("mosquitto_passwd -b -c " + passwd + " alice secret")
              .exit_code,
            0);
  auto acl = dir.write("acl", "user alice\ntopic readwrite alice/#\n");
  run_command("chmod a+r " + passwd + " " + acl);
  auto plain = free_port();
  auto tls = free_port();
  auto conf = dir.write(
    "mosquitto.conf",
    "# as a Mosquitto 2.0 user writes it\n"
    "allow_anonymous false\n"
    "password_file " + passwd + "\n"
    "acl_file " + acl + "\n"
    "listener " + std::to_string(plain) + " 127.0.0.1\n"
    "listener " + std::to_string(tls) + " 127.0.0.1\n"
    "cafile " + pki.ca() + "\n"
    "certfile " + pki.server().cert + "\n"
    "keyfile " + pki.server().key + "\n"
    "max_keepalive 60\n"
    "max_queued_messages 200\n"
    "autosave_interval 1800\n"
    "log_dest stdout\n");

  auto yaml_path = dir.path() + "/hubflow.yaml";
  auto r = run_command("{ " + hubflowctl_binary() + " import-mosquitto " + conf
                       + " 2>&1 > " + yaml_path + "; }");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Every option it cannot map is named with its line, on standard error
  // and in the YAML.
  EXPECT_NE(r.output.find("mosquitto.conf:12: autosave_interval 1800: not "
                          "mapped: hubflow stores each message as it arrives"),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find("mosquitto.conf:13: log_dest stdout: not mapped"),
            std::string::npos)
    << r.output;
  std::ifstream in{yaml_path};
  std::string yaml{std::istreambuf_iterator<char>{in}, {}};
  EXPECT_NE(yaml.find("# " + conf + ":12: autosave_interval"),
            std::string::npos)
    << yaml;
  auto check = run_command(hubflow_binary() + " --config " + yaml_path
                           + " --check");
  ASSERT_EQ(check.exit_code, 0) << check.output << "\n" << yaml;

  std::vector<std::string> mosquitto_saw;
  {
    process mosquitto{{"mosquitto", "-c", conf}};
    ASSERT_TRUE(wait_for_port(plain) && wait_for_port(tls))
      << mosquitto.output();
    mosquitto_saw = client_by_client(plain, tls, pki.ca());
  }
  ASSERT_TRUE(wait_until([&] {
    return run_command("ss -ltn | grep -q ':" + std::to_string(plain) + " '")
             .exit_code
           != 0;
  }));
  hubflow_server broker{yaml};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  auto hubflow_saw = client_by_client(plain, tls, pki.ca());
  EXPECT_EQ(hubflow_saw, mosquitto_saw) << broker.proc().output();
  EXPECT_EQ(hubflow_saw, (std::vector<std::string>{
                           "anonymous connects: no",
                           "alice with a wrong password connects: no",
                           "alice connects: yes",
                           "alice gets alice/own: yes",
                           "alice gets bob/other: no",
                           "alice publishes over TLS: yes",
                           "alice gets alice/tls: yes"}));
}

TEST(mosquitto_import, a_bad_value_names_the_line) {
  temp_dir dir;
  auto conf = dir.write("mosquitto.conf", "listener 1883\nlistener eighty\n");
  auto r = run_command(hubflowctl_binary() + " import-mosquitto " + conf);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(conf + ":2: listener: 'eighty' is not a port"),
            std::string::npos)
    << r.output;
  r = run_command(hubflowctl_binary() + " import-mosquitto "
                  + dir.path() + "/missing.conf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing.conf: cannot read the file"),
            std::string::npos)
    << r.output;
}

} // namespace
