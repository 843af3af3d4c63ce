// TLS listeners end to end with real clients: mosquitto_pub/sub with
// --cafile/--cert/--key, openssl s_client (handshake, session resumption),
// mutual TLS with a certificate's CN as the principal, and the bad inputs
// (plaintext on a TLS port, TLS on a plain port, garbage, a stalled
// handshake, untrusted and expired client certificates): each refused,
// counted per listener, other clients unaffected. Certificates are made
// by test_pki at run time.
#include <csignal>
#include <filesystem>

#include <gtest/gtest.h>

#include "fixtures/test_pki.hpp"
#include "hub_test_env.hpp"

using namespace hubflow;
using namespace hubflow::test;

namespace {

tls_settings server_tls(const test_pki& pki) {
  tls_settings tls;
  tls.ca = pki.ca();
  tls.cert = pki.server().cert;
  tls.key = pki.server().key;
  tls.key_path = "hub.certificate";
  return tls;
}

constexpr const char* tls_url = "ssl://127.0.0.1:0";
constexpr const char* plain_url = "tcp://127.0.0.1:0";

/// A hub with a plain and a TLS listener, anonymous clients allowed.
class hub_tls : public ::testing::Test {
protected:
  hub_config config() {
    auto cfg = test_hub_config();
    cfg.listen = {plain_url, tls_url};
    cfg.certificate = server_tls(pki);
    return cfg;
  }

  void SetUp() override {
    ASSERT_TRUE(env.hub) << env.error;
    auto ports = env.ports();
    ASSERT_EQ(ports.size(), 2u);
    plain_port = ports[0];
    tls_port = ports[1];
  }

  std::string cafile() const {
    return " --cafile " + pki.ca();
  }
  std::int64_t tls_counter(const std::string& name) {
    return env.listener_counter(tls_url, name);
  }

  test_pki pki;
  hub_env env{config()};
  std::uint16_t plain_port = 0;
  std::uint16_t tls_port = 0;
};

} // namespace

TEST_F(hub_tls, mosquitto_clients_over_tls_and_across_listeners) {
  for (auto version : {"mqttv311", "mqttv5"}) {
    auto v = std::string{" -V "} + version;
    mosquitto_sub tls_sub{tls_port, cafile() + v + " -t 'a/#' -C 2"};
    mosquitto_sub plain_sub{plain_port, v + " -t 'a/#' -C 2"};
    ASSERT_TRUE(
      wait_until([&] { return env.counter("subscriptions") >= 2; }));
    mosquitto_pub(tls_port, cafile() + v + " -q 1 -t a/tls -m secret");
    mosquitto_pub(plain_port, v + " -t a/plain -m open");
    EXPECT_TRUE(tls_sub.wait_for("a/tls secret")) << tls_sub.output();
    EXPECT_TRUE(tls_sub.wait_for("a/plain open")) << tls_sub.output();
    EXPECT_TRUE(plain_sub.wait_for("a/tls secret")) << plain_sub.output();
    EXPECT_TRUE(tls_sub.proc().wait_exit(5s).has_value());
    EXPECT_TRUE(plain_sub.proc().wait_exit(5s).has_value());
    ASSERT_TRUE(
      wait_until([&] { return env.counter("subscriptions") == 0; }));
  }
  EXPECT_EQ(tls_counter("connections_total"), 4);
  EXPECT_EQ(env.listener_counter(plain_url, "connections_total"), 4);
  EXPECT_EQ(tls_counter("handshake_failures"), 0);
}

TEST_F(hub_tls, openssl_s_client_resumes_sessions_with_tls_1_2_and_1_3) {
  auto s_client = "sleep 0.3 | openssl s_client -connect 127.0.0.1:"
                  + std::to_string(tls_port) + " -CAfile " + pki.ca();
  for (auto version : {" -tls1_2", " -tls1_3"}) {
    auto session = pki.dir() + "/session.pem";
    std::string first_output;
    std::string again_output;
    // TLS 1.3 tickets follow the handshake; s_client, its input at an end,
    // may quit before one arrives and then has nothing to resume: try
    // again until a first connection took a ticket home.
    EXPECT_TRUE(wait_until([&] {
      first_output = run_command(s_client + version + " -sess_out " + session)
                       .output;
      again_output = run_command(s_client + version + " -sess_in " + session)
                       .output;
      return again_output.find("Reused, TLSv1.") != std::string::npos;
    })) << again_output;
    EXPECT_NE(first_output.find("Verify return code: 0 (ok)"),
              std::string::npos)
      << first_output;
    EXPECT_NE(first_output.find("New, TLSv1."), std::string::npos);
  }
  EXPECT_TRUE(wait_until([&] { return tls_counter("tls_resumed") >= 2; }))
    << tls_counter("tls_resumed");
}

TEST_F(hub_tls, tls_version_below_the_minimum_is_refused) {
  auto r = run_command("echo | openssl s_client -connect 127.0.0.1:"
                       + std::to_string(tls_port) + " -tls1_1");
  EXPECT_NE(r.output.find("Cipher is (NONE)"), std::string::npos)
    << r.output;
  EXPECT_TRUE(
    wait_until([&] { return tls_counter("handshake_failures") == 1; }));
}

TEST_F(hub_tls, bad_input_is_refused_counted_and_harms_nobody) {
  mosquitto_sub sub{tls_port, cafile() + " -t ok -C 1"};
  ASSERT_TRUE(wait_until([&] { return env.counter("subscriptions") == 1; }));
  // Plaintext MQTT on the TLS port.
  raw_client plaintext{tls_port};
  mqtt::connect_packet c;
  c.version = mqtt::v311;
  c.client_id = "plain";
  ASSERT_TRUE(plaintext.send(c, mqtt::v311));
  EXPECT_TRUE(plaintext.wait_closed());
  // A TLS record header followed by garbage.
  raw_client garbage{tls_port};
  ASSERT_TRUE(garbage.send(std::string("\x16\x03\x01\x00\x10", 5)
                           + std::string(16, '\x7f')));
  EXPECT_TRUE(garbage.wait_closed());
  // A TLS ClientHello start on the plain port.
  raw_client tls_on_plain{plain_port};
  ASSERT_TRUE(tls_on_plain.send(std::string("\x16\x03\x01\x02\x00\x01", 6)));
  EXPECT_TRUE(tls_on_plain.wait_closed());
  EXPECT_EQ(tls_counter("handshake_failures"), 2);
  EXPECT_GE(env.counter("protocol_errors"), 1);
  // The subscriber was not disturbed.
  mosquitto_pub(tls_port, cafile() + " -t ok -m still");
  EXPECT_TRUE(sub.wait_for("ok still")) << sub.output();
}

TEST_F(hub_tls, a_stalled_handshake_is_dropped_after_the_connect_timeout) {
  raw_client stalled{tls_port};
  ASSERT_TRUE(stalled.send(std::string("\x16\x03\x01", 3)));
  auto started = std::chrono::steady_clock::now();
  // The CONNECT timeout (10 s) covers the handshake.
  EXPECT_TRUE(stalled.wait_closed(15s));
  EXPECT_GE(std::chrono::steady_clock::now() - started, 9s);
  EXPECT_EQ(tls_counter("handshake_failures"), 1);
}

namespace {

/// Mutual TLS: client certificates required, their CN is the principal.
class hub_mutual_tls : public ::testing::Test {
protected:
  hub_config config() {
    auto cfg = test_hub_config();
    cfg.listen = {tls_url};
    cfg.allow_anonymous = false;
    auto tls = server_tls(pki);
    tls.require_certificate = true;
    tls.use_identity_as_username = true;
    cfg.certificate = tls;
    // The password is never asked for: the certificate names the principal.
    cfg.principals = {
      principal_config{"sensor", "never used", {"sensors/#"}, {"sensors/#"}}};
    return cfg;
  }

  /// mosquitto_pub with `cert` (cert and key); its exit code and output.
  command_result publish(const test_pki::pair* cert, const std::string& args) {
    std::string certs = " --cafile " + pki.ca();
    if (cert)
      certs += " --cert " + cert->cert + " --key " + cert->key;
    return run_command("mosquitto_pub -h 127.0.0.1 -p "
                       + std::to_string(env.port) + certs + " " + args);
  }

  std::int64_t failures() {
    return env.listener_counter(tls_url, "handshake_failures");
  }

  test_pki pki;
  hub_env env{config()};
};

} // namespace

TEST_F(hub_mutual_tls, the_certificates_cn_is_the_principal_with_its_permits) {
  ASSERT_TRUE(env.hub) << env.error;
  auto sensor = pki.client("sensor");
  mosquitto_sub sub{env.port, "--cafile " + pki.ca() + " --cert "
                                + sensor.cert + " --key " + sensor.key
                                + " -t 'sensors/#' -C 1"};
  ASSERT_TRUE(wait_until([&] { return env.counter("subscriptions") == 1; }));
  // Outside its pub permits: acknowledged and dropped (MQTT 3.1.1).
  auto denied = publish(&sensor, "-q 1 -t other/x -m no");
  EXPECT_EQ(denied.exit_code, 0) << denied.output;
  EXPECT_TRUE(wait_until([&] { return env.counter("denied_publish") == 1; }));
  auto allowed = publish(&sensor, "-q 1 -t sensors/t -m 21");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
  EXPECT_TRUE(sub.wait_for("sensors/t 21")) << sub.output();
  EXPECT_EQ(sub.output().find("other/x"), std::string::npos);
}

TEST_F(hub_mutual_tls, certificates_that_do_not_qualify_are_refused) {
  ASSERT_TRUE(env.hub) << env.error;
  // A trusted certificate whose CN is no principal: TLS works, CONNECT is
  // refused.
  auto stranger = pki.client("stranger");
  auto r = publish(&stranger, "-t sensors/t -m x");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(wait_until([&] { return env.counter("denied_connect") == 1; }));
  EXPECT_EQ(failures(), 0);
  // No certificate, one from an unknown CA, an expired one: the
  // handshake fails.
  auto untrusted = pki.untrusted_client("sensor");
  auto expired = pki.expired_client("sensor");
  EXPECT_NE(publish(nullptr, "-t sensors/t -m x").exit_code, 0);
  EXPECT_NE(publish(&untrusted, "-t sensors/t -m x").exit_code, 0);
  EXPECT_NE(publish(&expired, "-t sensors/t -m x").exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return failures() == 3; })) << failures();
  // A good one still gets in.
  auto sensor = pki.client("sensor");
  auto ok = publish(&sensor, "-t sensors/t -m fine");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST(hub_tls_check, check_names_the_key_the_file_and_the_problem) {
  test_pki pki;
  auto expired = pki.expired_server();
  auto other = pki.client("other");
  temp_dir dir;
  auto check = [&](const std::string& certificate) {
    auto path = dir.write("hubflow.yaml",
                          "hub:\n"
                          "  listen: [ssl://127.0.0.1:0]\n"
                          "  certificate:\n" + certificate);
    return run_command(hubflow_binary() + " --config " + path + " --check");
  };
  auto cert_key = [](const test_pki::pair& p) {
    return "    cert: " + p.cert + "\n    key: " + p.key + "\n";
  };
  auto good = check(cert_key(pki.server()));
  EXPECT_EQ(good.exit_code, 0) << good.output;
  auto r = check(cert_key(expired));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("hubflow.yaml:4:11: hub.certificate.cert: " + expired.cert
                          + ": the certificate expired on Jan  2 00:00:00 "
                            "2020 GMT"),
            std::string::npos)
    << r.output;
  r = check("    cert: " + pki.server().cert + "\n    key: " + other.key
            + "\n");
  EXPECT_NE(r.output.find("hub.certificate.key: " + other.key
                          + ": the key does not match the certificate"),
            std::string::npos)
    << r.output;
  r = check("    cert: " + dir.path() + "/missing.pem\n    key: "
            + other.key + "\n");
  EXPECT_NE(r.output.find("hub.certificate.cert: cannot read " + dir.path()
                          + "/missing.pem: No such file or directory"),
            std::string::npos)
    << r.output;
  r = check(cert_key(pki.server()) + "    use_identity_as_username: true\n");
  EXPECT_NE(r.output.find("hub.certificate.use_identity_as_username: needs "
                          "`require_certificate: true`"),
            std::string::npos)
    << r.output;
  auto no_cert = dir.write("bare.yaml", "hub:\n  listen: [wss://127.0.0.1:0]\n");
  r = run_command(hubflow_binary() + " --config " + no_cert + " --check");
  EXPECT_NE(r.output.find("hub.listen[0]: 'wss://127.0.0.1:0' is a TLS "
                          "listener: give hub.certificate"),
            std::string::npos)
    << r.output;
}

TEST(hub_tls_reload, sighup_rereads_certificates_and_keeps_clients) {
  test_pki pki;
  temp_dir dir;
  auto install = [&](const test_pki::pair& p) {
    test_pki::install(p, dir.path());
  };
  install(pki.server());
  auto port = free_port();
  hubflow_server hub{"hub:\n"
                     "  listen: [ssl://127.0.0.1:" + std::to_string(port) + "]\n"
                     "  certificate: {cert: " + dir.path() + "/live.crt, key: "
                     + dir.path() + "/live.key}\n"};
  ASSERT_TRUE(hub.wait_ready()) << hub.proc().output();
  auto pub = [&](const std::string& ca, const std::string& message) {
    // --insecure: the other CA's certificate names localhost only.
    return run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port)
                       + " --insecure --cafile " + ca + " -t t -m " + message);
  };
  mosquitto_sub sub{port, "--cafile " + pki.ca() + " -t t -C 2"};
  ASSERT_TRUE(wait_until([&] { return pub(pki.ca(), "before").exit_code == 0
                                      && sub.output().find("t before")
                                           != std::string::npos; }))
    << sub.output();
  install(pki.server_by_other_ca());
  ::kill(hub.proc().pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    return hub.proc().output().find("uses the certificate files re-read now")
           != std::string::npos;
  })) << hub.proc().output();
  // New connections get the new certificate, the subscriber connected
  // before is still there.
  EXPECT_NE(pub(pki.ca(), "old-ca").exit_code, 0);
  auto r = pub(pki.other_ca(), "after");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(sub.wait_for("t after")) << sub.output();
  // Files that do not load leave the certificate as it was.
  dir.write("live.key", "not a key\n");
  ::kill(hub.proc().pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    // The reload checks the config first, as --check does: refused.
    return hub.proc().output().find("hub.certificate.key: " + dir.path()
                                    + "/live.key: not a PEM private key")
             != std::string::npos
           && hub.proc().output().find("reload refused") != std::string::npos;
  })) << hub.proc().output();
  EXPECT_EQ(pub(pki.other_ca(), "still").exit_code, 0);
}
