// TLS on hubflow's other links, end to end with real peers: the external
// hub (`hub.address: ssl://...` with Baetyl's inline ca/cert/key) against a
// mosquitto TLS listener that requires client certificates, and the HTTP
// API (`http.certificate`) driven by curl: HTTPS for the Dapr routes and
// /metrics, mutual TLS, plaintext on the HTTPS port refused and counted,
// SIGHUP re-reading the certificate. Certificates come from test_pki.
#include <csignal>
#include <filesystem>

#include <gtest/gtest.h>

#include "fixtures/fixtures.hpp"
#include "fixtures/test_pki.hpp"

using namespace hubflow::test;

namespace {

std::string port_text(std::uint16_t port) {
  return std::to_string(port);
}

// -- the external hub over TLS --------------------------------------------------

/// mosquitto with a plain listener (for the test's own clients) and a TLS
/// listener that only takes clients with a certificate the test CA signed.
class external_hub_tls : public ::testing::Test {
protected:
  void SetUp() override {
    // Mosquitto started as root reads its files as user mosquitto: the
    // throwaway PKI directory is made readable to it.
    ASSERT_EQ(run_command("chmod -R a+rX " + pki.dir()).exit_code, 0);
    hub = std::make_unique<mosquitto_server>(
      0, "listener " + port_text(tls_port) + " 127.0.0.1\n"
           "cafile " + pki.ca() + "\n"
           "certfile " + pki.server().cert + "\n"
           "keyfile " + pki.server().key + "\n"
           "require_certificate true\n");
  }

  test_pki pki;
  test_pki::pair client = pki.client("hubflow-link");
  std::uint16_t tls_port = free_port();
  std::unique_ptr<mosquitto_server> hub;

  /// hubflow with a rule t/in -> t/out through the external hub at
  /// ssl://127.0.0.1:<tls_port>, the hub block ending with `tls_lines`.
  std::string config(const std::string& tls_lines) const {
    return "hub:\n"
           "  address: ssl://127.0.0.1:" + port_text(tls_port) + "\n"
           + tls_lines
           + "rules:\n"
             "  - clientid: tls-link\n"
             "    subscribe: {topic: t/in, qos: 1}\n"
             "    publish: {topic: t/out, qos: 1}\n";
  }
};

TEST_F(external_hub_tls, rules_reach_the_hub_over_mutual_tls) {
  hubflow_server broker{config("  ca: " + pki.ca() + "\n  cert: " + client.cert
                               + "\n  key: " + client.key + "\n")};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  mqtt_client device;
  ASSERT_EQ(device.connect(hub->port()), 0);
  ASSERT_EQ(device.subscribe("t/out", 1), 1);
  // The link subscribes once its TLS connection is up: publish until the
  // rule's output comes back.
  ASSERT_TRUE(wait_until([&] {
    device.publish("t/in", "over-tls", 1);
    return !device.messages_on("t/out").empty();
  })) << broker.proc().output();
  EXPECT_EQ(device.messages_on("t/out").front().payload, "over-tls");
  EXPECT_NE(broker.proc().output().find("connected to ssl://127.0.0.1:"),
            std::string::npos)
    << broker.proc().output();
}

TEST_F(external_hub_tls, a_hub_the_ca_does_not_vouch_for_is_never_trusted) {
  // The link trusts only the other CA: the handshake fails, is logged with
  // OpenSSL's reason once (not per retry) and counted; nothing flows.
  hubflow_server broker{config("  ca: " + pki.other_ca() + "\n  cert: "
                               + client.cert + "\n  key: " + client.key
                               + "\n")};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  ASSERT_TRUE(wait_until([&] {
    return broker.proc().output().find("certificate verify failed")
           != std::string::npos;
  })) << broker.proc().output();
  std::string stats;
  EXPECT_TRUE(wait_until([&] {
    stats = broker.stats_json();
    return stats.find("\"connect_errors\"") != std::string::npos;
  })) << stats;
  EXPECT_EQ(stats.find("\"connects\""), std::string::npos) << stats;
  mqtt_client device;
  ASSERT_EQ(device.connect(hub->port()), 0);
  ASSERT_EQ(device.subscribe("t/out", 1), 1);
  device.publish("t/in", "must-not-pass", 1);
  EXPECT_FALSE(device.wait_messages(1, 1500ms));
}

TEST_F(external_hub_tls, without_a_client_certificate_the_hub_refuses_the_link) {
  hubflow_server broker{config("  ca: " + pki.ca() + "\n")};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  ASSERT_TRUE(wait_until([&] {
    auto out = broker.proc().output();
    return out.find("cannot connect to ssl://127.0.0.1:") != std::string::npos
           || out.find("lost ssl://127.0.0.1:") != std::string::npos;
  })) << broker.proc().output();
  EXPECT_EQ(broker.stats_json().find("\"connects\""), std::string::npos);
}

TEST(external_hub_tls_check, check_names_the_key_and_the_problem) {
  test_pki pki;
  temp_dir dir;
  auto check = [&](const std::string& hub_block) {
    auto path = dir.write("hubflow.yaml", "hub:\n" + hub_block);
    return run_command(hubflow_binary() + " --config " + path + " --check");
  };
  auto client = pki.client("link");
  auto good = check("  address: ssl://127.0.0.1:8883\n  ca: " + pki.ca()
                    + "\n  cert: " + client.cert + "\n  key: " + client.key
                    + "\n");
  EXPECT_EQ(good.exit_code, 0) << good.output;
  // The system's trust store when no ca is given.
  good = check("  address: mqtts://broker.example:8883\n");
  EXPECT_EQ(good.exit_code, 0) << good.output;
  auto r = check("  address: ssl://127.0.0.1:8883\n  ca: " + dir.path()
                 + "/missing.pem\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("hub.ca: cannot read " + dir.path()
                          + "/missing.pem: No such file or directory"),
            std::string::npos)
    << r.output;
  r = check("  address: ssl://127.0.0.1:8883\n  cert: " + client.cert + "\n");
  EXPECT_NE(r.output.find("hub.key: a client certificate needs both `cert` "
                          "and `key`"),
            std::string::npos)
    << r.output;
  r = check("  address: ssl://127.0.0.1:8883\n  cert: " + client.cert
            + "\n  key: " + pki.server().key + "\n");
  EXPECT_NE(r.output.find("hub.key: " + pki.server().key
                          + ": the key does not match the certificate"),
            std::string::npos)
    << r.output;
  r = check("  address: tcp://127.0.0.1:1883\n  ca: " + pki.ca() + "\n");
  EXPECT_NE(r.output.find("hub.ca: 'tcp://127.0.0.1:1883' is not a TLS "
                          "address: write ssl://"),
            std::string::npos)
    << r.output;
}

// -- the HTTP API over HTTPS ----------------------------------------------------

/// curl against the API; -s and the status code written last.
command_result curl(const std::string& args) {
  return run_command("curl -s -o /dev/null -w '%{http_code}' --max-time 5 "
                     + args);
}

class https_api : public ::testing::Test {
protected:
  test_pki pki;
  std::uint16_t mqtt_port = free_port();
  std::uint16_t http_port = free_port();

  std::string config(const std::string& certificate_extra = "") const {
    return "hub:\n"
           "  listen: [tcp://127.0.0.1:" + port_text(mqtt_port) + "]\n"
           "http:\n"
           "  listen: 127.0.0.1:" + port_text(http_port) + "\n"
           "  certificate:\n"
           "    cert: " + pki.server().cert + "\n"
           "    key: " + pki.server().key + "\n"
           + certificate_extra;
  }
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + port_text(http_port) + path;
  }
};

TEST_F(https_api, dapr_routes_and_metrics_are_served_over_https_only) {
  hubflow_server broker{config()};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  auto ca = " --cacert " + pki.ca() + " ";
  auto r = curl(ca + url("/v1.0/healthz"));
  EXPECT_EQ(r.output, "204") << broker.proc().output();
  r = curl(ca + url("/metrics"));
  EXPECT_EQ(r.output, "200");
  // Publishing through HTTPS reaches an MQTT subscriber.
  mqtt_client device;
  ASSERT_EQ(device.connect(mqtt_port), 0);
  ASSERT_EQ(device.subscribe("sensors/https", 1), 1);
  r = curl(ca + "-X POST -d 'over-https' " + url("/v1.0/publish/hub/sensors/https"));
  EXPECT_EQ(r.output, "204");
  ASSERT_TRUE(device.wait_messages(1));
  EXPECT_EQ(device.messages_on("sensors/https").front().payload, "over-https");
  // Keep-alive: several requests on one TLS connection.
  auto many = run_command("curl -s -w '%{http_code} ' --cacert " + pki.ca()
                          + " -o /dev/null " + url("/v1.0/healthz")
                          + " -o /dev/null " + url("/v1.0/healthz")
                          + " -o /dev/null " + url("/metrics"));
  EXPECT_EQ(many.output, "204 204 200 ") << many.output;

  // Plain HTTP on the HTTPS port: refused and counted, the API goes on.
  r = curl("http://127.0.0.1:" + port_text(http_port) + "/v1.0/healthz");
  EXPECT_NE(r.output, "204");
  // An untrusting client gives up in the handshake.
  r = curl(" --cacert " + pki.other_ca() + " " + url("/v1.0/healthz"));
  EXPECT_NE(r.exit_code, 0);
  ASSERT_TRUE(wait_until([&] {
    return broker.stats_json().find("\"tls_handshake_failures\":2")
           != std::string::npos;
  })) << broker.stats_json();
  EXPECT_NE(broker.proc().output().find("closing an HTTPS connection: not a "
                                        "TLS handshake: first byte 0x47 "
                                        "(plaintext HTTP on a TLS port?)"),
            std::string::npos)
    << broker.proc().output();
  r = curl(ca + url("/v1.0/healthz"));
  EXPECT_EQ(r.output, "204");
}

TEST_F(https_api, require_certificate_admits_only_clients_the_ca_signed) {
  hubflow_server broker{config("    ca: " + pki.ca() + "\n"
                               "    require_certificate: true\n")};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  auto ca = " --cacert " + pki.ca() + " ";
  auto r = curl(ca + url("/v1.0/healthz"));
  EXPECT_NE(r.output, "204");
  auto client = pki.client("dashboard");
  r = curl(ca + "--cert " + client.cert + " --key " + client.key + " "
           + url("/v1.0/healthz"));
  EXPECT_EQ(r.output, "204") << broker.proc().output();
  auto stranger = pki.untrusted_client("stranger");
  r = curl(ca + "--cert " + stranger.cert + " --key " + stranger.key + " "
           + url("/v1.0/healthz"));
  EXPECT_NE(r.output, "204");
}

TEST_F(https_api, ciphers_and_ciphers_tls1_3_choose_the_suites) {
  hubflow_server broker{config("    ciphers: ECDHE-ECDSA-CHACHA20-POLY1305\n"
                               "    ciphers_tls1.3: TLS_CHACHA20_POLY1305_SHA256\n")};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  auto s_client = "echo | openssl s_client -connect 127.0.0.1:"
                  + port_text(http_port) + " -CAfile " + pki.ca();
  auto r = run_command(s_client + " -tls1_3");
  EXPECT_NE(r.output.find("Cipher is TLS_CHACHA20_POLY1305_SHA256"),
            std::string::npos)
    << r.output;
  r = run_command(s_client + " -tls1_2");
  EXPECT_NE(r.output.find("Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"),
            std::string::npos)
    << r.output;
  // A client offering none of them is refused.
  r = run_command(s_client + " -tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256");
  EXPECT_NE(r.output.find("Cipher is (NONE)"), std::string::npos) << r.output;
}

TEST_F(https_api, sighup_rereads_the_certificate) {
  temp_dir dir;
  auto install = [&](const test_pki::pair& p) {
    test_pki::install(p, dir.path());
  };
  install(pki.server());
  hubflow_server broker{"http:\n"
                        "  listen: 127.0.0.1:" + port_text(http_port) + "\n"
                        "  certificate: {cert: " + dir.path() + "/live.crt, key: "
                        + dir.path() + "/live.key}\n"};
  ASSERT_TRUE(broker.wait_ready()) << broker.proc().output();
  EXPECT_EQ(curl("--cacert " + pki.ca() + " " + url("/v1.0/healthz")).output,
            "204");
  // The other CA's certificate names localhost only.
  auto by_name = [&](const std::string& ca) {
    return curl("--cacert " + ca + " --resolve localhost:" + port_text(http_port)
                + ":127.0.0.1 https://localhost:" + port_text(http_port)
                + "/v1.0/healthz");
  };
  install(pki.server_by_other_ca());
  ::kill(broker.proc().pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    return broker.proc().output().find(
             "HTTP API: uses the certificate files re-read now")
           != std::string::npos;
  })) << broker.proc().output();
  EXPECT_EQ(by_name(pki.other_ca()).output, "204");
  EXPECT_NE(by_name(pki.ca()).output, "204");
  // Files that do not load leave the certificate as it was.
  dir.write("live.key", "not a key\n");
  ::kill(broker.proc().pid(), SIGHUP);
  ASSERT_TRUE(wait_until([&] {
    return broker.proc().output().find("reload refused")
           != std::string::npos;
  })) << broker.proc().output();
  EXPECT_EQ(by_name(pki.other_ca()).output, "204");
}

TEST(https_api_check, check_names_the_key_and_the_problem) {
  test_pki pki;
  temp_dir dir;
  auto path = dir.write("hubflow.yaml",
                        "http:\n"
                        "  listen: 127.0.0.1:0\n"
                        "  certificate:\n"
                        "    cert: " + pki.server().cert + "\n"
                        "    key: " + pki.client("x").key + "\n");
  auto r = run_command(hubflow_binary() + " --config " + path + " --check");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("http.certificate.key: "),
            std::string::npos)
    << r.output;
  EXPECT_NE(r.output.find("the key does not match the certificate"),
            std::string::npos)
    << r.output;
  path = dir.write("suites.yaml",
                   "http:\n"
                   "  certificate:\n"
                   "    cert: " + pki.server().cert + "\n"
                   "    key: " + pki.server().key + "\n"
                   "    ciphers_tls1.3: TLS_NOPE\n");
  r = run_command(hubflow_binary() + " --config " + path + " --check");
  EXPECT_NE(r.output.find("http.certificate.ciphers_tls1.3: 'TLS_NOPE': no "
                          "TLS 1.3 suite OpenSSL knows"),
            std::string::npos)
    << r.output;
}

} // namespace
